"""Reading a search run back: leaderboard, Pareto front, plots and the export of a found network.

Everything here reads a run folder written through :mod:`tinysr.search.core.run_store` (and, for
``weights="store"`` exports, its ``checkpoint.pt``); nothing writes to the run.

* :func:`summarise`: a JSON-ready summary: the run meta, counts (candidates, evaluated,
  rejected and by which constraint, failed, running), the best evaluated candidate (highest
  reward; ties: lowest candidate number), the leaderboard, the Pareto front (PSNR up, latency of
  every target down; Mult-Adds down when the run has no latency target) and ``within_budget``.
* :func:`format_leaderboard`: the summary as a text table.
* :func:`plot_pareto` / :func:`plot_reward`: PNG plots (written atomically).
* :func:`export_checkpoint`: a trial's network as a standard tinysr checkpoint, for
  ``tinysr eval`` / ``tinysr train --init-from`` / ``tinysr export --model`` /
  ``tinysr lut predict``.

A discriminator search's run (meta ``kind: discriminator``) reads back the same way: no limits and
no Pareto front (no Mult-Adds or latency), rows with the candidate's ``lpips``, a leaderboard by
reward (-LPIPS), and exports of its fine-tuned discriminators (``gan: {discriminator: PATH}``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from tinysr.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from tinysr.genotype import Genotype
from tinysr.models.discriminators import DiscriminatorGenotype
from tinysr.plotting import pyplot, save_png

from tinysr.search.core.run_store import (CHECKPOINT_FILE, CHECKPOINT_FORMAT, TrialRecord, open_run, records_sorted,
                        trial_records)

MULT_ADDS_AXIS = "mult_adds"


# ---------------------------------------------------------------- helpers
def _targets(meta: Mapping, records: Sequence[TrialRecord]) -> list[str]:
    """Latency target names: the run's budgets first, then any other target a trial recorded."""
    out = list((meta.get("budgets") or {}).keys())
    for r in records:
        for t in r.latency_ms:
            if t not in out:
                out.append(t)
    return out


def _axis_value(row: Mapping, axis: str) -> float:
    """A row's value on a Pareto axis (lower is better); missing figures are +inf."""
    v = row.get("mult_adds") if axis == MULT_ADDS_AXIS else (row.get("latency_ms") or {}).get(axis)
    return math.inf if v is None else float(v)


def _psnr(row: Mapping) -> float:
    return -math.inf if row.get("psnr") is None else float(row["psnr"])


def non_dominated(rows: Sequence[Mapping], axes: Sequence[str]) -> list[Mapping]:
    """Rows not dominated in (PSNR up, every axis down): no other row is at least as good on all
    and strictly better on one. Equal points are all kept. Sorted by the first axis, then PSNR down."""
    points = [(_psnr(r), [_axis_value(r, a) for a in axes]) for r in rows]
    # a dominator has at least the PSNR: scan candidates in PSNR order and stop below it
    order = sorted(range(len(points)), key=lambda k: (-points[k][0], sum(points[k][1])))
    front = []
    for i, (p, lat) in enumerate(points):
        dominated = False
        for j in order:
            q, other = points[j]
            if q < p:
                break
            if j != i and all(o <= v for o, v in zip(other, lat)) and (q > p or any(o < v for o, v in zip(other, lat))):
                dominated = True
                break
        if not dominated:
            front.append(rows[i])
    return sorted(front, key=lambda r: ([_axis_value(r, a) for a in axes], -_psnr(r)))


def _row(rank: int, r: TrialRecord) -> dict:
    return {"rank": rank, "trial": r.number, "candidate": r.candidate, "round": r.round, "genotype": r.genotype,
            "reward": r.reward, "psnr": r.psnr, "lpips": r.user_attrs.get("lpips"), "values": r.values,
            "mult_adds": r.mult_adds,
            "mult_adds_g": None if r.mult_adds is None else r.mult_adds / 1e9, "latency_ms": dict(r.latency_ms),
            "latency_predicted_ms": dict(r.latency_predicted_ms), "latency_measured_ms": dict(r.latency_measured_ms),
            "weights": r.weights, "train_s": r.train_s, "val_s": r.val_s, "eval_s": r.eval_s,
            "datetime_complete": None if r.datetime_complete is None else r.datetime_complete.isoformat()}


def _rejected_by(r: TrialRecord, budgets: Mapping, max_mult_adds) -> list[str]:
    """Which constraints rejected ``r``: its figures over a limit, confirmed by the reason text when there is one."""
    why, text = [], r.rejected
    if max_mult_adds is not None and r.mult_adds is not None and r.mult_adds > float(max_mult_adds):
        if text is None or "Mult-Adds" in text:
            why.append("mult_adds")
    for t, budget in budgets.items():
        ms = r.latency_ms.get(t)
        if ms is not None and ms > float(budget) and (text is None or f"latency {t} " in text):
            why.append(f"latency:{t}")
    return why or ["other"]


def _over_budget(row: Mapping, budgets: Mapping, max_mult_adds) -> list[str]:
    out = []
    if max_mult_adds is not None:
        ma = row.get("mult_adds")
        if ma is None:
            out.append("Mult-Adds unknown")
        elif ma > float(max_mult_adds):
            out.append(f"Mult-Adds {ma / 1e9:.4f} G over {float(max_mult_adds) / 1e9:.4f} G")
    for t, budget in budgets.items():
        ms = (row.get("latency_ms") or {}).get(t)
        if ms is None:
            out.append(f"latency {t} unknown")
        elif ms > float(budget):
            out.append(f"latency {t} {ms:.3f} ms over {float(budget):.3f} ms")
    return out


# ---------------------------------------------------------------- summary
def summarise(run_dir: str | os.PathLike) -> dict:
    """JSON-ready summary of a run (see the module doc).

    Keys: ``run``, ``storage``, ``study_name``, ``kind`` (generator | discriminator), ``meta``,
    ``objectives``, ``directions``,
    ``budgets``, ``max_mult_adds``, ``targets``, ``counts`` (``trials``, ``candidates``
    (evaluated + rejected), ``evaluated``, ``rejected``, ``rejected_by`` (``{"mult_adds": n,
    "latency:<target>": n, "other": n}``; a candidate over several limits counts under each),
    ``failed`` (evaluation errors), ``interrupted`` (stopped or killed before they finished; evaluated
    again on resume), ``running`` (running + waiting)), ``best`` (a leaderboard row or None),
    ``leaderboard`` (every evaluated trial, best first), ``rejected_candidates`` (candidate
    numbers), ``pareto_axes``, ``pareto`` (rows of the front over PSNR and all axes),
    ``pareto_by_axis`` (``{axis: [trial numbers]}``, the 2-D front of each plot panel),
    ``within_budget`` (every evaluated trial within every budget and the Mult-Adds limit; True
    when nothing was evaluated) and ``over_budget`` (``[{trial, candidate, why}]``). A
    discriminator run has no figures: its Pareto keys are empty and its rows carry ``lpips``.
    """
    info, study = open_run(run_dir)
    meta = info.meta
    records = trial_records(study)
    budgets = {str(k): float(v) for k, v in (meta.get("budgets") or {}).items()}
    max_ma = meta.get("max_mult_adds")
    targets = _targets(meta, records)
    kind = meta.get("kind", "generator")
    axes = [] if kind == "discriminator" else targets or [MULT_ADDS_AXIS]  # no Pareto front without figures

    by_state: dict[str, list[TrialRecord]] = {}
    for r in records:
        by_state.setdefault(r.state, []).append(r)
    rejected = by_state.get("rejected", [])
    rejected_by: dict[str, int] = {}
    for r in rejected:
        for why in _rejected_by(r, budgets, max_ma):
            rejected_by[why] = rejected_by.get(why, 0) + 1

    board = [_row(i + 1, r) for i, r in enumerate(records_sorted(records))]
    front = non_dominated(board, axes) if axes else []
    by_axis = {a: [r["trial"] for r in non_dominated(board, [a])] for a in axes}
    over = [{"trial": row["trial"], "candidate": row["candidate"], "why": why}
            for row in board if (why := _over_budget(row, budgets, max_ma))]
    evaluated = len(by_state.get("complete", []))
    return {
        "run": str(info.run_dir), "storage": info.storage, "study_name": info.study_name, "kind": kind, "meta": meta,
        "objectives": list(meta.get("objectives") or [n for n in (study.metric_names or [])]),
        "directions": [d.name.lower() for d in study.directions],
        "budgets": budgets, "max_mult_adds": None if max_ma is None else float(max_ma), "targets": targets,
        "counts": {"trials": len(records), "candidates": evaluated + len(rejected), "evaluated": evaluated,
                   "rejected": len(rejected), "rejected_by": rejected_by,
                   "failed": len(by_state.get("failed", [])), "interrupted": len(by_state.get("interrupted", [])),
                   "running": len(by_state.get("running", [])) + len(by_state.get("waiting", []))},
        "best": board[0] if board else None,
        "leaderboard": board,
        "rejected_candidates": sorted(r.candidate if r.candidate is not None else r.number for r in rejected),
        "pareto_axes": axes,
        "pareto": front,
        "pareto_by_axis": by_axis,
        "within_budget": not over,
        "over_budget": over,
    }


def _summary(run_dir_or_summary) -> dict:
    if isinstance(run_dir_or_summary, Mapping):
        return dict(run_dir_or_summary)
    return summarise(run_dir_or_summary)


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _table(header: list[str], table: list[list[str]]) -> list[str]:
    widths = [max(len(c[i]) for c in table + [header]) for i in range(len(header) - 1)]
    return ["  ".join(c.rjust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1] for cells in [header] + table]


def _discriminator_leaderboard(summary: Mapping, top: int) -> str:
    meta, counts = summary.get("meta") or {}, summary["counts"]
    gen = meta.get("generator") or {}
    lines = [f"discriminator search run {summary['run']} (study {summary['study_name']}, strategy "
             f"{meta.get('strategy', '?')}, reward -LPIPS-{meta.get('lpips_net', 'vgg')}, best of the last 3 "
             f"evaluations)",
             f"generator {gen.get('spec', '?')} fine-tuned with each candidate; evaluated {counts['evaluated']}, "
             f"failed {counts['failed']}, interrupted {counts['interrupted']}, running {counts['running']}",
             f"reference tpsr_d: {(meta.get('reference') or {}).get('genotype', '-')}"]
    board = summary.get("leaderboard") or []
    if not board:
        lines.append("no evaluated candidate yet")
        return "\n".join(lines)
    header = ["rank", "trial", "cand", "reward", "LPIPS", "PSNR", "genotype"]
    table = [[str(r["rank"]), str(r["trial"]), _fmt(r["candidate"], "d"), _fmt(r["reward"], ".4f"),
              _fmt(r.get("lpips"), ".4f"), _fmt(r["psnr"], ".3f"), r["genotype"] or "-"]
             for r in board[:max(int(top), 0)]]
    lines += _table(header, table)
    if len(board) > top:
        lines.append(f"({len(board) - top} more evaluated candidate(s))")
    return "\n".join(lines)


def format_leaderboard(summary: Mapping, top: int = 10) -> str:
    """The summary as text: header lines (run, counts, budgets) and the ``top`` evaluated candidates."""
    if summary.get("kind") == "discriminator":
        return _discriminator_leaderboard(summary, top)
    meta, counts = summary.get("meta") or {}, summary["counts"]
    targets, budgets, max_ma = summary.get("targets") or [], summary.get("budgets") or {}, summary.get("max_mult_adds")
    lines = [f"search run {summary['run']} (study {summary['study_name']}, strategy {meta.get('strategy', '?')}, "
             f"objectives {', '.join(summary.get('objectives') or [])})"]
    rej = ", ".join(f"{k} {v}" for k, v in sorted(counts["rejected_by"].items()))
    lines.append(f"candidates {counts['candidates']}: evaluated {counts['evaluated']}, rejected {counts['rejected']}"
                 + (f" ({rej})" if rej else "") + f"; failed {counts['failed']}, interrupted {counts['interrupted']}, "
                 f"running {counts['running']}")
    limits = []
    if max_ma is not None:
        limits.append(f"Mult-Adds <= {max_ma / 1e9:.4f} G")
    limits += [f"{t} <= {budgets[t]:.3f} ms" for t in targets if t in budgets]
    verdict = ("every evaluated candidate within budget" if summary["within_budget"]
               else f"{len(summary['over_budget'])} evaluated candidate(s) over budget")
    lines.append(f"limits: {'; '.join(limits) if limits else 'none'} ({verdict})")
    ref = meta.get("reference") or {}
    if ref:
        parts = [f"{ref['mult_adds'] / 1e9:.4f} G"] if ref.get("mult_adds") is not None else []
        parts += [f"{t} {ms:.3f} ms" for t, ms in (ref.get("latency_ms") or {}).items()]
        lines.append(f"reference TPSR cell: {', '.join(parts)}")
    board = summary.get("leaderboard") or []
    if not board:
        lines.append("no evaluated candidate yet")
        return "\n".join(lines)
    header = ["rank", "trial", "cand", "reward", "PSNR", "MultAdds(G)"] + [f"{t}(ms)" for t in targets] + ["genotype"]
    table = []
    measured_any = False
    for row in board[:max(int(top), 0)]:
        cells = [str(row["rank"]), str(row["trial"]), _fmt(row["candidate"], "d"), _fmt(row["reward"], ".4f"),
                 _fmt(row["psnr"], ".3f"), _fmt(row["mult_adds_g"], ".4f")]
        for t in targets:
            ms = row["latency_ms"].get(t)
            mark = "*" if t in row["latency_measured_ms"] else ""
            measured_any |= bool(mark)
            cells.append(_fmt(ms, ".3f") + mark)
        cells.append(row["genotype"] or "-")
        table.append(cells)
    lines += _table(header, table)
    if measured_any:
        lines.append("* measured on the device in the loop; other latencies predicted by the latency table")
    if len(board) > top:
        lines.append(f"({len(board) - top} more evaluated candidate(s))")
    return "\n".join(lines)


# ---------------------------------------------------------------- plots
def plot_pareto(run_dir_or_summary, png: str | os.PathLike) -> Path:
    """PSNR against latency (one panel per latency target; Mult-Adds when the run has none),
    points coloured by Mult-Adds, the Pareto front as a step line, the budget dashed and the
    reference TPSR cell dotted at its (predicted) latency; written atomically."""
    s = _summary(run_dir_or_summary)
    plt = pyplot()
    import matplotlib.transforms as mtransforms

    axes_names = s.get("pareto_axes") or [MULT_ADDS_AXIS]
    board = s.get("leaderboard") or []
    ref = (s.get("meta") or {}).get("reference") or {}
    fig, axs = plt.subplots(1, len(axes_names), figsize=(5.6 * len(axes_names), 5.0), squeeze=False)
    ma_values = [r["mult_adds_g"] for r in board if r.get("mult_adds_g") is not None]
    vmin, vmax = (min(ma_values), max(ma_values)) if ma_values else (0.0, 1.0)
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    best = s.get("best")
    for ax, axis in zip(axs[0], axes_names):
        def x_of(row):
            v = _axis_value(row, axis)
            return v / 1e9 if axis == MULT_ADDS_AXIS and math.isfinite(v) else v

        pts = [(x_of(r), r["psnr"], r.get("mult_adds_g")) for r in board
               if r.get("psnr") is not None and math.isfinite(x_of(r))]
        xlabel = "Mult-Adds (G)" if axis == MULT_ADDS_AXIS else f"latency {axis} (ms)"
        ax.set(xlabel=xlabel, ylabel="validation PSNR (dB)", title=f"PSNR vs {xlabel}")
        if pts:
            xs, ys, cs = zip(*pts)
            sc = ax.scatter(xs, ys, c=[c if c is not None else vmin for c in cs], cmap="viridis", vmin=vmin,
                            vmax=vmax, s=22, alpha=0.85, edgecolors="none", label="evaluated")
            fig.colorbar(sc, ax=ax, label="Mult-Adds (G)")
            wanted = set((s.get("pareto_by_axis") or {}).get(axis, []))
            front = sorted(((x_of(r), r["psnr"]) for r in board if r["trial"] in wanted and r.get("psnr") is not None
                            and math.isfinite(x_of(r))), key=lambda p: (p[0], -p[1]))
            if front:
                fx, fy = zip(*front)
                ax.step(fx, fy, where="post", color="tab:red", lw=1.4, label="Pareto front")
            if best is not None and best.get("psnr") is not None and math.isfinite(x_of(best)):
                ax.scatter([x_of(best)], [best["psnr"]], marker="*", s=180, color="gold", edgecolors="black",
                           zorder=5, label=f"best reward (trial {best['trial']})")
        else:
            ax.text(0.5, 0.5, "no evaluated candidate yet", ha="center", va="center", transform=ax.transAxes)
        if axis == MULT_ADDS_AXIS:
            limit = s.get("max_mult_adds")
            limit = None if limit is None else limit / 1e9
            ref_x = None if ref.get("mult_adds") is None else ref["mult_adds"] / 1e9
            unit = "G"
        else:
            limit = (s.get("budgets") or {}).get(axis)
            ref_x = (ref.get("latency_ms") or {}).get(axis)
            unit = "ms"
        if limit is not None:
            ax.axvline(limit, ls="--", color="tab:orange", lw=1.3, label=f"budget {limit:.3f} {unit}")
        if ref_x is not None:
            ax.axvline(ref_x, ls=":", color="black", lw=1.3,
                       label=f"TPSR cell {ref_x:.3f} {unit}" + (" (predicted)" if unit == "ms" else "")
                       + "; PSNR not from this run")
            trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
            ax.plot([ref_x], [0.97], marker="v", color="black", transform=trans, clip_on=False)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return save_png(fig, png)


def plot_reward(run_dir_or_summary, png: str | os.PathLike) -> Path:
    """Reward of every evaluated candidate against its candidate number, the running best, and the
    rejected candidates as ticks along the bottom (PSNR when the run records no reward); atomic PNG."""
    s = _summary(run_dir_or_summary)
    plt = pyplot()
    import matplotlib.transforms as mtransforms
    from matplotlib.ticker import MaxNLocator

    board = s.get("leaderboard") or []
    use_reward = any(r.get("reward") is not None for r in board)
    key, ylabel = ("reward", "reward") if use_reward else ("psnr", "validation PSNR (dB)")
    pts = sorted((r["candidate"] if r.get("candidate") is not None else r["trial"], r[key])
                 for r in board if r.get(key) is not None)
    fig, ax = plt.subplots(figsize=(8, 4))
    if pts:
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, s=14, alpha=0.7, label=f"evaluated ({len(pts)})")
        run, best = [], -math.inf
        for y in ys:
            best = max(best, y)
            run.append(best)
        ax.step(xs, run, where="post", color="tab:red", lw=1.5, label="running best")
    else:
        ax.text(0.5, 0.5, "no evaluated candidate yet", ha="center", va="center", transform=ax.transAxes)
    rej = s.get("rejected_candidates") or []
    if rej:
        trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(rej, [0.02] * len(rej), ls="none", marker="|", ms=10, color="tab:gray", transform=trans,
                label=f"rejected ({len(rej)})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="candidate", ylabel=ylabel, title=f"search {Path(s['run']).name}: {ylabel} per candidate")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_png(fig, png)


# ---------------------------------------------------------------- export
def best_trial(run_dir: str | os.PathLike) -> TrialRecord:
    """The evaluated trial of highest reward (ties: lowest candidate number); ``ValueError`` when none."""
    info, study = open_run(run_dir)
    ranked = records_sorted(trial_records(study, ("complete",)))
    if not ranked:
        raise ValueError(f"{info.run_dir}: no evaluated candidate yet")
    return ranked[0]


def _find(run_dir: Path, records: Sequence[TrialRecord], trial: int) -> TrialRecord:
    for r in records:
        if r.number == trial:
            return r
    span = f"trials 0..{records[-1].number}" if records else "no trials"
    raise ValueError(f"{run_dir}: no trial {trial} ({span})")


def _not_evaluated(run_dir: Path, r: TrialRecord) -> str:
    what = {"rejected": "rejected before training", "failed": "failed", "interrupted": "interrupted",
            "running": "still running", "waiting": "waiting to start"}[r.state]
    detail = {"rejected": r.rejected, "failed": r.error, "interrupted": r.user_attrs.get("reason")}.get(r.state)
    cand = f" (candidate {r.candidate})" if r.candidate is not None else ""
    return f"{run_dir}: trial {r.number}{cand} was {what}, not evaluated" + (f": {detail}" if detail else "")


def _same_genotype(a: str, b: str) -> bool:
    if "|" in a or "|" in b:  # a network genotype (tpsr_plus): a bare cell is the paper's skeleton
        from tinysr.genotype import NetworkGenotype

        return NetworkGenotype.parse(a) == NetworkGenotype.parse(b)
    parse = DiscriminatorGenotype.parse if ">" in a else Genotype.parse  # OP>ROP blocks vs OP@SRC nodes
    return str(parse(a)) == str(parse(b))



def export_checkpoint(run_dir: str | os.PathLike, out: str | os.PathLike, trial: int | None = None,
                      weights: str = "trial") -> dict:
    """Write trial ``trial``'s network (None: the best) to ``out`` as a tinysr checkpoint; returns its meta.

    ``weights="trial"``: the candidate's proxy-trained weights (``RUN/<weights>``);
    ``weights="store"``: ``CellSR`` of its genotype initialised from the final weight store in
    ``RUN/checkpoint.pt`` (where the paper's final training starts). The checkpoint's meta holds
    ``"search": {run, study_name, trial, candidate, round, genotype, psnr, reward, mult_adds,
    latency_ms, latency_measured_ms, weights, source}`` (``psnr`` / ``reward``: the candidate's
    proxy evaluation in the search). One-line errors: no such trial, trial not evaluated (with its
    state and reason), weights missing.
    """
    if weights not in ("trial", "store"):
        raise ValueError(f"weights must be 'trial' or 'store', got {weights!r}")
    info, study = open_run(run_dir)
    run = info.run_dir
    if trial is None:
        ranked = records_sorted(trial_records(study, ("complete",)))
        if not ranked:
            raise ValueError(f"{run}: no evaluated candidate yet")
        rec = ranked[0]
    else:
        rec = _find(run, trial_records(study), int(trial))
        if rec.state != "complete":
            raise ValueError(_not_evaluated(run, rec))
    if not rec.genotype:
        raise ValueError(f"{run}: trial {rec.number} records no genotype")
    meta_in: dict = {}
    if weights == "trial":
        if not rec.weights:
            raise ValueError(f"{run}: trial {rec.number} records no weights file")
        source = rec.weights
        path = run / source
        if not path.is_file():
            raise FileNotFoundError(f"{path}: weights of trial {rec.number} missing")
        ckpt = read_checkpoint(path)
        model = model_from_checkpoint(ckpt, str(path))
        have = getattr(model, "genotype", None)
        if have is not None and "|" in rec.genotype and hasattr(model, "network"):
            have = model.network
        if have is None or not _same_genotype(str(have), rec.genotype):
            raise ValueError(f"{path}: holds {have or type(model).__name__}, not trial {rec.number}'s "
                             f"genotype {rec.genotype}")
        meta_in = dict(ckpt.get("meta") or {}) if isinstance(ckpt, dict) else {}
    elif info.meta.get("kind") == "discriminator":
        raise ValueError(f"{run}: a discriminator search shares no weights (no weight store): export the trial's "
                         "fine-tuned weights (--weights trial)")
    else:
        source = CHECKPOINT_FILE
        path = run / source
        if not path.is_file():
            raise FileNotFoundError(f"{path}: search checkpoint (the weight store) missing")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for corrupt files
            msg = str(e).splitlines()[0] if str(e) else ""
            raise ValueError(f"{path}: not a readable search checkpoint ({type(e).__name__}: {msg})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "store" not in state:
            raise ValueError(f"{path}: not a search checkpoint with a weight store ({CHECKPOINT_FORMAT})")
        from tinysr.search.generator.weight_store import WeightStore  # the generator search's store

        store = WeightStore.from_state(state["store"], str(path))
        from tinysr.models.tpsr import CellSR

        model = store.init_model(CellSR.of(rec.genotype, store.scale, store.n_feats))
    search = {"run": str(run), "study_name": info.study_name, "trial": rec.number, "candidate": rec.candidate,
              "round": rec.round, "genotype": (str(model.network) if "|" in rec.genotype else str(model.genotype)),
              "psnr": rec.psnr, "reward": rec.reward,
              "mult_adds": rec.mult_adds, "latency_ms": dict(rec.latency_ms),
              "latency_measured_ms": dict(rec.latency_measured_ms), "weights": weights, "source": source}
    if info.meta.get("kind") == "discriminator":
        search.update(kind="discriminator", lpips=rec.user_attrs.get("lpips"),
                      lpips_net=info.meta.get("lpips_net"), generator=info.meta.get("generator"))
    meta = {**meta_in, "search": search}
    save_checkpoint(out, model.eval(), meta=meta)
    return meta
