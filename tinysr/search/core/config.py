"""What every search config shares (the generator and discriminator searches'; the trilevel search
reads its file the same way): :func:`read_mapping` (a YAML or TOML file), :class:`ConfigFile` (the
run fields: where the run lives, its strategy, how many evaluations, the proxy task, where they run;
command-line overrides; the run's identity) and :data:`RUNTIME_FIELDS` (what may change on resume).
The fields are documented in :mod:`tinysr.search.generator.config`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from tinysr.data.proxy import ProxyTask

BACKENDS = ("local", "ray")
#: Fields that may differ between a run and its resume (how it runs, not what it searches).
RUNTIME_FIELDS = ("backend", "workers", "threads", "address", "connect_timeout", "evaluations", "max_candidates")


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
