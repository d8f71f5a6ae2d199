"""``tinysr bench``: one model, several runtimes and thread counts, measured in one run.

Artifacts are made with the export pipeline (verified as usual) in a temporary folder; each
configuration is warmed up, then all are timed round-robin (``rounds`` passes over every
configuration) so that the machine's noise hits them alike. Reports medians, ratios to a
baseline and the fraction of this CPU's fp32 peak, measured as the best of a few large SGEMMs
(``torch.mm``) at the same thread count.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class Config:
    name: str
    threads: int
    make: object  # () -> callable(x)
    flops: float
    times_ms: list = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)


def sgemm_peak_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b)) for _ in range(reps))
        return 2 * n ** 3 / best / 1e9
    finally:
        torch.set_num_threads(old)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build_configs(spec: str, input_size, threads_list, runtimes, workdir: Path, calib: str | None,
                  progress: bool) -> list[Config]:
    from .checkpoint import load_model
    from .complexity import measure
    from .export.pipeline import ExportOptions, export_model
    from .runtimes import LiteRTRunner, OnnxRunner

    model = load_model(spec).eval()
    h, w = input_size
    flops = 2 * measure(model, input_size).mult_adds
    x_nchw = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    configs: list[Config] = []
    arts = {}
    plan = {
        "litert-plain-fp32": ("tflite", dict(precision="fp32", mode="plain", layout="nchw")),
        "litert-mobile-fp32": ("tflite", dict(precision="fp32", mode="mobile", layout="nhwc")),
        "litert-mobile-int8": ("tflite", dict(precision="int8", mode="mobile", layout="nhwc", calib=calib)),
        "onnxruntime-fp32": ("onnx", dict(precision="fp32")),
        "onnxruntime-int8": ("onnx", dict(precision="int8", calib=calib)),
    }
    for name, (target, kw) in plan.items():
        if name in runtimes:
            out = workdir / f"{name}.{target}"
            export_model(spec, out, ExportOptions(target=target, input_size=input_size, max_loss_db=99.0, **kw),
                         progress=progress)
            arts[name] = out
    for t in threads_list:
        if "torch" in runtimes:
            def make_torch(t=t):
                x = torch.from_numpy(x_nchw)

                def run():
                    torch.set_num_threads(t)
                    with torch.no_grad():
                        model(x)
                return run
            configs.append(Config("pytorch-eager-fp32", t, make_torch, flops))
        for name, path in arts.items():
            def make_art(path=path, t=t, name=name):
                r = (LiteRTRunner if name.startswith("litert") else OnnxRunner)(path, threads=t)
                return lambda: r(x_nchw)
            configs.append(Config(name, t, make_art, flops))
    return configs


def run_bench(spec: str = "tpsr_x4", input_size=(180, 320), threads_list=(1, 2), rounds: int = 10, warmup: int = 2,
              runtimes=("torch", "litert-plain-fp32", "litert-mobile-fp32", "litert-mobile-int8",
                        "onnxruntime-fp32", "onnxruntime-int8"), calib: str | None = None,
              progress: bool = True) -> dict:
    from .profile.host import time_calls

    with tempfile.TemporaryDirectory(prefix="tinysr-bench-") as d:
        configs = build_configs(spec, input_size, threads_list, runtimes, Path(d), calib, progress)
        runners = [c.make() for c in configs]
        # round robin: one timed call per configuration and round (the one timing engine)
        timings = time_calls(runners, runs=rounds, warmup=warmup, rounds=rounds, settle=False,
                             progress="bench rounds" if progress else None)
        for c, t in zip(configs, timings):
            c.times_ms = list(t.times_ms)
    peaks = {t: sgemm_peak_gflops(t) for t in threads_list}
    rows = []
    for c in configs:
        gflops = c.flops / (c.median / 1e3) / 1e9
        rows.append({"runtime": c.name, "threads": c.threads, "median_ms": c.median,
                     "p90_ms": float(np.percentile(c.times_ms, 90)), "runs": len(c.times_ms),
                     "gflops": gflops, "fraction_of_sgemm_peak": gflops / peaks[c.threads]})
    return {"model": spec, "input_size": list(input_size), "gflop_per_frame": configs[0].flops / 1e9,
            "sgemm_peak_gflops": peaks, "rows": rows}


def ratio(result: dict, a: str, b: str, threads: int) -> float | None:
    """median(a) / median(b) at ``threads`` (> 1: a is slower)."""
    m = {(r["runtime"], r["threads"]): r["median_ms"] for r in result["rows"]}
    if (a, threads) in m and (b, threads) in m:
        return m[(a, threads)] / m[(b, threads)]
    return None


def format_bench(result: dict) -> str:
    h, w = result["input_size"]
    lines = [f"{result['model']} at {h}x{w}: {result['gflop_per_frame']:.2f} GFLOP per frame; fp32 peak "
             "(best torch SGEMM) " + ", ".join(f"{t} thr {p:.0f} GFLOP/s" for t, p in result["sgemm_peak_gflops"].items()),
             f"{'runtime':<22}{'thr':>4}{'median ms':>11}{'p90 ms':>9}{'GFLOP/s':>9}{'% fp32 peak':>12}"]
    for r in sorted(result["rows"], key=lambda r: (r["threads"], r["median_ms"])):
        peak = "   int8" if "int8" in r["runtime"] else f"{100 * r['fraction_of_sgemm_peak']:>7.1f}%"
        lines.append(f"{r['runtime']:<22}{r['threads']:>4}{r['median_ms']:>11.1f}{r['p90_ms']:>9.1f}"
                     f"{r['gflops']:>9.1f}{peak}")
    for t in sorted({r["threads"] for r in result["rows"]}):
        pairs = [("litert-mobile-fp32", "litert-plain-fp32"), ("litert-mobile-int8", "litert-mobile-fp32"),
                 ("onnxruntime-fp32", "litert-mobile-fp32"), ("pytorch-eager-fp32", "litert-mobile-fp32")]
        parts = [f"{a} / {b} = {ratio(result, a, b, t):.2f}" for a, b in pairs if ratio(result, a, b, t)]
        if parts:
            lines.append(f"ratios at {t} thread(s): " + "; ".join(parts))
    return "\n".join(lines)


# ------------------------------------------------------------------ tinysr bench --upscale WxH
def photo(size: tuple[int, int], image: str | None = None):
    """A photo of ``size`` (width, height): ``image`` (default the bundled sample photo) scaled by
    bicubic to cover it and centre-cropped."""
    from PIL import Image

    from .bundled import sample_photo

    src = Image.open(image or sample_photo()).convert("RGB")
    w, h = size
    k = max(w / src.width, h / src.height)
    big = src.resize((max(w, round(src.width * k)), max(h, round(src.height * k))), Image.BICUBIC)
    x, y = (big.width - w) // 2, (big.height - h) // 2
    return big.crop((x, y, x + w, y + h))


def run_upscale_bench(spec: str = "tpsr_x4", size=(1000, 750), image: str | None = None, rounds: int = 5,
                      threads: int = 0, tile: int = 256, overlap: int = 16, progress: bool = True) -> dict:
    """Times of ``tinysr upscale`` on a ``size`` (width, height) photo, timed round-robin: the
    model's compute alone (tiled inference into a uint8 array, no I/O), the whole upscale to PNG
    (now, and as it was: Pillow's encoder at its default zlib level 6) and to JPEG; wall time
    (median and best) and the process's CPU time (all threads; less sensitive to a busy machine);
    with the file sizes."""
    from PIL import Image
    from tqdm.auto import tqdm

    from .bundled import sample_photo
    from .imageio import atomic_write, load_image, to_pil
    from .profile.host import cpu_model
    from .runtimes import make_runner
    from .upscale import upscale_array, upscale_files, upscale_image

    runner = make_runner(spec, "auto", threads)
    with tempfile.TemporaryDirectory(prefix="tinysr-bench-") as d:
        d = Path(d)
        src = d / "photo.png"
        photo(size, image).save(src)
        img = load_image(src)
        outs = {"before": d / "before.png", "png": d / "out.png", "jpeg": d / "out.jpg"}

        def png_before():
            im = load_image(src)
            rgb, alpha = upscale_image(runner, im, tile, overlap)
            pil = to_pil(rgb, alpha, im.grayscale, im.bit_depth)
            atomic_write(outs["before"], lambda tmp: pil.save(tmp, format="PNG"))

        configs = {
            "model compute (tiled, uint8, no I/O)": lambda: upscale_array(runner, img.rgb, tile, overlap, bit_depth=8),
            "upscale -> PNG, before (Pillow, zlib 6)": png_before,
            "upscale -> PNG": lambda: upscale_files(runner, [src], outs["png"], tile, overlap, progress=False),
            "upscale -> JPEG": lambda: upscale_files(runner, [src], outs["jpeg"], tile, overlap, progress=False),
        }
        times = {name: [] for name in configs}
        cpu = {name: [] for name in configs}
        for fn in configs.values():  # warm-up
            fn()
        for _ in tqdm(range(rounds), desc="bench rounds", disable=not progress, leave=False):
            for name, fn in configs.items():
                c = time.process_time()
                times[name].append(_timed(fn))
                cpu[name].append(time.process_time() - c)
        identical = np.array_equal(np.asarray(Image.open(outs["before"])), np.asarray(Image.open(outs["png"])))
        sizes = {k: p.stat().st_size for k, p in outs.items()}
    source = Path(image).name if image else f"the bundled {sample_photo().name}"
    return {"model": spec, "input_size": list(size), "output_size": [size[0] * runner.scale, size[1] * runner.scale],
            "image": f"{source} scaled by bicubic", "cpu": cpu_model(), "cores": os.cpu_count(), "runtime": runner.name,
            "threads": torch.get_num_threads() if runner.name == "torch" else threads, "rounds": rounds,
            "rows": [{"what": k, "median_s": statistics.median(v), "best_s": min(v), "runs_s": v,
                      "median_cpu_s": statistics.median(cpu[k])} for k, v in times.items()],
            "png_bytes_before": sizes["before"], "png_bytes": sizes["png"], "jpeg_bytes": sizes["jpeg"],
            "png_pixels_identical": identical}


def format_upscale_bench(result: dict) -> str:
    (w, h), (ow, oh) = result["input_size"], result["output_size"]
    compute = result["rows"][0]["median_s"]
    lines = [f"{result['model']}: {w}x{h} -> {ow}x{oh}, {result['image']}; {result['cpu']}, {result['cores']} cores, "
             f"{result['runtime']} {result['threads'] or 'default'} thread(s); medians of {result['rounds']} "
             "interleaved runs",
             "wall time: median, ratio to compute, best; process CPU time (all threads): median, ratio",
             f"{'':<40}{'median s':>9}{'x compute':>10}{'best s':>8}{'CPU s':>8}{'x compute':>10}"]
    cpu = result["rows"][0]["median_cpu_s"]
    lines += [f"{r['what']:<40}{r['median_s']:>9.2f}{r['median_s'] / compute:>10.2f}{r['best_s']:>8.2f}"
              f"{r['median_cpu_s']:>8.2f}{r['median_cpu_s'] / cpu:>10.2f}" for r in result["rows"]]
    lines.append(f"PNG {result['png_bytes'] / 1e6:.2f} MB (before {result['png_bytes_before'] / 1e6:.2f} MB, "
                 f"x{result['png_bytes'] / result['png_bytes_before']:.2f}; pixels "
                 f"{'identical' if result['png_pixels_identical'] else 'DIFFER'}), "
                 f"JPEG {result['jpeg_bytes'] / 1e6:.2f} MB")
    return "\n".join(lines)


# ------------------------------------------------------------------ tinysr bench --train-step
#: The pair whose ratio the MESRGAN report's Table I is about: its depthwise (MobileNetV2) blocks
#: against ESRGAN's plain convolutions.
TRAIN_RATIO = ("mesrgan_x4", "esrgan_x4")


def _train_step_calls(model, x, target):
    """(forward under no_grad in eval mode, forward + L1 loss + backward in train mode) on ``x``."""
    def forward():
        model.eval()
        with torch.no_grad():
            model(x)

    def fwd_bwd():
        model.train()
        torch.nn.functional.l1_loss(model(x), target).backward()
        model.zero_grad(set_to_none=True)
    return forward, fwd_bwd


def run_train_bench(models=("srresnet_x4", "esrgan_x4", "mesrgan_x4"), batches=(1, 4, 16), patch: int = 32,
                    threads: int | None = None, rounds: int = 3, warmup: int = 1, progress: bool = True) -> dict:
    """Training-time cost of generators (the MESRGAN report's Table I): for every model and batch
    size, the forward pass (eval mode, no_grad) and forward + backward (train mode, L1 loss against
    a random HR target, no optimizer step) on a random ``batch x 3 x patch x patch`` LR batch.
    Random weights (timings do not depend on them). All configurations are timed round-robin
    (``rounds`` rounds, one timed call each, after ``warmup`` untimed calls) by one engine,
    :func:`tinysr.profile.host.time_calls`; medians in ms. ``threads``: torch's intra-op threads
    (None: torch's default)."""
    from .complexity import measure
    from .models import create_model, get_entry
    from .profile.host import cpu_model, time_calls

    models, batches = list(models), list(batches)
    if not models:
        raise ValueError("give at least one generator to time")
    if not batches or not all(isinstance(b, int) and b >= 1 for b in batches):
        raise ValueError(f"batch sizes must be positive integers, got {batches}")
    checks = {"patch": patch, "rounds": rounds, **({"threads": threads} if threads is not None else {})}
    for flag, value in checks.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value!r}")
    entries = [get_entry(m, kind="generator") for m in models]
    if len({e.name for e in entries}) < len(entries) or len(set(batches)) < len(batches):
        raise ValueError(f"each model and batch size once, got models {models} and batches {batches}")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or old_threads)
    try:
        gen = torch.Generator().manual_seed(0)
        info, keys, calls = {}, [], []
        for e in entries:
            model = create_model(e.name)
            c = measure(model, (patch, patch))
            info[e.name] = {"scale": e.scale, "params": c.params, "mult_adds_per_image": c.mult_adds}
            for b in batches:
                x = torch.rand(b, 3, patch, patch, generator=gen)
                target = torch.rand(b, 3, patch * e.scale, patch * e.scale, generator=gen)
                keys.append((e.name, b))
                calls += _train_step_calls(model, x, target)
        timings = time_calls(calls, runs=rounds, warmup=warmup, rounds=rounds, settle=False,
                             progress="train-step rounds" if progress else None)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    rows = []
    for (name, b), fwd, step in zip(keys, timings[0::2], timings[1::2]):
        rows.append({"model": name, "batch": b, "forward_ms": fwd.median_ms, "fwd_bwd_ms": step.median_ms,
                     "forward_ms_per_image": fwd.median_ms / b, "fwd_bwd_ms_per_image": step.median_ms / b,
                     "forward_runs_ms": list(fwd.times_ms), "fwd_bwd_runs_ms": list(step.times_ms)})
    by = {(r["model"], r["batch"]): r for r in rows}
    a, base = TRAIN_RATIO
    ratios = [{"batch": b, "forward": by[a, b]["forward_ms"] / by[base, b]["forward_ms"],
               "fwd_bwd": by[a, b]["fwd_bwd_ms"] / by[base, b]["fwd_bwd_ms"]}
              for b in batches if (a, b) in by and (base, b) in by]
    return {"models": [e.name for e in entries], "batches": batches, "patch": patch, "model_info": info,
            "cpu": cpu_model(), "cores": os.cpu_count(), "threads": used_threads, "torch": torch.__version__,
            "rounds": rounds, "warmup": warmup, "rows": rows, "ratio_of": list(TRAIN_RATIO), "ratios": ratios}


def format_train_bench(result: dict) -> str:
    """A Markdown table (rows: model x batch) with the parameters, Mult-Adds and ratio lines."""
    p = result["patch"]
    lines = [f"LR patch {p}x{p}; {result['cpu']}, {result['cores']} cores, torch {result['torch']} with "
             f"{result['threads']} thread(s); medians of {result['rounds']} interleaved rounds", "",
             "| model | batch | forward ms | fwd+bwd ms | forward ms/image | fwd+bwd ms/image |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['batch']} | {r['forward_ms']:.1f} | {r['fwd_bwd_ms']:.1f} | "
              f"{r['forward_ms_per_image']:.1f} | {r['fwd_bwd_ms_per_image']:.1f} |" for r in result["rows"]]
    lines += ["", f"per image at {p}x{p}: " + "; ".join(
        f"{name} x{i['scale']} {i['params'] / 1e6:.3g} M params, {i['mult_adds_per_image'] / 1e9:.3g} G Mult-Adds"
        for name, i in result["model_info"].items())]
    a, b = result["ratio_of"]
    lines += [f"{a} / {b} at batch {r['batch']}: forward {r['forward']:.2f}, fwd+bwd {r['fwd_bwd']:.2f}"
              for r in result["ratios"]]
    return "\n".join(lines)


# ------------------------------------------------------------------ tinysr bench --video WxH
def make_clip(path, size=(1280, 720), frames: int = 300, fps: int = 30, image: str | None = None,
              audio: bool = True, progress: bool = False) -> None:
    """A test clip: the bundled sample photo (or ``image``) panned 2 px a frame across a ``size``
    (width, height) window, H.264 (libx264 CRF 18, 4:2:0, limited range) or the best encoder this
    FFmpeg has, with a 440 Hz AAC tone."""
    import av
    from tqdm.auto import tqdm

    from .video import choose_encoder

    w, h = size
    big = np.asarray(photo((w + 2 * frames, h), image))
    encoder = choose_encoder(Path(path).suffix)
    with av.open(str(path), "w") as out:
        v = out.add_stream(encoder, rate=fps, options={"crf": "18", "preset": "veryfast"} if encoder == "libx264" else {})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = None
        if audio:
            a = out.add_stream("aac", rate=48000)
            a.layout = "mono"
        for i in tqdm(range(frames), desc="making the clip", unit="frame", disable=not progress, leave=False):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[:, 2 * i:2 * i + w]), "rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            n = round(48000 * frames / fps)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)).astype(np.float32)
            for k in range(0, n, 1024):
                f = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
                f.sample_rate, f.pts = 48000, k
                for p in a.encode(f):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)


def _in_thread(fn) -> None:
    import threading

    errors = []

    def target():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - raised in the caller
            errors.append(e)
    t = threading.Thread(target=target, name="tinysr-bench-compute")
    t.start()
    t.join()
    if errors:
        raise errors[0]


def run_video_bench(spec: str = "tpsr_x4", size=(1280, 720), frames: int = 300, fps: int = 30,
                    rounds: int = 1, threads: int = 0, tile: int = 256, overlap: int = 16,
                    progress: bool = True) -> dict:
    """Times of ``tinysr upscale`` on a video in one run: the model's compute alone on the clip's
    frames (decoded beforehand and held in memory as uint8; per frame the float conversion and the
    tiled inference into a uint8 array, in a thread as the pipeline's model thread does) against the whole
    pipeline (decode + upscale + encode + audio copy, :func:`tinysr.video.upscale_video`), in
    ``rounds`` interleaved rounds; wall time and the process's CPU time; ratio and fps."""
    import av
    from tqdm.auto import tqdm

    from .profile.host import cpu_model
    from .runtimes import make_runner
    from .upscale import upscale_array
    from .video import frame_to_rgb, upscale_video

    runner = make_runner(spec, "auto", threads)
    with tempfile.TemporaryDirectory(prefix="tinysr-bench-") as d:
        d = Path(d)
        clip = d / "clip.mp4"
        make_clip(clip, size, frames, fps, progress=progress)
        with av.open(str(clip)) as c:
            decoded = [frame_to_rgb(f, False) for f in c.decode(video=0)]

        def compute_frames():
            for rgb in tqdm(decoded, desc="model compute", unit="frame", disable=not progress, leave=False):
                upscale_array(runner, rgb.astype(np.float32) / 255.0, tile, overlap, bit_depth=8)

        def compute():
            # in a thread of its own, as in the pipeline: torch's intra-op pool behaves differently on
            # the main thread (on a loaded 2-core machine it ran the same frames several times slower)
            _in_thread(compute_frames)

        report = {}

        def pipeline():
            report["r"] = upscale_video(runner, clip, d / "out.mp4", tile, overlap, progress=progress)

        configs = {"model compute alone": compute, "whole video (decode + upscale + encode)": pipeline}
        times = {k: [] for k in configs}
        cpu = {k: [] for k in configs}
        for _ in range(rounds):
            for name, fn in configs.items():
                c = time.process_time()
                times[name].append(_timed(fn))
                cpu[name].append(time.process_time() - c)
        r = report["r"]
        out_bytes = (d / "out.mp4").stat().st_size
    n = len(decoded)
    rows = [{"what": k, "median_s": statistics.median(v), "best_s": min(v), "runs_s": v,
             "fps": n / statistics.median(v), "median_cpu_s": statistics.median(cpu[k])} for k, v in times.items()]
    return {"model": spec, "input_size": list(size), "output_size": list(r.out_size), "frames": n, "fps": fps,
            "cpu": cpu_model(), "cores": os.cpu_count(), "runtime": runner.name,
            "threads": torch.get_num_threads() if runner.name == "torch" else threads, "tile": tile,
            "rounds": rounds, "encoder": r.encoder, "copied": r.copied, "output_bytes": out_bytes, "rows": rows,
            "ratio": rows[1]["median_s"] / rows[0]["median_s"]}


def format_video_bench(result: dict) -> str:
    (w, h), (ow, oh) = result["input_size"], result["output_size"]
    compute, cpu = result["rows"][0]["median_s"], result["rows"][0]["median_cpu_s"]
    lines = [f"{result['model']}: {result['frames']} frames {w}x{h} at {result['fps']} fps -> {ow}x{oh}, encoder "
             f"{result['encoder']}, copied {', '.join(result['copied']) or 'nothing'}; {result['cpu']}, "
             f"{result['cores']} cores, {result['runtime']} {result['threads'] or 'default'} thread(s), tile "
             f"{result['tile']}; medians of {result['rounds']} round(s)",
             f"{'':<42}{'median s':>9}{'fps':>8}{'x compute':>10}{'CPU s':>9}{'x compute':>10}"]
    lines += [f"{r['what']:<42}{r['median_s']:>9.2f}{r['fps']:>8.2f}{r['median_s'] / compute:>10.2f}"
              f"{r['median_cpu_s']:>9.2f}{r['median_cpu_s'] / cpu:>10.2f}" for r in result["rows"]]
    lines.append(f"whole video / model compute = {result['ratio']:.2f} (target <= 1.25); output "
                 f"{result['output_bytes'] / 1e6:.2f} MB")
    return "\n".join(lines)
