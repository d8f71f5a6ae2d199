package dev.tinysr.demo

import android.app.Application
import android.net.Uri
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import dev.tinysr.demo.engine.Backend
import dev.tinysr.demo.engine.Benchmark
import dev.tinysr.demo.engine.BenchmarkResult
import dev.tinysr.demo.engine.EngineInfo
import dev.tinysr.demo.engine.GallerySaver
import dev.tinysr.demo.engine.LoadedModel
import dev.tinysr.demo.engine.ModelStore
import dev.tinysr.demo.engine.SrEngine
import dev.tinysr.demo.engine.UpscaleResult
import dev.tinysr.demo.engine.Upscaler
import dev.tinysr.demo.model.CardException
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.File
import java.util.concurrent.Executors

data class Progress(val label: String, val done: Int, val total: Int)

data class UiState(
    val model: LoadedModel? = null,
    val modelError: String? = null,
    val backend: Backend = Backend.CPU,
    val threads: Int = minOf(4, Runtime.getRuntime().availableProcessors()),
    val engine: EngineInfo? = null,
    val progress: Progress? = null,
    val result: UpscaleResult? = null,
    val benchmark: BenchmarkResult? = null,
    val benchmarkOn: EngineInfo? = null,
    val message: String? = null,
)

/** The app's state and its background work: one job (upscale or benchmark) at a time, cancellable. */
class DemoViewModel(app: Application) : AndroidViewModel(app) {
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()
    private var engine: SrEngine? = null
    private var job: Job? = null

    /** The one thread every engine call runs on (open, run, close): the GPU accelerator's GL context is bound to it. */
    private val engineExecutor = Executors.newSingleThreadExecutor { r -> Thread(r, "tinysr-engine") }
    private val engineThread = engineExecutor.asCoroutineDispatcher()

    init {
        viewModelScope.launch(Dispatchers.IO) {
            try {
                val model = ModelStore.load(app.assets)
                _state.update { it.copy(model = model) }
            } catch (e: CardException) {
                _state.update { it.copy(modelError = e.message) }
            }
        }
    }

    fun setBackend(backend: Backend) = reconfigure { it.copy(backend = backend) }

    fun setThreads(threads: Int) = reconfigure { it.copy(threads = threads) }

    private fun reconfigure(change: (UiState) -> UiState) {
        if (job?.isActive == true) return
        val before = _state.value
        val after = change(before)
        if (after.backend != before.backend || after.threads != before.threads) {
            val old = engine
            engine = null
            if (old != null) engineExecutor.execute { old.close() } // after any call in flight on that thread
            _state.value = after.copy(engine = null)
        }
    }

    /** The engine for the chosen accelerator, compiled on first use (call on [engineThread]). */
    private fun engine(): SrEngine {
        engine?.let { return it }
        val s = _state.value
        val model = requireNotNull(s.model)
        val e = SrEngine.open(getApplication<Application>().assets, model.contract.modelsDir, model.card, s.backend, s.threads)
        engine = e
        _state.update { it.copy(engine = e.info) }
        return e
    }

    fun upscale(uri: Uri) = launchJob("Upscaling") { report ->
        val model = requireNotNull(_state.value.model)
        _state.value.result?.png?.delete()
        _state.update { it.copy(result = null) }
        val result = Upscaler(engine(), model.contract.tileOverlap)
            .upscale(getApplication<Application>().contentResolver, uri, getApplication<Application>().cacheDir) { done, total ->
                report(done, total)
            }
        _state.update { it.copy(result = result, message = result.note) }
    }

    fun benchmark(runs: Int) = launchJob("Benchmarking") { report ->
        val e = engine()
        val result = Benchmark.run(e, runs) { done, total -> report(done, total) }
        _state.update { it.copy(benchmark = result, benchmarkOn = e.info) }
    }

    fun save() {
        val result = _state.value.result ?: return
        viewModelScope.launch {
            val text = try {
                val place = withContext(Dispatchers.IO) {
                    GallerySaver.save(getApplication(), result.png, "tinysr_${System.currentTimeMillis()}.png")
                }
                "Saved ${result.width}x${result.height} PNG to $place."
            } catch (e: Exception) {
                "Could not save to the gallery: ${e.message}"
            }
            _state.update { it.copy(message = text) }
        }
    }

    fun cancel() {
        job?.cancel()
    }

    fun dismissMessage() = _state.update { it.copy(message = null) }

    private fun launchJob(label: String, work: suspend (report: (Int, Int) -> Unit) -> Unit) {
        if (job?.isActive == true || _state.value.model == null) return
        _state.update { it.copy(progress = Progress(label, 0, 0), message = null) }
        job = viewModelScope.launch(engineThread) {
            try {
                work { done, total -> _state.update { it.copy(progress = Progress(label, done, total)) } }
            } catch (e: CancellationException) {
                _state.update { it.copy(message = "$label cancelled.") }
                throw e
            } catch (e: OutOfMemoryError) {
                val max = Runtime.getRuntime().maxMemory()
                _state.update {
                    it.copy(message = "$label ran out of memory (the app may use ${max / 1_000_000} MB). Try a smaller photo.")
                }
            } catch (e: Exception) {
                _state.update { it.copy(message = "$label failed: ${e.message ?: e::class.simpleName}") }
            } finally {
                _state.update { it.copy(progress = null) }
            }
        }
    }

    /**
     * The job is cancelled (viewModelScope already is), but the engine thread may be inside the
     * native run: the engine is closed on that thread once the job has finished, never under it.
     */
    override fun onCleared() {
        val running = job
        val e = engine
        engine = null
        running?.cancel()
        CoroutineScope(Dispatchers.Default + NonCancellable).launch {
            running?.join()
            withContext(engineThread) { e?.close() }
            engineThread.close()
            File(getApplication<Application>().cacheDir, "upscaled.png").delete()
        }
    }
}
