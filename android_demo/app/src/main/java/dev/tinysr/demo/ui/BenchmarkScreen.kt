package dev.tinysr.demo.ui

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Slider
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import dev.tinysr.demo.DemoViewModel
import dev.tinysr.demo.UiState

/**
 * The model's numbers from its card, and timings of whole inferences on this phone: the first one
 * after compiling, and the median of N more. Same model file as `tinysr profile --device adb`,
 * another harness (see README.md).
 */
@Composable
fun BenchmarkScreen(state: UiState, vm: DemoViewModel) {
    var runs by rememberSaveable { mutableIntStateOf(20) }
    Column(
        Modifier.fillMaxSize().verticalScroll(rememberScrollState()).padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(8.dp),
    ) {
        state.modelError?.let { ModelMissing(it); return@Column }
        val card = state.model?.card ?: run { Text("Reading the model card…"); return@Column }
        Text("Benchmark", style = MaterialTheme.typography.titleLarge)
        Text("Model: ${card.name} (${card.artifact})")
        Text("Scale: x${card.scale}   Precision: ${card.precision}")
        Text("Input: ${card.inputWidth}x${card.inputHeight} ${if (card.input.int8) "int8" else "float32"}, ${if (card.nhwc) "NHWC" else "NCHW"}")
        Text("Mult-Adds: %.3f G per inference at %dx%d".format(card.multAdds / 1e9, card.multAddsAt[0], card.multAddsAt[1]))
        Text("Parameters: %,d   File: %.1f KiB".format(card.params, card.fileSize / 1024.0))
        if (card.gpuUnsupported.isNotEmpty()) {
            Text("GPU delegate would reject: ${card.gpuUnsupported.joinToString("; ")}", color = MaterialTheme.colorScheme.error)
        }
        AcceleratorPicker(state, vm)
        Text("Timed inferences: $runs")
        Slider(value = runs.toFloat(), onValueChange = { runs = it.toInt() }, valueRange = 5f..100f, steps = 18)
        Button(enabled = state.progress == null, onClick = { vm.benchmark(runs) }) { Text("Run benchmark") }
        ProgressRow(state, vm)
        state.message?.let { Text(it, style = MaterialTheme.typography.bodySmall) }
        state.benchmark?.let { r ->
            Text("On ${state.benchmarkOn?.label}", style = MaterialTheme.typography.titleMedium)
            Text("Compile (CompiledModel.create: load + accelerator setup): %.1f ms".format(r.compileMs))
            Text(
                (r.firstMs?.let { "First inference of this engine: %.2f ms".format(it) } ?: "First inference: not measured") +
                    if (r.reused) " (it ran before this benchmark: the GPU check or an upscale)" else "",
            )
            Text("Median of %d: %.2f ms (fastest %.2f ms)".format(r.runs, r.medianMs, r.minMs))
            Text("%.2f G Mult-Adds/s at the median".format(card.multAdds / 1e9 / (r.medianMs / 1e3)))
            Text(
                "Each inference includes writing the input tensor and reading the output; " +
                    "`tinysr profile --device adb` times the same file with benchmark_model.",
                style = MaterialTheme.typography.bodySmall,
            )
        }
    }
}
