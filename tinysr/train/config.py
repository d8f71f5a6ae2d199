"""Training configuration: a YAML or TOML file plus ``key=value`` overrides."""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    model: str = "tpsr_x4"  # registry name
    genotype: str | None = None  # TPSR-family only: train this cell instead of the default
    train_data: list[str] = field(default_factory=list)  # folders of HR images
    val_data: str | None = None  # benchmark folder (HR/ + LR_bicubic/X{s}/) or HR images
    out_dir: str = "runs/tpsr_x4"
    patch_size: int = 48  # LR patch side
    batch_size: int = 16
    steps: int = 100_000
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "cosine"  # cosine | step
    lr_min: float = 1e-6  # cosine floor
    lr_step: int = 50_000  # step schedule: every lr_step steps ...
    lr_gamma: float = 0.5  # ... multiply the rate by lr_gamma
    val_every: int = 1000
    ckpt_every: int = 500
    seed: int = 0
    workers: int = 1
    threads: int = 0  # torch intra-op threads (0: torch's default)
    init_from: str | None = None  # checkpoint whose matching tensors initialise the model (e.g. x2 -> x4)
    repeat: int = 20  # dataset repetitions per epoch (only affects epoch bookkeeping)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        cfg = from_mapping(cls, data, source)
        cfg.validate()
        return cfg

    def override(self, pairs: list[str]) -> "TrainConfig":
        """Apply ``key=value`` overrides; values are parsed as YAML (numbers, lists, null)."""
        import yaml

        data = dataclasses.asdict(self)
        for pair in pairs:
            if "=" not in pair:
                raise ValueError(f"override {pair!r}: expected key=value")
            key, value = pair.split("=", 1)
            if key not in data:
                raise ValueError(f"override {pair!r}: unknown key {key!r}")
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = value  # kept as text: the type check below names it if text is not what the key takes
            if _hint(key) in (str, str | None) and parsed is not None and not isinstance(parsed, str):
                parsed = value  # a text field keeps the text as given (out_dir=2024, not the number 2024)
            data[key] = _typed(key, parsed, f"override {pair!r}")
        return TrainConfig.from_dict(data, "overrides")

    def validate(self):
        if isinstance(self.train_data, str):
            self.train_data = [self.train_data]
        self.betas = tuple(self.betas)
        if self.scheduler not in ("cosine", "step"):
            raise ValueError(f"scheduler must be 'cosine' or 'step', got {self.scheduler!r}")
        for name in ("patch_size", "batch_size", "steps", "val_every", "ckpt_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        from ..models import get_entry

        self.model = get_entry(self.model, kind="generator").name  # tpsr-x4 -> tpsr_x4; an unknown name suggests the nearest

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _hint(key: str, cls=None):
    return typing.get_type_hints(cls or TrainConfig)[key]


_WHAT = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list[str]: "a list of strings",
         list[int]: "a list of integers", dict: "a mapping", tuple[float, float]: "two numbers, e.g. [0.9, 0.999]"}


def from_mapping(cls, data, source: str, nested: dict | None = None):
    """The dataclass ``cls`` from a mapping (a config file's section), every value typed by
    :func:`typed_field`; ``nested``: ``{key: (value, source) -> object}`` for sections of their own.
    One-line ``ValueError`` for a non-mapping, unknown keys (listing the known ones) or a bad value."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    nested = nested or {}
    return cls(**{key: nested[key](value, f"{source}: {key}") if key in nested else _typed(key, value, source, cls)
                  for key, value in data.items()})


def typed_field(cls, key: str, value, source: str):
    """``value`` as the type the dataclass ``cls`` declares for field ``key``; else a one-line error
    naming key, value and the expected type (shared by every config dataclass)."""
    return _typed(key, value, source, cls)


def _typed(key: str, value, source: str, cls=None):
    """``value`` as the type the field ``key`` declares; else a one-line error naming key, value and type."""
    hint = _hint(key, cls)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        return _convert(hint, value)
    except (TypeError, ValueError, OverflowError):
        what = _WHAT[hint]
        raise ValueError(f"{source}: {key} must be {what}{' or null' if optional else ''}, got {value!r}") from None


def _convert(hint, value):
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if isinstance(value, bool):  # YAML's yes/no/true: never a number or a text here
        raise TypeError
    if hint is int:
        number = float(value)  # also '1e5' (YAML reads it as text) and 100000.0
        if not number.is_integer():
            raise ValueError
        return value if isinstance(value, int) else int(number)
    if hint is float:
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if hint == list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise TypeError
        return items
    if hint == list[int]:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_convert(int, v) for v in value]
    if hint is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if hint == tuple[float, float]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise TypeError
        return tuple(_convert(float, v) for v in value)
    raise TypeError(f"no conversion for {hint}")
