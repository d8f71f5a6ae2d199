"""The configuration of a generator search: one YAML (or TOML) file, every field documented here.

::

    run_dir: runs/search-demo           # the run: study.db, run.json, checkpoint.pt, trials/
    storage: null                       # any SQLAlchemy URL (e.g. postgresql://...); default sqlite:///RUN/study.db
    seed: 0                             # strategy and weight-store seed
    scale: 4                            # the candidates' up-sampling factor
    space: tpsr                         # tpsr: the paper's (20 cell decisions); tpsr_plus: + width 16/24/32,
                                        # depth 1/2 and skeleton tpsr/anchor/anchor+clip/anchor+clip+linear (tinysr.search.core.space)
    space_options: {}                   # tpsr_plus only: a sub-space, any of {widths: [16], depths: [1, 2],
                                        # ops: [conv3, identity, ...]} (each a subset of the space's choices),
                                        # skeletons: [anchor+clip, ...] (any of tinysr.profile.lut.SKELETONS)
    n_feats: 16                         # cell width (the tpsr space; tpsr_plus searches it)
    input_size: [180, 320]              # LR input (H, W) at which Mult-Adds and latency are counted
    max_mult_adds: 4.0e+9               # the paper's limit f (null: none)
    latency:                            # zero or more targets, each with its own budget
      - {name: epyc, profile: profiles/host-amd-epyc-litert-1t.json, budget_ms: 55}
      - {name: phone, device: "adb:SERIAL", budget_ms: 40, benchmark_binary: /path/benchmark_model}
    psnr_min: auto                      # reward normalisation (see tinysr.search.generator.reward); auto: bicubic
                                        # PSNR of the validation images with latency targets, else 0
    psnr_max: null
    alpha: -0.07                        # MnasNet exponents (alpha = 0, beta = -1: near-hard)
    beta: -0.07
    weight_sharing: true                # every candidate starts from the weight store (TPSR's Eq. 5); false:
                                        # from fresh weights (the same seeded initialisation for every candidate)
    precision: fp32                     # int8: each candidate scored by its int8 (PTQ, fake-quantized) proxy PSNR
                                        # and timed as its int8 export (latency tables built with --precision int8)
    strategy: reinforce                 # reinforce | evolution | random | nsga2 | tpe
    strategy_options: {}                # keyword arguments of the strategy (e.g. {lr: 0.03})
    evaluations: 100                    # candidates to train and score (rejections do not count)
    max_candidates: 0                   # give up after this many samples, rejections included (0: 50 x evaluations)
    round_size: 4                       # candidates evaluated at once from the same weight store
    proxy: {train_data: [...], ...}     # the proxy task: tinysr.search.generator.proxy.ProxyTask's fields
    backend: local                      # local (process pool) | ray
    workers: 2                          # parallel evaluations (local: 0 = in the driver's process)
    threads: 1                          # torch threads per evaluation
    address: null                       # ray: the cluster address (null: start a local instance)
    connect_timeout: 20                 # ray: seconds for the address to answer before the run fails

A latency target is ``{name, budget_ms}`` plus ``profile`` (a latency table: predicted, fast),
``device`` (``host`` or ``adb:SERIAL``: measured in the loop, slow and exact) or both (the
measurement decides, the prediction is recorded), ``hard`` (default true: reject over budget before
training), and for measured targets ``threads``, ``runs``, ``warmup``, ``benchmark_binary``.

Relative paths are resolved against the working directory. ``backend``, ``workers``, ``threads``,
``address``, ``connect_timeout``, ``evaluations`` and ``max_candidates`` may change between a run and its resume; the
rest is the run's identity (:meth:`SearchConfig.identity`) and may not.

A discriminator search has its own config, :class:`DiscriminatorSearchConfig` (the run fields
above plus ``generator``, ``gan``, ``eval_every``, ``lpips_net``; the generator-only fields are
refused); both share :class:`tinysr.search.core.config.ConfigFile`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tinysr.search.core.config import ConfigFile, _proxy
from tinysr.train.config import from_mapping


@dataclass
class TargetConfig:
    name: str
    budget_ms: float
    profile: str | None = None
    device: str | None = None
    hard: bool = True
    threads: int = 1
    runs: int = 20
    warmup: int = 3
    benchmark_binary: str | None = None

    def validate(self, where: str):
        if self.profile is None and self.device is None:
            raise ValueError(f"{where}: target {self.name!r} needs a profile (latency table) or a device to measure")
        if not self.budget_ms > 0:
            raise ValueError(f"{where}: target {self.name!r}: budget_ms must be positive, got {self.budget_ms}")
        if self.profile is not None and not Path(self.profile).is_file():
            raise FileNotFoundError(f"{where}: target {self.name!r}: no latency table {self.profile}")

    def build(self, input_size, scale: int, n_feats: int, precision: str = "fp32"):
        from tinysr.profile.predict import load_table
        from tinysr.search.generator.reward import LatencyTarget

        timed = None if self.profile is None else load_table(self.profile).precision
        if timed is not None and timed != precision:
            raise ValueError(f"latency target {self.name!r}: {self.profile} times {timed} networks, the search's "
                             f"precision is {precision}: build a table with tinysr lut build --precision {precision}")
        if self.device is None:
            return LatencyTarget.from_profile(self.name, self.budget_ms, self.profile, self.hard, input_size, scale,
                                              n_feats)
        return LatencyTarget.from_device(self.name, self.budget_ms, self.device, self.hard, self.profile, input_size,
                                         scale, n_feats, self.threads, self.runs, self.warmup, self.benchmark_binary,
                                         precision)


def _targets(value, source: str) -> list[TargetConfig]:
    if not isinstance(value, list):
        raise ValueError(f"{source}: expected a list of targets, got {value!r}")
    out = []
    for k, item in enumerate(value):
        if not isinstance(item, dict) or "name" not in item or "budget_ms" not in item:
            raise ValueError(f"{source}[{k}]: a target needs at least name and budget_ms, got {item!r}")
        out.append(from_mapping(TargetConfig, item, f"{source}[{k}]"))
    return out


GENERATOR_SPACES = ("tpsr", "tpsr_plus")


@dataclass
class SearchConfig(ConfigFile):
    space: str = "tpsr"
    space_options: dict = field(default_factory=dict)
    n_feats: int = 16
    input_size: list[int] = field(default_factory=lambda: [180, 320])
    max_mult_adds: float | None = None
    latency: list[TargetConfig] = field(default_factory=list)
    psnr_min: str | None = "auto"
    psnr_max: float | None = None
    alpha: float = -0.07
    beta: float = -0.07
    weight_sharing: bool = True
    precision: str = "fp32"

    @classmethod
    def from_dict(cls, data: dict, source: str = "search config") -> "SearchConfig":
        data = dict(data)
        if "psnr_min" in data and isinstance(data["psnr_min"], (int, float)) and not isinstance(data["psnr_min"], bool):
            data["psnr_min"] = str(float(data["psnr_min"]))  # kept as text next to "auto"; read by psnr_floor
        cfg = from_mapping(cls, data, source, {"latency": _targets, "proxy": _proxy})
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "search config"):
        self._validate_run(source)
        if self.space not in GENERATOR_SPACES:
            raise ValueError(f"{source}: space must be one of {', '.join(GENERATOR_SPACES)}, got {self.space!r}")
        self.search_space()  # the space and its sub-space options are valid
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"{source}: input_size must be [height, width], got {self.input_size}")
        if self.n_feats < 1:
            raise ValueError(f"{source}: n_feats must be at least 1, got {self.n_feats}")
        if self.precision not in ("fp32", "int8"):
            raise ValueError(f"{source}: precision must be fp32 or int8, got {self.precision!r}")
        if self.max_mult_adds is not None and not self.max_mult_adds > 0:
            raise ValueError(f"{source}: max_mult_adds must be positive or null, got {self.max_mult_adds}")
        self.psnr_floor(None)  # "auto", null or a number
        from tinysr.search.core.registry import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ValueError(f"{source}: unknown strategy {self.strategy!r}; known: {', '.join(sorted(STRATEGIES))}")
        names = [t.name for t in self.latency]
        if len(set(names)) != len(names):
            raise ValueError(f"{source}: latency target names must be unique, got {names}")
        for t in self.latency:
            t.validate(source)

    def to_dict(self) -> dict:
        out = super().to_dict()
        if out.get("space") == "tpsr":  # the paper's space: run records as before the field existed
            del out["space"]
        if not out.get("space_options"):  # the whole space: run records as before the field existed
            out.pop("space_options", None)
        if out.get("weight_sharing", True):  # the paper's weight sharing: run records as before the field existed
            out.pop("weight_sharing", None)
        if out.get("precision", "fp32") == "fp32":  # fp32: run records as before the field existed
            out.pop("precision", None)
        return out

    def search_space(self):
        """The space the strategy samples: the named ``space``, restricted by ``space_options`` (tpsr_plus:
        ``widths``, ``depths``, ``ops`` (the cell's candidate operations), each a non-empty subset of the
        space's choices; ``skeletons``, a non-empty subset of every skeleton :data:`tinysr.profile.lut.SKELETONS`
        names, the space's defaults first)."""
        from tinysr.profile.lut import SKELETONS
        from tinysr.search.core.space import GeneratorSpace, PlusSpace

        space = GeneratorSpace.named(self.space)
        opts = dict(self.space_options or {})
        if not opts:
            return space
        if not isinstance(space, PlusSpace):
            raise ValueError(f"space_options restrict the extended space (tpsr_plus), not {self.space!r}")
        unknown = set(opts) - {"widths", "depths", "skeletons", "ops"}
        if unknown:
            raise ValueError(f"space_options: unknown {', '.join(sorted(unknown))}; known: widths, depths, skeletons, "
                             "ops")
        for key, value in opts.items():
            have = getattr(space, key)
            if key == "skeletons":  # the space's default choices, then the other skeletons
                have = tuple(have) + tuple(sk for sk in SKELETONS if sk not in have)
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            if key not in ("skeletons", "ops"):
                value = tuple(int(v) for v in value)
            extra = [v for v in value if v not in have]
            if not value or extra:
                raise ValueError(f"space_options {key}: {list(value)} must be a non-empty subset of the space's "
                                 f"{list(have)}")
            opts[key] = tuple(v for v in have if v in value)  # the space's order
        return PlusSpace(space.num_nodes, opts.get("ops", space.ops), opts.get("widths", space.widths),
                         opts.get("depths", space.depths), opts.get("skeletons", space.skeletons))

    def psnr_floor(self, bicubic: float | None) -> float:
        """The reward's ``psnr_min``: the configured number, or for ``auto`` the bicubic PSNR of the
        validation images when there are latency targets (0 without: the paper's plain PSNR)."""
        if self.psnr_min is None:
            return 0.0
        if self.psnr_min == "auto":
            return float(bicubic) if (self.latency and bicubic is not None) else 0.0
        try:
            return float(self.psnr_min)
        except ValueError:
            raise ValueError(f"psnr_min must be a number, auto or null, got {self.psnr_min!r}") from None

    def constraints(self):
        from tinysr.search.generator.reward import Constraints

        size = tuple(self.input_size)
        targets = [t.build(size, self.scale, self.n_feats, self.precision) for t in self.latency]
        if self.space != "tpsr":  # every width / depth / skeleton must be priced before the run starts
            space = self.search_space()
            for t in targets:
                if t.predict is not None:
                    for probe in _space_probes(space):
                        try:
                            t.predict(probe)
                        except ValueError as e:
                            raise ValueError(f"latency target {t.name!r}: {e}") from None
        return Constraints(self.max_mult_adds, targets, scale=self.scale, n_feats=self.n_feats, input_size=size)


def _space_probes(space) -> list:
    """One network per width, depth and skeleton of an extended space (every op at every width)."""
    from tinysr.genotype import Genotype, Node, NetworkGenotype
    from tinysr.profile.lut import SKELETONS

    cell = Genotype(tuple(Node(op, -1) for op in space.ops))
    return [NetworkGenotype(cell, w, d, *SKELETONS[sk]) for w in space.widths for d in space.depths
            for sk in space.skeletons]
