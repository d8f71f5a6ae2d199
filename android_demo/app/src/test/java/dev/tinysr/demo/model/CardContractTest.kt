package dev.tinysr.demo.model

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.fail
import org.junit.Test

/**
 * The reader against card_contract.json (android_demo/contract/, a test resource of this module) and
 * card_cases.json: each model folder there carries the message tinysr.android_demo.read_app_card gives.
 */
class CardContractTest {
    companion object {
        fun contract() = CardContract.parse(CardContractTest::class.java.classLoader!!.getResource(CardContract.FILE)!!.readText())
    }

    private class MapSource(private val files: Map<String, String>) : CardSource {
        override fun list() = files.keys.toList()
        override fun read(name: String) = files.getValue(name)
        override fun exists(name: String) = name in files
    }

    @Test
    fun everyCaseGivesThePythonReadersMessage() {
        val reader = CardReader(contract())
        val text = javaClass.classLoader!!.getResource("card_cases.json")!!.readText()
        val cases = Json.parseToJsonElement(text).jsonObject.getValue("cases").jsonArray
        for (c in cases.map { it.jsonObject }) {
            val name = c.getValue("name").jsonPrimitive.content
            val files = c.getValue("files").jsonObject.mapValues { it.value.jsonPrimitive.content }
            val expected = c.getValue("error").let { if (it is JsonNull) null else it.jsonPrimitive.content }
            val got = try {
                reader.read(MapSource(files))
                null
            } catch (e: CardException) {
                e.message
            }
            assertEquals(name, expected, got)
        }
    }

    @Test
    fun theValidCardIsReadFromTheCardAlone() {
        val text = javaClass.classLoader!!.getResource("card_cases.json")!!.readText()
        val valid = Json.parseToJsonElement(text).jsonObject.getValue("cases").jsonArray.first().jsonObject
        val files = valid.getValue("files").jsonObject.mapValues { it.value.jsonPrimitive.content }
        val card = CardReader(contract()).read(MapSource(files))
        assertEquals("tpsr_x4 int8", card.name)
        assertEquals(4, card.scale)
        assertEquals(48 to 48, card.inputHeight to card.inputWidth)
        assertEquals(Quantization(0.003921568859368563, -128), card.input.quantization)
        assertEquals(Quantization(0.004468172322958708, -121), card.output.quantization)
        assertEquals(143193600.0, card.multAdds, 0.0)
    }

    @Test
    fun everyContractFieldIsCheckedByType() {
        val c = contract()
        assertEquals("tinysr.model-card/1", c.cardFormat)
        for ((path, type) in c.fields) {
            if (type.endsWith("?")) continue
            val card = Json.parseToJsonElement("""{"format": "tinysr.model-card/1"}""").jsonObject
            val problem = CardReader(c).fieldProblem(card)
            if (problem == null) fail("an empty card passes the field check")
            assertNull(CardReader.typeProblem(Json.parseToJsonElement(sample(type)), type, path))
        }
    }

    private fun sample(type: String): String = when {
        type.startsWith("enum<") -> "\"" + type.substring(5, type.length - 1).split("|").first() + "\""
        type.startsWith("list<") -> "[" + sample(type.substring(5, type.length - 1).removeSuffix("?")) + "]"
        type == "string" -> "\"x\""
        type == "int" -> "1"
        type == "number" -> "1.5"
        type == "bool" -> "true"
        type == "object" -> "{}"
        else -> error(type)
    }
}
