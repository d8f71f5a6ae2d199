package dev.tinysr.demo.ui

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.Card
import androidx.compose.material3.CardDefaults
import androidx.compose.material3.FilterChip
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Slider
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import dev.tinysr.demo.DemoViewModel
import dev.tinysr.demo.UiState
import dev.tinysr.demo.engine.Backend
import dev.tinysr.demo.model.AcceleratorText

/** Why there is no model: the card reader's message, which says to run `tinysr android-demo prepare`. */
@Composable
fun ModelMissing(message: String) {
    Card(
        colors = CardDefaults.cardColors(containerColor = MaterialTheme.colorScheme.errorContainer),
        modifier = Modifier.fillMaxWidth().padding(16.dp),
    ) {
        Column(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
            Text("No usable model", style = MaterialTheme.typography.titleMedium)
            Text(message)
            Text(
                "The model is not part of the source tree: `tinysr android-demo prepare --model tpsr_x4` " +
                    "exports it into app/src/main/assets/models/ (see android_demo/README.md).",
                style = MaterialTheme.typography.bodySmall,
            )
        }
    }
}

/** CPU (XNNPACK, thread count) or GPU, and what actually runs. */
@Composable
fun AcceleratorPicker(state: UiState, vm: DemoViewModel) {
    val busy = state.progress != null
    Column(verticalArrangement = Arrangement.spacedBy(4.dp)) {
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp), verticalAlignment = Alignment.CenterVertically) {
            Text("Accelerator")
            FilterChip(selected = state.backend == Backend.CPU, enabled = !busy, onClick = { vm.setBackend(Backend.CPU) }, label = { Text("CPU") })
            FilterChip(selected = state.backend == Backend.GPU, enabled = !busy, onClick = { vm.setBackend(Backend.GPU) }, label = { Text("GPU") })
        }
        if (state.backend == Backend.CPU && Runtime.getRuntime().availableProcessors() > 1) { // a 1..1 slider is no range
            val cores = Runtime.getRuntime().availableProcessors()
            Text("XNNPACK threads: ${state.threads}")
            Slider(
                value = state.threads.toFloat(), onValueChange = { vm.setThreads(it.toInt()) },
                valueRange = 1f..cores.toFloat(), steps = maxOf(0, cores - 2), enabled = !busy,
            )
        }
        state.engine?.let { info ->
            Text("Running on ${info.label}", style = MaterialTheme.typography.bodySmall)
            if (info.running == Backend.GPU) AcceleratorText.gpuNote(info.precision)?.let { Text(it, style = MaterialTheme.typography.bodySmall) }
            info.fallback?.let { Text(it, color = MaterialTheme.colorScheme.error, style = MaterialTheme.typography.bodySmall) }
        }
    }
}

@Composable
fun ProgressRow(state: UiState, vm: DemoViewModel) {
    val p = state.progress ?: return
    Column(verticalArrangement = Arrangement.spacedBy(4.dp)) {
        if (p.total == 0) {
            LinearProgressIndicator(Modifier.fillMaxWidth())
            Text("${p.label}: preparing the model…")
        } else {
            LinearProgressIndicator(progress = { p.done.toFloat() / p.total }, modifier = Modifier.fillMaxWidth())
            Text("${p.label}: ${p.done} / ${p.total}")
        }
        OutlinedButton(onClick = vm::cancel) { Text("Cancel") }
    }
}
