"""Files that ship inside the package (see ``tinysr/samples/README.md`` for their provenance)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def _sample(name: str) -> Path:
    return Path(str(resources.files("tinysr") / "samples" / name))


def sample_image() -> Path:
    """The 160x160 sample that ``tinysr upscale`` upscales when given no input."""
    return _sample("grace_hopper_160.png")


def sample_photo() -> Path:
    """The full-size sample photo: default calibration and verification image of ``tinysr export``."""
    return _sample("grace_hopper.jpg")
