package dev.tinysr.demo.model

import kotlinx.serialization.SerializationException
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.booleanOrNull

/** Where the model folder's files come from: the APK's assets in the app, a map in the tests. */
interface CardSource {
    /** File names in the model folder. */
    fun list(): List<String>

    fun read(name: String): String

    fun exists(name: String): Boolean
}

class CardException(message: String) : Exception(message)

/**
 * Reads the one model card of the model folder and checks it against the [contract]: the same checks,
 * in the same order and with the same messages as `tinysr.android_demo.read_app_card`.
 */
class CardReader(private val contract: CardContract) {

    fun read(source: CardSource): ModelCard {
        val cards = source.list().filter { it.endsWith(".json") }.sorted()
        if (cards.isEmpty()) throw CardException(contract.message("no_model"))
        if (cards.size > 1) {
            throw CardException(
                contract.message("several_models", "count" to cards.size, "names" to cards.joinToString(", ")),
            )
        }
        val name = cards.single()
        val card = parseStrict(source.read(name)) ?: throw CardException(contract.message("bad_json", "file" to name))
        val found = (card as? JsonObject)?.get("format") ?: JsonNull
        if (found != JsonPrimitive(contract.cardFormat)) {
            throw CardException(
                contract.message("wrong_format", "file" to name, "found" to found.toString(), "expected" to contract.cardFormat),
            )
        }
        card as JsonObject
        fieldProblem(card)?.let {
            throw CardException(
                contract.message("bad_field", "file" to name, "expected" to contract.cardFormat, "detail" to it),
            )
        }
        val model = ModelCard.from(card)
        if (model.target != "tflite") throw CardException(contract.message("not_tflite", "file" to name, "target" to model.target))
        if (!model.fixedShape) {
            val shape = (card["input"] as JsonObject)["shape"].toString()
            throw CardException(contract.message("not_fixed", "file" to name, "shape" to shape))
        }
        if (!source.exists(model.artifact)) {
            throw CardException(contract.message("missing_artifact", "file" to name, "artifact" to model.artifact))
        }
        return model
    }

    /** The first field of the contract (in its order) that [card] lacks or has with another type. */
    fun fieldProblem(card: JsonObject): String? {
        for ((path, type) in contract.fields) {
            val parts = path.split(".")
            var value: JsonElement = card
            var skip = false
            for ((i, key) in parts.withIndex()) {
                val parent = parts.take(i).joinToString(".")
                if (value is JsonNull && contract.type(parent)?.endsWith("?") == true) {
                    skip = true // a null optional object: its fields are absent
                    break
                }
                if (value !is JsonObject) return "$parent: expected object, got ${kind(value)}"
                value = value[key] ?: return "$path: missing"
            }
            if (!skip) typeProblem(value, type, path)?.let { return it }
        }
        return null
    }

    companion object {
        /**
         * [text] as JSON, or null where Python's `json.loads` (with NaN / Infinity refused, as the
         * Python reader does) would reject it. kotlinx-serialization's parser takes any unquoted
         * literal (`NaN`, `Infinity`, `01`, `abc`) and raw control characters inside strings, so both
         * are checked here.
         */
        fun parseStrict(text: String): JsonElement? {
            var inString = false
            var escaped = false
            for (ch in text) {
                if (inString) {
                    when {
                        escaped -> escaped = false
                        ch == '\\' -> escaped = true
                        ch == '"' -> inString = false
                        ch < ' ' -> return null // a raw control character in a string
                    }
                } else if (ch == '"') {
                    inString = true
                }
            }
            val element = try {
                Json.parseToJsonElement(text)
            } catch (e: SerializationException) {
                return null
            } catch (e: IllegalArgumentException) {
                return null
            }
            return if (literalsValid(element)) element else null
        }

        private fun literalsValid(e: JsonElement): Boolean = when (e) {
            is JsonObject -> e.values.all { literalsValid(it) }
            is JsonArray -> e.all { literalsValid(it) }
            JsonNull -> true
            is JsonPrimitive -> e.isString || e.content == "true" || e.content == "false" || JSON_NUMBER.matches(e.content)
        }

        private val JSON_NUMBER = Regex("-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?")

        fun typeProblem(value: JsonElement, type: String, where: String): String? {
            var t = type
            if (t.endsWith("?")) {
                if (value is JsonNull) return null
                t = t.dropLast(1)
            }
            if (t.startsWith("enum<")) {
                val allowed = t.substring(5, t.length - 1).split("|")
                val ok = value is JsonPrimitive && value.isString && value.content in allowed
                return if (ok) null else "$where: expected one of ${allowed.joinToString(", ")}, got $value"
            }
            if (t.startsWith("list<")) {
                if (value !is JsonArray) return "$where: expected $t, got ${kind(value)}"
                val inner = t.substring(5, t.length - 1)
                value.forEachIndexed { i, v -> typeProblem(v, inner, "$where[$i]")?.let { return it } }
                return null
            }
            val ok = when (t) {
                "object" -> value is JsonObject
                "string" -> value is JsonPrimitive && value.isString
                "bool" -> kind(value) == "a bool"
                "int" -> kind(value) == "an int"
                "number" -> kind(value) == "a number"
                else -> error("card_contract.json: unknown type $t")
            }
            return if (ok) null else "$where: expected $t, got ${kind(value)}"
        }

        /** The kind of a JSON value, in the words of the Python reader (an int is written without a point). */
        fun kind(value: JsonElement): String = when (value) {
            is JsonObject -> "an object"
            is JsonArray -> "an array"
            JsonNull -> "null"
            is JsonPrimitive -> when {
                value.isString -> "a string"
                value.booleanOrNull != null -> "a bool"
                INT.matches(value.content) -> "an int"
                else -> "a number"
            }
        }

        private val INT = Regex("-?[0-9]+")
    }
}
