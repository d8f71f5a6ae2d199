package dev.tinysr.demo.model

import kotlin.math.floor
import kotlin.math.min
import kotlin.math.round

/**
 * Pixels <-> the model's tensors, as the card says (layout, value range, int8 quantization), the way
 * `tinysr.runtimes.LiteRTRunner` feeds and reads the same file, in the same float32 arithmetic (so
 * the int8 bytes are the same, ties included): `codec_golden.json` holds both sides' results.
 */
class TensorCodec(private val card: ModelCard) {
    private val h = card.inputHeight
    private val w = card.inputWidth
    val inputSize = h * w * 3
    private val inLow = card.input.low.toFloat()
    private val inSpan = (card.input.high - card.input.low).toFloat()
    private val outLow = card.output.low.toFloat()
    private val outSpan = (card.output.high - card.output.low).toFloat()

    /** A model input from ARGB [pixels] (row stride [stride]) of which [validH] x [validW] are the image. */
    fun encodeFloat(pixels: IntArray, stride: Int, validH: Int, validW: Int, out: FloatArray) {
        fill(pixels, stride, validH, validW) { i, v -> out[i] = v }
    }

    fun encodeInt8(pixels: IntArray, stride: Int, validH: Int, validW: Int, out: ByteArray) {
        val q = requireNotNull(card.input.quantization) { "${card.artifact}: int8 input without quantization in the card" }
        val scale = q.scale.toFloat()
        val zero = q.zeroPoint.toFloat()
        fill(pixels, stride, validH, validW) { i, v -> out[i] = quantize(v, scale, zero) }
    }

    private inline fun fill(pixels: IntArray, stride: Int, validH: Int, validW: Int, put: (Int, Float) -> Unit) {
        for (r in 0 until h) {
            val row = min(r, validH - 1) * stride // edge padding below and right of the image
            for (c in 0 until w) {
                val p = pixels[row + min(c, validW - 1)]
                for (ch in 0 until 3) {
                    val v = ((p shr (16 - 8 * ch)) and 0xFF) / 255f // tinysr.imageio: uint8 / 255 in float32
                    put(index(r, c, ch, h, w), v * inSpan + inLow)
                }
            }
        }
    }

    /** Output rows [oy] until [oy] + [ch], columns [ox] until [ox] + [cw] as opaque ARGB into [dest]. */
    fun decodeFloat(out: FloatArray, oy: Int, ox: Int, ch: Int, cw: Int, dest: IntArray) =
        decode(oy, ox, ch, cw, dest) { out[it] }

    fun decodeInt8(out: ByteArray, oy: Int, ox: Int, ch: Int, cw: Int, dest: IntArray) {
        val q = requireNotNull(card.output.quantization) { "${card.artifact}: int8 output without quantization in the card" }
        val scale = q.scale.toFloat()
        val zero = q.zeroPoint.toFloat()
        decode(oy, ox, ch, cw, dest) { (out[it].toFloat() - zero) * scale }
    }

    private inline fun decode(oy: Int, ox: Int, ch: Int, cw: Int, dest: IntArray, value: (Int) -> Float) {
        val oh = h * card.scale
        val ow = w * card.scale
        for (r in 0 until ch) {
            for (c in 0 until cw) {
                var argb = 0xFF shl 24
                for (k in 0 until 3) {
                    val p = (value(index(oy + r, ox + c, k, oh, ow)) - outLow) / outSpan
                    argb = argb or (to8bit(p) shl (16 - 8 * k))
                }
                dest[r * cw + c] = argb
            }
        }
    }

    private fun index(r: Int, c: Int, ch: Int, height: Int, width: Int) =
        if (card.nhwc) (r * width + c) * 3 + ch else ch * height * width + r * width + c

    companion object {
        /** `clip(round(v / scale + zero), -128, 127)`, ties to even (`np.round`), in float32. */
        fun quantize(v: Float, scale: Float, zero: Float): Byte = round(v / scale + zero).coerceIn(-128f, 127f).toInt().toByte()

        /** [0, 1] -> 0..255, round half up and clamped (`tinysr.imageio.quantize`), in float32. */
        fun to8bit(p: Float): Int = floor(p * 255f + 0.5f).coerceIn(0f, 255f).toInt()
    }
}
