package dev.tinysr.demo.model

import kotlin.math.ceil
import kotlin.math.max
import kotlin.math.min

/**
 * The linear part of the EXIF orientation's transform (1..8) that makes a photo upright:
 * `x' = a x + b y`, `y' = c x + d y` (image coordinates, y down), as the values of an
 * `android.graphics.Matrix` (`MSCALE_X = a, MSKEW_X = b, MSKEW_Y = c, MSCALE_Y = d`). The mirrored
 * orientations (2, 4, 5, 7) are flips, alone or with a rotation. [swapsSides]: width and height trade.
 */
data class ExifTransform(val a: Int, val b: Int, val c: Int, val d: Int) {
    val identity: Boolean get() = this == IDENTITY
    val swapsSides: Boolean get() = a == 0

    /** Where the pixel ([x], [y]) of a [width] x [height] photo lands in the upright one. */
    fun map(x: Int, y: Int, width: Int, height: Int): Pair<Int, Int> {
        val px = a * (2 * x + 1) + b * (2 * y + 1) // pixel centres, doubled to stay in integers
        val py = c * (2 * x + 1) + d * (2 * y + 1)
        val minX = min(0, a * 2 * width) + min(0, b * 2 * height)
        val minY = min(0, c * 2 * width) + min(0, d * 2 * height)
        return (px - minX - 1) / 2 to (py - minY - 1) / 2
    }

    companion object {
        val IDENTITY = ExifTransform(1, 0, 0, 1)

        fun of(orientation: Int): ExifTransform = when (orientation) {
            2 -> ExifTransform(-1, 0, 0, 1) // mirrored
            3 -> ExifTransform(-1, 0, 0, -1) // rotated 180
            4 -> ExifTransform(1, 0, 0, -1) // mirrored vertically
            5 -> ExifTransform(0, 1, 1, 0) // transposed
            6 -> ExifTransform(0, -1, 1, 0) // rotated 90 clockwise
            7 -> ExifTransform(0, -1, -1, 0) // transversed
            8 -> ExifTransform(0, 1, -1, 0) // rotated 270 clockwise
            else -> IDENTITY // 1, 0 (undefined) or unknown
        }
    }
}

/**
 * What an upscale will take before it starts: the photo is decoded at 1/[sample] so that neither the
 * input nor the output exceeds its cap, and the figures it then needs: heap (bytes) and the PNG's
 * worst-case size on disk (an incompressible image: 3 bytes a pixel, plus the filter bytes).
 */
data class UpscaleBudget(
    val sample: Int,
    val width: Int,
    val height: Int,
    val outWidth: Long,
    val outHeight: Long,
    val heapBytes: Long,
    val pngBytes: Long,
) {
    val outPixels: Long get() = outWidth * outHeight

    companion object {
        const val MAX_INPUT_PIXELS = 16_000_000L
        const val MAX_OUTPUT_PIXELS = 200_000_000L // a 12.5 MP photo at x4; 16 MP at x4 (256 MP) is decoded at 1/2
        const val MAX_PREVIEW_PIXELS = 8_000_000L

        /**
         * [photoW] x [photoH]: the stored photo; [window] the model's input side, [tile] the tile
         * plan's core side, [scale] the model's; [floatOut] whether the output tensor is float32
         * (else int8): `readFloat()` returns a new array of the whole output per tile.
         */
        fun plan(photoW: Int, photoH: Int, scale: Int, windowH: Int, windowW: Int, tile: Int, floatOut: Boolean): UpscaleBudget {
            require(photoW > 0 && photoH > 0 && scale > 0)
            val maxIn = min(MAX_INPUT_PIXELS, MAX_OUTPUT_PIXELS / (scale.toLong() * scale))
            var sample = 1
            while ((photoW / sample).toLong() * (photoH / sample) > maxIn && photoW / sample > 1 && photoH / sample > 1) sample *= 2
            val w = max(1, photoW / sample)
            val h = max(1, photoH / sample)
            val ow = w.toLong() * scale
            val oh = h.toLong() * scale
            val preview = previewSize(ow, oh)
            val photo = 4L * w * h
            val band = 4L * tile * scale * ow // one band of tile rows of the output, ARGB
            val core = 4L * tile * scale * tile * scale + 4L * tile * scale * tile * scale // core pixels + its tile bitmap
            val window = 4L * windowH * windowW * 2 // ARGB window + the encoded input
            val output = windowH.toLong() * scale * windowW * scale * 3 * (if (floatOut) 4 else 1)
            val previews = 4L * preview.first * preview.second // the after preview (before: the photo itself)
            val heap = photo + band + core + window + output + previews
            val png = oh * (1 + 3 * ow) + oh * 64 / 65536 + 1024 // raw rows + stored-block overhead + chunks
            return UpscaleBudget(sample, w, h, ow, oh, heap, png)
        }

        /** The preview size of an [ow] x [oh] output: at most [MAX_PREVIEW_PIXELS], aspect kept. */
        fun previewSize(ow: Long, oh: Long): Pair<Int, Int> {
            val f = min(1.0, kotlin.math.sqrt(MAX_PREVIEW_PIXELS / (ow.toDouble() * oh)))
            return max(1, (ow * f).toInt()) to max(1, (oh * f).toInt())
        }

        fun mb(bytes: Long): String = "%.0f MB".format(ceil(bytes / 1e6))
    }
}

/** A crop of an image: [x], [y], [w] x [h], inside it. */
data class Crop(val x: Int, val y: Int, val w: Int, val h: Int)

object ViewGeometry {
    /**
     * The [w] x [h] crop (at most the image) of an [imageW] x [imageH] image centred as near
     * ([cx], [cy]) as the image allows: the 1:1 detail view of the full-size output.
     */
    fun crop(cx: Double, cy: Double, w: Int, h: Int, imageW: Int, imageH: Int): Crop {
        val cw = min(w, imageW)
        val ch = min(h, imageH)
        val x = (cx - cw / 2.0).toInt().coerceIn(0, imageW - cw)
        val y = (cy - ch / 2.0).toInt().coerceIn(0, imageH - ch)
        return Crop(x, y, cw, ch)
    }

    /**
     * Zoom by [factor] around [centroidX], [centroidY] (view pixels), then pan by [panX], [panY]: the
     * content point under the centroid stays under it. The view shows content point `p` at
     * `p * zoom + offset`; zoom is kept in 1..[maxZoom] and the content inside the [viewW] x [viewH] view.
     * Returns (zoom, offsetX, offsetY).
     */
    fun zoomAround(
        zoom: Float, offsetX: Float, offsetY: Float, factor: Float, centroidX: Float, centroidY: Float,
        panX: Float, panY: Float, viewW: Float, viewH: Float, maxZoom: Float = 16f,
    ): Triple<Float, Float, Float> {
        val z = (zoom * factor).coerceIn(1f, maxZoom)
        val k = z / zoom
        val ox = centroidX - (centroidX - offsetX) * k + panX
        val oy = centroidY - (centroidY - offsetY) * k + panY
        return Triple(z, ox.coerceIn(viewW * (1 - z), 0f), oy.coerceIn(viewH * (1 - z), 0f))
    }
}
