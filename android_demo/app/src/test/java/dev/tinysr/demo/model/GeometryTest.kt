package dev.tinysr.demo.model

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

class GeometryTest {
    /** EXIF 1..8 by their definitions: the upright pixel (X, Y) is the stored pixel returned. */
    private fun stored(orientation: Int, X: Int, Y: Int, w: Int, h: Int): Pair<Int, Int> = when (orientation) {
        1 -> X to Y
        2 -> (w - 1 - X) to Y
        3 -> (w - 1 - X) to (h - 1 - Y)
        4 -> X to (h - 1 - Y)
        5 -> Y to X
        6 -> Y to (h - 1 - X)
        7 -> (w - 1 - Y) to (h - 1 - X)
        8 -> (w - 1 - Y) to X
        else -> error("$orientation")
    }

    @Test
    fun everyExifOrientationIncludingTheMirroredOnesIsMadeUpright() {
        val (w, h) = 5 to 3
        for (o in 1..8) {
            val t = ExifTransform.of(o)
            assertEquals("orientation $o", o in 5..8, t.swapsSides)
            val (uw, uh) = if (t.swapsSides) h to w else w to h
            for (y in 0 until h) for (x in 0 until w) {
                val (X, Y) = t.map(x, y, w, h)
                assertTrue("orientation $o", X in 0 until uw && Y in 0 until uh)
                assertEquals("orientation $o at $x,$y", x to y, stored(o, X, Y, w, h))
            }
        }
        assertTrue(ExifTransform.of(0).identity && ExifTransform.of(9).identity)
    }

    @Test
    fun outputIsCappedAndTheFiguresCountEveryBuffer() {
        val b12 = UpscaleBudget.plan(4000, 3000, 4, 256, 256, 224, floatOut = true)
        assertEquals(1, b12.sample) // 12 MP at x4: 192 MP, under the cap
        assertEquals(192_000_000L, b12.outPixels)
        // photo 48 MB + band 57 MB + core 6.4 MB + readFloat() 12.6 MB + the 8 MP after preview 32 MB
        assertTrue(b12.heapBytes.toString(), b12.heapBytes in 153_000_000L..160_000_000L)
        assertTrue(b12.pngBytes > 3 * 192_000_000L)
        val b16 = UpscaleBudget.plan(4608, 3456, 4, 256, 256, 224, floatOut = false)
        assertEquals(2, b16.sample) // 16 MP at x4 would be 255 MP: decoded at 1/2
        assertTrue(b16.outPixels <= UpscaleBudget.MAX_OUTPUT_PIXELS)
        val b2 = UpscaleBudget.plan(4608, 3456, 2, 256, 256, 224, floatOut = false)
        assertEquals(1, b2.sample)
        val huge = UpscaleBudget.plan(12000, 9000, 1, 256, 256, 224, floatOut = false)
        assertEquals(4, huge.sample) // the input cap: 108 MP at 1/2 is 27 MP, above 16 MP
        val (pw, ph) = UpscaleBudget.previewSize(16000, 12000)
        assertTrue(pw.toLong() * ph <= UpscaleBudget.MAX_PREVIEW_PIXELS && kotlin.math.abs(pw * 3 - ph * 4) <= 4)
    }

    @Test
    fun cropsStayInsideAndZoomKeepsThePinchCentre() {
        assertEquals(Crop(0, 0, 100, 50), ViewGeometry.crop(10.0, 10.0, 100, 50, 1000, 800))
        assertEquals(Crop(900, 750, 100, 50), ViewGeometry.crop(990.0, 799.0, 100, 50, 1000, 800))
        assertEquals(Crop(450, 375, 100, 50), ViewGeometry.crop(500.0, 400.0, 100, 50, 1000, 800))
        assertEquals(Crop(0, 0, 30, 20), ViewGeometry.crop(500.0, 400.0, 100, 50, 30, 20))
        // zoom x2 around (300, 100) in a 400 x 200 view: that content point stays put
        val (z, ox, oy) = ViewGeometry.zoomAround(1f, 0f, 0f, 2f, 300f, 100f, 0f, 0f, 400f, 200f)
        assertEquals(2f, z, 0f)
        assertEquals(300f, 300f * z + ox, 1e-3f)
        assertEquals(100f, 100f * z + oy, 1e-3f)
        // zooming out past 1 snaps back to the whole view
        assertEquals(Triple(1f, 0f, 0f), ViewGeometry.zoomAround(z, ox, oy, 0.1f, 10f, 10f, 0f, 0f, 400f, 200f))
    }
}
