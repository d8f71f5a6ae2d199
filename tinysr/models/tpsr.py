"""TPSR and every searched cell: one skeleton around a genotype's cell.

Skeleton (paper Sec. 3.2 / published TPSR): mean shift -> 3x3 conv (3 -> n) ->
cell -> PReLU -> x2 sub-pixel blocks (3x3 conv to 12 channels + PixelShuffle(2);
the first from n channels, the others from 3) -> inverse mean shift.
"""
from __future__ import annotations

from torch import nn

from ..genotype import TPSR_GENOTYPE, Cell, Genotype
from .blocks import MeanShift, SubPixelUp, num_x2_steps
from .registry import register_model


class CellSR(nn.Module):
    family = "tpsr"

    def __init__(self, genotype: Genotype | str = TPSR_GENOTYPE, scale: int = 4, n_feats: int = 16):
        super().__init__()
        if isinstance(genotype, str):
            genotype = Genotype.parse(genotype)
        self.genotype, self.scale, self.n_feats = genotype, scale, n_feats
        self.sub_mean = MeanShift()
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.cell = Cell(genotype, n_feats)
        self.cell_act = nn.PReLU()
        steps = num_x2_steps(scale)
        self.up = nn.Sequential(*[SubPixelUp(n_feats if i == 0 else 3, 3) for i in range(steps)])
        self.add_mean = MeanShift(inverse=True)

    def config(self) -> dict:
        return {"genotype": str(self.genotype), "scale": self.scale, "n_feats": self.n_feats}

    def forward(self, x):
        h = self.head(self.sub_mean(x))
        return self.add_mean(self.up(self.cell_act(self.cell(h))))


@register_model("tpsr_x4", family="tpsr", scale=4, weights="tpsr_x4.pt",
                description="TPSR (ECCV 2020) cell, 16 features, x4")
def tpsr_x4(genotype=TPSR_GENOTYPE, n_feats=16):
    return CellSR(genotype, 4, n_feats)


@register_model("tpsr_x2", family="tpsr", scale=2, weights="tpsr_x2.pt",
                description="TPSR (ECCV 2020) cell, 16 features, x2")
def tpsr_x2(genotype=TPSR_GENOTYPE, n_feats=16):
    return CellSR(genotype, 2, n_feats)
