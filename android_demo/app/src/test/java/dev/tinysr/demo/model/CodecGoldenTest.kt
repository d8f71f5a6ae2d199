package dev.tinysr.demo.model

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.double
import kotlinx.serialization.json.float
import kotlinx.serialization.json.int
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test

/**
 * codec_golden.json (a test resource, written by tests/test_android_demo.py with tinysr's LiteRT
 * runner I/O and tinysr.imageio.quantize): pixels in, the model's input tensor out (int8 bytes or
 * floats), and a model output tensor in, 8-bit pixels out. The codec must give the same values.
 */
class CodecGoldenTest {
    private val cases = Json.parseToJsonElement(javaClass.classLoader!!.getResource("codec_golden.json")!!.readText())
        .jsonObject.getValue("cases").jsonArray.map { it.jsonObject }

    private fun tensor(t: JsonObject): TensorSpec {
        val q = t["quantization"]
        return TensorSpec(
            t.getValue("shape").jsonArray.map { it.jsonPrimitive.int },
            t.getValue("dtype").jsonPrimitive.content == "int8",
            t.getValue("range").jsonArray[0].jsonPrimitive.double,
            t.getValue("range").jsonArray[1].jsonPrimitive.double,
            if (q == null || q is JsonNull) null else Quantization(
                q.jsonObject.getValue("scale").jsonPrimitive.double, q.jsonObject.getValue("zero_point").jsonPrimitive.int,
            ),
        )
    }

    private fun card(c: JsonObject): ModelCard = ModelCard(
        "golden", "golden.tflite", "tflite", "int8", c.getValue("scale").jsonPrimitive.int,
        c.getValue("layout").jsonPrimitive.content == "nhwc", tensor(c.getValue("input").jsonObject),
        tensor(c.getValue("output").jsonObject), false, 1, 1.0, listOf(1, 1), 1, emptyList(), true,
    )

    private fun argb(rgb: JsonArray): IntArray = IntArray(rgb.size) { i ->
        val p = rgb[i].jsonArray.map { it.jsonPrimitive.int }
        (0xFF shl 24) or (p[0] shl 16) or (p[1] shl 8) or p[2]
    }

    @Test
    fun everyCaseHasThePythonRunnersTensorsAndPixels() {
        assert(cases.size >= 3)
        for (c in cases) {
            val name = c.getValue("name").jsonPrimitive.content
            val model = card(c)
            val codec = TensorCodec(model)
            val pixels = argb(c.getValue("pixels").jsonArray)
            val tensorIn = c.getValue("input_tensor").jsonArray
            if (model.input.int8) {
                val q = ByteArray(codec.inputSize)
                codec.encodeInt8(pixels, model.inputWidth, model.inputHeight, model.inputWidth, q)
                assertEquals(name, tensorIn.map { it.jsonPrimitive.int }, q.map { it.toInt() })
            } else {
                val f = FloatArray(codec.inputSize)
                codec.encodeFloat(pixels, model.inputWidth, model.inputHeight, model.inputWidth, f)
                assertArrayEquals(name, tensorIn.map { it.jsonPrimitive.float }.toFloatArray(), f, 0f)
            }
            val tensorOut = c.getValue("output_tensor").jsonArray
            val oh = model.inputHeight * model.scale
            val ow = model.inputWidth * model.scale
            val dest = IntArray(oh * ow)
            if (model.output.int8) {
                codec.decodeInt8(ByteArray(tensorOut.size) { tensorOut[it].jsonPrimitive.int.toByte() }, 0, 0, oh, ow, dest)
            } else {
                codec.decodeFloat(FloatArray(tensorOut.size) { tensorOut[it].jsonPrimitive.float }, 0, 0, oh, ow, dest)
            }
            assertArrayEquals(name, argb(c.getValue("output_pixels").jsonArray), dest)
        }
    }
}
