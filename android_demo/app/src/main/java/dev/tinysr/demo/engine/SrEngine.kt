package dev.tinysr.demo.engine

import android.content.res.AssetManager
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.TensorBuffer
import dev.tinysr.demo.model.AcceleratorText
import dev.tinysr.demo.model.ModelCard
import dev.tinysr.demo.model.TensorCodec

enum class Backend { CPU, GPU }

/**
 * The accelerator asked for, and what runs: [fallback] says why the GPU was given up for the CPU;
 * [cpuOps]: ops of the model that the GPU delegate rejects (from the card), which LiteRT runs on the
 * CPU beside the GPU, so the label does not say "GPU" alone; [precision]: the card's, since the GPU
 * delegate computes an int8 model in float (see [AcceleratorText]).
 */
data class EngineInfo(
    val asked: Backend, val running: Backend, val threads: Int, val fallback: String?,
    val cpuOps: List<String> = emptyList(), val precision: String = "fp32",
) {
    val label: String
        get() = AcceleratorText.label(running == Backend.GPU, threads, cpuOps, precision)
}

/**
 * The model compiled for one accelerator (LiteRT CompiledModel API), with its input and output
 * buffers and the [codec] that fills and reads them. Not thread-safe: every call (open, run, close)
 * on one thread, the app's engine thread (the GPU accelerator is bound to the GL context of the
 * thread that created it).
 *
 * Timings of this engine, for the benchmark: [compileMs] is `CompiledModel.create` alone;
 * [firstRunMs] the first inference it ever ran (the GPU check in [open], or the first tile),
 * [runs] how many it has run.
 */
class SrEngine private constructor(
    private val model: CompiledModel,
    val card: ModelCard,
    val info: EngineInfo,
    val compileMs: Double,
) : AutoCloseable {
    var firstRunMs: Double? = null
        private set
    var runs = 0
        private set
    private var closed = false
    val codec = TensorCodec(card)
    private val inputs: List<TensorBuffer> = model.createInputBuffers()
    private val outputs: List<TensorBuffer> = model.createOutputBuffers()
    private val floatIn = if (card.input.int8) null else FloatArray(codec.inputSize)
    private val int8In = if (card.input.int8) ByteArray(codec.inputSize) else null

    /** One inference on a window of ARGB [pixels]; returns the output as floats or int8 bytes. */
    fun run(pixels: IntArray, stride: Int, validH: Int, validW: Int): Any {
        check(!closed) { "the engine was closed" }
        val t0 = System.nanoTime()
        val out = infer(pixels, stride, validH, validW)
        if (runs++ == 0) firstRunMs = (System.nanoTime() - t0) / 1e6
        return out
    }

    private fun infer(pixels: IntArray, stride: Int, validH: Int, validW: Int): Any {
        if (int8In != null) {
            codec.encodeInt8(pixels, stride, validH, validW, int8In)
            inputs[0].writeInt8(int8In)
        } else {
            codec.encodeFloat(pixels, stride, validH, validW, floatIn!!)
            inputs[0].writeFloat(floatIn)
        }
        model.run(inputs, outputs)
        return if (card.output.int8) outputs[0].readInt8() else outputs[0].readFloat()
    }

    /** Output rows/columns of [output] (from [run]) into ARGB [dest]. */
    fun decode(output: Any, oy: Int, ox: Int, ch: Int, cw: Int, dest: IntArray) = when (output) {
        is ByteArray -> codec.decodeInt8(output, oy, ox, ch, cw, dest)
        is FloatArray -> codec.decodeFloat(output, oy, ox, ch, cw, dest)
        else -> error("unexpected output ${output::class}")
    }

    override fun close() {
        if (closed) return
        closed = true
        inputs.forEach { it.close() }
        outputs.forEach { it.close() }
        model.close()
    }

    companion object {
        /**
         * Compile [card]'s model from the assets for [backend]. The GPU is tried alone (never
         * LiteRT's silent GPU-then-CPU list) and checked with one inference; if either fails, the
         * model is compiled for the CPU and [EngineInfo.fallback] says why, for the screen.
         */
        fun open(assets: AssetManager, modelsDir: String, card: ModelCard, backend: Backend, threads: Int): SrEngine {
            val path = "$modelsDir/${card.artifact}"
            if (backend == Backend.GPU) {
                var gpu: CompiledModel? = null
                var engine: SrEngine? = null
                try {
                    val t0 = System.nanoTime()
                    gpu = CompiledModel.create(assets, path, CompiledModel.Options(Accelerator.GPU))
                    val compileMs = (System.nanoTime() - t0) / 1e6
                    engine = SrEngine(gpu, card, EngineInfo(Backend.GPU, Backend.GPU, threads, null, card.gpuUnsupported, card.precision), compileMs)
                    val blank = IntArray(card.inputHeight * card.inputWidth)
                    engine.run(blank, card.inputWidth, card.inputHeight, card.inputWidth)
                    return engine
                } catch (e: Exception) {
                    if (engine != null) engine.close() else gpu?.close()
                    val t0 = System.nanoTime()
                    val why = e.message?.lineSequence()?.firstOrNull()?.take(200) ?: e::class.simpleName
                    val ops = if (card.gpuUnsupported.isEmpty()) "" else
                        " (the model card lists ops the GPU delegate rejects: ${card.gpuUnsupported.joinToString("; ")})"
                    val cpu = compileCpu(assets, path, threads)
                    val info = EngineInfo(Backend.GPU, Backend.CPU, threads, "The GPU cannot run this model: $why$ops. Running on the CPU instead.",
                        precision = card.precision)
                    return SrEngine(cpu, card, info, (System.nanoTime() - t0) / 1e6)
                }
            }
            val t0 = System.nanoTime()
            val cpu = compileCpu(assets, path, threads)
            return SrEngine(cpu, card, EngineInfo(Backend.CPU, Backend.CPU, threads, null, precision = card.precision), (System.nanoTime() - t0) / 1e6)
        }

        private fun compileCpu(assets: AssetManager, path: String, threads: Int): CompiledModel {
            val options = CompiledModel.Options(Accelerator.CPU)
            options.cpuOptions = CompiledModel.CpuOptions(numThreads = threads)
            return CompiledModel.create(assets, path, options)
        }
    }
}
