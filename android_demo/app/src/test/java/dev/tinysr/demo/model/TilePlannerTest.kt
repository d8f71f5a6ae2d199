package dev.tinysr.demo.model

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.boolean
import kotlinx.serialization.json.int
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import org.junit.Assert.assertEquals
import org.junit.Test

/** The plans of tile_plans.json were made by tinysr.upscale (tests/test_android_demo.py regenerates them). */
class TilePlannerTest {
    private fun resource(name: String) = javaClass.classLoader!!.getResource(name)!!.readText()

    @Test
    fun plansEqualThePythonPlanner() {
        val cases = Json.parseToJsonElement(resource("tile_plans.json")).jsonObject.getValue("cases").jsonArray
        for (c in cases.map { it.jsonObject }) {
            val window = c.getValue("window").jsonArray.map { it.jsonPrimitive.int }
            val plan = TilePlanner.plan(
                c.getValue("height").jsonPrimitive.int, c.getValue("width").jsonPrimitive.int,
                window[0], window[1], c.getValue("overlap").jsonPrimitive.int,
            )
            val expected = c.getValue("tiles").jsonArray.map { t ->
                val v = t.jsonArray.map { it.jsonPrimitive.int }
                Tile(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
            }
            assertEquals(c.toString(), c.getValue("tile").jsonPrimitive.int, plan.tile)
            assertEquals(c.getValue("used_overlap").jsonPrimitive.int, plan.overlap)
            assertEquals(c.getValue("overlap_reduced").jsonPrimitive.boolean, plan.overlapReduced)
            assertEquals(expected, plan.tiles)
        }
    }

    @Test
    fun aTwelveMegapixelPhotoIsCoveredOnceWithWindowsInside() {
        val (h, w) = 3000 to 4000
        val plan = TilePlanner.plan(h, w, 256, 256, CardContractTest.contract().tileOverlap)
        assertEquals(224, plan.tile)
        var area = 0L
        for (t in plan.tiles) {
            area += t.h.toLong() * t.w
            assert(t.winY >= 0 && t.winX >= 0 && t.winY + t.winH <= h && t.winX + t.winW <= w)
            assert(t.winH == 256 && t.winW == 256)
            assert(t.y >= t.winY && t.y + t.h <= t.winY + t.winH && t.x >= t.winX && t.x + t.w <= t.winX + t.winW)
        }
        assertEquals(h.toLong() * w, area)
    }
}
