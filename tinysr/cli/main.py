"""``tinysr`` command line: thin commands over the library.

Errors a user can cause print one line (``tinysr: error: ...``) and exit 2; ``-v`` shows the trace.
"""
from __future__ import annotations

import argparse
import sys

from . import commands, search


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinysr", description="Tiny perceptual super-resolution: train, evaluate, use.")
    p.add_argument("-v", "--verbose", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("models", help="list registered models with parameters and Mult-Adds")
    s.add_argument("pattern", nargs="?", default="*")
    s.add_argument("--input-size", default="180x320", help="LR input HxW for Mult-Adds (default 180x320 -> 720p at x4)")
    s.set_defaults(func=commands.cmd_models)

    s = sub.add_parser("upscale", help="upscale images and videos (files, folders, globs); models: tinysr models")
    s.add_argument("inputs", nargs="*", help="images, videos, folders or globs (default: a bundled sample image)")
    s.add_argument("-o", "--output", help="output file (one input) or folder (default: NAME_x{scale}.png here; "
                   "a video keeps its container: NAME_x{scale}.mp4)")
    s.add_argument("--model", default="tpsr_x4", help="registry name, checkpoint, .onnx or .tflite (default tpsr_x4)")
    s.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnxruntime", "litert"])
    s.add_argument("--tile", type=int, default=256, help="LR tile side (default 256; 0: chosen from the free memory "
                   "and the model's activation memory, said with -v)")
    s.add_argument("--tile-overlap", type=int, default=16, help="context pixels around each tile (default 16)")
    s.add_argument("--threads", type=int, default=0)
    s.add_argument("--ext", choices=["png", "jpg", "webp", "tif", "auto"], default=None,
                   help="image format of folder outputs (default png; auto: the input's); videos keep their container")
    s.add_argument("--format", dest="ext", choices=["png", "jpg", "tif", "webp", "auto"], help="the same as --ext")
    s.add_argument("--suffix", help="output names NAME_SUFFIX.EXT (e.g. --suffix x4; default: NAME.EXT in a folder)")
    s.add_argument("--outscale", type=float, metavar="F", help="final scale: the model's output resized by Lanczos "
                   "to F x the input (e.g. 2 or 3 from a x4 model; default: the model's scale)")
    s.add_argument("--quality", type=int, help="JPEG / WebP quality 1-100 (default 95)")
    s.add_argument("--codec", default="auto", help="video encoder (default auto: libx264 where FFmpeg has it, "
                   "else libopenh264, ..., mpeg4)")
    s.add_argument("--crf", type=int, help="video quality, lower is better (default 18 for libx264; "
                   "encoders with a CRF mode only)")
    s.add_argument("--preset", help="video encoder preset (libx264 / libx265: ultrafast ... veryslow; default medium)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=commands.cmd_upscale)

    s = sub.add_parser("eval", help="PSNR / SSIM / LPIPS on a benchmark folder")
    s.add_argument("--model", required=True, nargs="+",
                   help="one or more: registry name, checkpoint, .onnx or .tflite (each scored; --compare shows all)")
    s.add_argument("--labels", metavar="A,B,...",
                   help="comma-separated names of the models, one per --model, in order (e.g. L1,GAN; "
                   "default: the model names)")
    s.add_argument("--data", required=True, nargs="+", help="folders with HR/ (+ LR_bicubic/X{s}/), or HR images")
    s.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnxruntime", "litert"])
    s.add_argument("--lpips", choices=["auto", "on", "off"], default="auto",
                   help="auto: when its weights are found (see TINYSR_WEIGHTS)")
    s.add_argument("--lpips-net", choices=["vgg", "alex", "both"], default="vgg",
                   help="LPIPS trunk: vgg (the paper's, default), alex (the lpips package's default), both")
    s.add_argument("--save", help="folder for SR images (a subfolder per model when several)")
    s.add_argument("--compare", action="store_true",
                   help="also save one figure per image into --save: bicubic | each model | ground truth, "
                   "a crop of each labelled with its PSNR / LPIPS")
    s.add_argument("--crop-size", type=int, metavar="N",
                   help="side of the --compare crop in HR pixels (default 48 LR pixels: 192 at x4)")
    s.add_argument("--crop-at", metavar="Y,X", help="top-left HR pixel of the --compare crop (default: centred); "
                   "the crop is clipped to the image")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=commands.cmd_eval)

    s = sub.add_parser("train", help="stage-one L1 training (resumes from OUT_DIR/last.pt)")
    s.add_argument("config", nargs="?", help="YAML or TOML config (see tinysr/configs/)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--model"), s.add_argument("--out-dir"), s.add_argument("--steps", type=int)
    s.add_argument("--train-data", nargs="+"), s.add_argument("--val-data"), s.add_argument("--init-from")
    s.add_argument("--genotype", help="TPSR-family cell, e.g. 'conv3@in conv3@0', a trilevel network with --model "
                   "trilevel_x4, e.g. 'A res3:16 up up' (tinysr search trilevel's result), or a checkpoint whose "
                   "genotype to train (e.g. one from tinysr search export)")
    s.add_argument("--seed", type=int)
    s.add_argument("--qat", action="store_true", help="quantization-aware training of the --init-from network in "
                   "the exporter's int8 scheme (a qat: section with its defaults; tinysr export --precision int8 then "
                   "takes the learnt ranges)")
    s.add_argument("--no-resume", action="store_true", help="start over even if OUT_DIR/last.pt exists")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=commands.cmd_train)

    s = sub.add_parser("export", help="export to .tflite / .onnx, verified against PyTorch, with a model card")
    s.add_argument("--model", required=True, help="registry name (bundled weights) or checkpoint")
    s.add_argument("--preset", help="export/presets/NAME.yaml (tflite-fp32, tflite-int8, onnx-dynamic, ...) or a YAML path")
    s.add_argument("--target", choices=["tflite", "onnx"])
    s.add_argument("--precision", choices=["fp32", "fp16", "int8"])
    s.add_argument("--calib", help="folder of real images for int8 calibration (default: bundled sample)")
    s.add_argument("--calib-count", type=int, help="calibration crops (default 32)")
    size = s.add_mutually_exclusive_group()
    size.add_argument("--input-size", help="fixed LR input HxW (default 180x320: 720p output at x4)")
    size.add_argument("--dynamic-shape", action="store_true", help="ONNX: symbolic batch/height/width")
    s.add_argument("--layout", choices=["nchw", "nhwc"], help="I/O layout (default: nhwc for tflite, nchw for onnx)")
    s.add_argument("--range", dest="value_range", choices=["0-1", "0-255"], help="I/O value range (default 0-1)")
    s.add_argument("--mode", choices=["mobile", "plain"], help="TFLite graph: mobile (native ops, default) or plain")
    io = s.add_mutually_exclusive_group()
    io.add_argument("--int8-io", action="store_true", default=None,
                    help="TFLite int8: int8 input/output tensors (the tflite-int8 preset's default)")
    io.add_argument("--float-io", action="store_true", help="TFLite int8: float input/output tensors (the default "
                    "without a preset)")
    s.add_argument("--verify-data", help="HR images or benchmark folder for the quantized Y-PSNR check")
    s.add_argument("--max-loss-db", type=float, help="allowed Y-PSNR loss of fp16/int8 (default 0.05 / 0.3)")
    s.add_argument("--opset", type=int)
    s.add_argument("--random-init", action="store_true", default=None,
                   help="export a registry architecture without trained weights (for latency profiling)")
    s.add_argument("-o", "--output", help="output path (default export/NAME_PRECISION.EXT)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=commands.cmd_export)

    s = sub.add_parser("bench", help="time a model across runtimes and thread counts (medians, ratios, %% of peak), "
                       "or the whole of tinysr upscale (--upscale), or training-time cost (--train-step)")
    s.add_argument("--model", help="default tpsr_x4; --train-step: comma-separated generators "
                   "(default srresnet_x4,esrgan_x4,mesrgan_x4)")
    s.add_argument("--input-size", default="180x320")
    s.add_argument("--threads", help="comma-separated thread counts (default 1,2; --upscale, --train-step: one "
                   "count, default the runtime's)")
    s.add_argument("--rounds", type=int, help="timed rounds (default 10; --upscale: 5; --train-step: 3)")
    s.add_argument("--runtimes", default="torch,litert-plain-fp32,litert-mobile-fp32,litert-mobile-int8,"
                   "onnxruntime-fp32,onnxruntime-int8")
    s.add_argument("--calib", help="int8 calibration images")
    s.add_argument("--upscale", metavar="WxH", help="instead: time tinysr upscale of a WxH photo (e.g. 1000x750): "
                   "model compute alone, to PNG (now and with the former encoder), to JPEG; PNG sizes")
    s.add_argument("--image", help="--upscale: the photo, scaled by bicubic to WxH (default the bundled sample photo)")
    s.add_argument("--video", metavar="WxH", help="instead: time tinysr upscale of a WxH video (e.g. 1280x720): "
                   "model compute alone on its frames vs the whole decode + upscale + encode; ratio and fps")
    s.add_argument("--frames", type=int, default=300, help="--video: frames of the clip (default 300: 10 s at 30 fps)")
    s.add_argument("--fps", type=int, default=30, help="--video: the clip's frame rate (default 30)")
    s.add_argument("--tile", type=int, default=256, help="--video: LR tile side (default 256)")
    s.add_argument("--train-step", action="store_true", help="instead: forward and forward+backward time by batch "
                   "size for the given generators (MESRGAN report Table I style)")
    s.add_argument("--batches", default="1,4,16", help="--train-step: comma-separated batch sizes (default 1,4,16)")
    s.add_argument("--patch", type=int, default=32, help="--train-step: LR patch side (default 32)")
    s.add_argument("--json", help="also write the results here")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=commands.cmd_bench)

    s = sub.add_parser("pareto", help="latency-quality comparison of networks in one run: params, Mult-Adds, "
                       "LiteRT latency and PSNR/SSIM per precision; table, CSV, JSON and plot")
    s.add_argument("models", nargs="+", help="registry names (bundled weights) or checkpoints")
    s.add_argument("--data", nargs="+", default=[], help="benchmark folders to score (HR/ + LR_bicubic/, or HR images); "
                   "the plot uses the first")
    s.add_argument("--precision", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"],
                   help="TFLite precisions to export, time and score (default: fp32 int8)")
    s.add_argument("--threads", type=int, default=1, help="LiteRT threads (default 1)")
    s.add_argument("--input-size", default="180x320", help="LR input HxW timed and exported (default 180x320 -> 720p)")
    s.add_argument("--profile", help="latency table (profiles/*.json) to predict the networks it covers")
    s.add_argument("--calib", help="folder of real images for int8 calibration (default: bundled sample)")
    s.add_argument("--runs", type=int, default=30, help="timed runs per artifact (default 30)")
    s.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    s.add_argument("--searched", nargs="+", default=[], metavar="MODEL",
                   help="which of the models are searched networks (the others count as hand-designed)")
    s.add_argument("--budgets-from", nargs="+", default=[], metavar="MODEL",
                   help="latency budgets: the measured fp32 latency of each of these models; within each, the best "
                   "searched network's PSNR margin over the best hand-designed one")
    s.add_argument("-o", "--out-dir", default="pareto", help="folder for pareto.md/.csv/.json/.png (default ./pareto)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=commands.cmd_pareto)

    s = sub.add_parser("profile", help="per-operator latency of a .tflite / .onnx model (host, Android over adb, or a saved benchmark_model output)")
    s.add_argument("model", nargs="?", help=".tflite or .onnx model (optional with --from-output)")
    s.add_argument("--device", default="host", help="host (default), adb (the only device) or adb:SERIAL[,SERIAL2,...]")
    s.add_argument("--runtime", choices=["litert", "onnxruntime"], help="default: from the extension (.tflite: litert, .onnx: onnxruntime)")
    s.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    s.add_argument("--delegate", choices=["cpu", "xnnpack", "gpu", "nnapi"],
                   help="LiteRT kernels: default xnnpack on the host (the Interpreter's default), cpu (builtin kernels) over adb")
    s.add_argument("--warmup", type=int, default=10, help="warm-up runs after the first inference (default 10)")
    s.add_argument("--runs", type=int, default=50, help="timed steady-state runs (default 50)")
    s.add_argument("--input-size", help="HxW for models with a symbolic input size (ONNX dynamic shape)")
    s.add_argument("--save", help="write the profile JSON here (several adb serials: NAME.SERIAL.json)")
    s.add_argument("--plot", help="bar chart PNG of the most expensive operators")
    s.add_argument("--top", type=int, default=20, help="operators in the chart (default 20)")
    s.add_argument("--benchmark-binary", help="Android benchmark_model executable for --device adb (default $TINYSR_BENCHMARK_MODEL)")
    s.add_argument("--from-output", metavar="FILE", help="read a saved benchmark_model text log or profiling proto instead of running")
    s.add_argument("--no-per-op", action="store_true", help="LiteRT on the host: whole-model timings only (skip the single-op models)")
    s.set_defaults(func=commands.cmd_profile)

    s = sub.add_parser("lut", help="device latency tables of the search space: build, calibrate, predict, validate")
    lut = s.add_subparsers(dest="lut_command", required=True)
    b = lut.add_parser("build", help="measure every candidate op and the skeleton parts, then calibrate -> profiles/NAME.json")
    b.add_argument("--device", default="host", help="host (default) or adb[:SERIAL]")
    b.add_argument("--runtime", default="litert", choices=["litert"])
    b.add_argument("--space", default="tpsr", choices=["tpsr", "tpsr_plus", "trilevel"],
                   help="tpsr: the TPSR cell space (default); tpsr_plus: the extended space (every op and skeleton "
                   "part at each width of --widths); trilevel: the trilevel search's parts (no calibration)")
    b.add_argument("--widths", help="tpsr_plus: the cell widths to measure, comma-separated (default 16,24,32)")
    b.add_argument("--input-size", default="180x320", help="LR input HxW (default 180x320 -> 720p at x4)")
    b.add_argument("--scale", type=int, default=4)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--delegate", choices=["cpu", "xnnpack", "gpu", "nnapi"], help="default: xnnpack on the host, cpu over adb")
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--runs", type=int, default=30, help="timed runs per entry (default 30)")
    b.add_argument("--rounds", type=int, default=5,
                   help="interleaved rounds the runs are split over, at least (default 5); every round opens and "
                   "closes with the reference network (the TPSR cell network), so entries are also recorded "
                   "relative to it")
    b.add_argument("--max-spread", type=float, default=3.0, metavar="PCT",
                   help="more rounds for entries whose relative spread ((p90 - p10) / median of their per-round "
                   "ratios to the reference) is above PCT percent (default 3)")
    b.add_argument("--time-limit", type=float, default=300.0, metavar="SECONDS",
                   help="stop adding rounds after this many seconds of timing (default 300; 0: --rounds only)")
    b.add_argument("--benchmark-binary", help="Android benchmark_model executable for --device adb")
    b.add_argument("--cache-dir", help="keep / reuse the converted part models here")
    b.add_argument("--calibration-networks", type=int, default=8,
                   help="whole networks timed with the entries to calibrate the table (default 8; 0: none)")
    b.add_argument("--calibration-seed", type=int, default=0, help="seed of the calibration networks' own stream")
    b.add_argument("--clock", choices=["wall", "thread-cpu"], default="wall",
                   help="wall (default) or thread-cpu: CPU time of the invoking thread (host, 1 thread; leaves out "
                   "waiting for a core on a busy machine); calibration and validation use the table's clock")
    b.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                   help="int8: every entry and network quantized as tinysr export --precision int8 does (default fp32)")
    b.add_argument("-o", "--output", help="default profiles/host-<cpu>-litert-<threads>t[-<space>][-int8].json")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=commands.cmd_lut_build)
    c = lut.add_parser("calibrate", help="(re)calibrate an existing table on a few whole networks measured here")
    c.add_argument("--profile", required=True, help="latency table JSON, rewritten in place unless -o")
    c.add_argument("--networks", type=int, default=8, help="networks to measure: the TPSR cell + random ones (default 8)")
    c.add_argument("--seed", type=int, default=0, help="seed of the calibration networks' own stream")
    c.add_argument("--warmup", type=int, default=5)
    c.add_argument("--runs", type=int, default=30, help="timed runs per network (default 30)")
    c.add_argument("--rounds", type=int, default=5, help="interleaved rounds the runs are split over (default 5)")
    c.add_argument("--benchmark-binary", help="Android benchmark_model executable (adb profiles)")
    c.add_argument("--cache-dir", help="keep / reuse the converted networks here")
    c.add_argument("-o", "--output", help="write the calibrated table here instead")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=commands.cmd_lut_calibrate)
    pr = lut.add_parser("predict", help="predicted latency of a genotype, checkpoint or registry model, with the per-node breakdown")
    pr.add_argument("model", help="genotype text ('conv3@in dsep5@0 ...', or a trilevel 'A res3:16 up up'), "
                    "TPSR-family or trilevel checkpoint, or registry name")
    pr.add_argument("--profile", required=True, help="latency table JSON (profiles/NAME.json)")
    pr.add_argument("--input-size", help="LR input HxW of the network (checked against the table's; default the table's)")
    pr.add_argument("--scale", type=int, help="the network's scale (checked; a checkpoint or registry model has its own)")
    pr.add_argument("--n-feats", type=int, help="the cell's channel width (checked; a checkpoint or registry model has its own)")
    pr.add_argument("--rescale", action="store_true",
                    help="re-measure the table's reference network here now and predict with its time (a table "
                    "with relative entries: follows the machine's current speed)")
    pr.add_argument("--rescale-runs", type=int, default=20, help="timed runs of the reference for --rescale (default 20)")
    pr.add_argument("--cache-dir", help="--rescale: keep / reuse the converted reference network here")
    pr.add_argument("--json", action="store_true", help="machine-readable output")
    pr.set_defaults(func=commands.cmd_lut_predict)
    v = lut.add_parser("validate", help="predicted vs measured latency of random genotypes of the search space")
    v.add_argument("--profile", required=True)
    v.add_argument("--samples", type=int, default=30)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--space", choices=["tpsr", "tpsr_plus", "trilevel"],
                   help="the space to sample (default the table's; tpsr_plus: width, depth and skeleton too; "
                        "trilevel: random trilevel networks, needs a trilevel table)")
    v.add_argument("--warmup", type=int, default=3)
    v.add_argument("--runs", type=int, default=20, help="timed runs per network (default 20)")
    v.add_argument("--rounds", type=int, default=4, help="interleaved rounds the runs are split over (default 4)")
    v.add_argument("--benchmark-binary", help="Android benchmark_model executable (adb profiles)")
    v.add_argument("--cache-dir", help="keep / reuse the converted networks here")
    v.add_argument("--compare", choices=["relative", "absolute"],
                   help="the headline comparison (stats, plot): relative costs to the reference network timed in "
                   "the same rounds (default for a table with relative entries) or absolute ms (older tables); "
                   "both are reported when the table has relative entries")
    v.add_argument("--plot", help="scatter plot PNG (predicted vs measured, y = x)")
    v.add_argument("--json", dest="json_out", help="write the per-genotype results and statistics here")
    v.add_argument("-q", "--quiet", action="store_true")
    v.set_defaults(func=commands.cmd_lut_validate)

    s = sub.add_parser("android-demo", help="the Android demo app (android_demo/): put an exported model into it")
    ad = s.add_subparsers(dest="android_command", required=True)
    a = ad.add_parser("prepare", help="export a model as tinysr export does and place the .tflite and its card in "
                      "the app's assets (replacing the model there)")
    a.add_argument("--model", required=True, help="registry name (bundled weights) or checkpoint")
    a.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32", help="default fp32")
    a.add_argument("--input-size", help="fixed LR input HxW (default 256x256: square tiles of 224 + 16 overlap)")
    a.add_argument("--float-io", action="store_true", help="int8: float input/output tensors (default: int8 I/O, "
                   "quantized with the card's parameters)")
    a.add_argument("--calib", help="folder of real images for int8 calibration (default: bundled sample)")
    a.add_argument("--preset", help="export preset to start from (default tflite-PRECISION)")
    a.add_argument("--app", help="the app module folder (default android_demo/app of this repository)")
    a.add_argument("-q", "--quiet", action="store_true")
    a.set_defaults(func=commands.cmd_android_demo_prepare)

    search.add_parser(sub)

    s = sub.add_parser("import-weights", help="convert a published checkpoint (e.g. TPSR authors' .pt) into a tinysr checkpoint")
    s.add_argument("source")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=commands.cmd_import_weights)
    return p


MODEL_COMMANDS = ("upscale", "eval", "train", "export", "bench")  # their --model: registry name or model file
SEARCH_EXTRA = ("optuna", "optuna_dashboard", "ray")  # installed by pip install "tinysr[search]" only


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"tinysr: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Run one command; warnings print as one ``tinysr: warning:`` line while it runs (the caller's
    warning format is restored after: main() also runs inside other programs and tests)."""
    import warnings

    previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return _run(argv)
    finally:
        warnings.formatwarning = previous


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in MODEL_COMMANDS and args.model is not None and not getattr(args, "train_step", False):
            args.model = ([commands.model_spec(m) for m in args.model] if isinstance(args.model, list)
                          else commands.model_spec(args.model))
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("tinysr: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        if args.verbose or (e.name or "").split(".")[0] not in SEARCH_EXTRA:
            raise
        print(f'tinysr: error: {e.name.split(".")[0]} is not installed; the search needs its extra: '
              f'pip install "tinysr[search]"', file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        if args.verbose:
            raise
        print(f"tinysr: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
