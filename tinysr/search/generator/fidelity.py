"""Proxy fidelity: does a generator search's proxy task rank networks as full training does?

A search scores each candidate by its PSNR after a short proxy training (:mod:`.proxy`); it only
finds good networks if that ranking agrees with the ranking after real training. This module picks
``n`` evaluated candidates from one or more runs (spread over each run's proxy-PSNR range, the runs
sharing one proxy task, so their proxy PSNRs compare), trains each with one recipe (a
``tinysr train`` config, optionally shortened to ``steps``; the same for all), scores the trained
networks on benchmark folders and reports Kendall's tau-b and Spearman's rho between proxy PSNR and
trained PSNR per folder.

Resumable: each candidate trains in its own folder under ``out_dir`` (``c00``, ``c01``, ...; a
killed run resumes from its checkpoint), and ``fidelity.json`` is rewritten atomically after every
candidate, so a finished candidate is never trained or scored again. Writes ``fidelity.json``,
``fidelity.md`` and ``fidelity.png`` (trained against proxy PSNR, one panel per folder).
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

FORMAT = "tinysr.proxy-fidelity/1"


# ------------------------------------------------------------------------------- rank statistics
def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either variable handled as in scipy.stats.kendalltau); NaN when undefined."""
    n = len(x)
    if n != len(y):
        raise ValueError("x and y differ in length")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else float("nan")


def _ranks(v: Sequence[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN when undefined."""
    rx, ry = _ranks(x), _ranks(y)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else float("nan")



# ------------------------------------------------------------------------------- picking
def _canonical(genotype: str) -> str:
    from tinysr.genotype import as_network

    return as_network(genotype).genotype_text


def pick_candidates(run_dirs: Sequence[str | Path], n: int, within_budget: bool = True) -> list[dict]:
    """``n`` evaluated candidates (distinct networks) from ``run_dirs``: split as evenly as possible between
    the runs, and within a run evenly spaced over its candidates ranked by proxy PSNR (its best and worst
    included). ``within_budget``: only candidates within every latency budget of their run (the networks
    a search would return; a soft budget lets it evaluate others). The runs must share one proxy task.
    One-line ``ValueError`` when they cannot give ``n``."""
    from tinysr.search.core.run_store import open_run, trial_records

    if n < 2:
        raise ValueError(f"a rank correlation needs at least 2 candidates, got {n}")
    runs, proxy = [], None
    for run in run_dirs:
        info, study = open_run(run)
        task = (info.meta.get("config") or {}).get("proxy") or info.meta.get("proxy")
        if proxy is None:
            proxy = task
        elif task != proxy:
            raise ValueError(f"{run}: its proxy task differs from {run_dirs[0]}'s: proxy PSNRs would not compare")
        budgets = {str(k): float(v) for k, v in (info.meta.get("budgets") or {}).items()} if within_budget else {}
        best: dict[str, dict] = {}
        for r in trial_records(study, ("complete",)):
            if r.genotype is None or r.psnr is None or not math.isfinite(r.psnr):
                continue
            if any(r.latency_ms.get(k, math.inf) > v for k, v in budgets.items()):
                continue
            key = _canonical(r.genotype)
            if key not in best or r.psnr > best[key]["proxy_psnr"]:
                best[key] = {"run": str(run), "trial": r.number, "candidate": r.candidate, "genotype": key,
                             "proxy_psnr": float(r.psnr), "latency_ms": dict(r.latency_ms),
                             "mult_adds": r.mult_adds}
        runs.append(sorted(best.values(), key=lambda row: row["proxy_psnr"]))
    quota = [n // len(runs) + (1 if i < n % len(runs) else 0) for i in range(len(runs))]
    picks, seen = [], set()
    for rows, q in zip(runs, quota):
        rows = [r for r in rows if r["genotype"] not in seen]
        if len(rows) < q:
            raise ValueError(f"{rows[0]['run'] if rows else 'a run'}: {len(rows)} distinct evaluated candidates"
                             f"{' within its budgets' if within_budget else ''}, "
                             f"{q} needed: evaluate more or ask for fewer")
        idx = sorted({round(i * (len(rows) - 1) / (q - 1)) for i in range(q)}) if q > 1 else [len(rows) - 1]
        for i in idx:
            picks.append(rows[i])
            seen.add(rows[i]["genotype"])
    return picks


# ------------------------------------------------------------------------------- training
def _train_one(job: dict) -> dict:
    """Train one picked candidate with the recipe and score it (a process-pool job; resumes its folder)."""
    import torch

    from tinysr.checkpoint import model_from_checkpoint, read_checkpoint
    from tinysr.evaluate import evaluate, mean_row
    from tinysr.models.mobile import deploy
    from tinysr.runtimes import TorchRunner
    from tinysr.train.config import TrainConfig
    from tinysr.train.trainer import train

    cfg = TrainConfig.from_file(job["recipe"]) if job["recipe"] else TrainConfig()
    overrides = [f"model={json.dumps(job['model'])}", f"genotype={json.dumps(job['genotype'])}",
                 f"out_dir={json.dumps(job['out_dir'])}"]
    if job["steps"]:
        overrides.append(f"steps={int(job['steps'])}")
    cfg = cfg.override(overrides)
    result = train(cfg, resume=True, progress=job["progress"])
    path = Path(job["out_dir"]) / "last.pt"
    model = deploy(model_from_checkpoint(read_checkpoint(path), str(path))).eval()
    torch.set_num_threads(max(1, int(cfg.threads or 1)))
    scores = {}
    for d in job["data"]:
        m = mean_row(evaluate(TorchRunner(model), d, lpips=False, progress=False))
        scores[Path(d).name] = {"psnr_y": round(m.psnr, 4), "ssim_y": round(m.ssim, 4)}
    return {"steps": int(result.step), "scores": scores}


def run_fidelity(run_dirs: Sequence[str | Path], out_dir: str | Path, data: Sequence[str | Path], n: int = 8,
                 recipe: str | Path | None = None, steps: int | None = None, workers: int = 1,
                 progress: bool = True) -> dict:
    """Pick ``n`` candidates (:func:`pick_candidates`), train and score each (``workers`` at once), write
    the report; returns the ``fidelity.json`` record (``candidates`` with ``proxy_psnr`` and ``scores``,
    ``correlation`` per folder: ``kendall_tau``, ``spearman_rho``, ``n``)."""
    from tinysr.imageio import atomic_write
    from tinysr.search.core.run_store import open_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = [str(d) for d in data]
    for d in data:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"{d}: no such benchmark folder")
    scales = {int(open_run(r)[0].meta["scale"]) for r in run_dirs}
    if len(scales) != 1 or scales - {2, 4}:
        raise ValueError(f"the runs' scales {sorted(scales)}: a fidelity study trains x2 or x4 networks of one scale")
    model = f"tpsr_x{scales.pop()}"
    identity = {"runs": [str(r) for r in run_dirs], "n": n, "recipe": None if recipe is None else str(recipe),
                "steps": steps, "data": data}
    record_path = out / "fidelity.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if record is not None and record.get("identity") != identity:
        raise ValueError(f"{record_path}: a study with other runs, recipe, steps or data: use another folder")
    if record is None:
        record = {"format": FORMAT, "identity": identity, "candidates": pick_candidates(run_dirs, n)}

    def save():
        record["correlation"] = correlations(record["candidates"])
        atomic_write(record_path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))

    save()
    todo = [i for i, c in enumerate(record["candidates"]) if "scores" not in c]
    jobs = {i: {"recipe": None if recipe is None else str(recipe), "steps": steps, "model": model,
                "genotype": record["candidates"][i]["genotype"], "out_dir": str(out / f"c{i:02d}"), "data": data,
                "progress": progress and workers <= 1} for i in todo}
    from tqdm import tqdm

    bar = tqdm(total=len(record["candidates"]), initial=len(record["candidates"]) - len(todo), unit="net",
               desc="proxy fidelity", disable=not progress or workers <= 1)
    if workers <= 1:
        for i in todo:
            record["candidates"][i].update(_train_one(jobs[i]))
            save()
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_train_one, jobs[i]): i for i in todo}
            for f in as_completed(futures):
                record["candidates"][futures[f]].update(f.result())
                save()
                bar.update()
    bar.close()
    write_report(record, out)
    return record


def correlations(candidates: Sequence[dict]) -> dict:
    """Kendall's tau-b and Spearman's rho between proxy PSNR and each folder's trained PSNR (done candidates)."""
    done = [c for c in candidates if "scores" in c]
    out = {}
    for name in sorted({k for c in done for k in c["scores"]}):
        rows = [(c["proxy_psnr"], c["scores"][name]["psnr_y"]) for c in done if name in c["scores"]]
        if len(rows) >= 2:
            x, y = [r[0] for r in rows], [r[1] for r in rows]
            out[name] = {"n": len(rows), "kendall_tau": round(kendall_tau(x, y), 4),
                         "spearman_rho": round(spearman_rho(x, y), 4)}
    return out


def format_report(record: dict) -> str:
    ident = record["identity"]
    names = sorted({k for c in record["candidates"] if "scores" in c for k in c["scores"]})
    lines = [f"# Proxy fidelity: {len(record['candidates'])} candidates of {', '.join(ident['runs'])}", "",
             f"Trained with {ident['recipe'] or 'the default recipe'}"
             + (f", {ident['steps']} steps" if ident["steps"] else "") + "; PSNR on the Y channel.", "",
             "| # | run | trial | network | proxy PSNR | " + " | ".join(f"{n} PSNR" for n in names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for i, c in enumerate(record["candidates"]):
        cells = [f"{c['scores'][n]['psnr_y']:.2f}" if "scores" in c and n in c["scores"] else "-" for n in names]
        net = c["genotype"].replace("|", "\\|")  # a network genotype's skeleton separator, not a cell border
        lines.append(f"| {i} | {Path(c['run']).name} | {c['trial']} | `{net}` | {c['proxy_psnr']:.2f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "| data | n | Kendall tau-b | Spearman rho |", "|---|---|---|---|"]
    for name, r in record.get("correlation", {}).items():
        lines.append(f"| {name} | {r['n']} | {r['kendall_tau']:.3f} | {r['spearman_rho']:.3f} |")
    return "\n".join(lines) + "\n"


def write_report(record: dict, out_dir: str | Path) -> list[Path]:
    """``fidelity.md`` and ``fidelity.png`` in ``out_dir`` (atomically)."""
    from tinysr.imageio import atomic_write

    out = Path(out_dir)
    md = out / "fidelity.md"
    atomic_write(md, lambda tmp: Path(tmp).write_text(format_report(record)))
    done = [c for c in record["candidates"] if "scores" in c]
    names = sorted({k for c in done for k in c["scores"]})
    if not names:
        return [md]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [c for c in done if name in c["scores"]]
        ax.scatter([c["proxy_psnr"] for c in rows], [c["scores"][name]["psnr_y"] for c in rows])
        for i, c in enumerate(record["candidates"]):
            if c in rows:
                ax.annotate(str(i), (c["proxy_psnr"], c["scores"][name]["psnr_y"]), fontsize=8,
                            xytext=(3, 3), textcoords="offset points")
        r = record["correlation"].get(name, {})
        ax.set_title(f"{name}: Kendall tau {r.get('kendall_tau', float('nan')):.2f}, "
                     f"Spearman {r.get('spearman_rho', float('nan')):.2f}", fontsize=10)
        ax.set_xlabel("proxy PSNR (dB)")
        ax.set_ylabel(f"trained PSNR on {name} (dB)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png = out / "fidelity.png"
    atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return [md, png]
