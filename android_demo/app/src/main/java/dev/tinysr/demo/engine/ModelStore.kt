package dev.tinysr.demo.engine

import android.content.res.AssetManager
import dev.tinysr.demo.model.CardContract
import dev.tinysr.demo.model.CardReader
import dev.tinysr.demo.model.CardSource
import dev.tinysr.demo.model.ModelCard
import java.io.FileNotFoundException

/** The model folder of the APK's assets (`assets/models/`, filled by `tinysr android-demo prepare`). */
class AssetCardSource(private val assets: AssetManager, private val dir: String) : CardSource {
    override fun list(): List<String> = assets.list(dir)?.toList() ?: emptyList()

    override fun read(name: String): String = assets.open("$dir/$name").bufferedReader().use { it.readText() }

    override fun exists(name: String): Boolean = try {
        assets.open("$dir/$name").close()
        true
    } catch (e: FileNotFoundException) {
        false
    }
}

/** The contract and the bundled model's card, or the message saying why there is none. */
class LoadedModel(val contract: CardContract, val card: ModelCard)

object ModelStore {
    fun load(assets: AssetManager): LoadedModel {
        val contract = CardContract.parse(assets.open(CardContract.FILE).bufferedReader().use { it.readText() })
        val card = CardReader(contract).read(AssetCardSource(assets, contract.modelsDir))
        return LoadedModel(contract, card)
    }
}
