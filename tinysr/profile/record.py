"""The profile data model shared by every ``tinysr profile`` backend.

A :class:`Profile` is one model measured once on one device with one runtime configuration:
per-operator rows (:class:`OpRecord`), whole-model timing summary, the device and runtime it was
measured with, and free-form notes (caveats the numbers come with). Backends (TFLite's
``benchmark_model`` over adb, its text or proto output read back from a file, ...) all produce
this one structure; it round-trips through JSON (:meth:`Profile.to_json` /
:meth:`Profile.from_json`), saves atomically, prints as a table and plots as a bar chart.

Times are milliseconds. ``OpRecord.avg_ms`` is the average time of *one call* of the operator,
as ``benchmark_model`` prints it; an operator called several times per inference (XNNPACK
kernels shared by several nodes, control flow) costs ``avg_ms * times_called`` per inference,
which is :attr:`OpRecord.per_run_ms`, and ``percent`` is that cost's share of the profiled total.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT = "tinysr.profile/1"

#: Keys every ``Profile.summary`` carries (``None`` where the backend did not report the value).
SUMMARY_KEYS = ("init_ms", "first_inference_ms", "warmup_avg_ms", "median_ms", "p90_ms", "avg_ms", "runs")


@dataclass
class OpRecord:
    """One operator (or one delegate kernel standing for several) of the profiled graph."""

    type: str
    name: str
    output_shape: str = ""
    avg_ms: float = 0.0
    percent: float = 0.0
    cumulative_percent: float = 0.0
    times_called: int = 1

    @property
    def per_run_ms(self) -> float:
        """Time this operator costs per inference: per-call average times calls per inference."""
        return self.avg_ms * max(self.times_called, 1)


@dataclass
class Profile:
    """Per-operator and whole-model latency of one model on one device and runtime."""

    model: str
    device: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    ops: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def __post_init__(self):
        for key in SUMMARY_KEYS:
            self.summary.setdefault(key, None)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        """A JSON-ready dict (``format`` names the schema version)."""
        return {
            "format": FORMAT,
            "model": self.model,
            "device": dict(self.device),
            "runtime": dict(self.runtime),
            "ops": [asdict(op) for op in self.ops],
            "summary": dict(self.summary),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, d: dict) -> "Profile":
        """Inverse of :meth:`to_json`; raises ``ValueError`` on another schema."""
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"not a {FORMAT} profile (format: {fmt!r})")
        try:
            ops = [OpRecord(**op) for op in d.get("ops", [])]
        except TypeError as e:
            raise ValueError(f"malformed op record in profile: {e}") from None
        return cls(model=d.get("model", ""), device=dict(d.get("device", {})),
                   runtime=dict(d.get("runtime", {})), ops=ops, summary=dict(d.get("summary", {})),
                   notes=list(d.get("notes", [])))

    @classmethod
    def load(cls, path) -> "Profile":
        """Read a profile written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_json(json.load(f))

    def save(self, path) -> Path:
        """Write the JSON atomically (temporary file in the same folder, then ``os.replace``)."""
        path = Path(path)
        data = json.dumps(self.to_json(), indent=2) + "\n"
        write_bytes_atomic(path, data.encode("utf-8"))
        return path

    # ---------------------------------------------------------------- totals
    @property
    def op_total_ms(self) -> float:
        """Sum of the operators' per-inference cost (the profiled total of the table)."""
        return sum(op.per_run_ms for op in self.ops)

    def by_type(self) -> list:
        """``[(type, count, per_run_ms, times_called)]`` aggregated per operator type, slowest first."""
        agg: dict = {}
        for op in self.ops:
            n, ms, calls = agg.get(op.type, (0, 0.0, 0))
            agg[op.type] = (n + 1, ms + op.per_run_ms, calls + op.times_called)
        rows = [(t, n, ms, calls) for t, (n, ms, calls) in agg.items()]
        return sorted(rows, key=lambda r: -r[2])

    # ------------------------------------------------------------------ text
    def table(self) -> str:
        """The per-operator table (run order), then the summary and notes, as plain text."""
        headers = ("type", "name", "output shape", "avg ms", "%", "cum %", "times called")
        rows = [(op.type, op.name, op.output_shape or "-", f"{op.avg_ms:.3f}", f"{op.percent:.2f}",
                 f"{op.cumulative_percent:.2f}", str(op.times_called)) for op in self.ops]
        widths = [len(h) for h in headers]
        for row in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]
        widths[1] = min(widths[1], 60)
        right = {3, 4, 5, 6}

        def fmt(row):
            cells = []
            for i, (c, w) in enumerate(zip(row, widths)):
                if len(c) > w:
                    c = c[: w - 3] + "..."
                cells.append(c.rjust(w) if i in right else c.ljust(w))
            return "  ".join(cells).rstrip()

        lines = [f"model: {self.model}"]
        if self.device:
            lines.append("device: " + ", ".join(f"{k}={v}" for k, v in self.device.items() if v not in (None, "")))
        if self.runtime:
            lines.append("runtime: " + ", ".join(f"{k}={v}" for k, v in self.runtime.items() if v not in (None, "")))
        lines += ["", fmt(headers), fmt(["-" * w for w in widths])]
        lines += [fmt(r) for r in rows]
        lines.append("")
        lines.append(f"operators: {len(self.ops)}, profiled total {self.op_total_ms:.3f} ms per inference")
        s = self.summary
        parts = []
        for key, label in (("init_ms", "init"), ("first_inference_ms", "first inference"),
                           ("warmup_avg_ms", "warmup avg"), ("avg_ms", "avg"), ("median_ms", "median"),
                           ("p90_ms", "p90")):
            if s.get(key) is not None:
                parts.append(f"{label} {s[key]:.3f} ms")
        if s.get("runs") is not None:
            parts.append(f"runs {s['runs']}")
        if parts:
            lines.append("summary: " + ", ".join(parts))
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (the shared :func:`tinysr.imageio.atomic_write`)."""
    from ..imageio import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def plot_ops(profile: Profile, png_path, top: int = 20) -> Path:
    """Horizontal bar chart of the ``top`` most expensive operators (per-inference ms); atomic PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ops = sorted(profile.ops, key=lambda op: -op.per_run_ms)[: max(int(top), 1)]
    ops.reverse()  # largest at the top of the chart
    labels = [_short_label(op) for op in ops]
    values = [op.per_run_ms for op in ops]
    fig = Figure(figsize=(9, 0.35 * max(len(ops), 3) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(range(len(ops)), values, color="#4c72b0")
    ax.set_yticks(range(len(ops)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("ms per inference (avg per call x times called)")
    where = profile.device.get("model") or profile.device.get("serial") or profile.device.get("cpu") or ""
    ax.set_title(f"{Path(profile.model).name or 'model'} {where}".strip(), fontsize=9)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3f}", va="center", fontsize=6)
    return save_figure(fig, png_path)


def save_figure(fig, png_path) -> Path:
    """Lay out and write a matplotlib figure as PNG, atomically."""
    from tinysr.plotting import save_png

    fig.tight_layout()
    return save_png(fig, png_path, dpi=110)


def _short_label(op: OpRecord, width: int = 48) -> str:
    label = f"{op.type}: {op.name}" if op.name else op.type
    return label if len(label) <= width else label[: width - 3] + "..."
