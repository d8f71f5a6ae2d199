"""How tinysr draws and writes its figures: matplotlib's non-interactive Agg backend, PNGs written
atomically (a reader never sees half a file)."""
from __future__ import annotations

import os
from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, png: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``fig`` to ``png`` atomically and close it; returns the path."""
    from tinysr.imageio import atomic_write

    png = Path(png)
    try:
        atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        pyplot().close(fig)
    return png
