package dev.tinysr.demo.engine

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.Canvas
import android.graphics.ColorSpace
import android.graphics.Matrix
import android.graphics.Paint
import android.graphics.RectF
import android.media.ExifInterface
import android.net.Uri
import android.os.Build
import dev.tinysr.demo.model.ExifTransform
import dev.tinysr.demo.model.PngStreamWriter
import dev.tinysr.demo.model.UpscaleBudget
import dev.tinysr.demo.model.TilePlanner
import kotlinx.coroutines.ensureActive
import java.io.File
import kotlinx.coroutines.currentCoroutineContext
import kotlin.math.min

/** Why an upscale was not started: the figure it needs and what there is. */
class BudgetException(message: String) : Exception(message)

/**
 * A finished upscale: the full-size PNG in the cache; [before] the photo as it was upscaled (full
 * size, for 1:1 crops), [after] a preview of the output of at most 8 MP.
 */
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
 * Upscales a photo in tiles with bounded memory: the photo (capped by [UpscaleBudget]: at most 16 MP
 * in and 200 MP out) is the only full-size bitmap; SR tiles go, one band of tile rows at a time,
 * into a streamed PNG and a preview of at most 8 MP. [UpscaleBudget.plan] gives the figures (a 12 MP
 * photo at x4: ~157 MB of heap, a PNG of up to 577 MB), checked against the heap and the free space
 * of [outDir] before anything is allocated.
 */
class Upscaler(private val engine: SrEngine, private val overlap: Int) {

    suspend fun upscale(resolver: ContentResolver, uri: Uri, outDir: File, progress: (Int, Int) -> Unit): UpscaleResult {
        val t0 = System.nanoTime()
        val card = engine.card
        val s = card.scale
        val bounds = bounds(resolver, uri)
        val transform = orientation(resolver, uri)
        val tile = TilePlanner.plan(1, 1, card.inputHeight, card.inputWidth, overlap).tile
        val budget = UpscaleBudget.plan(bounds.first, bounds.second, s, card.inputHeight, card.inputWidth, tile, !card.output.int8)
        checkBudget(budget, outDir)
        val (photo, note) = decode(resolver, uri, budget, transform)
        val h = photo.height
        val w = photo.width
        val plan = TilePlanner.plan(h, w, card.inputHeight, card.inputWidth, overlap)
        val (pw, ph) = UpscaleBudget.previewSize(w.toLong() * s, h.toLong() * s)
        val f = pw.toDouble() / (w * s)
        val after = Bitmap.createBitmap(pw, ph, Bitmap.Config.ARGB_8888)
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
                done, w * s, h * s, photo, after, (System.nanoTime() - t0) / 1e9, plan.tiles.size,
                notes.joinToString(" ").ifEmpty { null },
            )
        } catch (e: Throwable) {
            photo.recycle()
            after.recycle()
            throw e
        } finally {
            png.delete()
        }
    }

    private fun flush(writer: PngStreamWriter, band: IntArray, rows: Int, width: Int) {
        for (r in 0 until rows) writer.writeRow(band, r * width)
    }

    companion object {
        private fun bounds(resolver: ContentResolver, uri: Uri): Pair<Int, Int> {
            val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
            resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, bounds) }
            if (bounds.outWidth <= 0 || bounds.outHeight <= 0) error("cannot read this file as an image")
            return bounds.outWidth to bounds.outHeight
        }

        private fun orientation(resolver: ContentResolver, uri: Uri): ExifTransform = resolver.openInputStream(uri).use { stream ->
            if (stream == null) ExifTransform.IDENTITY
            else ExifTransform.of(ExifInterface(stream).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL))
        }

        /** Refuses, with the figures, an upscale the heap or the disk cannot take. */
        fun checkBudget(budget: UpscaleBudget, outDir: File) {
            val rt = Runtime.getRuntime()
            val heapFree = rt.maxMemory() - (rt.totalMemory() - rt.freeMemory())
            val out = "${budget.outWidth}x${budget.outHeight} (${budget.outPixels / 1_000_000} MP)"
            if (budget.heapBytes > heapFree) {
                throw BudgetException(
                    "An output of $out needs about ${UpscaleBudget.mb(budget.heapBytes)} of memory; " +
                        "the app has ${UpscaleBudget.mb(heapFree)} free. Try a smaller photo.",
                )
            }
            val disk = outDir.usableSpace
            if (budget.pngBytes > disk) {
                throw BudgetException(
                    "The PNG of $out can take up to ${UpscaleBudget.mb(budget.pngBytes)}; " +
                        "only ${UpscaleBudget.mb(disk)} is free on the device.",
                )
            }
        }

        /**
         * The photo upright (every EXIF orientation, mirrored ones included), in sRGB (a Display-P3
         * or other wide-gamut photo is converted: the model was trained on sRGB), decoded at
         * 1/[UpscaleBudget.sample].
         */
        fun decode(resolver: ContentResolver, uri: Uri, budget: UpscaleBudget, transform: ExifTransform): Pair<Bitmap, String?> {
            val opts = BitmapFactory.Options().apply {
                inSampleSize = budget.sample
                inPreferredConfig = Bitmap.Config.ARGB_8888
                if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O) inPreferredColorSpace = ColorSpace.get(ColorSpace.Named.SRGB)
            }
            val raw = resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, opts) }
                ?: error("cannot decode this image")
            val upright = if (transform.identity) raw else {
                val m = Matrix().apply {
                    setValues(floatArrayOf(transform.a.toFloat(), transform.b.toFloat(), 0f, transform.c.toFloat(), transform.d.toFloat(), 0f, 0f, 0f, 1f))
                }
                Bitmap.createBitmap(raw, 0, 0, raw.width, raw.height, m, false).also { if (it !== raw) raw.recycle() }
            }
            val note = if (budget.sample > 1) {
                "The photo was decoded at 1/${budget.sample} size (${upright.width}x${upright.height}): " +
                    "the output is capped at ${UpscaleBudget.MAX_OUTPUT_PIXELS / 1_000_000} MP and the input at " +
                    "${UpscaleBudget.MAX_INPUT_PIXELS / 1_000_000} MP."
            } else null
            return upright to note
        }
    }
}
