"""``tinysr search trilevel``: the differentiable trilevel search (TrilevelNAS) of a generator, with
an efficiency term from a device profile (expected latency) or from Mult-Adds.

The config (YAML or TOML), every field::

    run_dir: runs/trilevel-demo      # run.json, checkpoint.pt, log.csv, history.json, result.json, plots
    seed: 0                          # architecture init, Gumbel noise; batches use proxy.seed
    backbone: A                      # A: nearest x2 steps (cells at each level); B: one sub-pixel layer
    scale: 4
    n_feats: 16
    cells: [3, 2]                    # most cells per resolution level (A: log2(scale) numbers; B: one)
    nodes: 2                         # mixed-operation nodes per cell
    ops: [skip, conv3, res3, mb3]    # candidates: skip, res3, mb3 and any TPSR op (tinysr.ops.OPS)
    width_ratios: [0.5, 1.0, 1.5]    # hidden widths of res3 / mb3, in units of n (mb3: of 2n)
    teacher: null                    # a generator (registry name or checkpoint) whose outputs are the
                                     # content and perceptual target; null: the HR images
    content_weight: 1.0              # L1
    perceptual_weight: 0.0           # VGG16 feature L1 (perceptual_layer), needs the VGG16 trunk
    perceptual_layer: relu2_2
    efficiency: latency              # latency (needs profile) | flops | none
    profile: null                    # a trilevel latency table (tinysr lut build --space trilevel)
    input_size: [180, 320]           # LR size whose Mult-Adds the flops term counts (latency: the table's)
    efficiency_weight: 0.05          # lambda of the efficiency term (below)
    efficiency_budget: null          # null: loss += lambda * C / C0 (C0: the initial supernet's), a
                                     # steady pull towards cheaper networks; a number (ms or G Mult-Adds):
                                     # loss += lambda * max(C / budget - 1, 0), only over the budget
    efficiency_band: null            # with a budget: a fraction f < 1 adds lambda * max(f - C / budget, 0), a
                                     # pull up while C is under f x budget (TF-NAS's two-sided latency loss):
                                     # the derived network lands between f x budget and the budget
    efficiency_price: derived        # C: derived: the cost of the network derivation returns now (the
                                     # deepest surviving output's path at its chosen ops and widths), with the
                                     # expected cost's gradient (straight-through), so a budget binds on
                                     # what the search returns; expected: E[cost] of the weighted mixture
    order_weight: 1.0                # weight of the sorted-sparsestmax ordering penalty
    r_network: [0.0, 0.5]            # sparsestmax radius of the output weights, start -> end, as a
                                     # fraction of the vertex distance (linear over the search epochs)
    r_cell: [0.0, 1.0]               # the same for the operation weights (1.0: one-hot at the end)
    tau: [5.0, 0.5]                  # Gumbel-softmax temperature of the widths (geometric)
    epochs: 10                       # search epochs of proxy.steps steps each
    warmup_epochs: 1                 # weights only, architecture frozen (r and tau held at start)
    arch_lr: 0.003                   # Adam (0.5, 0.999) on the architecture parameters
    ckpt_every: 25                   # steps between checkpoints (and at every epoch end)
    threads: 2
    proxy: {train_data: [...], ...}  # data: tinysr.search.generator.proxy.ProxyTask; its lr / lr_min are the
                                     # supernet weights' Adam rate (cosine over the whole search)

Each step updates the supernet weights on a training batch and then (after the warm-up) the
architecture on a second batch stream of the same images (first-order, as DARTS), by content +
perceptual loss + the efficiency term + the ordering penalty. Batches are a pure function of
(proxy.seed, step) and the Gumbel noise comes from a saved generator, so a run killed at any point
resumes (``--resume``) to bit-identical weights. At every epoch end the supernet's validation PSNR
on the held-out images, the architecture weights and the architecture derived from them are
recorded; at the end, ``result.json`` holds the derived genotype with its parameters, Mult-Adds and
predicted latency, and ``arch_weights.png`` / ``derived.png`` show the search.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from tinysr.imageio import atomic_write
from tinysr.plotting import pyplot, save_png
from tinysr.train.config import from_mapping

from tinysr.search.core.config import read_mapping
from tinysr.data.proxy import ProxyData, ProxyTask, validation_psnr
from tinysr.search.trilevel.supernet import CostModel, SpaceSpec, Supernet, anneal

RUN_FORMAT = "tinysr.trilevel-run/1"
CKPT_FORMAT = "tinysr.trilevel-checkpoint/1"
EFFICIENCY = ("latency", "flops", "none")
PRICES = ("derived", "expected")
ARCH_STREAM = 1_000_003  # the architecture batches' seed offset from proxy.seed
#: Fields that may change between a run and its resume.
RUNTIME_FIELDS = ("threads", "ckpt_every", "run_dir")


@dataclass
class TrilevelConfig:
    run_dir: str = "runs/trilevel"
    seed: int = 0
    backbone: str = "A"
    scale: int = 4
    n_feats: int = 16
    cells: list[int] = field(default_factory=lambda: [3, 2])
    nodes: int = 2
    ops: list[str] = field(default_factory=lambda: ["skip", "conv3", "res3", "mb3"])
    width_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5])
    teacher: str | None = None
    content_weight: float = 1.0
    perceptual_weight: float = 0.0
    perceptual_layer: str = "relu2_2"
    efficiency: str = "latency"
    profile: str | None = None
    input_size: list[int] = field(default_factory=lambda: [180, 320])
    efficiency_weight: float = 0.05
    efficiency_budget: float | None = None
    efficiency_price: str = "derived"
    efficiency_band: float | None = None
    order_weight: float = 1.0
    r_network: list[float] = field(default_factory=lambda: [0.0, 0.5])
    r_cell: list[float] = field(default_factory=lambda: [0.0, 1.0])
    tau: list[float] = field(default_factory=lambda: [5.0, 0.5])
    epochs: int = 10
    warmup_epochs: int = 1
    arch_lr: float = 3e-3
    ckpt_every: int = 25
    threads: int = 2
    proxy: ProxyTask | None = None

    @classmethod
    def from_file(cls, path) -> "TrilevelConfig":
        return cls.from_dict(read_mapping(path), str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "trilevel config") -> "TrilevelConfig":
        cfg = from_mapping(cls, data, source, nested={"proxy": lambda v, s: ProxyTask.from_dict(v, s)})
        cfg.validate(source)
        return cfg

    def replace(self, **changes) -> "TrilevelConfig":
        cfg = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        cfg.validate("command line")
        return cfg

    def space(self) -> SpaceSpec:
        return SpaceSpec(self.backbone, self.scale, self.n_feats, tuple(self.cells), self.nodes, tuple(self.ops),
                         tuple(float(r) for r in self.width_ratios))

    def validate(self, source: str = "trilevel config") -> None:
        def bad(msg):
            raise ValueError(f"{source}: {msg}")

        if self.proxy is None:
            bad("a proxy section with train_data is required")
        if self.proxy.scale != self.scale:
            bad(f"proxy.scale {self.proxy.scale} differs from scale {self.scale}")
        try:
            self.space()
        except ValueError as e:
            bad(str(e))
        if self.efficiency not in EFFICIENCY:
            bad(f"efficiency must be one of {', '.join(EFFICIENCY)}, got {self.efficiency!r}")
        if self.efficiency == "latency" and not self.profile:
            bad("efficiency: latency needs a profile (a trilevel latency table: tinysr lut build --space trilevel)")
        if self.efficiency == "latency" and not Path(self.profile).is_file():
            raise FileNotFoundError(f"{source}: profile: no latency table {self.profile} (tinysr lut build --space "
                                    "trilevel writes one)")
        for name in ("r_network", "r_cell"):
            v = getattr(self, name)
            if len(v) != 2 or not all(0.0 <= x <= 1.0 for x in v):
                bad(f"{name} must be [start, end] fractions of the vertex distance in [0, 1], got {v}")
        if len(self.tau) != 2 or not all(t > 0 for t in self.tau):
            bad(f"tau must be [start, end] > 0, got {self.tau}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            bad(f"input_size must be [H, W], got {self.input_size}")
        for name in ("epochs", "threads", "ckpt_every"):
            if getattr(self, name) < 1:
                bad(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_epochs < self.epochs:
            bad(f"warmup_epochs must be in 0 .. epochs - 1, got {self.warmup_epochs}")
        for name in ("content_weight", "perceptual_weight", "efficiency_weight", "order_weight", "arch_lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                bad(f"{name} must be >= 0, got {v}")
        if self.content_weight == 0 and self.perceptual_weight == 0:
            bad("content_weight and perceptual_weight are both 0: nothing to learn from")
        if self.efficiency_band is not None:
            if self.efficiency_budget is None:
                bad("efficiency_band needs an efficiency_budget (the band is a fraction of it)")
            if not 0.0 < self.efficiency_band < 1.0:
                bad(f"efficiency_band must be a fraction in (0, 1), got {self.efficiency_band}")
        if self.efficiency_price not in PRICES:
            bad(f"efficiency_price must be one of {', '.join(PRICES)}, got {self.efficiency_price!r}")
        if self.efficiency_budget is not None and not self.efficiency_budget > 0:
            bad(f"efficiency_budget must be > 0 (or null), got {self.efficiency_budget}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def identity(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}

    @property
    def total_steps(self) -> int:
        return self.epochs * self.proxy.steps


# ------------------------------------------------------------------------------ the run
def _no_sums() -> dict:
    return {"loss": 0.0, "cost": 0.0, "order": 0.0, "n": 0}


class TrilevelSearch:
    """One trilevel search run in ``cfg.run_dir`` (new, or resumed from its checkpoint)."""

    def __init__(self, cfg: TrilevelConfig, resume: bool = False, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.run = Path(cfg.run_dir)
        run_file = self.run / "run.json"
        rec = self._resumable(run_file) if resume else None
        if not resume and run_file.exists():
            raise FileExistsError(f"{self.run} already holds a trilevel run: --resume it or choose another run_dir")
        torch.set_num_threads(cfg.threads)
        self.data = ProxyData.load(cfg.proxy, progress=progress)
        fingerprint = self.data.fingerprint()
        if rec is not None and rec.get("data") != fingerprint:
            raise ValueError(f"{self.run}: the training images or their split changed since the run started")
        self.table = None
        if cfg.efficiency == "latency":
            from tinysr.profile.lut import LatencyTable

            self.table = LatencyTable.load(cfg.profile)
            if self.table.space != "trilevel":
                raise ValueError(f"{cfg.profile}: a latency table of the {self.table.space} space; the trilevel "
                                 "search needs one built with tinysr lut build --space trilevel")
        spec = cfg.space()
        self.flops = CostModel(spec, tuple(cfg.input_size), None)  # Mult-Adds, recorded in every case
        if cfg.efficiency == "flops":
            self.cost = self.flops
        else:  # latency: the table's milliseconds; none: no efficiency term
            self.cost = CostModel(spec, tuple(cfg.input_size), self.table) if self.table is not None else None
        torch.manual_seed(cfg.seed)
        self.net = Supernet(spec)
        self.teacher = self._teacher()
        self.perceptual = None
        if cfg.perceptual_weight > 0:
            from tinysr.train.losses import PerceptualLoss

            self.perceptual = PerceptualLoss(cfg.perceptual_layer)
        self.opt_w = torch.optim.Adam(self.net.weight_parameters(), lr=cfg.proxy.lr)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_w, cfg.total_steps, eta_min=cfg.proxy.lr_min)
        self.opt_a = torch.optim.Adam(self.net.arch.parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step, self.history, self.log_rows = 0, [], []
        self.sums = _no_sums()  # the current epoch's sums (checkpointed: an epoch cut by a kill keeps its mean)
        self.budget = cfg.efficiency_budget
        if resume and (self.run / "checkpoint.pt").is_file():
            self._load()
        else:
            self._set_schedule(0)
            if self.cost is not None and self.budget is None:
                with torch.no_grad():
                    self.budget = float(self.priced_cost()[0])
        if not resume:
            self.run.mkdir(parents=True, exist_ok=True)
            record = {"format": RUN_FORMAT, "config": cfg.to_dict(), "data": fingerprint,
                      "outputs": [list(s) for s in self.net.outputs], "cost_unit": self._unit(),
                      "efficiency_budget": self.budget}
            atomic_write(run_file, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))

    def _resumable(self, run_file: Path) -> dict:
        """The run record of the run to resume, checked against this config (one-line errors)."""
        if not run_file.is_file():
            raise FileNotFoundError(f"{self.run}: no trilevel run to resume (no run.json); drop --resume to start it")
        rec = json.loads(run_file.read_text())
        if rec.get("format") != RUN_FORMAT:
            raise ValueError(f"{run_file}: not a trilevel search run (format {rec.get('format')!r})")
        ours = self.cfg.identity()
        theirs = {k: v for k, v in rec["config"].items() if k not in RUNTIME_FIELDS}
        theirs.setdefault("efficiency_price", "expected")  # runs from before the field priced the mixture
        theirs.setdefault("efficiency_band", None)
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if diff:
            raise ValueError(f"{self.run} was started with another config ({', '.join(diff)} differ): "
                             "resume with the same config or use another run_dir")
        return rec

    def _unit(self) -> str | None:
        return None if self.cost is None else self.cost.unit

    def _teacher(self):
        if not self.cfg.teacher:
            return None
        from tinysr.checkpoint import load_model

        t = load_model(self.cfg.teacher).requires_grad_(False)
        if getattr(t, "scale", self.cfg.scale) != self.cfg.scale:
            raise ValueError(f"teacher {self.cfg.teacher} is x{t.scale}, the search is x{self.cfg.scale}")
        return t

    # -------------------------------------------------------------------------- schedule
    def _set_schedule(self, step: int) -> None:
        cfg = self.cfg
        per = cfg.proxy.steps
        start = cfg.warmup_epochs * per
        frac = 0.0 if step < start else (step - start) / max(cfg.total_steps - start - 1, 1)
        self.net.r_network = anneal(*cfg.r_network, frac)
        self.net.r_cell = anneal(*cfg.r_cell, frac)
        self.net.tau = anneal(*cfg.tau, frac, "exp")

    def _target(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.teacher is None:
            return hr
        with torch.no_grad():
            return self.teacher(lr).clamp(0, 1)

    def priced_cost(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C, E)``: the cost the efficiency term prices (``efficiency_price``) and the expected cost."""
        expected = self.net.expected_cost(self.cost)
        if self.cfg.efficiency_price == "derived":
            return self.net.derived_cost(self.cost, expected), expected.detach()
        return expected, expected.detach()

    def efficiency_term(self, cost: torch.Tensor) -> torch.Tensor:
        """``C/C0`` without a budget, ``max(C/budget - 1, 0)`` with one, plus ``max(band - C/budget, 0)`` with
        an ``efficiency_band`` (see the config's fields)."""
        if self.cfg.efficiency_budget is None:
            return cost / self.budget
        term = torch.relu(cost / self.budget - 1.0)
        band = getattr(self.cfg, "efficiency_band", None)
        return term + torch.relu(band - cost / self.budget) if band is not None else term

    def _task_loss(self, sr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.cfg.content_weight * F.l1_loss(sr, target)
        if self.perceptual is not None:
            loss = loss + self.cfg.perceptual_weight * self.perceptual(sr, target)
        return loss

    # ------------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {"format": CKPT_FORMAT, "step": self.step, "net": self.net.state_dict(),
                "opt_w": self.opt_w.state_dict(), "sched": self.sched.state_dict(), "opt_a": self.opt_a.state_dict(),
                "gen": self.gen.get_state(), "history": self.history, "log": self.log_rows, "budget": self.budget,
                "sums": dict(self.sums)}

    def _save(self) -> None:
        state = self._state()
        atomic_write(self.run / "checkpoint.pt", lambda tmp: torch.save(state, tmp))

    def _load(self) -> None:
        path = self.run / "checkpoint.pt"
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("format") != CKPT_FORMAT:
            raise ValueError(f"{path}: not a trilevel search checkpoint")
        self.net.load_state_dict(state["net"])
        self.opt_w.load_state_dict(state["opt_w"])
        self.sched.load_state_dict(state["sched"])
        self.opt_a.load_state_dict(state["opt_a"])
        self.gen.set_state(state["gen"])
        self.step, self.history, self.log_rows = state["step"], state["history"], state["log"]
        self.budget = state["budget"]
        if "sums" not in state and self.step % self.cfg.proxy.steps:
            raise ValueError(f"{path}: written mid-epoch by an older version without the epoch's sums; resume "
                             "it with that version or start the run again")
        self.sums = dict(state.get("sums") or _no_sums())
        self._set_schedule(self.step)

    # -------------------------------------------------------------------------------- run
    def run_search(self) -> dict:
        cfg = self.cfg
        total, per = cfg.total_steps, cfg.proxy.steps
        w_batches = self.data.batches(total, start=self.step)
        a_batches = self.data.batches(total, seed=cfg.proxy.seed + ARCH_STREAM, start=self.step)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, desc="trilevel search", unit="step", dynamic_ncols=True)
        started = time.time()
        for (lr, hr), (alr, ahr) in zip(w_batches, a_batches):
            self._set_schedule(self.step)
            self.net.train()
            # weights
            self.opt_w.zero_grad(set_to_none=True)
            loss = self._task_loss(self.net(lr, self.gen), self._target(lr, hr))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"trilevel search diverged at step {self.step} (loss {loss.item()}): "
                                         "lower proxy.lr")
            loss.backward()
            self.opt_w.step()
            self.sched.step()
            # architecture
            cost = order = torch.zeros(())
            if self.step >= cfg.warmup_epochs * per:
                self.opt_a.zero_grad(set_to_none=True)
                a_loss = self._task_loss(self.net(alr, self.gen), self._target(alr, ahr))
                order = self.net.order_penalty()
                a_loss = a_loss + cfg.order_weight * order
                if self.cost is not None:
                    priced, cost = self.priced_cost()
                    a_loss = a_loss + cfg.efficiency_weight * self.efficiency_term(priced)
                a_loss.backward()
                self.opt_a.step()
            self.step += 1
            values = {"loss": loss.detach().item(), "cost": cost.detach().item(), "order": order.detach().item()}
            for k, v in values.items():
                self.sums[k] += v
            self.sums["n"] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {values['loss']:.4f} cost {values['cost']:.3g} r {self.net.r_cell:.2f}")
            if self.step % per == 0:
                self._end_epoch(self.sums, time.time() - started)
                self.sums = _no_sums()
                self._save()
            elif self.step % cfg.ckpt_every == 0:
                self._save()
        if bar is not None:
            bar.close()
        return self.finish()

    def _end_epoch(self, sums: dict, seconds: float) -> None:
        n = max(sums["n"], 1)
        genotype, how = self.net.derive()
        self.net.eval()
        psnr = validation_psnr(self.net, self.data.val)
        row = {"epoch": self.step // self.cfg.proxy.steps, "step": self.step, "loss": sums["loss"] / n,
               "expected_cost": sums["cost"] / n if self.cost is not None else None, "order_penalty": sums["order"] / n,
               "r_network": self.net.r_network, "r_cell": self.net.r_cell, "tau": self.net.tau, "val_psnr": psnr,
               "derived_cost": self.cost.of_genotype(genotype) if self.cost is not None else None,
               "derived_mult_adds_g": self.flops.of_genotype(genotype), "derived": str(genotype),
               "seconds": round(seconds, 1)}
        self.log_rows.append(row)
        self.history.append({**self.net.arch_snapshot(), "epoch": row["epoch"], "derived": str(genotype), **how})
        self._write_log()

    def _write_log(self) -> None:
        rows = self.log_rows

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)

        atomic_write(self.run / "log.csv", write)
        atomic_write(self.run / "history.json", lambda tmp: Path(tmp).write_text(json.dumps(self.history)))

    def finish(self) -> dict:
        """The derived network and its figures, written to ``result.json``; the plots."""
        from tinysr.complexity import count_params
        from tinysr.models.trilevel import TrilevelSR

        genotype, how = self.net.derive()
        model = TrilevelSR(genotype, self.cfg.scale, self.cfg.n_feats)
        h, w = self.cfg.input_size
        result = {
            "genotype": str(genotype), "backbone": self.cfg.backbone, "scale": self.cfg.scale,
            "n_feats": self.cfg.n_feats, "params": count_params(model), "input_size": [h, w],
            "mult_adds": self.flops.of_genotype(genotype) * 1e9,
            "predicted_latency_ms": self.cost.of_genotype(genotype) if self.table is not None else None,
            "profile": self.cfg.profile if self.table is not None else None,
            "latency_input_size": [self.table.h, self.table.w] if self.table is not None else None,
            "supernet_val_psnr": self.log_rows[-1]["val_psnr"] if self.log_rows else None,
            "steps": self.step, "epochs": len(self.log_rows), **how,
        }
        atomic_write(self.run / "result.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
        if self.history:
            plot_arch_weights(self.history, self.run / "arch_weights.png")
        plot_derived(result, self.run / "derived.png")
        return result


def run_trilevel(cfg: TrilevelConfig, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) a trilevel search; the derived network's record (``result.json``)."""
    return TrilevelSearch(cfg, resume=resume, progress=progress).run_search()


def is_trilevel_run(run_dir) -> bool:
    f = Path(run_dir) / "run.json"
    try:
        return json.loads(f.read_text()).get("format") == RUN_FORMAT
    except (OSError, ValueError):
        return False


def format_run(run_dir) -> str:
    """A trilevel run's epochs (loss, expected cost, validation PSNR, derived network) and result."""
    run = Path(run_dir)
    rec = json.loads((run / "run.json").read_text())
    unit = rec.get("cost_unit") or "-"
    lines = [f"trilevel run {run}: backbone {rec['config']['backbone']}, x{rec['config']['scale']}, "
             f"efficiency {rec['config']['efficiency']} ({unit})"]
    log = run / "log.csv"
    rows = list(csv.DictReader(log.open())) if log.is_file() else []
    lines.append(f"{'epoch':>5} {'loss':>8} {'E[cost]':>9} {'order':>7} {'r_cell':>6} {'val dB':>7} "
                 f"{'derived cost':>12}  derived")
    for r in rows:
        def num(key, spec):
            return format(float(r[key]), spec) if r.get(key) not in (None, "") else "-"

        lines.append(f"{r['epoch']:>5} {num('loss', '8.4f'):>8} {num('expected_cost', '9.3f'):>9} "
                     f"{num('order_penalty', '7.4f'):>7} {num('r_cell', '6.2f'):>6} {num('val_psnr', '7.3f'):>7} "
                     f"{num('derived_cost', '12.3f'):>12}  {r['derived']}")
    if not rows:
        lines.append("  (no epoch finished yet)")
    result = run / "result.json"
    if result.is_file():
        r = json.loads(result.read_text())
        lat = f", {r['predicted_latency_ms']:.2f} ms predicted" if r.get("predicted_latency_ms") is not None else ""
        lines.append(f"derived: {r['genotype']} ({r['params']} params, {r['mult_adds'] / 1e9:.3f} G Mult-Adds{lat})")
    else:
        lines.append(f"not finished: tinysr search trilevel --config CONFIG --resume (run_dir {run})")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ plots
def arch_weight_series(history: list, n_feats: int | None = None) -> dict[str, list[tuple[str, list[float]]]]:
    """The curves of :func:`plot_arch_weights`, ``{"network" | "cell" | "kernel": [(label, values
    per epoch)]}``: the nonzero output weights; on the last derived path, each node's chosen
    operation's weight; and, for a node whose chosen operation has a width (``res3``, ``mb3``), the
    probability of its chosen width, labelled ``op:hidden`` as in the genotype (``n_feats``: the
    run's, when the history predates its recording; without either, the ratio ``x1.5``)."""
    from tinysr.models.trilevel import WIDTH_OPS, hidden_width

    last = history[-1]
    ops, ratios = last["ops"], last.get("ratios")
    n = last.get("n_feats", n_feats)
    series: dict[str, list] = {"network": [], "cell": [], "kernel": []}
    for i, s in enumerate(last["outputs"]):
        ys = [h["w"][i] for h in history]
        if max(ys) > 0:
            series["network"].append(("cells " + "/".join(map(str, s)), ys))
    for c in _path_cells(last):
        ci = last["cells"].index(c)
        for j in range(len(last["a"][ci])):
            a = [h["a"][ci][j] for h in history]
            k = max(range(len(ops)), key=lambda k: a[-1][k])
            where = f"cell {'/'.join(map(str, c))} node {j}"
            series["cell"].append((f"{where}: {ops[k]}", [v[k] for v in a]))
            if ops[k] not in WIDTH_OPS:
                continue  # no width to choose
            p = [h["p"][ci][j] for h in history]
            m = max(range(len(p[-1])), key=lambda m: p[-1][m])
            if ratios is None:
                width = f"width #{m}"
            elif n is None:
                width = f"x{ratios[m]:g}"
            else:
                width = f"{ops[k]}:{hidden_width(ops[k], n, ratios[m])}"
            series["kernel"].append((f"{where}: {width}", [v[m] for v in p]))
    return series


def plot_arch_weights(history: list, png, n_feats: int | None = None) -> Path:
    """Architecture weights over the epochs: the output (network-level) weights, and the operation
    and width weights of every node on the last derived path (:func:`arch_weight_series`)."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    series = arch_weight_series(history, n_feats)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    titles = {"network": ("network level: output weights (sorted sparsestmax)", "weight"),
              "cell": ("cell level: weight of each chosen op (sparsestmax)", "weight"),
              "kernel": ("kernel level: probability of the chosen width (width-searched ops)", "probability")}
    for ax, (level, (title, ylabel)) in zip(axes, titles.items()):
        for label, ys in series[level]:
            ax.plot(epochs, ys, marker=".", label=label)
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        if level != "network":
            ax.set_ylim(0, 1.05)
        if series[level]:
            ax.legend(fontsize=7, ncol=2 if level == "network" else 1)
        elif level == "kernel":
            ax.text(0.5, 0.5, "no width-searched op on the derived path", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
    fig.tight_layout()
    return save_png(fig, png)


def _path_cells(snapshot: dict) -> list:
    """The cell states on the derived output's path."""
    out = snapshot["output"]
    cells = []
    for level, count in enumerate(out):
        prefix = list(out[:level])
        cells += [prefix + [c] for c in range(1, count + 1)]
    return [c for c in cells if c in snapshot["cells"]]


def plot_derived(result: dict, png) -> Path:
    """The derived network as a chain of boxes (head, cells with their nodes, upsampling steps, tail)."""
    from tinysr.models.trilevel import UP, TrilevelGenotype

    plt = pyplot()
    g = TrilevelGenotype.parse(result["genotype"])
    boxes = [("head\nconv3 3->%d" % result["n_feats"], "#cfd8dc")]
    for step in g.path:
        if step == UP:
            label = ("nearest x2\n+ conv3" if g.backbone == "A" else f"sub-pixel\nx{result['scale']}")
            boxes.append((label, "#ffe0b2"))
        else:
            boxes.append(("cell\n" + "\n".join(str(n) for n in step), "#c8e6c9"))
    if g.backbone == "A":
        boxes.append(("conv3 ->RGB", "#cfd8dc"))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(boxes)), 3))
    for i, (text, colour) in enumerate(boxes):
        ax.add_patch(plt.Rectangle((i * 1.6, 0), 1.3, 1.6, facecolor=colour, edgecolor="black"))
        ax.text(i * 1.6 + 0.65, 0.8, text, ha="center", va="center", fontsize=8)
        if i:
            ax.annotate("", xy=(i * 1.6, 0.8), xytext=(i * 1.6 - 0.3, 0.8), arrowprops={"arrowstyle": "->"})
    lat = result.get("predicted_latency_ms")
    ax.set_title(f"derived x{result['scale']} network (backbone {g.backbone}): {result['params']} params, "
                 f"{result['mult_adds'] / 1e9:.3f} G Mult-Adds"
                 + (f", {lat:.2f} ms predicted" if lat is not None else ""), fontsize=9)
    ax.set_xlim(-0.2, len(boxes) * 1.6)
    ax.set_ylim(-0.2, 1.8)
    ax.axis("off")
    fig.tight_layout()
    return save_png(fig, png)
