package dev.tinysr.demo.model

import kotlin.math.max
import kotlin.math.min

/**
 * One tile: the LR core [y], [x], [h] x [w] whose SR pixels are kept, and the model-input window
 * that is run for it: top-left [winY], [winX]; [winH] x [winW] of it lie inside the image (the rest,
 * bottom and right, is filled by repeating the edge pixels).
 */
data class Tile(val y: Int, val x: Int, val h: Int, val w: Int, val winY: Int, val winX: Int, val winH: Int, val winW: Int)

data class TilePlan(val tile: Int, val overlap: Int, val overlapReduced: Boolean, val tiles: List<Tile>)

/**
 * The tile plan of `tinysr upscale` for a model with a fixed input (`tinysr.upscale.tile_plan` and
 * `upscale_array`): square cores of the window's shorter side minus the overlap on both sides; each
 * window slides inside the image so that its borders are the image's own, and only an image smaller
 * than the window is padded. With an overlap at least the network's receptive-field radius, the
 * tiled output equals an untiled run.
 */
object TilePlanner {
    fun plan(height: Int, width: Int, windowH: Int, windowW: Int, overlap: Int): TilePlan {
        require(height > 0 && width > 0 && windowH > 0 && windowW > 0 && overlap >= 0)
        val side = min(windowH, windowW)
        var ov = overlap
        val reduced = side - 2 * ov < 8
        if (reduced) ov = max(0, (side - 8) / 2)
        val tile = side - 2 * ov
        val tiles = ArrayList<Tile>()
        for (y in 0 until height step tile) {
            for (x in 0 until width step tile) {
                val y0 = max(0, min(y - ov, height - windowH))
                val x0 = max(0, min(x - ov, width - windowW))
                tiles += Tile(
                    y, x, min(tile, height - y), min(tile, width - x),
                    y0, x0, min(height, y0 + windowH) - y0, min(width, x0 + windowW) - x0,
                )
            }
        }
        return TilePlan(tile, ov, reduced, tiles)
    }
}
