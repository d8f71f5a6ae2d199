"""``tinysr search``: run a generator, discriminator or trilevel search, look at a run, export a
candidate (thin over tinysr.search)."""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    s = sub.add_parser("search", help="architecture search: run it, look at a run, export a candidate")
    ss = s.add_subparsers(dest="search_command", required=True)

    g = ss.add_parser("generator", help="search a generator cell (TPSR space) under Mult-Adds and latency budgets")
    _run_arguments(g, "tinysr/configs/search_demo.yaml",
                   "reinforce (default, the paper's), random, nsga2 or tpe (multi-objective)")
    g.set_defaults(func=cmd_search_generator)

    d = ss.add_parser("discriminator", help="search a discriminator (TPSR template): fine-tune a fixed generator "
                      "with each candidate, reward -LPIPS")
    _run_arguments(d, "tinysr/configs/search_discriminator_demo.yaml", "reinforce (default, the paper's) or random")
    d.set_defaults(func=cmd_search_discriminator)

    t = ss.add_parser("trilevel", help="differentiable trilevel search (network, cell and kernel levels) with an "
                      "expected-latency or Mult-Adds term; derives a trilevel genotype")
    t.add_argument("--config", required=True, help="trilevel config YAML/TOML (see tinysr/configs/search_trilevel_demo.yaml)")
    t.add_argument("--resume", action="store_true", help="continue the run in the config's run_dir after a stop or kill")
    t.add_argument("--run-dir", help="override the config's run_dir")
    t.add_argument("--threads", type=int, help="torch threads")
    t.add_argument("--json", help="also write the derived network's record here")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_search_trilevel)

    sh = ss.add_parser("show", help="leaderboard of a run, with its Pareto-front and reward plots (a trilevel "
                       "run: its epochs, derived network and architecture-weight plot)")
    sh.add_argument("run", help="the run folder (its run.json names the study)")
    sh.add_argument("--top", type=int, default=10, help="rows in the leaderboard (default 10)")
    sh.add_argument("--plots", help="folder for pareto.png and reward.png (default: the run folder)")
    sh.add_argument("--no-plots", action="store_true")
    sh.add_argument("--json", action="store_true", help="machine-readable summary")
    sh.set_defaults(func=cmd_search_show)

    e = ss.add_parser("export", help="a candidate as a checkpoint for tinysr train --init-from / export / lut predict")
    e.add_argument("run")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--best", action="store_true", help="the evaluated candidate with the highest reward")
    which.add_argument("--trial", type=int, help="this trial number")
    e.add_argument("--weights", choices=["trial", "store"], default="trial",
                   help="trial: the candidate's proxy-trained weights (default); store: initialised from the "
                   "run's final weight store (the paper's start for the final model)")
    e.add_argument("-o", "--output", required=True)
    e.set_defaults(func=cmd_search_export)

    f = ss.add_parser("fidelity", help="proxy fidelity: train N evaluated candidates of generator runs with one "
                      "recipe and rank-correlate proxy PSNR with trained PSNR (Kendall tau, Spearman)")
    f.add_argument("runs", nargs="+", help="generator search run folders sharing one proxy task")
    f.add_argument("-n", "--candidates", type=int, default=8,
                   help="candidates to train, spread over each run's proxy-PSNR range (default 8)")
    f.add_argument("--recipe", help="the tinysr train config every candidate trains with "
                   "(e.g. tinysr/configs/pareto_x4.yaml; default: tinysr train's defaults)")
    f.add_argument("--steps", type=int, help="shorten the recipe to this many steps (the same for all)")
    f.add_argument("--data", nargs="+", required=True, help="benchmark folders to score the trained networks on")
    f.add_argument("--workers", type=int, default=1, help="candidates trained at once (default 1)")
    f.add_argument("-o", "--out", required=True, help="the study's folder (rerun the command to resume it)")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_search_fidelity)


def _run_arguments(p, demo: str, strategies: str) -> None:
    """The options every ``tinysr search KIND`` run command takes."""
    p.add_argument("--config", required=True, help=f"search config YAML/TOML (see {demo})")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the config's run_dir after a stop or kill")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument("--strategy", help=strategies)
    p.add_argument("--backend", choices=["local", "ray"], help="local process pool (default) or a Ray cluster")
    p.add_argument("--workers", type=int, help="parallel evaluations (local: 0 runs them in this process)")
    p.add_argument("--threads", type=int, help="torch threads per evaluation")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--connect-timeout", type=float, help="seconds the Ray address has to answer (default 20)")
    p.add_argument("--evaluations", type=int, help="override the number of candidates to train and score")
    p.add_argument("--json", help="also write the run's summary here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _run(args, config_class, run_search) -> tuple[dict, Path]:
    """Load the config, apply the command-line overrides, run (or resume) the search."""
    cfg = config_class.from_file(args.config)
    if args.strategy is not None and args.resume and args.strategy != cfg.strategy:
        raise ValueError("--strategy cannot change when resuming: the run's strategy state belongs to "
                         f"{cfg.strategy}")
    cfg = cfg.replace(run_dir=args.run_dir, strategy=args.strategy, backend=args.backend, workers=args.workers,
                      threads=args.threads, address=args.address, connect_timeout=args.connect_timeout,
                      evaluations=args.evaluations)
    return run_search(cfg, resume=args.resume, progress=not args.quiet), Path(cfg.run_dir)


def _finish(args, summary: dict, run: Path, plots: list) -> None:
    print(f"plots: {', '.join(str(p) for p in plots)}; leaderboard: tinysr search show {run}; "
          f"dashboard: optuna-dashboard {summary.get('storage') or 'sqlite:///' + str(run / 'study.db')}")
    if args.json:
        from tinysr.imageio import atomic_write

        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))


def cmd_search_generator(args) -> int:
    from tinysr.search.generator.config import SearchConfig
    from tinysr.search.generator.driver import run_search
    from tinysr.search.core.report import plot_pareto, plot_reward

    summary, run = _run(args, SearchConfig, run_search)
    plots = [plot_pareto(run, run / "pareto.png"), plot_reward(run, run / "reward.png")]
    best = summary["best"]
    print(f"{summary['evaluated']} evaluated, {summary['rejected']} rejected, {summary['failed']} failed, "
          f"{summary['interrupted']} interrupted (evaluated again) of {summary['candidates']} candidates; driver {summary['driver_s_per_evaluation']:.3f} s per evaluation, "
          f"evaluation {summary['eval_s_mean']:.2f} s mean")
    if best:
        lat = "".join(f", {k} {v:.2f} ms" for k, v in best["latency_ms"].items())
        print(f"best: candidate {best['candidate']}  R {best['reward']:.4f}  PSNR {best['psnr']:.3f} dB{lat}\n"
              f"      {best['genotype']}")
    _finish(args, summary, run, plots)
    return 0


def cmd_search_discriminator(args) -> int:
    from tinysr.search.discriminator.config import DiscriminatorSearchConfig
    from tinysr.search.discriminator.search import run_discriminator_search
    from tinysr.search.core.report import plot_reward

    summary, run = _run(args, DiscriminatorSearchConfig, run_discriminator_search)
    plots = [plot_reward(run, run / "reward.png")]
    best = summary["best"]
    print(f"{summary['evaluated']} evaluated, {summary['failed']} failed, {summary['interrupted']} interrupted "
          f"(evaluated again) of {summary['candidates']} candidates in "
          f"{summary['wall_s']:.0f} s; evaluation {summary['eval_s_mean']:.2f} s mean")
    if best:
        print(f"best: candidate {best['candidate']}  R {best['reward']:.4f}  LPIPS {best['lpips']:.4f}  "
              f"PSNR {best['psnr']:.3f} dB\n      {best['genotype']}")
    _finish(args, summary, run, plots)
    return 0


def cmd_search_trilevel(args) -> int:
    from tinysr.search.trilevel import TrilevelConfig, run_trilevel

    cfg = TrilevelConfig.from_file(args.config).replace(run_dir=args.run_dir, threads=args.threads)
    r = run_trilevel(cfg, resume=args.resume, progress=not args.quiet)
    run = Path(cfg.run_dir)
    lat = (f", {r['predicted_latency_ms']:.2f} ms predicted ({r['profile']}, {r['latency_input_size'][0]}x"
           f"{r['latency_input_size'][1]})" if r["predicted_latency_ms"] is not None else "")
    print(f"derived after {r['steps']} steps: {r['genotype']}\n  {r['params']} params, "
          f"{r['mult_adds'] / 1e9:.3f} G Mult-Adds at {r['input_size'][0]}x{r['input_size'][1]}{lat}; "
          f"supernet validation PSNR {r['supernet_val_psnr']:.3f} dB")
    print(f"train it: tinysr train --model trilevel_x{r['scale']} --genotype \"{r['genotype']}\" ...; "
          f"plots: {run / 'arch_weights.png'}, {run / 'derived.png'}; log: {run / 'log.csv'}")
    if args.json:
        from tinysr.imageio import atomic_write

        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(r, indent=2)))
    return 0


def cmd_search_show(args) -> int:
    from tinysr.search.trilevel import format_run, is_trilevel_run, plot_arch_weights, plot_derived

    if is_trilevel_run(args.run):  # a gradient-based run: its epochs and derived network, not a leaderboard
        print(format_run(args.run))
        run = Path(args.run)
        history, result = run / "history.json", run / "result.json"
        if not args.no_plots:
            out = Path(args.plots or args.run)
            out.mkdir(parents=True, exist_ok=True)
            plots = []
            if history.is_file():
                n_feats = json.loads((run / "run.json").read_text())["config"].get("n_feats")
                plots.append(plot_arch_weights(json.loads(history.read_text()), out / "arch_weights.png", n_feats))
            if result.is_file():
                plots.append(plot_derived(json.loads(result.read_text()), out / "derived.png"))
            if plots:
                print("plots: " + ", ".join(str(p) for p in plots))
        return 0
    from tinysr.search.core.report import format_leaderboard, plot_pareto, plot_reward, summarise  # Optuna's run store

    summary = summarise(args.run)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_leaderboard(summary, top=args.top))
    if not args.no_plots:
        out = Path(args.plots or args.run)
        out.mkdir(parents=True, exist_ok=True)
        paths = [] if summary["kind"] == "discriminator" else [plot_pareto(summary, out / "pareto.png")]
        paths.append(plot_reward(summary, out / "reward.png"))
        if not args.json:
            print("plots: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_search_export(args) -> int:
    from tinysr.search.core.report import export_checkpoint

    meta = export_checkpoint(args.run, args.output, trial=None if args.best else args.trial, weights=args.weights)
    meta = meta["search"]
    if meta.get("kind") == "discriminator":
        print(f"{args.output}: trial {meta['trial']} (candidate {meta['candidate']}), fine-tuned discriminator, "
              f"reward {meta['reward']:.4f} (LPIPS {meta['lpips']:.4f}, PSNR {meta['psnr']:.3f} dB)\n"
              f"  {meta['genotype']}")
        return 0
    lat = "".join(f", {k} {v:.2f} ms" for k, v in (meta.get("latency_ms") or {}).items())
    print(f"{args.output}: trial {meta['trial']} (candidate {meta['candidate']}), {meta['weights']} weights, "
          f"proxy PSNR {meta['psnr']:.3f} dB, {meta['mult_adds'] / 1e9:.3f} G Mult-Adds{lat}\n  {meta['genotype']}")
    return 0


def cmd_search_fidelity(args) -> int:
    from tinysr.search.generator.fidelity import run_fidelity

    record = run_fidelity(args.runs, args.out, args.data, n=args.candidates, recipe=args.recipe, steps=args.steps,
                          workers=args.workers, progress=not args.quiet)
    for name, r in record["correlation"].items():
        print(f"{name}: Kendall tau-b {r['kendall_tau']:.3f}, Spearman rho {r['spearman_rho']:.3f} "
              f"({r['n']} networks)")
    print(f"report: {Path(args.out) / 'fidelity.md'}, {Path(args.out) / 'fidelity.png'}")
    return 0
