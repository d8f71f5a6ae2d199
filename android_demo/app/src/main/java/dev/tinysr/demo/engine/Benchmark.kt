package dev.tinysr.demo.engine

import kotlinx.coroutines.currentCoroutineContext
import kotlinx.coroutines.ensureActive

/**
 * Timings of whole inferences (input written, model run, output read), in milliseconds. [compileMs]
 * and [firstMs] are those of the engine that ran (`CompiledModel.create` alone, and its very first
 * inference); [reused]: the engine had run before this benchmark (a GPU check or an upscale), so its
 * first inference was not part of it.
 */
data class BenchmarkResult(
    val compileMs: Double,
    val firstMs: Double?,
    val medianMs: Double,
    val minMs: Double,
    val runs: Int,
    val reused: Boolean,
)

object Benchmark {
    /**
     * The first inference after compiling, then the median of [runs] more, on one window of a fixed
     * test pattern (the model's speed does not depend on the pixels).
     */
    suspend fun run(engine: SrEngine, runs: Int, progress: (Int, Int) -> Unit): BenchmarkResult {
        val card = engine.card
        val h = card.inputHeight
        val w = card.inputWidth
        val pattern = IntArray(h * w) { i -> (0xFF shl 24) or ((i * 7 and 0xFF) shl 16) or ((i / w * 5 and 0xFF) shl 8) or (i % w and 0xFF) }
        val reused = engine.runs > 0
        if (!reused) engine.run(pattern, w, h, w) // the engine's first inference: timed by the engine
        val times = DoubleArray(runs)
        for (i in 0 until runs) {
            currentCoroutineContext().ensureActive()
            times[i] = time { engine.run(pattern, w, h, w) }
            progress(i + 1, runs)
        }
        times.sort()
        val median = if (runs % 2 == 1) times[runs / 2] else (times[runs / 2 - 1] + times[runs / 2]) / 2
        return BenchmarkResult(engine.compileMs, engine.firstRunMs, median, times.first(), runs, reused)
    }

    inline fun time(block: () -> Unit): Double {
        val t0 = System.nanoTime()
        block()
        return (System.nanoTime() - t0) / 1e6
    }
}
