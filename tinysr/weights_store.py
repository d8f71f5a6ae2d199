"""Finding third-party weight files offline.

Nothing is downloaded at runtime. A file is looked up, in order, in: an explicit path; the
folders in ``$TINYSR_WEIGHTS`` (``os.pathsep``-separated); ``~/.cache/tinysr/weights``; the
torch hub cache (``torch.hub.get_dir()/checkpoints``, where
``torch.hub.load_state_dict_from_url`` puts torchvision's files); and, for LPIPS' linear
layers, the installed ``lpips`` package (located without importing it). A missing file
raises :class:`MissingWeightsError` naming the file and every place looked at.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# logical name -> candidate relative paths
KNOWN = {
    "vgg16": ["vgg16_features_imagenet_torchvision.pth", "vgg16-397923af.pth"],
    "alexnet": ["alexnet_features_imagenet_torchvision.pth", "alexnet-owt-7be5be79.pth"],
    "lpips_vgg": ["lpips_v0.1/vgg.pth", "v0.1/vgg.pth", "weights/v0.1/vgg.pth"],
    "lpips_alex": ["lpips_v0.1/alex.pth", "v0.1/alex.pth", "weights/v0.1/alex.pth"],
    "niqe": ["niqe/niqe_pris_params.npz", "niqe_pris_params.npz"],
}
URLS = {"vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
        "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"}


class MissingWeightsError(FileNotFoundError):
    pass


def search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("TINYSR_WEIGHTS", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".cache" / "tinysr" / "weights")
    try:
        import torch.hub

        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    except Exception:  # torch hub unavailable: skip that place
        pass
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "weights")
    return dirs


def find_weights(name: str, path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        p = Path(path)
        if p.is_file():
            return p
        raise MissingWeightsError(f"{name} weights: {p} does not exist")
    tried = []
    for d in search_dirs():
        for rel in KNOWN[name]:
            p = d / rel
            if p.is_file():
                return p
            tried.append(str(p))
    hint = f" (on a machine with internet: torch.hub.load_state_dict_from_url('{URLS[name]}'))" if name in URLS else ""
    raise MissingWeightsError(
        f"{name} weights not found: looked for {', '.join(KNOWN[name])} in {', '.join(map(str, search_dirs())) or '-'}; "
        f"set TINYSR_WEIGHTS to the folder holding them{hint}")
