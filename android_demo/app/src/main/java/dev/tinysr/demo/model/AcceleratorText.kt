package dev.tinysr.demo.model

/**
 * What the screen says runs a model, honestly. LiteRT's GPU delegate computes an int8 model in
 * floating point (it dequantizes the int8 weights and runs float16 / float32 kernels, with any int8
 * input and output converted at the edges), so an int8 model gains none of int8's speed on the
 * GPU: that speed is on the CPU (XNNPACK's int8 kernels) or on an NPU.
 */
object AcceleratorText {
    /** The label of what runs: the GPU (with the ops it leaves to the CPU, and how it computes an int8 model) or the CPU. */
    fun label(gpu: Boolean, threads: Int, cpuOps: List<String>, precision: String): String {
        if (!gpu) return "CPU (XNNPACK, $threads thread${if (threads == 1) "" else "s"}${if (precision == "int8") ", int8 kernels" else ""})"
        val base = if (precision == "int8") "GPU (computing this int8 model in float)" else "GPU"
        return if (cpuOps.isEmpty()) base
        else "$base, with ${cpuOps.size} op${if (cpuOps.size == 1) "" else "s"} on the CPU (${cpuOps.joinToString("; ")})"
    }

    /** A note for the accelerator picker when the GPU is chosen for an int8 model, else null. */
    fun gpuNote(precision: String): String? =
        if (precision != "int8") null
        else "LiteRT's GPU delegate computes int8 models in float: no int8 speed-up on the GPU (the CPU runs int8 kernels)."
}
