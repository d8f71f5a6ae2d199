"""Constraints a candidate generator must meet, and the reward the controller maximises.

**Constraints** (:class:`Constraints`): the paper's Mult-Adds limit ``f`` (a candidate over it is
rejected before training) and zero or more latency targets (:class:`LatencyTarget`: a name, a
budget in ms and a callable ``genotype -> predicted ms``, e.g. :meth:`LatencyTarget.from_profile`
over a latency table). A latency target is *hard* by default, as the Mult-Adds limit: a candidate
predicted over budget is rejected before training; every target also enters the soft reward
below. ``hard=False`` makes a target shape the reward only. :meth:`Constraints.check`
returns ``(ok, reason, figures)``; the figures are computed for every candidate, rejected or not,
so a run store can record them.

Mult-Adds and latency come in as callables (``genotype -> float``), so a search can swap in
another counter; a target's latency is predicted by a table, measured on the device in the loop
(:meth:`LatencyTarget.from_device`), or both (the measurement decides, the prediction is recorded). The default Mult-Adds is the closed form of the whole
network, :func:`tinysr.models.tpsr.mult_adds`, at ``scale`` / ``n_feats`` / ``input_size``
(default x4, 16 features, a 180 x 320 input: the usual "Mult-Adds for a 720p output"
convention).

**Reward** (:class:`Reward`): MnasNet's soft-constrained reward with PSNR in place of accuracy::

    R = PSNR_norm * prod_t (LAT_t / T_t) ** w_t,   w_t = alpha if LAT_t <= T_t else beta

``alpha = beta = -0.07`` (MnasNet's defaults): every doubling of a target's latency costs 4.7 % of
the reward, under or over budget alike. ``alpha = 0, beta = -1`` is MnasNet's near-hard
constraint: no bonus under budget and a reward that falls in proportion to the overshoot
(R * T / LAT) over it. With no latency target R is ``PSNR_norm``: the paper's plain PSNR reward.

``PSNR_norm = (psnr - psnr_min) / (psnr_max - psnr_min)``, clamped below at 0. Default:
``psnr_min = 0`` and no ``psnr_max`` (scale 1), i.e. the PSNR in dB unchanged. The normalisation
sets the exchange rate between quality and latency: with the raw PSNR (~30 dB) a 4.7 % cut is
~1.4 dB per latency doubling, far more than tiny SR networks differ by, so with latency targets
set ``psnr_min`` to the bicubic PSNR of the validation set and ``psnr_max`` to a reference
network's PSNR (PSNR_norm is then the fraction of the reference's gain over bicubic that a
candidate achieves). ``psnr_min = 0, psnr_max = ref`` gives the ratio ``psnr / ref``. The clamp
keeps the product meaningful: a candidate no better than ``psnr_min`` earns 0 whatever its
latency (a negative PSNR_norm multiplied by a latency factor < 1 would rise with latency).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from tinysr.genotype import Genotype

GenotypeFn = Callable[[Genotype], float]

#: MnasNet's soft-constraint exponents.
MNAS_ALPHA = -0.07
MNAS_BETA = -0.07


def default_mult_adds(scale: int = 4, n_feats: int = 16, input_size=(180, 320)) -> GenotypeFn:
    """``genotype -> Mult-Adds`` of the whole ``CellSR`` network (closed form, no model built)."""
    from tinysr.models.tpsr import mult_adds

    size = tuple(int(v) for v in input_size)

    def fn(genotype: Genotype) -> float:
        return float(mult_adds(genotype, scale, n_feats, size))

    return fn


@dataclass(frozen=True)
class LatencyTarget:
    """A latency budget on one device: ``budget_ms`` against the candidate's latency.

    The latency comes from ``predict`` (a latency table: fast, see :meth:`from_profile`), from
    ``measure`` (the device timed in the loop: slow, exact, see :meth:`from_device`), or both: a
    measured value, when there is one, is what the constraint and the reward use, and the
    prediction is recorded beside it. ``hard`` (default): reject candidates over budget before
    training; ``hard=False``: the target only shapes the reward.
    """

    name: str
    budget_ms: float
    predict: GenotypeFn | None = field(default=None, compare=False)
    hard: bool = True
    measure: GenotypeFn | None = field(default=None, compare=False)
    device: str | None = None  # what ``measure`` times ("host", "adb:SERIAL"), for records

    def __post_init__(self):
        if not self.name:
            raise ValueError("a latency target needs a name")
        if not (self.budget_ms > 0 and math.isfinite(self.budget_ms)):
            raise ValueError(f"latency target {self.name!r}: the budget must be a positive number of ms, "
                             f"got {self.budget_ms}")
        if self.predict is None and self.measure is None:
            raise ValueError(f"latency target {self.name!r}: give a latency table (profile) or a device to measure")

    @classmethod
    def from_profile(cls, name: str, budget_ms: float, profile, hard: bool = True, input_size=None, scale=None,
                     n_feats=None) -> "LatencyTarget":
        """A target predicted from a latency table (a path, dict or :class:`LatencyTable`).

        The table is loaded (and, when ``input_size`` / ``scale`` / ``n_feats`` are given, checked
        against them) once, here.
        """
        return cls(name, float(budget_ms), _table_predictor(profile, input_size, scale, n_feats), hard)

    @classmethod
    def from_device(cls, name: str, budget_ms: float, device: str = "host", hard: bool = True, profile=None,
                    input_size=(180, 320), scale: int = 4, n_feats: int = 16, threads: int = 1, runs: int = 20,
                    warmup: int = 3, benchmark_binary=None, precision: str = "fp32") -> "LatencyTarget":
        """A target measured in the loop: every candidate converted to TFLite and timed on ``device``
        (``"host"``: LiteRT in this process; ``"adb[:SERIAL]"``: ``benchmark_model`` on a phone), by
        :func:`tinysr.profile.predict.measure_latency` (median of ``runs``; ``precision`` ``int8``: quantized
        as the int8 export). With ``profile`` the table's prediction is recorded too."""
        from tinysr.profile.lut import parse_device
        from tinysr.profile.predict import measure_latency

        parse_device(device)  # a malformed device fails here, not at the first candidate
        size = tuple(int(v) for v in input_size)

        def measure(genotype: Genotype) -> float:
            return float(measure_latency(genotype, device=device, runtime="litert", input_size=size, threads=threads,
                                         runs=runs, warmup=warmup, scale=scale, n_feats=n_feats,
                                         benchmark_binary=benchmark_binary, precision=precision))

        predict = None if profile is None else _table_predictor(profile, size, scale, n_feats)
        return cls(name, float(budget_ms), predict, hard, measure, device)

    def latency(self, genotype: Genotype) -> dict:
        """``{"predicted": ms or None, "measured": ms or None, "used": ms}`` of ``genotype`` on this target."""
        predicted = None if self.predict is None else float(self.predict(genotype))
        measured = None if self.measure is None else float(self.measure(genotype))
        return {"predicted": predicted, "measured": measured, "used": measured if measured is not None else predicted}


def _table_predictor(profile, input_size, scale, n_feats) -> GenotypeFn:
    from tinysr.profile.predict import load_table, predict_latency

    table = load_table(profile)
    if input_size is not None or scale is not None or n_feats is not None:
        table.check(input_size, scale, n_feats)

    def predict(genotype: Genotype) -> float:
        return predict_latency(genotype, table)

    return predict


@dataclass(frozen=True)
class Constraints:
    """The Mult-Adds limit ``max_mult_adds`` (None: none) and the latency targets of a search.

    ``mult_adds``: ``genotype -> Mult-Adds`` (default :func:`default_mult_adds` at
    ``scale`` / ``n_feats`` / ``input_size``).
    """

    max_mult_adds: float | None = None
    targets: Sequence[LatencyTarget] = ()
    mult_adds: GenotypeFn | None = field(default=None, compare=False)
    scale: int = 4
    n_feats: int = 16
    input_size: tuple = (180, 320)

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"latency target names must be unique, got {names}")
        if self.max_mult_adds is not None and not self.max_mult_adds > 0:
            raise ValueError(f"the Mult-Adds limit must be positive, got {self.max_mult_adds}")
        if self.mult_adds is None:
            object.__setattr__(self, "mult_adds", default_mult_adds(self.scale, self.n_feats, self.input_size))

    @property
    def budgets(self) -> dict[str, float]:
        return {t.name: float(t.budget_ms) for t in self.targets}

    def figures(self, genotype: Genotype) -> dict:
        """``{"mult_adds": float, "latency_ms": {target: ms used}, "latency_predicted_ms": {target: ms},
        "latency_measured_ms": {target: ms}}`` of ``genotype`` (the last two only for targets that
        predict / measure; ``latency_ms`` is the measured value where there is one)."""
        figs = {"mult_adds": float(self.mult_adds(genotype)), "latency_ms": {}, "latency_predicted_ms": {},
                "latency_measured_ms": {}}
        for t in self.targets:
            lat = t.latency(genotype)
            figs["latency_ms"][t.name] = lat["used"]
            if lat["predicted"] is not None:
                figs["latency_predicted_ms"][t.name] = lat["predicted"]
            if lat["measured"] is not None:
                figs["latency_measured_ms"][t.name] = lat["measured"]
        return figs

    def check(self, genotype: Genotype) -> tuple[bool, str, dict]:
        """``(ok, reason, figures)``: ``reason`` is ``""`` when ok, else every violated constraint with its numbers."""
        figs = self.figures(genotype)
        reasons = []
        if self.max_mult_adds is not None and figs["mult_adds"] > self.max_mult_adds:
            reasons.append(f"Mult-Adds {figs['mult_adds'] / 1e9:.4f} G over the limit {self.max_mult_adds / 1e9:.4f} G")
        for t in self.targets:
            ms = figs["latency_ms"][t.name]
            if t.hard and ms > t.budget_ms:
                reasons.append(f"latency {t.name} {ms:.3f} ms over the budget {t.budget_ms:.3f} ms")
        return not reasons, "; ".join(reasons), figs


def mnas_factor(latency_ms: float, budget_ms: float, alpha: float = MNAS_ALPHA, beta: float = MNAS_BETA) -> float:
    """``(LAT / T) ** w`` with ``w = alpha`` if ``LAT <= T`` else ``beta``."""
    if not latency_ms > 0:
        raise ValueError(f"a latency must be positive to enter the reward, got {latency_ms} ms")
    w = alpha if latency_ms <= budget_ms else beta
    return (latency_ms / budget_ms) ** w


@dataclass(frozen=True)
class Reward:
    """The MnasNet soft reward over a normalised PSNR (see the module doc for the formula and defaults)."""

    psnr_min: float = 0.0
    psnr_max: float | None = None
    alpha: float = MNAS_ALPHA
    beta: float = MNAS_BETA
    budgets: Mapping[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "budgets", dict(self.budgets))
        if self.psnr_max is not None and not self.psnr_max > self.psnr_min:
            raise ValueError(f"psnr_max ({self.psnr_max}) must be above psnr_min ({self.psnr_min})")
        for name, t in self.budgets.items():
            if not t > 0:
                raise ValueError(f"latency budget {name!r} must be positive, got {t}")

    @classmethod
    def for_constraints(cls, constraints: Constraints, **kwargs) -> "Reward":
        """A reward over the latency targets of ``constraints``."""
        return cls(budgets=constraints.budgets, **kwargs)

    def normalise(self, psnr: float) -> float:
        scale = 1.0 if self.psnr_max is None else self.psnr_max - self.psnr_min
        return max(0.0, (float(psnr) - self.psnr_min) / scale)

    def __call__(self, psnr: float, latency_ms: Mapping[str, float] | None = None) -> float:
        """R for a candidate of PSNR ``psnr`` and predicted latencies ``{target: ms}``.

        ``latency_ms`` may be the ``figures`` dict of :meth:`Constraints.check` (its
        ``"latency_ms"`` entry is used). Every budget needs a latency.
        """
        if not math.isfinite(float(psnr)):
            raise ValueError(f"PSNR must be a finite number, got {psnr}")
        lat = dict(latency_ms or {})
        if "latency_ms" in lat and isinstance(lat["latency_ms"], Mapping):
            lat = dict(lat["latency_ms"])
        missing = [name for name in self.budgets if name not in lat]
        if missing:
            raise ValueError(f"no latency for target(s) {', '.join(missing)}: the reward needs one per budget")
        r = self.normalise(psnr)
        for name, budget in self.budgets.items():
            r *= mnas_factor(float(lat[name]), budget, self.alpha, self.beta)
        return r
