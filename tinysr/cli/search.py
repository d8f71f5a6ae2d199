"""``tinysr search``: run a generator search, look at a run, export a candidate (thin over tinysr.search)."""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    s = sub.add_parser("search", help="architecture search: run it, look at a run, export a candidate")
    ss = s.add_subparsers(dest="search_command", required=True)

    g = ss.add_parser("generator", help="search a generator cell (TPSR space) under Mult-Adds and latency budgets")
    g.add_argument("--config", required=True, help="search config YAML/TOML (see tinysr/configs/search_demo.yaml)")
    g.add_argument("--resume", action="store_true", help="continue the run in the config's run_dir after a stop or kill")
    g.add_argument("--run-dir", help="override the config's run_dir")
    g.add_argument("--strategy", help="reinforce (default, the paper's), random, nsga2 or tpe (multi-objective)")
    g.add_argument("--backend", choices=["local", "ray"], help="local process pool (default) or a Ray cluster")
    g.add_argument("--workers", type=int, help="parallel evaluations (local: 0 runs them in this process)")
    g.add_argument("--threads", type=int, help="torch threads per evaluation")
    g.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    g.add_argument("--evaluations", type=int, help="override the number of candidates to train and score")
    g.add_argument("--json", help="also write the run's summary here")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_search_generator)

    sh = ss.add_parser("show", help="leaderboard of a run, with its Pareto-front and reward plots")
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


def cmd_search_generator(args) -> int:
    from tinysr.search.config import SearchConfig
    from tinysr.search.driver import run_search
    from tinysr.search.report import plot_pareto, plot_reward

    cfg = SearchConfig.from_file(args.config)
    if args.strategy is not None and args.resume and args.strategy != cfg.strategy:
        raise ValueError("--strategy cannot change when resuming: the run's strategy state belongs to "
                         f"{cfg.strategy}")
    cfg = cfg.replace(run_dir=args.run_dir, strategy=args.strategy, backend=args.backend, workers=args.workers,
                      threads=args.threads, address=args.address, evaluations=args.evaluations)
    summary = run_search(cfg, resume=args.resume, progress=not args.quiet)
    run = Path(cfg.run_dir)
    plots = [plot_pareto(run, run / "pareto.png"), plot_reward(run, run / "reward.png")]
    best = summary["best"]
    print(f"{summary['evaluated']} evaluated, {summary['rejected']} rejected, {summary['failed']} failed "
          f"of {summary['candidates']} candidates; driver {summary['driver_s_per_evaluation']:.3f} s per evaluation, "
          f"evaluation {summary['eval_s_mean']:.2f} s mean")
    if best:
        lat = "".join(f", {k} {v:.2f} ms" for k, v in best["latency_ms"].items())
        print(f"best: candidate {best['candidate']}  R {best['reward']:.4f}  PSNR {best['psnr']:.3f} dB{lat}\n"
              f"      {best['genotype']}")
    print(f"plots: {', '.join(str(p) for p in plots)}; leaderboard: tinysr search show {run}; "
          f"dashboard: optuna-dashboard {summary.get('storage') or 'sqlite:///' + str(run / 'study.db')}")
    if args.json:
        from tinysr.imageio import atomic_write

        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    return 0


def cmd_search_show(args) -> int:
    from tinysr.search.report import format_leaderboard, plot_pareto, plot_reward, summarise

    summary = summarise(args.run)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_leaderboard(summary, top=args.top))
    if not args.no_plots:
        out = Path(args.plots or args.run)
        out.mkdir(parents=True, exist_ok=True)
        paths = [plot_pareto(summary, out / "pareto.png"), plot_reward(summary, out / "reward.png")]
        if not args.json:
            print("plots: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_search_export(args) -> int:
    from tinysr.search.report import export_checkpoint

    meta = export_checkpoint(args.run, args.output, trial=None if args.best else args.trial, weights=args.weights)
    meta = meta["search"]
    lat = "".join(f", {k} {v:.2f} ms" for k, v in (meta.get("latency_ms") or {}).items())
    print(f"{args.output}: trial {meta['trial']} (candidate {meta['candidate']}), {meta['weights']} weights, "
          f"proxy PSNR {meta['psnr']:.3f} dB, {meta['mult_adds'] / 1e9:.3f} G Mult-Adds{lat}\n  {meta['genotype']}")
    return 0
