"""Training configuration: a YAML or TOML file plus ``key=value`` overrides."""
from __future__ import annotations

import dataclasses
import json
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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        cfg = cls(**data)
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
            data[key] = yaml.safe_load(value)
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

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))
