package dev.tinysr.demo.ui

import android.Manifest
import android.content.ActivityNotFoundException
import android.content.pm.PackageManager
import android.net.Uri
import android.os.Build
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.unit.dp
import androidx.core.content.FileProvider
import dev.tinysr.demo.DemoViewModel
import dev.tinysr.demo.UiState
import java.io.File

@Composable
fun UpscaleScreen(state: UiState, vm: DemoViewModel) {
    val context = LocalContext.current
    var cameraUri by rememberSaveable { mutableStateOf<Uri?>(null) }
    val pick = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri -> uri?.let(vm::upscale) }
    val take = rememberLauncherForActivityResult(ActivityResultContracts.TakePicture()) { ok ->
        val uri = cameraUri
        if (ok && uri != null) vm.upscale(uri)
    }
    val storage = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) vm.save()
    }
    var compareAfter by remember { mutableStateOf(true) }
    var cameraError by remember { mutableStateOf<String?>(null) }
    val hasCamera = remember { context.packageManager.hasSystemFeature(PackageManager.FEATURE_CAMERA_ANY) }

    Column(
        Modifier.fillMaxSize().verticalScroll(rememberScrollState()).padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(12.dp),
    ) {
        state.modelError?.let { ModelMissing(it); return@Column }
        val model = state.model ?: run { Text("Reading the model card…"); return@Column }
        val card = model.card
        Text(card.name, style = MaterialTheme.typography.titleLarge)
        Text(
            "x${card.scale}, ${card.precision}, input ${card.inputWidth}x${card.inputHeight} per tile" +
                if (card.verified) "" else " (the export did not pass its verification)",
            style = MaterialTheme.typography.bodyMedium,
        )
        AcceleratorPicker(state, vm)
        val idle = state.progress == null
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Button(enabled = idle, onClick = {
                pick.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
            }) { Text("Pick a photo") }
            if (hasCamera) {
                OutlinedButton(enabled = idle, onClick = {
                    val dir = File(context.cacheDir, "camera").apply { mkdirs() }
                    val uri = FileProvider.getUriForFile(context, "${context.packageName}.files", File(dir, "photo.jpg"))
                    cameraUri = uri
                    cameraError = try {
                        take.launch(uri)
                        null
                    } catch (e: ActivityNotFoundException) {
                        "No camera app on this device: pick a photo instead."
                    }
                }) { Text("Take a photo") }
            }
        }
        cameraError?.let { Text(it, style = MaterialTheme.typography.bodySmall, color = MaterialTheme.colorScheme.error) }
        ProgressRow(state, vm)
        state.message?.let { msg ->
            Row {
                Text(msg, Modifier.weight(1f), style = MaterialTheme.typography.bodySmall)
                TextButton(onClick = vm::dismissMessage) { Text("OK") }
            }
        }
        state.result?.let { r ->
            Text(
                "${r.width}x${r.height} in %.1f s (%d tiles). Slide to compare, pinch to zoom, double-tap to reset, tap for a 1:1 detail."
                    .format(r.seconds, r.tiles),
                style = MaterialTheme.typography.bodySmall,
            )
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                OutlinedButton(onClick = { compareAfter = !compareAfter }) {
                    Text(if (compareAfter) "Show the photo only" else "Show the slider")
                }
                Button(enabled = idle, onClick = {
                    if (Build.VERSION.SDK_INT < Build.VERSION_CODES.Q) {
                        storage.launch(Manifest.permission.WRITE_EXTERNAL_STORAGE)
                    } else {
                        vm.save()
                    }
                }) { Text("Save to gallery") }
            }
            CompareView(r, showAfter = compareAfter)
        }
    }
}
