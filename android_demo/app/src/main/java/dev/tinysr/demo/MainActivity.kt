package dev.tinysr.demo

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.enableEdgeToEdge
import androidx.activity.viewModels
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.Icon
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.NavigationBar
import androidx.compose.material3.NavigationBarItem
import androidx.compose.material3.Scaffold
import androidx.compose.material3.Text
import androidx.compose.material3.darkColorScheme
import androidx.compose.material3.lightColorScheme
import androidx.compose.foundation.isSystemInDarkTheme
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.painterResource
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.tinysr.demo.ui.BenchmarkScreen
import dev.tinysr.demo.ui.UpscaleScreen

class MainActivity : ComponentActivity() {
    private val viewModel: DemoViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        enableEdgeToEdge()
        setContent {
            MaterialTheme(colorScheme = if (isSystemInDarkTheme()) darkColorScheme() else lightColorScheme()) {
                val state by viewModel.state.collectAsStateWithLifecycle()
                var tab by rememberSaveable { mutableIntStateOf(0) }
                Scaffold(
                    bottomBar = {
                        NavigationBar {
                            NavigationBarItem(
                                selected = tab == 0, onClick = { tab = 0 }, label = { Text("Upscale") },
                                icon = { Icon(painterResource(R.drawable.ic_upscale), contentDescription = null) },
                            )
                            NavigationBarItem(
                                selected = tab == 1, onClick = { tab = 1 }, label = { Text("Benchmark") },
                                icon = { Icon(painterResource(R.drawable.ic_timer), contentDescription = null) },
                            )
                        }
                    },
                ) { padding ->
                    Box(Modifier.padding(padding)) {
                        if (tab == 0) UpscaleScreen(state, viewModel) else BenchmarkScreen(state, viewModel)
                    }
                }
            }
        }
    }
}
