package dev.tinysr.demo.engine

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.Canvas
import android.graphics.Matrix
import android.graphics.Paint
import android.graphics.RectF
import android.media.ExifInterface
import android.net.Uri
import dev.tinysr.demo.model.PngStreamWriter
import dev.tinysr.demo.model.TilePlanner
import kotlinx.coroutines.ensureActive
import java.io.File
import kotlinx.coroutines.currentCoroutineContext
import kotlin.math.min
import kotlin.math.sqrt

/** A finished upscale: the full-size PNG in the cache, and bitmaps of bounded size to show. */
class UpscaleResult(
    val png: File,
    val width: Int,
    val height: Int,
    val before: Bitmap,
    val after: Bitmap,
    val seconds: Double,
    val tiles: Int,
    val note: String?,
)

/**
 * Upscales a photo in tiles with bounded memory: the photo (at most [MAX_INPUT_PIXELS]) is the
 * only full-size bitmap; SR tiles go, one band of tile rows at a time, into a streamed PNG and a
 * preview of at most [MAX_PREVIEW_PIXELS]. A 12 MP photo at x4 needs ~48 MB for the photo, one band
 * (tile x 4 rows of the output width, ~45 MB for 4000 px) and ~32 MB of preview.
 */
class Upscaler(private val engine: SrEngine, private val overlap: Int) {

    suspend fun upscale(resolver: ContentResolver, uri: Uri, outDir: File, progress: (Int, Int) -> Unit): UpscaleResult {
        val t0 = System.nanoTime()
        val (photo, note) = decode(resolver, uri)
        val card = engine.card
        val s = card.scale
        val h = photo.height
        val w = photo.width
        val plan = TilePlanner.plan(h, w, card.inputHeight, card.inputWidth, overlap)
        val f = min(1.0, sqrt(MAX_PREVIEW_PIXELS / (h.toDouble() * s * w * s)))
        val after = Bitmap.createBitmap(maxOf(1, (w * s * f).toInt()), maxOf(1, (h * s * f).toInt()), Bitmap.Config.ARGB_8888)
        val before = Bitmap.createScaledBitmap(photo, after.width, after.height, true)
        val canvas = Canvas(after)
        val paint = Paint(Paint.FILTER_BITMAP_FLAG)
        val window = IntArray(card.inputHeight * card.inputWidth)
        val bandH = plan.tile * s
        val band = IntArray(bandH * w * s)
        val core = IntArray(plan.tile * s * plan.tile * s)
        val png = File(outDir, "upscaled.png.part")
        val notes = listOfNotNull(
            note,
            if (plan.overlapReduced) "The model's input ${card.inputWidth}x${card.inputHeight} leaves no room for an overlap " +
                "of $overlap; using ${plan.overlap} (seams may show: prepare at a larger --input-size)." else null,
        )
        try {
            png.outputStream().buffered(1 shl 16).use { stream ->
                val writer = PngStreamWriter(stream, w * s, h * s)
                var rowY = -1
                var rowH = 0
                for ((i, t) in plan.tiles.withIndex()) {
                    currentCoroutineContext().ensureActive()
                    if (t.y != rowY) {
                        flush(writer, band, rowH * s, w * s)
                        rowY = t.y
                        rowH = t.h
                    }
                    photo.getPixels(window, 0, card.inputWidth, t.winX, t.winY, t.winW, t.winH)
                    val out = engine.run(window, card.inputWidth, t.winH, t.winW)
                    val ch = t.h * s
                    val cw = t.w * s
                    engine.decode(out, (t.y - t.winY) * s, (t.x - t.winX) * s, ch, cw, core)
                    for (r in 0 until ch) System.arraycopy(core, r * cw, band, r * w * s + t.x * s, cw)
                    val tileBitmap = Bitmap.createBitmap(core, 0, cw, cw, ch, Bitmap.Config.ARGB_8888)
                    val dst = RectF(
                        (t.x * s * f).toFloat(), (t.y * s * f).toFloat(),
                        ((t.x + t.w) * s * f).toFloat(), ((t.y + t.h) * s * f).toFloat(),
                    )
                    canvas.drawBitmap(tileBitmap, null, dst, paint)
                    tileBitmap.recycle()
                    progress(i + 1, plan.tiles.size)
                }
                flush(writer, band, rowH * s, w * s)
                writer.close()
            }
            val done = File(outDir, "upscaled.png")
            if (!png.renameTo(done)) error("cannot move the result into place in ${outDir.path}")
            return UpscaleResult(
                done, w * s, h * s, before, after, (System.nanoTime() - t0) / 1e9, plan.tiles.size,
                notes.joinToString(" ").ifEmpty { null },
            )
        } finally {
            png.delete()
            photo.recycle()
        }
    }

    private fun flush(writer: PngStreamWriter, band: IntArray, rows: Int, width: Int) {
        for (r in 0 until rows) writer.writeRow(band, r * width)
    }

    companion object {
        const val MAX_INPUT_PIXELS = 16_000_000L
        const val MAX_PREVIEW_PIXELS = 8_000_000.0

        /** The photo upright (EXIF orientation applied), subsampled by 2, 4, ... above [MAX_INPUT_PIXELS]. */
        fun decode(resolver: ContentResolver, uri: Uri): Pair<Bitmap, String?> {
            val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
            resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, bounds) }
            if (bounds.outWidth <= 0 || bounds.outHeight <= 0) error("cannot read this file as an image")
            var sample = 1
            while (bounds.outWidth.toLong() / sample * (bounds.outHeight / sample) > MAX_INPUT_PIXELS) sample *= 2
            val opts = BitmapFactory.Options().apply {
                inSampleSize = sample
                inPreferredConfig = Bitmap.Config.ARGB_8888
            }
            val raw = resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, opts) }
                ?: error("cannot decode this image")
            val degrees = resolver.openInputStream(uri).use { stream ->
                if (stream == null) 0 else when (ExifInterface(stream).getAttributeInt(ExifInterface.TAG_ORIENTATION, 1)) {
                    ExifInterface.ORIENTATION_ROTATE_90 -> 90
                    ExifInterface.ORIENTATION_ROTATE_180 -> 180
                    ExifInterface.ORIENTATION_ROTATE_270 -> 270
                    else -> 0
                }
            }
            val upright = if (degrees == 0) raw else {
                Bitmap.createBitmap(raw, 0, 0, raw.width, raw.height, Matrix().apply { postRotate(degrees.toFloat()) }, true)
                    .also { raw.recycle() }
            }
            val note = if (sample > 1) {
                "The photo (${bounds.outWidth}x${bounds.outHeight}) was decoded at 1/$sample size to bound memory."
            } else null
            return upright to note
        }
    }
}
