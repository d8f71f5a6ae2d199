package dev.tinysr.demo.model

import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.boolean
import kotlinx.serialization.json.double
import kotlinx.serialization.json.int
import kotlinx.serialization.json.intOrNull
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long

/** `q = clamp(round(v / scale) + zeroPoint, -128, 127)`, `v = (q - zeroPoint) * scale`. */
data class Quantization(val scale: Double, val zeroPoint: Int)

/** One tensor as the card describes it. [range]: the values RGB 0..1 maps to (`low + p * (high - low)`). */
data class TensorSpec(
    val shape: List<Int?>,
    val int8: Boolean,
    val low: Double,
    val high: Double,
    val quantization: Quantization?,
)

/**
 * What the app knows about the model: everything from the card (`tinysr.model-card/1`), nothing
 * from constants. Built by [CardReader] after the card has been checked against the contract.
 */
data class ModelCard(
    val name: String,
    val artifact: String,
    val target: String,
    val precision: String,
    val scale: Int,
    val nhwc: Boolean,
    val input: TensorSpec,
    val output: TensorSpec,
    val outputClamped: Boolean,
    val params: Long,
    val multAdds: Double,
    val multAddsAt: List<Int>,
    val fileSize: Long,
    val gpuUnsupported: List<String>,
    val verified: Boolean,
) {
    /** Whether the input is one fixed-size RGB image: 1 x H x W x 3 (NHWC) or 1 x 3 x H x W (NCHW). */
    val fixedShape: Boolean
        get() {
            val s = input.shape
            if (s.size != 4 || s.any { it == null || it <= 0 }) return false
            return s[0] == 1 && (if (nhwc) s[3] else s[1]) == 3
        }

    /** Input height and width (the tile window). */
    val inputHeight: Int get() = (if (nhwc) input.shape[1] else input.shape[2])!!
    val inputWidth: Int get() = (if (nhwc) input.shape[2] else input.shape[3])!!

    companion object {
        fun from(card: JsonObject): ModelCard {
            val tflite = card["tflite"] as? JsonObject
            return ModelCard(
                name = card.str("name"),
                artifact = card.str("artifact"),
                target = card.str("target"),
                precision = card.str("precision"),
                scale = card.getValue("scale").jsonPrimitive.int,
                nhwc = card.str("layout") == "nhwc",
                input = tensor(card.getValue("input").jsonObject),
                output = tensor(card.getValue("output").jsonObject),
                outputClamped = card.getValue("output").jsonObject.getValue("clamped").jsonPrimitive.boolean,
                params = card.getValue("params").jsonPrimitive.long,
                multAdds = card.getValue("mult_adds").jsonPrimitive.double,
                multAddsAt = card.getValue("mult_adds_at").jsonArray.map { it.jsonPrimitive.int },
                fileSize = card.getValue("file_size").jsonPrimitive.long,
                gpuUnsupported = tflite?.getValue("gpu_delegate_unsupported")?.jsonArray?.map { it.jsonPrimitive.content }
                    ?: emptyList(),
                verified = card.getValue("verification").jsonObject.getValue("passed").jsonPrimitive.boolean,
            )
        }

        private fun JsonObject.str(key: String) = getValue(key).jsonPrimitive.content

        private fun tensor(t: JsonObject): TensorSpec {
            val range = t.getValue("range").jsonArray.map { it.jsonPrimitive.double }
            val q = t["quantization"] as? JsonObject
            return TensorSpec(
                shape = t.getValue("shape").jsonArray.map { (it as JsonElement).jsonPrimitive.intOrNull },
                int8 = t.str("dtype") == "int8",
                low = range[0],
                high = range[1],
                quantization = q?.let { Quantization(it.getValue("scale").jsonPrimitive.double, it.getValue("zero_point").jsonPrimitive.int) },
            )
        }
    }
}
