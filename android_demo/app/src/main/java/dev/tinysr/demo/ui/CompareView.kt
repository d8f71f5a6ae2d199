package dev.tinysr.demo.ui

import android.graphics.Bitmap
import android.graphics.BitmapRegionDecoder
import android.graphics.Rect
import android.os.Build
import androidx.compose.foundation.Canvas
import androidx.compose.foundation.gestures.detectTapGestures
import androidx.compose.foundation.gestures.detectTransformGestures
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.aspectRatio
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Slider
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableFloatStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.geometry.Offset
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.FilterQuality
import androidx.compose.ui.graphics.ImageBitmap
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.graphics.drawscope.DrawScope
import androidx.compose.ui.graphics.drawscope.clipRect
import androidx.compose.ui.graphics.drawscope.withTransform
import androidx.compose.ui.input.pointer.pointerInput
import androidx.compose.ui.unit.IntOffset
import androidx.compose.ui.unit.IntSize
import dev.tinysr.demo.engine.UpscaleResult
import dev.tinysr.demo.model.Crop
import dev.tinysr.demo.model.ViewGeometry
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

/** Side of the 1:1 detail crop, in output pixels. */
private const val DETAIL = 512

/**
 * Before (the photo) and after (the preview of the output, at most 8 MP) in one zoomable view: pinch
 * zooms around the fingers, double-tap resets, a tap picks the spot of the 1:1 detail below it. The
 * detail is the full-size output (read from the PNG) beside the photo upscaled bilinearly, pixel
 * for pixel, as the TFLite super-resolution example shows it: a preview smaller than the output
 * cannot show what the model added. Left of the divider before, right of it after; the slider moves
 * the divider. With [showAfter] false, only the photo is shown.
 */
@Composable
fun CompareView(result: UpscaleResult, showAfter: Boolean) {
    val b = remember(result) { result.before.asImageBitmap() }
    val a = remember(result) { result.after.asImageBitmap() }
    var split by remember { mutableFloatStateOf(0.5f) }
    var zoom by remember { mutableFloatStateOf(1f) }
    var offset by remember { mutableStateOf(Offset.Zero) }
    var centre by remember(result) { mutableStateOf(Offset(result.width / 2f, result.height / 2f)) } // output pixels
    var detail by remember(result) { mutableStateOf<Pair<ImageBitmap, ImageBitmap>?>(null) }
    LaunchedEffect(result, centre) {
        detail = withContext(Dispatchers.IO) { detailCrops(result, centre) }
    }
    Column {
        Canvas(
            Modifier.fillMaxWidth()
                .aspectRatio(result.after.width.toFloat() / result.after.height)
                .pointerInput(result) {
                    detectTransformGestures { centroid, pan, zoomChange, _ ->
                        val (z, ox, oy) = ViewGeometry.zoomAround(
                            zoom, offset.x, offset.y, zoomChange, centroid.x, centroid.y, pan.x, pan.y,
                            size.width.toFloat(), size.height.toFloat(),
                        )
                        zoom = z
                        offset = Offset(ox, oy)
                    }
                }
                .pointerInput(result) {
                    detectTapGestures(
                        onDoubleTap = { zoom = 1f; offset = Offset.Zero },
                        onTap = { p ->
                            val k = result.width / size.width.toFloat()
                            centre = Offset((p.x - offset.x) / zoom * k, (p.y - offset.y) / zoom * k)
                        },
                    )
                },
        ) {
            val dst = IntSize(size.width.toInt(), size.height.toInt())
            val quality = if (zoom * size.width > result.after.width) FilterQuality.None else FilterQuality.Low
            withTransform({
                translate(offset.x, offset.y)
                scale(zoom, zoom, pivot = Offset.Zero)
            }) {
                drawImage(b, dstSize = dst, filterQuality = FilterQuality.Low)
                if (showAfter) {
                    val x = (size.width * split - offset.x) / zoom
                    clipRect(left = x) { drawImage(a, dstOffset = IntOffset.Zero, dstSize = dst, filterQuality = quality) }
                }
            }
            divider(showAfter, split)
        }
        if (showAfter) Slider(value = split, onValueChange = { split = it }, modifier = Modifier.fillMaxWidth())
        detail?.let { (before, after) ->
            Text(
                "1:1 detail (${before.width}x${before.height} output pixels; tap the picture above to move it): " +
                    "left the photo upscaled bilinearly, right the model.",
                style = MaterialTheme.typography.bodySmall,
            )
            Canvas(Modifier.fillMaxWidth().aspectRatio(after.width.toFloat() / after.height)) {
                val dst = IntSize(size.width.toInt(), size.height.toInt())
                drawImage(before, dstSize = dst, filterQuality = FilterQuality.Low)
                if (showAfter) {
                    clipRect(left = size.width * split) { drawImage(after, dstSize = dst, filterQuality = FilterQuality.None) }
                }
                divider(showAfter, split)
            }
        }
    }
}

private fun DrawScope.divider(show: Boolean, split: Float) {
    if (!show) return
    val x = size.width * split
    drawLine(Color.White, Offset(x, 0f), Offset(x, size.height), strokeWidth = 3f)
}

/** The [DETAIL]-pixel crop of the output around [centre] (from the PNG) and the same spot of the photo, scaled up bilinearly. */
private fun detailCrops(result: UpscaleResult, centre: Offset): Pair<ImageBitmap, ImageBitmap>? {
    val s = result.width / result.before.width
    val c: Crop = ViewGeometry.crop(centre.x.toDouble(), centre.y.toDouble(), DETAIL, DETAIL, result.width, result.height)
    val decoder = (
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) BitmapRegionDecoder.newInstance(result.png.path)
        else @Suppress("DEPRECATION") BitmapRegionDecoder.newInstance(result.png.path, false)
        ) ?: return null
    val after = try {
        decoder.decodeRegion(Rect(c.x, c.y, c.x + c.w, c.y + c.h), null) ?: return null
    } finally {
        decoder.recycle()
    }
    val region = Bitmap.createBitmap(result.before, c.x / s, c.y / s, maxOf(1, c.w / s), maxOf(1, c.h / s))
    val before = Bitmap.createScaledBitmap(region, c.w, c.h, true)
    if (region !== before && region !== result.before) region.recycle()
    return before.asImageBitmap() to after.asImageBitmap()
}
