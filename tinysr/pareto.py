"""The latency-quality comparison of networks, in one run: ``tinysr pareto``.

For every model (registry name with bundled weights, or checkpoint): parameters and Mult-Adds (of the
deployed form), verified TFLite exports in each precision (fp32, int8 PTQ with int8 I/O, as the phone presets and
the Android demo export it), their LiteRT latency timed
together in interleaved rounds (medians: a host that drifts moves every model alike), the latency a
latency table predicts where one covers the network, and Y-PSNR / SSIM of each precision's artifact on
each data folder. Writes ``pareto.json``, ``pareto.csv``, ``pareto.md`` and ``pareto.png`` (PSNR on the
first data folder against measured latency, one marker per precision, each precision's non-dominated
front drawn, every point labelled). A model that fails to load, export or run is a row with its one-line
reason; the others go on. A model with quantization-aware training's int8 ranges (``qat`` in the row) is
exported in int8 only, with those ranges: its float network is tuned for the int8 one, not a float point.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("fp32", "int8")


@dataclass
class ParetoOptions:
    data: tuple = ()
    precisions: tuple = ("fp32", "int8")
    threads: int = 1
    input_size: tuple = (180, 320)
    profile: str | None = None
    calib: str | None = None
    runs: int = 30
    rounds: int = 5
    warmup: int = 3
    searched: tuple = ()  # model labels of searched networks (the rest are hand-designed)
    budgets_from: tuple = ()  # model labels whose measured fp32 latency is a budget


def _label(spec: str) -> str:
    p = Path(spec)
    return p.parent.name if p.suffix in (".pt", ".pth", ".ckpt") and p.stem in ("last", "best") else p.stem \
        if p.suffix else spec


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip(": ")


def _predict(model, profile: str | None, input_size) -> tuple[float | None, str | None]:
    """Latency the table ``profile`` predicts for a searchable-space network, else (None, why)."""
    if not profile:
        return None, None
    from .genotype import NetworkGenotype

    network = getattr(model, "network", None)  # a network with its skeleton (tpsr_plus), else the cell alone
    genotype = network if isinstance(network, NetworkGenotype) else getattr(model, "genotype", None)
    if genotype is None:
        return None, f"{type(model).__name__} is not in a latency table's space"
    from .profile.predict import predict_latency

    try:
        return float(predict_latency(str(genotype), profile, input_size=input_size, scale=model.scale,
                                     n_feats=getattr(model, "n_feats", None))), None
    except (ValueError, KeyError, OSError) as e:
        return None, _one_line(e)


def front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (lower latency, higher PSNR), by latency."""
    keep = []
    for i, (lat, q) in enumerate(points):
        dominated = any((l2 <= lat and q2 >= q) and (l2 < lat or q2 > q) for j, (l2, q2) in enumerate(points) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: points[i][0])


def run_pareto(models: list[str], options: ParetoOptions, progress: bool = True) -> dict:
    """Measure every model of ``models`` (see the module docstring); returns the result dict."""
    from tqdm.auto import tqdm

    from .checkpoint import load_model, qat_record
    from .complexity import measure
    from .evaluate import evaluate, mean_row
    from .export.pipeline import ExportOptions, export_model
    from .models.mobile import deploy
    from .profile.host import cpu_model, time_litert_models
    from .runtimes import LiteRTRunner

    o = options
    for p in o.precisions:
        if p not in PRECISIONS:
            raise ValueError(f"--precision must be among {', '.join(PRECISIONS)}, got {p!r}")
    for d in o.data:
        if not Path(d).is_dir():
            raise ValueError(f"--data {d}: not a folder")
    labels = [_label(m) for m in models]
    for flag, names in (("--searched", o.searched), ("--budgets-from", o.budgets_from)):
        unknown = [n for n in names if _label(n) not in labels]
        if unknown:
            raise ValueError(f"{flag} {' '.join(unknown)}: not among the models compared")
    if len(set(labels)) != len(labels):
        labels = [f"{i + 1}:{lab}" for i, lab in enumerate(labels)]
    rows = [{"model": lab, "spec": spec, "error": None} for lab, spec in zip(labels, models)]
    work = Path(tempfile.mkdtemp(prefix="tinysr-pareto-"))
    artifacts: list[tuple[dict, str, Path]] = []
    steps = len(models) * (1 + len(o.precisions))
    bar = tqdm(total=steps + 1, desc="pareto", disable=not progress)
    try:
        for row, spec in zip(rows, models):
            bar.set_description(f"pareto: {row['model']}")
            try:
                model = deploy(load_model(spec)).eval()
                cx = measure(model, o.input_size)
                row.update(params=int(cx.params), mult_adds=float(cx.mult_adds), scale=int(model.scale))
                row["predicted_ms"], why = _predict(model, o.profile, o.input_size)
                if why:
                    row["predicted_note"] = why
            except Exception as e:  # noqa: BLE001  (a row with its reason; the others go on)
                row["error"] = _one_line(e)
                bar.update(1 + len(o.precisions))
                continue
            bar.update(1)
            row["qat"] = bool(qat_record(spec))  # int8 weights: its fp32 network is tuned for the int8 one
            for prec in o.precisions:
                if prec == "fp32" and row["qat"]:
                    bar.update(1)
                    continue
                bar.set_description(f"pareto: {row['model']} {prec}")
                out = work / f"{len(artifacts)}_{prec}.tflite"
                try:
                    card = export_model(spec, out, ExportOptions(target="tflite", precision=prec,
                                                                 input_size=tuple(o.input_size), calib=o.calib,
                                                                 int8_io=prec == "int8", max_loss_db=99.0),
                                        progress=False)
                    row[f"{prec}_export"] = {"ops": card["op_histogram"], "file_size": card["file_size"]}
                    runner = LiteRTRunner(out, threads=o.threads)
                    for d in o.data:
                        m = mean_row(evaluate(runner, d, lpips=False, progress=False))
                        row.setdefault("scores", {}).setdefault(Path(d).name, {})[prec] = \
                            {"psnr": round(m.psnr, 4), "ssim": round(m.ssim, 4)}
                    artifacts.append((row, prec, out))
                except Exception as e:  # noqa: BLE001
                    row["error"] = (row["error"] + "; " if row["error"] else "") + f"{prec}: {_one_line(e)}"
                bar.update(1)
        bar.set_description("pareto: timing")
        if artifacts:
            timings = time_litert_models([p for _, _, p in artifacts], threads=o.threads, warmup=o.warmup,
                                         runs=o.runs, rounds=o.rounds)
            for (row, prec, _), t in zip(artifacts, timings):
                row[f"{prec}_ms"] = round(t.median_ms, 3)
                row[f"{prec}_p90_ms"] = round(t.p90_ms, 3)
        bar.update(1)
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    result = {"cpu": cpu_model(), "threads": int(o.threads), "input_size": list(o.input_size),
              "precisions": list(o.precisions), "data": [Path(d).name for d in o.data],
              "timing": {"runtime": "LiteRT (XNNPACK)", "runs": o.runs, "rounds": o.rounds, "warmup": o.warmup,
                         "statistic": "median of interleaved rounds"},
              "profile": o.profile, "searched": [_label(m) for m in o.searched], "rows": rows}
    if o.budgets_from and "fp32" in o.precisions:
        result["budgets"] = budget_margins(result, [_label(m) for m in o.budgets_from], result["searched"])
    return result


# ------------------------------------------------------------------------------------ budgets
def budget_margins(result: dict, budget_models: list[str], searched: list[str], precision: str = "fp32") -> list[dict]:
    """The searched networks against the hand-designed ones at latency budgets.

    Each budget is the measured ``precision`` latency of one of ``budget_models``. Within it: the best
    searched network (``searched``: model labels) and the best hand-designed one (every other row) by
    PSNR on the first data folder, and the searched one's margin in dB on every data folder, in fp32 and
    int8 (the issue's target: >= 0.1 dB on each). A side with no network within the budget is None.
    """
    rows = [r for r in result["rows"] if not r.get("error") and r.get(f"{precision}_ms") is not None]
    by_label = {r["model"]: r for r in rows}
    d0 = result["data"][0] if result["data"] else None
    out = []
    for b in budget_models:
        if b not in by_label:
            out.append({"budget_model": b, "budget_ms": None, "note": "not measured"})
            continue
        budget = by_label[b][f"{precision}_ms"]
        inside = [r for r in rows if r[f"{precision}_ms"] <= budget]

        def best(cands):
            cands = [r for r in cands if r.get("scores", {}).get(d0, {}).get(precision)]
            return max(cands, key=lambda r: r["scores"][d0][precision]["psnr"], default=None)

        s = best([r for r in inside if r["model"] in searched])
        h = best([r for r in inside if r["model"] not in searched])
        entry = {"budget_model": b, "budget_ms": budget, "searched": s and s["model"], "hand": h and h["model"],
                 "margins": {}}
        if s and h:
            for d in result["data"]:
                for p in result["precisions"]:
                    a = s.get("scores", {}).get(d, {}).get(p, {}).get("psnr")
                    c = h.get("scores", {}).get(d, {}).get(p, {}).get("psnr")
                    entry["margins"][f"{d}_{p}"] = None if a is None or c is None else round(a - c, 4)
            entry["met"] = all(v is not None and v >= 0.1 for v in entry["margins"].values())
        else:
            entry["met"] = False
        out.append(entry)
    return out


def budgets_markdown(margins: list[dict]) -> str:
    if not margins:
        return ""
    keys = sorted({k for m in margins for k in m.get("margins", {})})
    head = ["budget (model)", "budget ms", "best searched", "best hand-designed"] + [f"margin {k} dB" for k in keys] \
        + ["target met (>= 0.1 dB each)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in margins:
        cells = [m["budget_model"], _fmt(m.get("budget_ms")), m.get("searched") or "-", m.get("hand") or "-"]
        cells += [_fmt(m.get("margins", {}).get(k)) for k in keys]
        cells.append("yes" if m.get("met") else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ outputs
def _columns(result: dict) -> list[tuple[str, callable]]:
    cols = [("model", lambda r: r["model"]),
            ("params", lambda r: r.get("params")),
            ("mult_adds_g", lambda r: None if r.get("mult_adds") is None else round(r["mult_adds"] / 1e9, 3))]
    for p in result["precisions"]:
        cols.append((f"{p}_ms", lambda r, p=p: r.get(f"{p}_ms")))
    cols.append(("predicted_ms", lambda r: None if r.get("predicted_ms") is None else round(r["predicted_ms"], 3)))
    for d in result["data"]:
        for p in result["precisions"]:
            for k in ("psnr", "ssim"):
                cols.append((f"{d}_{k}_{p}", lambda r, d=d, p=p, k=k: r.get("scores", {}).get(d, {}).get(p, {}).get(k)))
    cols.append(("error", lambda r: r.get("error")))
    return cols


def to_csv(result: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = _columns(result)
    w.writerow([c for c, _ in cols])
    for r in result["rows"]:
        w.writerow(["" if f(r) is None else f(r) for _, f in cols])
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    if isinstance(v, int) and v >= 10000:
        return f"{v / 1e3:.1f} K"
    return str(v)


def to_markdown(result: dict) -> str:
    cols = _columns(result)
    names = {"params": "params", "mult_adds_g": "Mult-Adds (G)", "predicted_ms": "predicted ms"}
    head = [names.get(c, c.replace("_", " ")) for c, _ in cols]
    lines = [f"Measured on {result['cpu']}, LiteRT {result['threads']} thread(s), "
             f"{result['input_size'][0]}x{result['input_size'][1]} input; latency: "
             f"{result['timing']['statistic']} ({result['timing']['runs']} runs in {result['timing']['rounds']} rounds).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        lines.append("| " + " | ".join(_fmt(f(r)) for _, f in cols) + " |")
    if result.get("budgets"):
        lines += ["", "Searched networks (" + ", ".join(result["searched"]) + ") against the hand-designed ones "
                  "within each budget (the measured fp32 latency of the named network):", "",
                  budgets_markdown(result["budgets"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


def plot(result: dict, png) -> Path | None:
    """PSNR on the first data folder against measured latency; each precision's front drawn."""
    from .plotting import pyplot, save_png

    if not result["data"]:
        return None
    d0 = result["data"][0]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    markers = {"fp32": "o", "int8": "s"}
    colors = {"fp32": "tab:blue", "int8": "tab:orange"}
    drawn = False
    for p in result["precisions"]:
        pts, labs = [], []
        for r in result["rows"]:
            q = r.get("scores", {}).get(d0, {}).get(p, {}).get("psnr")
            lat = r.get(f"{p}_ms")
            if q is not None and lat is not None:
                pts.append((lat, q))
                labs.append(r["model"])
        if not pts:
            continue
        drawn = True
        ax.scatter([a for a, _ in pts], [b for _, b in pts], marker=markers[p], color=colors[p], label=p, zorder=3)
        searched = set(result.get("searched", []))
        for (a, b), lab in zip(pts, labs):
            ax.annotate(lab + (" (searched)" if lab in searched else ""), (a, b), textcoords="offset points",
                        xytext=(4, 4), fontsize=8, color=colors[p], fontweight="bold" if lab in searched else None)
        f = front(pts)
        ax.step([pts[i][0] for i in f], [pts[i][1] for i in f], where="post", color=colors[p], alpha=0.6,
                linestyle="--", label=f"{p} front")
    if not drawn:
        pyplot().close(fig)
        return None
    for m in result.get("budgets", []):
        if m.get("budget_ms"):
            ax.axvline(m["budget_ms"], color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"budget: {m['budget_model']}", (m["budget_ms"], ax.get_ylim()[0]), rotation=90,
                        textcoords="offset points", xytext=(-10, 4), fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel(f"LiteRT latency, ms ({result['threads']} thread(s), {result['input_size'][0]}x"
                  f"{result['input_size'][1]} input; {result['cpu']})")
    ax.set_ylabel(f"{d0} Y-PSNR, dB")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_png(fig, png)


def write_outputs(result: dict, out_dir) -> list[Path]:
    from .imageio import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("pareto.json", json.dumps(result, indent=2) + "\n"), ("pareto.csv", to_csv(result)),
                       ("pareto.md", to_markdown(result))):
        atomic_write(out / name, lambda tmp, text=text: Path(tmp).write_text(text))
        written.append(out / name)
    png = plot(result, out / "pareto.png")
    if png is not None:
        written.append(png)
    return written
