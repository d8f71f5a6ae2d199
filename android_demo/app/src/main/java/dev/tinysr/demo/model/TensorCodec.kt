package dev.tinysr.demo.model

import kotlin.math.floor
import kotlin.math.min
import kotlin.math.rint

/**
 * Pixels <-> the model's tensors, as the card says (layout, value range, int8 quantization), the way
 * `tinysr.runtimes.LiteRTRunner` feeds and reads the same file.
 */
class TensorCodec(private val card: ModelCard) {
    private val h = card.inputHeight
    private val w = card.inputWidth
    val inputSize = h * w * 3

    /** A model input from ARGB [pixels] (row stride [stride]) of which [validH] x [validW] are the image. */
    fun encodeFloat(pixels: IntArray, stride: Int, validH: Int, validW: Int, out: FloatArray) {
        fill(pixels, stride, validH, validW) { i, v -> out[i] = v.toFloat() }
    }

    fun encodeInt8(pixels: IntArray, stride: Int, validH: Int, validW: Int, out: ByteArray) {
        val q = requireNotNull(card.input.quantization) { "${card.artifact}: int8 input without quantization in the card" }
        fill(pixels, stride, validH, validW) { i, v ->
            out[i] = rint(v / q.scale + q.zeroPoint).coerceIn(-128.0, 127.0).toInt().toByte()
        }
    }

    private inline fun fill(pixels: IntArray, stride: Int, validH: Int, validW: Int, put: (Int, Double) -> Unit) {
        val lo = card.input.low
        val span = card.input.high - lo
        for (r in 0 until h) {
            val row = min(r, validH - 1) * stride // edge padding below and right of the image
            for (c in 0 until w) {
                val p = pixels[row + min(c, validW - 1)]
                for (ch in 0 until 3) {
                    val v = ((p shr (16 - 8 * ch)) and 0xFF) / 255.0
                    put(index(r, c, ch, h, w), lo + v * span)
                }
            }
        }
    }

    /** Output rows [oy] until [oy] + [ch], columns [ox] until [ox] + [cw] as opaque ARGB into [dest]. */
    fun decodeFloat(out: FloatArray, oy: Int, ox: Int, ch: Int, cw: Int, dest: IntArray) =
        decode(oy, ox, ch, cw, dest) { out[it].toDouble() }

    fun decodeInt8(out: ByteArray, oy: Int, ox: Int, ch: Int, cw: Int, dest: IntArray) {
        val q = requireNotNull(card.output.quantization) { "${card.artifact}: int8 output without quantization in the card" }
        decode(oy, ox, ch, cw, dest) { (out[it] - q.zeroPoint) * q.scale }
    }

    private inline fun decode(oy: Int, ox: Int, ch: Int, cw: Int, dest: IntArray, value: (Int) -> Double) {
        val oh = h * card.scale
        val ow = w * card.scale
        val lo = card.output.low
        val span = card.output.high - lo
        for (r in 0 until ch) {
            for (c in 0 until cw) {
                var argb = 0xFF shl 24
                for (k in 0 until 3) {
                    val p = (value(index(oy + r, ox + c, k, oh, ow)) - lo) / span
                    argb = argb or (to8bit(p) shl (16 - 8 * k))
                }
                dest[r * cw + c] = argb
            }
        }
    }

    private fun index(r: Int, c: Int, ch: Int, height: Int, width: Int) =
        if (card.nhwc) (r * width + c) * 3 + ch else ch * height * width + r * width + c

    companion object {
        /** [0, 1] -> 0..255, round half up and clamped (`tinysr.imageio.quantize`). */
        fun to8bit(p: Double): Int = floor(p * 255.0 + 0.5).coerceIn(0.0, 255.0).toInt()
    }
}
