package dev.tinysr.demo.ui

import android.graphics.Bitmap
import androidx.compose.foundation.Canvas
import androidx.compose.foundation.layout.Column
import androidx.compose.material3.Slider
import androidx.compose.foundation.gestures.detectTransformGestures
import androidx.compose.foundation.layout.aspectRatio
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableFloatStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.geometry.Offset
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.FilterQuality
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.graphics.drawscope.clipRect
import androidx.compose.ui.graphics.drawscope.withTransform
import androidx.compose.ui.input.pointer.pointerInput
import androidx.compose.ui.unit.IntOffset
import androidx.compose.ui.unit.IntSize

/**
 * Before (the photo, bilinear-scaled to the preview size) and after (the model's output) in one
 * zoomable view (pinch and pan): left of the divider before, right of it after; the slider below
 * moves the divider. With [showAfter] false, only the before image is shown.
 */
@Composable
fun CompareView(before: Bitmap, after: Bitmap, showAfter: Boolean) {
    val b = remember(before) { before.asImageBitmap() }
    val a = remember(after) { after.asImageBitmap() }
    var split by remember { mutableFloatStateOf(0.5f) }
    var zoom by remember { mutableFloatStateOf(1f) }
    var pan by remember { mutableStateOf(Offset.Zero) }
    Column {
    Canvas(
        Modifier.fillMaxWidth()
            .aspectRatio(after.width.toFloat() / after.height)
            .pointerInput(Unit) {
                detectTransformGestures { _, panChange, zoomChange, _ ->
                    zoom = (zoom * zoomChange).coerceIn(1f, 16f)
                    val maxX = size.width * (zoom - 1f)
                    val maxY = size.height * (zoom - 1f)
                    pan = Offset((pan.x + panChange.x).coerceIn(-maxX, 0f), (pan.y + panChange.y).coerceIn(-maxY, 0f))
                }
            }
    ) {
        val dst = IntSize(size.width.toInt(), size.height.toInt())
        withTransform({
            translate(pan.x, pan.y)
            scale(zoom, zoom, pivot = Offset.Zero)
        }) {
            drawImage(b, dstSize = dst, filterQuality = FilterQuality.None)
            if (showAfter) {
                val x = (size.width * split - pan.x) / zoom
                clipRect(left = x) {
                    drawImage(a, dstOffset = IntOffset.Zero, dstSize = dst, filterQuality = FilterQuality.None)
                }
            }
        }
        if (showAfter) {
            val x = size.width * split
            drawLine(Color.White, Offset(x, 0f), Offset(x, size.height), strokeWidth = 3f)
        }
    }
    if (showAfter) Slider(value = split, onValueChange = { split = it }, modifier = Modifier.fillMaxWidth())
    }
}
