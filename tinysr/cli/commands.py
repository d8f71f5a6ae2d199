"""The bodies of the ``tinysr`` sub-commands."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def parse_size(text: str, form: str = "HxW") -> tuple[int, int]:
    """``"180x320"`` -> ``(180, 320)``: two positive sizes, in the order ``form`` names them."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        a = b = 0
    if a < 1 or b < 1:
        raise ValueError(f"size {text!r}: expected {form}, e.g. {'180x320' if form == 'HxW' else '1000x750'}")
    return a, b


def model_spec(spec: str) -> str:
    """A registry name as a user may spell it (``tpsr-x4``) -> the registered name; model files pass."""
    from ..models import get_entry
    from ..models.registry import name_hint

    if Path(spec).suffix or Path(spec).exists():
        return spec
    try:
        return get_entry(spec).name
    except ValueError:
        raise ValueError(f"{spec!r} is neither a checkpoint file nor a model name; {name_hint(spec)}") from None


def check_at_least(flag: str, value: int, low: int, meaning: str) -> None:
    if value < low:
        raise ValueError(f"{flag} {value}: {meaning}")


def cmd_models(args):
    from ..checkpoint import has_bundled_weights
    from ..complexity import build_on_meta, measure
    from ..models import create_model, get_entry, list_models
    from ..models.mobile import deploy
    from ..models.registry import name_hint

    h, w = parse_size(args.input_size)
    names = list_models(args.pattern) or list_models(args.pattern.lower().replace("-", "_"))
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; {name_hint(args.pattern)}")
    print(f"{'name':<14}{'scale':>6}{'params':>12}{'Mult-Adds':>14}  weights  description")
    for name in names:
        e = get_entry(name)
        # shapes only, no arithmetic; the deployed form (a network trained expanded is listed collapsed)
        c = measure(build_on_meta(lambda: deploy(create_model(name))), (h, w))
        print(f"{name:<14}{'x' + str(e.scale):>6}{c.params / 1e3:>10.1f} K{c.mult_adds / 1e9:>12.2f} G  "
              f"{'bundled' if has_bundled_weights(name) else '-':<8} {e.description}")
    print(f"(Mult-Adds for a {h}x{w} LR input)")


def cmd_upscale(args):
    import sys
    import traceback

    from tqdm.auto import tqdm

    from ..bundled import sample_image
    from ..imageio import IMAGE_EXTENSIONS, list_images
    from ..runtimes import make_runner
    from ..upscale import auto_tile, check_outscale, upscale_files
    from ..video import VIDEO_EXTENSIONS

    check_at_least("--tile", args.tile, 0, "the tile side must be at least 1 LR pixel, or 0 to choose it from the "
                   "free memory (default 256)")
    check_outscale(args.outscale)
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise ValueError(f"--quality {args.quality}: JPEG / WebP quality runs from 1 to 100")
    if args.crf is not None:
        check_at_least("--crf", args.crf, 0, "the encoder's quality scale starts at 0 (lossless for libx264)")
    check_at_least("--tile-overlap", args.tile_overlap, 0, "the context around each tile must be 0 or more pixels")
    check_at_least("--threads", args.threads, 0, "must be 0 (the runtime's default) or a number of threads")
    inputs = args.inputs or [str(sample_image())]
    if not args.inputs:
        print(f"no input given: upscaling the bundled sample {sample_image().name}")
    files = list_images(inputs, extensions=IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    if not files:
        raise FileNotFoundError("no images or videos found in the inputs")
    t0 = time.perf_counter()
    runner = make_runner(args.model, args.runtime, args.threads)
    load_s = time.perf_counter() - t0
    scale_label = f"{args.outscale:g}" if args.outscale else str(runner.scale)
    if args.output:
        out = Path(args.output)
    elif len(files) == 1:
        out = Path(".")  # NAME_SUFFIX.EXT here
    else:
        out = Path(f"upscaled_x{scale_label}")
    suffix = args.suffix if args.suffix is not None or args.output else f"x{scale_label}" if len(files) == 1 else None
    tile = args.tile
    if tile == 0:
        tile, why = auto_tile(runner, args.tile_overlap)
        if args.verbose:
            print(f"--tile 0: tile {tile} ({why})")
    failed = []

    def report(src, e):
        if args.verbose:
            traceback.print_exception(e)
        message = str(e) if str(src) in str(e) else f"{src}: {e}"  # a write error names the temporary file
        tqdm.write(f"tinysr: error: {message}", file=sys.stderr)
        failed.append(src)

    video = {"codec": args.codec, "crf": args.crf, "preset": args.preset}
    reports = upscale_files(runner, files, out, tile, args.tile_overlap, progress=not args.quiet, fmt=args.ext,
                            on_error=report, suffix=suffix, outscale=args.outscale, quality=args.quality, video=video)
    for r in reports:
        print(f"{r.src} ({r.in_size[0]}x{r.in_size[1]}) -> {r.dst} ({r.out_size[0]}x{r.out_size[1]}) "
              f"in {r.seconds:.2f} s" + (f" ({r.detail})" if r.detail else ""))
    if reports:
        total = sum(r.seconds for r in reports)
        print(f"model {args.model} (x{runner.scale}, {runner.name}), loaded in {load_s:.2f} s; "
              f"{len(reports)} file(s) in {total:.2f} s")
    if failed and len(files) > 1:
        print(f"tinysr: error: {len(failed)} of {len(files)} files failed: {', '.join(str(p) for p in failed)}",
              file=sys.stderr)
    return 2 if failed else 0


def parse_crop_at(text: str) -> tuple[int, int]:
    """``"100,200"`` -> ``(100, 200)``: the top-left HR pixel (y, x) of a comparison crop."""
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        y = x = -1
    if y < 0 or x < 0:
        raise ValueError(f"--crop-at {text!r}: expected Y,X, the crop's top-left HR pixel (two integers >= 0), "
                         "e.g. 100,200")
    return y, x


def eval_labels(models: list[str], labels: str | None) -> list[str]:
    """One distinct label per model: ``--labels`` (comma-separated) or the model names (file stems)."""
    if labels is None:
        names = [Path(m).stem for m in models]
        for i, name in enumerate(names):
            if name in names[:i]:
                first = models[names.index(name)]
                raise ValueError(f"models {first} and {models[i]} are both called {name!r}; "
                                 "name them with --labels, e.g. --labels A,B")
        return names
    names = [v.strip() for v in labels.split(",")]
    if len(names) != len(models):
        raise ValueError(f"--labels {labels!r}: {len(names)} label(s) for {len(models)} model(s); "
                         "give one per --model, in order")
    for i, name in enumerate(names):
        if not name:
            raise ValueError(f"--labels {labels!r}: label {i + 1} is empty")
        if name in names[:i]:
            raise ValueError(f"--labels {labels!r}: {name!r} is given twice; the labels tell the models apart")
    return names


def cmd_eval(args):
    from ..evaluate import LPIPS_FIELDS, LPIPS_NETS, Crop, as_json, evaluate_models, format_table
    from ..runtimes import make_runner

    labels = eval_labels(args.model, args.labels)
    if args.crop_size is not None:
        check_at_least("--crop-size", args.crop_size, 1, "the crop must be at least 1 HR pixel")
    crop_at = parse_crop_at(args.crop_at) if args.crop_at is not None else None
    if (args.crop_size is not None or crop_at is not None) and not args.compare:
        raise ValueError("--crop-size / --crop-at place the crop of the --compare figures; add --compare")
    if args.compare and not args.save:
        raise ValueError("--compare writes its figures into the --save folder; give --save DIR")
    crop = Crop(args.crop_size, crop_at)
    loaded = {}
    for spec in args.model:
        if spec not in loaded:
            loaded[spec] = make_runner(spec, args.runtime)
    runners = {label: loaded[spec] for label, spec in zip(labels, args.model)}
    specs = dict(zip(labels, args.model))
    lp = {"auto": None, "on": True, "off": False}[args.lpips]
    net = args.lpips_net
    results = {}  # data folder -> label -> rows
    for data in args.data:
        save = Path(args.save) / Path(data).name if args.save else None
        by_model = evaluate_models(runners, data, lpips=lp, lpips_net=net, save_dir=save, compare=args.compare,
                                   crop=crop, progress=not args.quiet)
        results[Path(data).name] = by_model
        if lp is None:  # auto: the next folders use the trunks whose weights were found (one warning)
            rows = [r for rs in by_model.values() for r in rs]
            found = [n for n in LPIPS_NETS[net] if any(getattr(r, LPIPS_FIELDS[n]) is not None for r in rows)]
            lp = bool(found)
            net = "both" if len(found) == 2 else (found[0] if found else net)
    if args.json:
        def datasets(label):
            return {name: as_json(by_model[label]) for name, by_model in results.items()}

        if len(labels) == 1:
            out = {"model": args.model[0], "scale": runners[labels[0]].scale, "datasets": datasets(labels[0])}
        else:
            out = {"models": {label: {"model": specs[label], "scale": runners[label].scale,
                                      "datasets": datasets(label)} for label in labels}}
        print(json.dumps(out, indent=2))
    else:
        for name, by_model in results.items():
            for label, rows in by_model.items():
                scale = runners[label].scale
                print(f"\n{name}, {label} (x{scale}, Y channel, shave {scale})")
                print(format_table(rows))


def cmd_train(args):
    from ..train.config import TrainConfig
    from ..train.trainer import train

    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    if getattr(args, "qat", False) and cfg.qat is None:
        from ..train.config import QATConfig

        cfg.qat = QATConfig()
    if args.genotype and Path(args.genotype).is_file():  # a TPSR-family checkpoint: train its cell
        from ..checkpoint import read_checkpoint

        config = read_checkpoint(args.genotype).get("config") or {}
        genotype = config.get("genotype")
        if not genotype:
            raise ValueError(f"{args.genotype}: not a checkpoint of a TPSR-family or trilevel network (it has no genotype)")
        if any(k in config for k in ("n_cells", "upsampler", "clip", "linear", "skip")):  # an extended-space network: its skeleton too
            from ..models.tpsr import CellSR

            genotype = CellSR(**config).genotype_text
        args.genotype = genotype
    overrides = list(args.set)
    for key in ("model", "out_dir", "steps", "train_data", "val_data", "init_from", "genotype", "seed"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    cfg = cfg.override(overrides)
    result = train(cfg, resume=not args.no_resume, progress=not args.quiet)
    if result.lpips_net:  # the GAN stage: best.pt is chosen by validation LPIPS
        best = ("-" if result.best_lpips is None else
                f"LPIPS-{result.lpips_net} {result.best_lpips:.4f} at {result.best_psnr:.3f} dB")
        print(f"stopped at step {result.step}/{cfg.steps}; best validation {best}; checkpoints in {result.out_dir}")
        return
    best = "-" if result.best_psnr is None else f"{result.best_psnr:.3f} dB"
    print(f"stopped at step {result.step}/{cfg.steps}; best validation PSNR {best}; checkpoints in {result.out_dir}")


def cmd_import_weights(args):
    from ..checkpoint import read_checkpoint, save_checkpoint
    from ..complexity import count_params
    from ..foreign import import_state_dict

    src = Path(args.source)
    sd = read_checkpoint(src)
    if not isinstance(sd, dict):
        raise ValueError(f"{src}: not a state dict")
    imp = import_state_dict(sd.get("state_dict", sd))
    save_checkpoint(args.output, imp.model, meta={"imported_from": str(src), "source_format": imp.source_format})
    print(f"{src}: {imp.source_format} checkpoint -> {imp.architecture}, {count_params(imp.model)} params; "
          f"all keys matched (strict)")
    for note in imp.notes:
        print(f"  {note}")
    print(f"wrote {args.output}")


def cmd_export(args):
    from ..export.pipeline import ExportOptions, export_model, format_card, load_preset

    opts = dict(load_preset(args.preset)) if args.preset else {}
    for key in ("target", "precision", "calib", "calib_count", "layout", "value_range", "mode", "int8_io",
                "verify_data", "max_loss_db", "opset", "random_init"):
        value = getattr(args, key)
        if value is not None:
            opts[key] = value
    if args.float_io:
        opts["int8_io"] = False
    if args.input_size:
        opts["input_size"] = parse_size(args.input_size)
    if args.dynamic_shape:
        opts["dynamic"] = True
    if "input_size" in opts:
        opts["input_size"] = tuple(opts["input_size"])
    options = ExportOptions(**opts).resolved()
    if args.float_io and not (options.target == "tflite" and options.precision == "int8"):
        raise ValueError("--float-io applies to --target tflite --precision int8 only")
    name = Path(args.model).stem if Path(args.model).suffix else args.model
    out = Path(args.output) if args.output else Path("export") / f"{name}_{options.precision}.{options.target}"
    card = export_model(args.model, out, options, progress=not args.quiet)
    print(format_card(card))
    print(f"wrote {out} and {out.with_suffix('.json')}")


def cmd_android_demo_prepare(args):
    from ..android_demo import prepare
    from ..export.pipeline import format_card

    if args.float_io and args.precision != "int8":
        raise ValueError("--float-io applies to --precision int8 only")
    card, art = prepare(model_spec(args.model), args.precision, args.app,
                        parse_size(args.input_size) if args.input_size else None,
                        int8_io=False if args.float_io else None, calib=args.calib, preset=args.preset,
                        progress=not args.quiet)
    print(format_card(card))
    print(f"placed {art.name} and {art.with_suffix('.json').name} in {art.parent}; build the app to bundle them")


def positive_ints(text: str, option: str, what: str, example: str) -> tuple[int, ...]:
    """``"1,4,16"`` -> ``(1, 4, 16)``; a one-line error naming ``option`` unless all are positive integers."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(f"{option} {text}: expected positive {what}, comma-separated, e.g. {example}")
    return values


def thread_counts(text: str) -> tuple[int, ...]:
    return positive_ints(text, "--threads", "thread counts", "1,2")


def cmd_pareto(args):
    from ..pareto import ParetoOptions, run_pareto, to_markdown, write_outputs

    check_at_least("--threads", args.threads, 1, "LiteRT needs at least 1 thread")
    check_at_least("--runs", args.runs, 1, "time at least 1 run")
    check_at_least("--rounds", args.rounds, 1, "time at least 1 round")
    if args.profile and not Path(args.profile).is_file():
        raise ValueError(f"--profile {args.profile}: no such file")
    opts = ParetoOptions(data=tuple(args.data), precisions=tuple(dict.fromkeys(args.precision)), threads=args.threads,
                         input_size=parse_size(args.input_size), profile=args.profile, calib=args.calib,
                         runs=args.runs, rounds=min(args.rounds, args.runs), searched=tuple(args.searched),
                         budgets_from=tuple(args.budgets_from))
    result = run_pareto(args.models, opts, progress=not args.quiet)
    written = write_outputs(result, args.out_dir)
    print(to_markdown(result), end="")
    failed = [r for r in result["rows"] if r["error"]]
    for r in failed:
        print(f"tinysr: {r['model']}: {r['error']}", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 2 if failed and len(failed) == len(result["rows"]) else 0


def cmd_bench(args):
    from ..imageio import atomic_write

    rounds = args.rounds if args.rounds is not None else (
        3 if args.train_step else 5 if args.upscale else 1 if args.video else 10)
    check_at_least("--rounds", rounds, 1, "time at least 1 round")
    if args.train_step:
        from ..bench import format_train_bench, run_train_bench

        models = [model_spec(m) for m in (args.model or "srresnet_x4,esrgan_x4,mesrgan_x4").split(",")]
        threads = thread_counts(args.threads) if args.threads else (None,)
        if len(threads) > 1:
            raise ValueError(f"--threads {args.threads}: --train-step times one thread count")
        check_at_least("--patch", args.patch, 1, "the LR patch side must be at least 1")
        result = run_train_bench(models, positive_ints(args.batches, "--batches", "batch sizes", "1,4,16"), args.patch, threads[0], rounds,
                                 progress=not args.quiet)
        print(format_train_bench(result))
    elif args.video:
        from ..bench import format_video_bench, run_video_bench

        threads = thread_counts(args.threads) if args.threads else (0,)
        if len(threads) > 1:
            raise ValueError(f"--threads {args.threads}: --video times one thread count")
        check_at_least("--frames", args.frames, 1, "the clip needs at least 1 frame")
        check_at_least("--fps", args.fps, 1, "the clip's frame rate must be at least 1")
        check_at_least("--tile", args.tile, 1, "the tile side must be at least 1 LR pixel")
        result = run_video_bench(args.model or "tpsr_x4", parse_size(args.video, "WxH"), args.frames, args.fps,
                                 rounds, threads[0], args.tile, progress=not args.quiet)
        print(format_video_bench(result))
    elif args.upscale:
        from ..bench import format_upscale_bench, run_upscale_bench

        threads = thread_counts(args.threads) if args.threads else (0,)  # 0: the runtime's default
        if len(threads) > 1:
            raise ValueError(f"--threads {args.threads}: --upscale times one thread count")
        result = run_upscale_bench(args.model or "tpsr_x4", parse_size(args.upscale, "WxH"), args.image, rounds,
                                   threads[0], progress=not args.quiet)
        print(format_upscale_bench(result))
    else:
        from ..bench import format_bench, run_bench

        threads = thread_counts(args.threads or "1,2")
        result = run_bench(args.model or "tpsr_x4", parse_size(args.input_size), threads, rounds,
                           runtimes=tuple(args.runtimes.split(",")), calib=args.calib, progress=not args.quiet)
        print(format_bench(result))
    if args.json:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))


def _suffixed(path: str, label: str) -> Path:
    """``out/NAME.EXT`` -> ``out/NAME.LABEL.EXT`` (one file per device)."""
    import re

    p = Path(path)
    safe = re.sub(r"[^\w.-]", "_", label)
    return p.with_name(f"{p.stem}.{safe}{p.suffix}")


def cmd_profile(args):
    from ..profile.record import plot_ops

    profiles = {}
    if args.from_output:
        from ..profile.benchmark_output import profile_from_output

        profiles[""] = profile_from_output(args.from_output, model=args.model or "")
        if args.save:
            profiles[""].save(args.save)
    else:
        from ..profile.lut import parse_device

        if not args.model:
            raise ValueError("give a model (.tflite / .onnx) to profile, or --from-output FILE")
        kind, serial = parse_device(args.device)
        if kind == "host":
            from ..profile.host import profile_host

            size = parse_size(args.input_size) if args.input_size else None
            profiles[""] = profile_host(args.model, args.runtime, args.threads, args.delegate, args.warmup, args.runs,
                                        input_size=size, per_op=not args.no_per_op, save=args.save)
        else:
            from ..profile.adb import profile_on_device, profile_on_devices

            if Path(args.model).suffix.lower() != ".tflite" or args.runtime == "onnxruntime":
                raise ValueError("--device adb profiles .tflite models with LiteRT's benchmark_model")
            kw = dict(benchmark_binary=args.benchmark_binary, threads=args.threads, delegate=args.delegate or "cpu",
                      warmup=args.warmup, runs=args.runs, per_op=not args.no_per_op)
            if isinstance(serial, list):
                save = None
                if args.save:
                    p = Path(args.save)
                    save = str(p.with_name(f"{p.stem}.{{serial}}{p.suffix}"))
                profiles = profile_on_devices(args.model, serial, save=save, **kw)
            else:
                profiles[""] = profile_on_device(args.model, serial=serial, save=args.save, **kw)
    several = len(profiles) > 1
    for label, profile in profiles.items():
        if several:
            print(f"=== device {label} ===")
        print(profile.table())
        if args.save:
            print(f"wrote {_suffixed(args.save, label) if several else args.save}")
        if args.plot:
            png = plot_ops(profile, _suffixed(args.plot, label) if several else args.plot, top=args.top)
            print(f"wrote {png}")
        if several:
            print()


def cmd_lut_build(args):
    from ..profile.lut import build_lut, default_lut_name, format_calibration, save_lut

    data = build_lut(device=args.device, runtime=args.runtime, space=args.space, input_size=parse_size(args.input_size),
                     scale=args.scale, threads=args.threads, runs=args.runs, warmup=args.warmup, delegate=args.delegate,
                     benchmark_binary=args.benchmark_binary, cache_dir=args.cache_dir,
                     progress=None if args.quiet else print, rounds=args.rounds, clock=args.clock,
                     calibration_networks=args.calibration_networks, calibration_seed=args.calibration_seed,
                     widths=[int(v) for v in args.widths.split(",")] if getattr(args, "widths", None) else None,
                     max_spread=args.max_spread, time_limit=args.time_limit,
                     precision=getattr(args, "precision", "fp32"))
    out = Path(args.output) if args.output else Path("profiles") / default_lut_name(data)
    save_lut(data, out)
    print(f"wrote {out}: {len(data['entries'])} {data['precision']} entries, overhead {data['overhead']['ms']:.3f} ms "
          f"({data['runtime']['name']} {data['runtime']['delegate']}, {data['runtime']['threads']} thread(s), "
          f"{data['input_size'][0]}x{data['input_size'][1]} x{data['scale']}, {data['clock']} clock)")
    ref = data["reference"]
    worst = ref["max_entry_spread_pct"]
    print(f"relative to the reference network {ref['genotype']} ({ref['ms']:.3f} ms, {ref['rounds']} rounds, "
          f"{ref['seconds']:.0f} s): largest entry spread {'n/a' if worst is None else f'{worst:.1f}%'}, "
          f"{len(ref['unsettled'])} entries above {ref['max_spread_pct']:g}%")
    if data.get("calibration"):
        print(format_calibration(data["calibration"]))


def cmd_lut_calibrate(args):
    from ..profile.lut import format_calibration, save_lut
    from ..profile.predict import calibrate

    data = calibrate(args.profile, networks=args.networks, seed=args.seed, runs=args.runs, warmup=args.warmup,
                     rounds=args.rounds, cache_dir=args.cache_dir, benchmark_binary=args.benchmark_binary,
                     progress=None if args.quiet else print)
    out = save_lut(data, args.output or args.profile)
    print(f"wrote {out}")
    print(format_calibration(data["calibration"]))


def _genotype_of(spec: str):
    """``(genotype, scale or None, n_feats or None, what)`` for a genotype text, a checkpoint or a registry name."""
    from ..checkpoint import load_model
    from ..genotype import Genotype, NetworkGenotype
    from ..models import create_model, list_models

    model = None
    if Path(spec).is_file():
        model = load_model(spec)
    elif spec in list_models():
        model = create_model(spec)
    if model is None:
        from ..models.trilevel import TrilevelGenotype

        try:
            if TrilevelGenotype.looks_like(spec):
                return TrilevelGenotype.parse(spec), None, None, "trilevel genotype"
            if "|" in spec:  # a network genotype: the cell with its skeleton
                net = NetworkGenotype.parse(spec)
                return net, None, net.n_feats, "network genotype"
            return Genotype.parse(spec), None, None, "genotype"
        except ValueError as e:
            raise ValueError(f"{spec!r} is neither a checkpoint, a registry model nor a genotype ({e})") from None
    genotype = getattr(model, "genotype", None)
    if genotype is None:
        raise ValueError(f"{spec}: not a TPSR-family or trilevel network (it has no genotype)")
    network = getattr(model, "network", None)
    if network is not None and not network.is_default:
        genotype = network  # an extended-space network: priced with its skeleton
    return genotype, getattr(model, "scale", None), getattr(model, "n_feats", None), spec


def cmd_lut_predict(args):
    import copy

    from ..genotype import NetworkGenotype
    from ..profile.predict import load_table

    genotype, scale, n_feats, what = _genotype_of(args.model)
    if args.scale is not None and scale is not None and args.scale != scale:
        raise ValueError(f"{what} is a x{scale} network, not --scale {args.scale}")
    if args.n_feats is not None and n_feats is not None and args.n_feats != n_feats:
        raise ValueError(f"{what} has {n_feats}-channel cells, not --n-feats {args.n_feats}")
    scale = scale if scale is not None else args.scale
    n_feats = n_feats if n_feats is not None else args.n_feats
    table = load_table(args.profile)
    from ..models.trilevel import TrilevelGenotype

    space = "trilevel" if isinstance(genotype, TrilevelGenotype) else "tpsr"
    if table.space == "tpsr_plus" and space == "tpsr":  # an extended table holds the paper's space too
        space = "tpsr_plus"
    if table.space != space:
        raise ValueError(f"{args.profile} is a table of the {table.space} space, {what} belongs to the {space} space: "
                         f"build one with tinysr lut build --space {space}")
    table.check(parse_size(args.input_size) if args.input_size else None, scale, n_feats)
    if getattr(args, "rescale", False):
        check_at_least("--rescale-runs", args.rescale_runs, 1, "the reference network needs at least 1 timed run")
        if not table.relative:
            raise ValueError(f"{args.profile} has no relative entries (format {table.data.get('format')}): "
                             "--rescale needs a table built by this version of tinysr lut build")
        table = copy.copy(table)  # the cached table keeps its recorded reference time
        table.rescale(runs=args.rescale_runs, cache_dir=args.cache_dir)
    if table.space == "tpsr_plus" and n_feats is not None and int(n_feats) != table.n and not isinstance(
            genotype, (NetworkGenotype, TrilevelGenotype)):
        genotype = NetworkGenotype(genotype, int(n_feats))  # a bare cell at another width of the table
    rows = table.breakdown(genotype)
    total = table.predict(genotype)
    cal = ({"op_scale": table.op_scale, "network_ms": table.network_ms} if table.calibrated else None)
    ref = ({"genotype": table.reference, "ms": table.reference_ms, "table_ms": table.table_reference_ms,
            "ratio": table.speed_ratio, "rescaled": bool(getattr(args, "rescale", False)),
            "relative_cost": table.relative_cost(genotype)} if table.relative else None)
    if args.json:
        print(json.dumps({"model": args.model, "genotype": str(genotype), "profile": args.profile,
                          "input_size": [table.h, table.w], "scale": table.scale, "n_feats": table.n,
                          "predicted_ms": total, "uncalibrated_ms": table.predict_uncalibrated(genotype),
                          "calibration": cal, "reference": ref,
                          "terms": [{"what": a, "key": k, "ms": ms} for a, k, ms in rows]},
                         indent=2))
        return
    rt = table.data.get("runtime", {})
    print(f"{what}: {genotype}")
    print(f"profile {args.profile} ({table.data.get('device', {}).get('cpu') or table.device}, {rt.get('name')} "
          f"{rt.get('delegate')}, {table.threads} thread(s), {table.h}x{table.w} x{table.scale}, n_feats {table.n})")
    if cal:
        print(f"calibrated: node and leaf-sum entries x{table.op_scale:.4f}, {table.network_ms:+.3f} ms per network")
    width = max(len(a) for a, _, _ in rows)
    for a, key, ms in rows:
        print(f"  {a:<{width}}  {key:<30} {ms:9.3f} ms")
    if ref:
        when = "measured now" if ref["rescaled"] else "recorded at build time"
        print(f"relative entries x the reference network {ref['genotype']}: {ref['ms']:.3f} ms ({when}; "
              f"x{ref['ratio']:.3f} of the table's {ref['table_ms']:.3f} ms); this network: "
              f"x{ref['relative_cost']:.4f} of the reference")
    print(f"predicted latency: {total:.3f} ms")


def cmd_lut_validate(args):
    from ..profile.lut import save_lut
    from ..profile.predict import format_validation, plot_validation, validate

    result = validate(args.profile, samples=args.samples, seed=args.seed, runs=args.runs, warmup=args.warmup,
                      cache_dir=args.cache_dir, benchmark_binary=args.benchmark_binary,
                      progress=None if args.quiet else print, rounds=args.rounds, space=getattr(args, "space", None),
                      compare=getattr(args, "compare", None))
    print(format_validation(result))
    if args.json_out:
        print(f"wrote {save_lut(result, args.json_out)}")
    if args.plot:
        print(f"wrote {plot_validation(result, args.plot)}")
