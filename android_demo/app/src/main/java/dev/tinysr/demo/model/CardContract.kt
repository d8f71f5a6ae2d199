package dev.tinysr.demo.model

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.int
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive

/**
 * `card_contract.json` (android_demo/contract/): the card format the app accepts, the card fields it
 * reads with their types (in the order they are checked), the tile overlap it asks for and its
 * messages. The same file is read by `tinysr android-demo prepare` and the Python tests.
 */
class CardContract(
    val cardFormat: String,
    val modelsDir: String,
    val tileOverlap: Int,
    val fields: List<Pair<String, String>>,
    private val messages: Map<String, String>,
) {
    /** The message [key] with each `{name}` replaced by its value. */
    fun message(key: String, vararg values: Pair<String, Any>): String {
        var text = messages[key] ?: error("card_contract.json has no message $key")
        for ((name, value) in values) text = text.replace("{$name}", value.toString())
        return text
    }

    fun type(path: String): String? = fields.firstOrNull { it.first == path }?.second

    companion object {
        const val FILE = "card_contract.json"

        fun parse(text: String): CardContract {
            val root = Json.parseToJsonElement(text).jsonObject
            val fields = root.getValue("fields").jsonObject.map { (k, v) -> k to v.jsonPrimitive.content }
            val messages = root.getValue("messages").jsonObject.mapValues { it.value.jsonPrimitive.content }
            return CardContract(
                cardFormat = root.string("card_format"),
                modelsDir = root.string("models_dir"),
                tileOverlap = root.getValue("tile_overlap").jsonPrimitive.int,
                fields = fields,
                messages = messages,
            )
        }

        private fun JsonObject.string(key: String) = getValue(key).jsonPrimitive.content
    }
}
