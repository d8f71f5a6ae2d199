"""Import checkpoints published by other codebases (``tinysr import-weights``).

Each importer recognises its state dict by its keys, infers the architecture
from names and tensor shapes, maps the keys onto a tinysr model and loads them
strictly. Supported: the TPSR authors' release (royson/tpsr ``pretrained/*.pt``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from .genotype import CELL_INPUT, Genotype, Node
from .models.blocks import DIV2K_MEAN
from .models.tpsr import CellSR


class WeightImportError(ValueError):
    pass


@dataclass
class Imported:
    model: nn.Module
    architecture: str
    source_format: str
    notes: list[str]


_NODE_RE = re.compile(r"^(early_layers|middle_main_layers|middle_side_layers|skip_layer)\.Node_(\d+)_Operation_\d+_type_(Sep2d|Conv2d)_(\d)x\d\.model\.(\d)\.(weight|bias)$")
_GROUP_ORDER = ("early_layers", "middle_main_layers", "middle_side_layers", "skip_layer")


def is_official_tpsr(sd: dict) -> bool:
    return any(k.startswith("early_layers.Node_") for k in sd) and "first_layer.weight" in sd


def _official_tpsr_genotype(sd: dict) -> tuple[Genotype, dict[int, str]]:
    groups: dict[str, list[int]] = {g: [] for g in _GROUP_ORDER}
    kinds: dict[int, str] = {}
    for key in sd:
        m = _NODE_RE.match(key)
        if m:
            group, idx, typ, k = m.group(1), int(m.group(2)), m.group(3), int(m.group(4))
            if idx not in kinds:
                groups[group].append(idx)
                kinds[idx] = f"{'dsep' if typ == 'Sep2d' else 'conv'}{k}"
    n_nodes = len(kinds)
    if sorted(kinds) != list(range(n_nodes)) or not groups["early_layers"] or not groups["skip_layer"]:
        raise WeightImportError(f"official TPSR checkpoint with an unexpected node layout: {groups}")
    src: dict[int, int] = {}
    # The published skeleton: early chain from the cell input; the main and side chains both
    # start from the last early node; the skip chain starts from the cell input.
    starts = {"early_layers": CELL_INPUT, "middle_main_layers": groups["early_layers"][-1],
              "middle_side_layers": groups["early_layers"][-1], "skip_layer": CELL_INPUT}
    for g in _GROUP_ORDER:
        prev = starts[g]
        for idx in groups[g]:
            src[idx] = prev
            prev = idx
    nodes = tuple(Node(kinds[i], src[i]) for i in range(n_nodes))
    return Genotype(nodes), {i: g for g in groups for i in groups[g]}


def _check_mean_shift(sd: dict, prefix: str, sign: float, notes: list[str]):
    w, b = sd.get(f"{prefix}.weight"), sd.get(f"{prefix}.bias")
    if w is None or b is None:
        raise WeightImportError(f"missing {prefix}.weight / {prefix}.bias")
    expected_b = sign * 255 * torch.tensor(DIV2K_MEAN)
    if not torch.allclose(w.view(3, 3), torch.eye(3), atol=1e-6) or not torch.allclose(b, expected_b, atol=1e-3):
        raise WeightImportError(f"{prefix} is not the standard DIV2K mean shift (got bias {b.tolist()})")
    notes.append(f"{prefix}: standard DIV2K mean shift, folded into MeanShift")


def import_official_tpsr(sd: dict) -> Imported:
    genotype, _ = _official_tpsr_genotype(sd)
    n_up = len({k.split(".")[1] for k in sd if k.startswith("up_mod.")})
    scale = 2 ** n_up
    n_feats = sd["first_layer.weight"].shape[0]
    model = CellSR(genotype, scale=scale, n_feats=n_feats)
    notes: list[str] = []
    _check_mean_shift(sd, "sub_mean", -1, notes)
    _check_mean_shift(sd, "add_mean", +1, notes)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith(("sub_mean.", "add_mean.")):
            continue
        if key.startswith("first_layer."):
            mapped["head." + key.split(".", 1)[1]] = value
        elif key == "merge_op_act.weight":
            mapped["cell_act.weight"] = value
        elif key.startswith("up_mod."):
            _, j, layer, p = key.split(".")
            if layer != "extend":
                raise WeightImportError(f"unexpected key {key!r}")
            mapped[f"up.{j}.conv.{p}"] = value
        else:
            m = _NODE_RE.match(key)
            if not m:
                raise WeightImportError(f"unexpected key {key!r} in an official TPSR checkpoint")
            idx, typ, layer, p = int(m.group(2)), m.group(3), int(m.group(5)), m.group(6)
            base = f"cell.nodes.{idx}"
            table = ({0: "op.dw", 1: "op.act", 2: "op.pw", 3: "act"} if typ == "Sep2d" else {0: "op.conv", 1: "act"})
            if layer not in table:
                raise WeightImportError(f"unexpected layer index in {key!r}")
            mapped[f"{base}.{table[layer]}.{p}"] = value
    load_strict(model, mapped, source="official TPSR checkpoint")
    notes.append(f"genotype: {genotype}")
    return Imported(model, f"tpsr_x{scale}", "royson/tpsr", notes)


def load_strict(model: nn.Module, sd: dict, source: str):
    """``load_state_dict(strict=True)`` with one readable error listing what did not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(sd) & set(own)) if tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:6])}{' ...' if len(unexpected) > 6 else ''}")
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:6]))
        raise WeightImportError(f"{source} does not match {type(model).__name__}: " + " | ".join(parts))
    model.load_state_dict(sd, strict=True)


IMPORTERS = [(is_official_tpsr, import_official_tpsr)]


def import_state_dict(sd: dict) -> Imported:
    for detect, importer in IMPORTERS:
        if detect(sd):
            return importer(sd)
    sample = ", ".join(list(sd)[:5])
    raise WeightImportError(f"unrecognised checkpoint format (first keys: {sample}); supported: official TPSR (royson/tpsr)")
