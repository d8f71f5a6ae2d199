package dev.tinysr.demo.model

import org.junit.Assert.assertEquals
import org.junit.Test
import java.io.ByteArrayInputStream
import java.io.ByteArrayOutputStream
import javax.imageio.ImageIO

class CodecAndPngTest {
    private fun card(nhwc: Boolean, int8: Boolean): ModelCard {
        val q = Quantization(1.0 / 255, -128)
        val shape = if (nhwc) listOf(1, 2, 3, 3) else listOf(1, 3, 2, 3)
        val outShape = if (nhwc) listOf(1, 4, 6, 3) else listOf(1, 3, 4, 6)
        return ModelCard(
            "m", "m.tflite", "tflite", if (int8) "int8" else "fp32", 2, nhwc,
            TensorSpec(shape, int8, 0.0, 1.0, if (int8) q else null),
            TensorSpec(outShape, int8, 0.0, 1.0, if (int8) q else null),
            false, 1, 1.0, listOf(2, 3), 1, emptyList(), true,
        )
    }

    @Test
    fun inputIsEdgePaddedInTheCardsLayout() {
        val c = card(nhwc = false, int8 = false)
        val pixels = IntArray(6) { 0xFF000000.toInt() or (it * 40 shl 16) } // red = 0, 40, ...
        val out = FloatArray(18)
        TensorCodec(c).encodeFloat(pixels, 3, 1, 2, out) // only 1 x 2 of the window is image
        val red = out.copyOfRange(0, 6).map { Math.round(it * 255) } // Math.round(Float): an Int
        assertEquals(listOf(0, 40, 40, 0, 40, 40), red)
    }

    @Test
    fun int8RoundTripsThroughTheCardsQuantization() {
        val c = card(nhwc = true, int8 = true)
        val codec = TensorCodec(c)
        val pixels = IntArray(6) { 0xFF000000.toInt() or (it * 50 shl 8) }
        val q = ByteArray(18)
        codec.encodeInt8(pixels, 3, 2, 3, q)
        assertEquals(listOf(-128, -78, -128), listOf(q[3], q[4], q[5]).map { it.toInt() }) // pixel 1: g = 50
        val outQ = ByteArray(4 * 6 * 3) { q[it % 18] }
        val dest = IntArray(1)
        codec.decodeInt8(outQ, 0, 1, 1, 1, dest)
        assertEquals(0xFF003200.toInt(), dest[0])
    }

    @Test
    fun pngStreamDecodesToTheRowsWritten() {
        val w = 70
        val h = 33
        val rows = IntArray(w * h) { i -> 0xFF000000.toInt() or ((i * 37) and 0xFFFFFF) }
        val bytes = ByteArrayOutputStream()
        PngStreamWriter(bytes, w, h).use { png -> for (r in 0 until h) png.writeRow(rows, r * w) }
        val image = ImageIO.read(ByteArrayInputStream(bytes.toByteArray()))
        assertEquals(w, image.width)
        assertEquals(h, image.height)
        for (y in 0 until h) for (x in 0 until w) assertEquals(rows[y * w + x], image.getRGB(x, y))
    }
}
