"""Weight sharing between the candidates of a generator search (the paper's Eq. 5).

The store keeps one set of weights per (node index, operation): entry ``(i, o)`` holds the
weights of a :class:`~tinysr.genotype.CellNode` running ``o`` (its ``op.*`` and ``act.*``
parameters), which a network of any genotype with operation ``o`` at node ``i`` starts from,
whatever node ``i``'s input is. An entry starts random, built as :class:`CellSR` builds a node
(``CellNode(o, n_feats)``) under a seed derived from the store's ``seed``, ``i`` and ``o``, so the
initial weights do not depend on the order in which entries are first used.

**Eq. 5** (:meth:`WeightStore.offer`): after a candidate is trained and scored (higher is better,
e.g. validation PSNR), node ``i``'s weights for operation ``o`` are replaced by the candidate's
trained ones only if its score is higher than that of every earlier candidate that used ``o`` at
node ``i``. The store keeps the best score per entry; an entry no candidate has used yet takes
the first trained weights offered for it. **Ties** (a score equal to the entry's best) do not
replace: the earlier weights stay.

**The skeleton** (head conv, cell-output PReLU, x2 up-sampling blocks; the mean shifts have no
weights) is the same in every candidate, so Eq. 5 applied to it as one more entry that *every*
architecture uses gives: the skeleton is kept from the best-scoring candidate so far (strictly
higher score replaces it), and starts random (built as ``CellSR`` builds it).

A store of the extended space ``tpsr_plus`` (:class:`PlusWeightStore`) keys every entry by width as
well (and by cell, for networks of several cells): weights are shared only between candidates of the
same width; the skeleton is kept per width and up-sampler (the TPSR and anchor skeletons have other
parameters). A ``linear`` network (collapsible blocks in place of its full convolutions) has its own
entries and skeletons, under the same keys with ``"linear"`` appended.

A store is for one cell width ``n_feats`` and one ``scale`` (the up-sampling blocks depend on it).
:meth:`get` assembles the state dict of ``CellSR(genotype, scale, n_feats)`` (it loads with
``strict=True``), :meth:`init_model` loads it into a model, :meth:`save` / :meth:`load` persist
the store (atomically: a temporary file in the same folder, then ``os.replace``).
"""
from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict

import torch

from tinysr.genotype import CellNode, Genotype, NetworkGenotype, as_network
from tinysr.imageio import atomic_write

from tinysr.search.core.space import TPSR_SPACE, GeneratorSpace, PlusSpace, space_from_identity

FORMAT = "tinysr.weight-store/1"
SKELETON_GENOTYPE = Genotype.parse("identity@in")  # a cell with no weights: builds only the skeleton's


def _derived_seed(*parts) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in ("tinysr-weight-store",) + parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def _copy(state: dict) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k, v.detach().to("cpu", copy=True)) for k, v in state.items())



def _finite_score(score) -> float:
    """An offer's score as a float; a one-line ``ValueError`` unless it is a finite number."""
    try:
        score = float(score)
    except (TypeError, ValueError):
        raise ValueError(f"score must be a number, got {score!r}") from None
    if not math.isfinite(score):
        raise ValueError(f"score must be finite, got {score}")
    return score

class WeightStore:
    """Per-(node, op) weights shared across candidates, updated by Eq. 5 (see the module doc)."""

    def __init__(self, space: GeneratorSpace = TPSR_SPACE, scale: int = 4, n_feats: int = 16, seed: int = 0):
        self.space, self.scale, self.n_feats, self.seed = space, int(scale), int(n_feats), int(seed)
        self._entries: dict[tuple[int, str], OrderedDict] = {}
        self._scores: dict[tuple[int, str], float] = {}
        self._skeleton: OrderedDict | None = None
        self._skeleton_score: float | None = None
        self.offers = 0

    # ------------------------------------------------------------------ entries
    def _check_entry(self, node: int, op: str) -> tuple[int, str]:
        if not 0 <= int(node) < self.space.num_nodes:
            raise ValueError(f"node {node} is outside this store's cell (nodes 0..{self.space.num_nodes - 1})")
        if op not in self.space.ops:
            raise ValueError(f"operation {op!r} is not in this store's search space")
        return int(node), op

    def entry(self, node: int, op: str) -> "OrderedDict[str, torch.Tensor]":
        """The weights of entry ``(node, op)``: a ``CellNode`` state dict (``op.*``, ``act.*``); do not modify."""
        key = self._check_entry(node, op)
        if key not in self._entries:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_derived_seed(self.seed, self.n_feats, node, op))
                self._entries[key] = _copy(CellNode(op, self.n_feats).state_dict())
        return self._entries[key]

    def score(self, node: int, op: str) -> float | None:
        """Best score of the candidates whose weights entry ``(node, op)`` holds (None: still random)."""
        return self._scores.get(self._check_entry(node, op))

    def skeleton(self) -> "OrderedDict[str, torch.Tensor]":
        """The shared skeleton weights (``head.*``, ``cell_act.*``, ``up.*``); do not modify."""
        if self._skeleton is None:
            from tinysr.models.tpsr import CellSR

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_derived_seed(self.seed, self.n_feats, self.scale, "skeleton"))
                model = CellSR(SKELETON_GENOTYPE, self.scale, self.n_feats)
            self._skeleton = _copy({k: v for k, v in model.state_dict().items() if not k.startswith("cell.")})
        return self._skeleton

    @property
    def skeleton_score(self) -> float | None:
        """Score of the candidate the skeleton comes from: the best offered so far (None: still random)."""
        return self._skeleton_score

    # ---------------------------------------------------------------- assembling
    def _genotype(self, genotype: Genotype | str) -> Genotype:
        if isinstance(genotype, str):
            genotype = Genotype.parse(genotype)
        self.space.encode(genotype)  # in this space: node count and operations
        return genotype

    def get(self, genotype: Genotype | str) -> "OrderedDict[str, torch.Tensor]":
        """State dict of ``CellSR(genotype, scale, n_feats)`` from the store (fresh tensors, safe to modify)."""
        genotype = self._genotype(genotype)
        out = OrderedDict()
        for k, v in self.skeleton().items():
            out[k] = v.clone()
        for i, node in enumerate(genotype.nodes):
            for k, v in self.entry(i, node.op).items():
                out[f"cell.nodes.{i}.{k}"] = v.clone()
        return out

    def init_model(self, model):
        """Load the store's weights for ``model.genotype`` into a ``CellSR`` (``strict=True``); returns the model."""
        for attr, want in (("scale", self.scale), ("n_feats", self.n_feats)):
            have = getattr(model, attr, None)
            if have != want:
                raise ValueError(f"model has {attr}={have}; this weight store is for {attr}={want}")
        model.load_state_dict(self.get(model.genotype), strict=True)
        return model

    # ------------------------------------------------------------------ Eq. 5
    def offer(self, genotype: Genotype | str, state_dict: dict, score: float) -> list[tuple[int, str]]:
        """Apply Eq. 5 for a trained candidate; returns the ``(node, op)`` entries replaced, in node order.

        ``state_dict``: the trained ``CellSR(genotype, scale, n_feats)``'s (same keys and shapes as
        :meth:`get` gives). ``score``: higher is better. The skeleton is replaced too when
        ``score`` beats every earlier offer (see :attr:`skeleton_score`).
        """
        genotype = self._genotype(genotype)
        score = _finite_score(score)
        expected = self.get(genotype)
        missing = [k for k in expected if k not in state_dict]
        extra = [k for k in state_dict if k not in expected]
        if missing or extra:
            raise ValueError(f"state dict is not a CellSR({genotype}, scale={self.scale}, n_feats={self.n_feats})'s: "
                             f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                             f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
        for k, ref in expected.items():
            if tuple(state_dict[k].shape) != tuple(ref.shape):
                raise ValueError(f"state dict entry {k} has shape {tuple(state_dict[k].shape)}, "
                                 f"expected {tuple(ref.shape)}")

        def take(prefix: str, template: dict) -> OrderedDict:
            return OrderedDict((k, state_dict[prefix + k].detach().to("cpu", dtype=v.dtype, copy=True))
                               for k, v in template.items())

        replaced = []
        for i, node in enumerate(genotype.nodes):
            key = (i, node.op)
            best = self._scores.get(key)
            if best is None or score > best:
                self._entries[key] = take(f"cell.nodes.{i}.", self.entry(i, node.op))
                self._scores[key] = score
                replaced.append(key)
        if self._skeleton_score is None or score > self._skeleton_score:
            self._skeleton = take("", self.skeleton())
            self._skeleton_score = score
        self.offers += 1
        return replaced

    # ----------------------------------------------------------------- files
    def state(self) -> dict:
        """Everything :meth:`save` writes (entries still at their initial weights are left out: they are re-derived)."""
        return {"format": FORMAT,
                "space": {"num_nodes": self.space.num_nodes, "ops": list(self.space.ops)},
                "scale": self.scale, "n_feats": self.n_feats, "seed": self.seed, "offers": self.offers,
                "entries": [{"node": i, "op": op, "score": self._scores[(i, op)], "state": dict(self._entries[(i, op)])}
                            for (i, op) in sorted(self._scores, key=lambda k: (k[0], self.space.ops.index(k[1])))],
                "skeleton": None if self._skeleton_score is None else
                {"score": self._skeleton_score, "state": dict(self._skeleton)}}

    def save(self, path: str | os.PathLike) -> None:
        state = self.state()
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def from_state(cls, state: dict, source: str = "weight store") -> "WeightStore":
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{source}: not a weight store ({FORMAT})")
        sp = state["space"]
        if "widths" in sp and cls is WeightStore:  # a store of the extended space
            return PlusWeightStore.from_state(state, source)
        store = cls(GeneratorSpace(int(sp["num_nodes"]), tuple(sp["ops"])), state["scale"], state["n_feats"],
                    state["seed"])
        store.offers = int(state["offers"])
        for e in state["entries"]:
            key = store._check_entry(e["node"], e["op"])
            store._entries[key] = OrderedDict(e["state"])
            store._scores[key] = float(e["score"])
        if state["skeleton"] is not None:
            store._skeleton = OrderedDict(state["skeleton"]["state"])
            store._skeleton_score = float(state["skeleton"]["score"])
        return store

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WeightStore":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weight store not found: {os.fspath(path)}")
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=True), os.fspath(path))


def _key(key: tuple, linear) -> tuple:
    """A :class:`PlusWeightStore` key: a ``linear`` network's weights (collapsible blocks: other parameters)
    are kept apart from the same entry's plain weights, under the key with ``"linear"`` appended."""
    return key + ("linear",) if linear else key


class PlusWeightStore:
    """Weight sharing in the extended space (:class:`~tinysr.search.core.space.PlusSpace`): Eq. 5 per
    (width, cell, node, operation) entry and per (width, up-sampler) skeleton, so candidates share weights
    only with candidates of the same width. The interface of :class:`WeightStore` (``get``, ``init_model``,
    ``offer``, ``state``, ``save``, ``load``); genotypes are :class:`~tinysr.genotype.NetworkGenotype`.

    Initial weights: entry ``(w, 0, i, o)`` and the TPSR skeleton at width ``w`` start as a paper-space
    store of width ``w`` starts them (the same derived seeds), so a 16-feature one-cell TPSR candidate
    starts exactly as in the paper's search.
    """

    def __init__(self, space: PlusSpace, scale: int = 4, n_feats: int = 16, seed: int = 0):
        if not isinstance(space, PlusSpace):
            raise ValueError("a PlusWeightStore is for the extended space (tpsr_plus)")
        self.space, self.scale, self.seed = space, int(scale), int(seed)
        self.n_feats = int(n_feats)  # unused: every candidate has its own width (kept for the driver's interface)
        self._entries: dict[tuple, OrderedDict] = {}
        self._scores: dict[tuple, float] = {}
        self._skeletons: dict[tuple, OrderedDict] = {}
        self._skeleton_scores: dict[tuple, float] = {}
        self.offers = 0

    def _network(self, genotype) -> NetworkGenotype:
        net = as_network(genotype)
        self.space.encode(net)  # in this space: width, depth, skeleton, node count and operations
        return net

    def entry(self, width: int, cell: int, node: int, op: str, linear: bool = False) -> "OrderedDict[str, torch.Tensor]":
        key = _key((int(width), int(cell), int(node), op), linear)
        if key not in self._entries:
            parts = (self.seed, width, node, op) + ((f"cell{cell}",) if cell else ()) + (("linear",) if linear else ())
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_derived_seed(*parts))
                self._entries[key] = _copy(CellNode(op, int(width), bool(linear)).state_dict())
        return self._entries[key]

    def score(self, width: int, cell: int, node: int, op: str, linear: bool = False) -> float | None:
        return self._scores.get(_key((int(width), int(cell), int(node), op), linear))

    def skeleton(self, width: int, upsampler: str, linear: bool = False) -> "OrderedDict[str, torch.Tensor]":
        key = _key((int(width), upsampler), linear)
        if key not in self._skeletons:
            from tinysr.models.tpsr import CellSR

            parts = ((self.seed, width, self.scale, "skeleton") + (() if upsampler == "tpsr" else (upsampler,))
                     + (("linear",) if linear else ()))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_derived_seed(*parts))
                model = CellSR(NetworkGenotype(SKELETON_GENOTYPE, width, 1, upsampler, linear=bool(linear)), self.scale)
            self._skeletons[key] = _copy({k: v for k, v in model.state_dict().items() if not k.startswith("cell.")})
        return self._skeletons[key]

    def skeleton_score(self, width: int, upsampler: str, linear: bool = False) -> float | None:
        return self._skeleton_scores.get(_key((int(width), upsampler), linear))

    @staticmethod
    def _cell_prefix(net: NetworkGenotype, c: int) -> str:
        return "cell." if net.n_cells == 1 else f"cell.{c}."

    def get(self, genotype) -> "OrderedDict[str, torch.Tensor]":
        """State dict of ``CellSR(network, scale)`` from the store (fresh tensors)."""
        net = self._network(genotype)
        out = OrderedDict((k, v.clone()) for k, v in self.skeleton(net.n_feats, net.upsampler, net.linear).items())
        for c in range(net.n_cells):
            for i, node in enumerate(net.nodes):
                for k, v in self.entry(net.n_feats, c, i, node.op, net.linear).items():
                    out[f"{self._cell_prefix(net, c)}nodes.{i}.{k}"] = v.clone()
        return out

    def init_model(self, model):
        if getattr(model, "scale", None) != self.scale:
            raise ValueError(f"model has scale={getattr(model, 'scale', None)}; this weight store is for scale={self.scale}")
        model.load_state_dict(self.get(model.network), strict=True)
        return model

    def offer(self, genotype, state_dict: dict, score: float) -> list[tuple]:
        """Eq. 5 for a trained candidate; returns the ``(width, cell, node, op[, "linear"])`` entries replaced."""
        net = self._network(genotype)
        score = _finite_score(score)
        expected = self.get(net)
        missing = [k for k in expected if k not in state_dict]
        extra = [k for k in state_dict if k not in expected]
        bad = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
        if missing or extra or bad:
            raise ValueError(f"state dict is not a CellSR({net}, scale={self.scale})'s: missing {missing[:3]}, "
                             f"unexpected {extra[:3]}, other shapes {bad[:3]}")

        def take(prefix: str, template: dict) -> OrderedDict:
            return OrderedDict((k, state_dict[prefix + k].detach().to("cpu", dtype=v.dtype, copy=True))
                               for k, v in template.items())

        replaced = []
        for c in range(net.n_cells):
            for i, node in enumerate(net.nodes):
                key = _key((net.n_feats, c, i, node.op), net.linear)
                best = self._scores.get(key)
                if best is None or score > best:
                    self._entries[key] = take(f"{self._cell_prefix(net, c)}nodes.{i}.", self.entry(*key))
                    self._scores[key] = score
                    replaced.append(key)
        sk = _key((net.n_feats, net.upsampler), net.linear)
        best = self._skeleton_scores.get(sk)
        if best is None or score > best:
            self._skeletons[sk] = take("", self.skeleton(*sk))
            self._skeleton_scores[sk] = score
        self.offers += 1
        return replaced

    def state(self) -> dict:
        return {"format": FORMAT, "space": self.space.identity(), "scale": self.scale, "n_feats": self.n_feats,
                "seed": self.seed, "offers": self.offers,
                "entries": [{"width": k[0], "cell": k[1], "node": k[2], "op": k[3], **({"linear": True} if len(k) > 4 else {}),
                             "score": self._scores[k], "state": dict(self._entries[k])}
                            for k in sorted(self._scores, key=lambda k: (len(k), k[0], k[1], k[2],
                                                                         self.space.ops.index(k[3])))],
                "skeletons": [{"width": k[0], "upsampler": k[1], **({"linear": True} if len(k) > 2 else {}),
                               "score": self._skeleton_scores[k], "state": dict(self._skeletons[k])}
                              for k in sorted(self._skeleton_scores, key=lambda k: (len(k),) + k[:2])]}

    def save(self, path: str | os.PathLike) -> None:
        state = self.state()
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def from_state(cls, state: dict, source: str = "weight store") -> "PlusWeightStore":
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{source}: not a weight store ({FORMAT})")
        try:
            space = space_from_identity(state["space"])
            store = cls(space, state["scale"], state.get("n_feats", 16), state["seed"])
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        store.offers = int(state["offers"])
        for e in state["entries"]:
            key = _key((int(e["width"]), int(e["cell"]), int(e["node"]), e["op"]), e.get("linear", False))
            store._entries[key] = OrderedDict(e["state"])
            store._scores[key] = float(e["score"])
        for e in state["skeletons"]:
            key = _key((int(e["width"]), e["upsampler"]), e.get("linear", False))
            store._skeletons[key] = OrderedDict(e["state"])
            store._skeleton_scores[key] = float(e["score"])
        return store

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PlusWeightStore":
        return WeightStore.load(path)
