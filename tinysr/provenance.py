"""Provenance facts recorded beside every artifact: tool versions and content hashes.

One place for them, so a model card, a latency table and a bundled-weights recipe describe the
same things the same way.
"""
from __future__ import annotations

import hashlib
import os
from importlib import metadata

# the packages whose versions decide what an export, a profile or a checkpoint looks like
TOOLS = ("tinysr", "torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "onnx", "onnxruntime", "onnxsim")


def tool_versions(packages=TOOLS) -> dict:
    """``{distribution: version}`` of the installed ``packages``; ``None`` for one not installed."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def state_sha256(model) -> str:
    """Hex sha256 of a module's state: every tensor's name and float bytes, in key order."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()
