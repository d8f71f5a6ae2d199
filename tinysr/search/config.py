"""The configuration of a generator search: one YAML (or TOML) file, every field documented here.

::

    run_dir: runs/search-demo           # the run: study.db, run.json, checkpoint.pt, trials/
    storage: null                       # any SQLAlchemy URL (e.g. postgresql://...); default sqlite:///RUN/study.db
    seed: 0                             # strategy and weight-store seed
    scale: 4                            # the candidates' up-sampling factor
    n_feats: 16                         # cell width
    input_size: [180, 320]              # LR input (H, W) at which Mult-Adds and latency are counted
    max_mult_adds: 4.0e+9               # the paper's limit f (null: none)
    latency:                            # zero or more targets, each with its own budget
      - {name: epyc, profile: profiles/host-amd-epyc-litert-1t.json, budget_ms: 55}
      - {name: phone, device: "adb:SERIAL", budget_ms: 40, benchmark_binary: /path/benchmark_model}
    psnr_min: auto                      # reward normalisation (see tinysr.search.reward); auto: bicubic
                                        # PSNR of the validation images with latency targets, else 0
    psnr_max: null
    alpha: -0.07                        # MnasNet exponents (alpha = 0, beta = -1: near-hard)
    beta: -0.07
    strategy: reinforce                 # reinforce | random | nsga2 | tpe
    strategy_options: {}                # keyword arguments of the strategy (e.g. {lr: 0.03})
    evaluations: 100                    # candidates to train and score (rejections do not count)
    max_candidates: 0                   # give up after this many samples, rejections included (0: 50 x evaluations)
    round_size: 4                       # candidates evaluated at once from the same weight store
    proxy: {train_data: [...], ...}     # the proxy task: tinysr.search.proxy.ProxyTask's fields
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
refused); both share :class:`ConfigFile`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from tinysr.train.config import GanConfig, from_mapping

from .proxy import ProxyTask

BACKENDS = ("local", "ray")
#: Fields that may differ between a run and its resume (how it runs, not what it searches).
RUNTIME_FIELDS = ("backend", "workers", "threads", "address", "connect_timeout", "evaluations", "max_candidates")


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

    def build(self, input_size, scale: int, n_feats: int):
        from .reward import LatencyTarget

        if self.device is None:
            return LatencyTarget.from_profile(self.name, self.budget_ms, self.profile, self.hard, input_size, scale,
                                              n_feats)
        return LatencyTarget.from_device(self.name, self.budget_ms, self.device, self.hard, self.profile, input_size,
                                         scale, n_feats, self.threads, self.runs, self.warmup, self.benchmark_binary)


def _targets(value, source: str) -> list[TargetConfig]:
    if not isinstance(value, list):
        raise ValueError(f"{source}: expected a list of targets, got {value!r}")
    out = []
    for k, item in enumerate(value):
        if not isinstance(item, dict) or "name" not in item or "budget_ms" not in item:
            raise ValueError(f"{source}[{k}]: a target needs at least name and budget_ms, got {item!r}")
        out.append(from_mapping(TargetConfig, item, f"{source}[{k}]"))
    return out


def _proxy(value, source: str) -> ProxyTask:
    return ProxyTask.from_dict(value, source)


def read_mapping(path: str | Path) -> dict:
    """The mapping a YAML (or ``.toml``) search config holds; one-line errors for a missing file or bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such search config")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        import yaml

        return yaml.safe_load(text) or {}
    except Exception as e:  # YAML / TOML syntax: one line with the position
        raise ValueError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'}: "
                         f"{' '.join(str(e).split())}") from None


@dataclass
class ConfigFile:
    """What every search config shares: the run fields (where the run lives, its strategy, how many
    evaluations, the proxy task, where they run; a subclass may give them other defaults), reading a
    YAML/TOML file, command-line overrides, the run's identity, the run-field checks. A subclass adds
    its problem's fields and its own ``from_dict`` / ``validate``."""

    run_dir: str = "runs/search"
    storage: str | None = None
    seed: int = 0
    scale: int = 4
    strategy: str = "reinforce"
    strategy_options: dict = field(default_factory=dict)
    evaluations: int = 100
    max_candidates: int = 0
    round_size: int = 4
    proxy: ProxyTask | None = None
    backend: str = "local"
    workers: int = 2
    threads: int = 1
    address: str | None = None
    connect_timeout: float = 20.0

    @classmethod
    def from_file(cls, path: str | Path) -> "ConfigFile":
        return cls.from_dict(read_mapping(path), str(path))

    def replace(self, **changes) -> "ConfigFile":
        cfg = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        cfg.validate("command line")
        return cfg

    def _validate_run(self, source: str) -> None:
        if self.proxy is None:
            raise ValueError(f"{source}: a proxy section with train_data is required")
        if self.proxy.scale != self.scale:
            raise ValueError(f"{source}: proxy.scale {self.proxy.scale} differs from scale {self.scale}")
        for name in ("evaluations", "round_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{source}: {name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0 or self.max_candidates < 0:
            raise ValueError(f"{source}: workers and max_candidates must be >= 0")
        if self.backend not in BACKENDS:
            raise ValueError(f"{source}: backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.connect_timeout > 0:
            raise ValueError(f"{source}: connect_timeout must be a positive number of seconds, got "
                             f"{self.connect_timeout}")
        if self.backend == "ray" and self.workers < 1:
            raise ValueError(f"{source}: the ray backend needs workers >= 1")

    @property
    def max_samples(self) -> int:
        return self.max_candidates or 50 * self.evaluations

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def identity(self) -> dict:
        """The fields that define what the run searches (all but :data:`RUNTIME_FIELDS` and where the run lives)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS + ("run_dir", "storage")}


@dataclass
class SearchConfig(ConfigFile):
    n_feats: int = 16
    input_size: list[int] = field(default_factory=lambda: [180, 320])
    max_mult_adds: float | None = None
    latency: list[TargetConfig] = field(default_factory=list)
    psnr_min: str | None = "auto"
    psnr_max: float | None = None
    alpha: float = -0.07
    beta: float = -0.07

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
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"{source}: input_size must be [height, width], got {self.input_size}")
        if self.n_feats < 1:
            raise ValueError(f"{source}: n_feats must be at least 1, got {self.n_feats}")
        if self.max_mult_adds is not None and not self.max_mult_adds > 0:
            raise ValueError(f"{source}: max_mult_adds must be positive or null, got {self.max_mult_adds}")
        self.psnr_floor(None)  # "auto", null or a number
        from .registry import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ValueError(f"{source}: unknown strategy {self.strategy!r}; known: {', '.join(sorted(STRATEGIES))}")
        names = [t.name for t in self.latency]
        if len(set(names)) != len(names):
            raise ValueError(f"{source}: latency target names must be unique, got {names}")
        for t in self.latency:
            t.validate(source)

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
        from .reward import Constraints

        size = tuple(self.input_size)
        return Constraints(self.max_mult_adds, [t.build(size, self.scale, self.n_feats) for t in self.latency],
                           scale=self.scale, n_feats=self.n_feats, input_size=size)


#: Generator-search fields a discriminator search has no use for (no Mult-Adds limit, no latency).
GENERATOR_ONLY = ("n_feats", "input_size", "max_mult_adds", "latency", "psnr_min", "psnr_max", "alpha", "beta")
#: Strategies of a (single-objective) discriminator search.
D_STRATEGIES = ("reinforce", "random")


#: GanConfig fields a discriminator search sets itself (and leaves out of its config record).
GAN_FIXED = ("discriminator", "d_genotype", "val_images", "val_size", "val_lpips_net")


def _gan(value, source: str) -> GanConfig:
    if isinstance(value, dict):
        fixed = sorted(set(value) & set(GAN_FIXED))
        if fixed:
            raise ValueError(f"{source}: {', '.join(fixed)} cannot be set in a discriminator search (the candidates "
                             "are the discriminators; validation comes from the proxy section, LPIPS from lpips_net)")
    return GanConfig.from_dict(value, source)


@dataclass
class DiscriminatorSearchConfig(ConfigFile):
    """A discriminator search (``tinysr search discriminator``), TPSR Sec. 3.3: the generator search's
    run fields (``run_dir``, ``storage``, ``seed``, ``scale``, ``strategy``, ``strategy_options``,
    ``evaluations``, ``max_candidates``, ``round_size``, ``proxy``, ``backend``, ``workers``,
    ``threads``, ``address``: as in the module doc) and::

        generator: tpsr_x4        # the fixed pre-trained generator: a checkpoint or a model with bundled weights
        gan: {recipe: tpsr, ...}  # GAN fine-tuning (tinysr.train.config.GanConfig fields; recipe defaults)
        eval_every: 20            # validation LPIPS every this many steps (and at the end)
        lpips_net: vgg            # vgg (the paper's) | alex: the LPIPS of the reward

    The proxy section's ``lr`` / ``lr_min`` are G's Adam rate and cosine floor in the fine-tuning,
    ``gan.d_lr`` D's; ``proxy.patch_size * scale`` is the discriminator's input side (a multiple of
    32). The reward is ``-min`` of the last three validation LPIPS (:mod:`tinysr.search.gan_proxy`);
    no constraints, no weight sharing; strategies ``reinforce`` or ``random``.
    """

    run_dir: str = "runs/search-d"
    evaluations: int = 20
    round_size: int = 2
    generator: str = "tpsr_x4"
    gan: GanConfig | None = None  # the tpsr recipe when not given
    eval_every: int = 20
    lpips_net: str = "vgg"

    @classmethod
    def from_dict(cls, data: dict, source: str = "search config") -> "DiscriminatorSearchConfig":
        if isinstance(data, dict):
            wrong = [k for k in GENERATOR_ONLY if k in data]
            if wrong:
                raise ValueError(f"{source}: {', '.join(wrong)} belong to a generator search; a discriminator search "
                                 "has no Mult-Adds limit or latency targets")
        cfg = from_mapping(cls, data, source, {"proxy": _proxy, "gan": _gan})
        if cfg.gan is None:
            cfg.gan = _gan({}, f"{source}: gan")
        cfg.validate(source)
        return cfg

    def to_dict(self) -> dict:
        out = dataclasses.asdict(dataclasses.replace(self, gan=None))
        out["gan"] = {k: v for k, v in dataclasses.asdict(self.gan).items() if k not in GAN_FIXED}
        return json.loads(json.dumps(out))

    def validate(self, source: str = "search config"):
        self._validate_run(source)
        if self.strategy not in D_STRATEGIES:
            raise ValueError(f"{source}: a discriminator search has one objective (the reward): strategy must be "
                             f"{' or '.join(D_STRATEGIES)}, got {self.strategy!r}")
        if self.eval_every < 1:
            raise ValueError(f"{source}: eval_every must be at least 1, got {self.eval_every}")
        if self.lpips_net not in ("vgg", "alex"):
            raise ValueError(f"{source}: lpips_net must be vgg or alex, got {self.lpips_net!r}")
        side = self.proxy.patch_size * self.scale
        if side % 32:
            raise ValueError(f"{source}: the discriminator's input (proxy.patch_size x scale = {side} px) must be a "
                             "multiple of 32 (its 5 reductions halve it 5 times)")
        if self.proxy.lr_min > self.gan.d_lr:
            raise ValueError(f"{source}: proxy.lr_min {self.proxy.lr_min} exceeds gan.d_lr {self.gan.d_lr} "
                             "(both nets' cosine schedules end at lr_min)")
