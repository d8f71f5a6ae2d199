"""The search spaces: the generator's S_G (below) and the discriminator's (:class:`DiscriminatorSpace`).

The generator search space S_G = Op x Z_1 x ... x Op x Z_10 as integer decisions.

A :class:`~tinysr.genotype.Genotype` is what the search samples; this module only numbers its
choices. Node ``i`` (0-based) contributes two decisions, in this order:

* ``op_i``: the index of its operation in ``space.ops`` (:data:`tinysr.ops.OP_NAMES`, 16 choices);
* ``src_i``: its input, ``0`` for the cell input and ``j + 1`` for node ``j < i`` (``i + 1`` choices).

so a decision vector is ``(op_0, src_0, op_1, src_1, ..., op_9, src_9)``: 20 integers for the paper's
10-node cell, ``16**10 * 10! ~= 3.99e18`` architectures (:func:`space_size`). The nodes, operations
and cell width come from the latency tables' space definition
(:data:`tinysr.profile.lut.SPACES`), so both agree on what "the TPSR space" is.

The same choices as named categorical parameters (:meth:`GeneratorSpace.to_params`), for a trial
store: ``op_i`` is the operation name and ``src_i`` is ``"in"`` or the earlier node's index as a
string (``"0"`` .. ``str(i - 1)``), as in the genotype's text form ``OP@SRC``;
:meth:`GeneratorSpace.param_choices` lists every parameter's choices in decision order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from tinysr.genotype import CELL_INPUT, Genotype, NetworkGenotype, Node, parse_genotype
from tinysr.ops import get_op
from tinysr.profile.lut import SKELETONS, SPACES, skeleton_name

CELL_INPUT_PARAM = "in"


class _DecisionSpace:
    """What every search space shares on top of its own numbering (``num_decisions``,
    ``cardinalities``, ``param_choices``, ``validate``, ``decode``, ``params_to_decisions``):
    integer lists, named parameters and uniform sampling."""

    def _as_list(self, decisions) -> list:
        try:
            return list(decisions)
        except TypeError:
            raise ValueError(f"a decision vector is a sequence of {self.num_decisions} integers, "
                             f"not {type(decisions).__name__}") from None

    def _named(self, values: Sequence[int]) -> dict[str, str]:
        return {name: choices[v] for (name, choices), v in zip(self.param_choices().items(), values)}

    def from_params(self, params: Mapping[str, object]):
        """The genotype of named parameters (extra keys, e.g. other hyper-parameters, are ignored)."""
        return self.decode(self.params_to_decisions(params))

    def sample(self, rng: np.random.Generator, n: int | None = None):
        """Uniform sample(s) over the space: one decision vector, or a list of ``n``.

        Every decision is drawn independently and uniformly from its choices, which is uniform
        over the product space (every genotype has probability ``1 / size()``).
        """
        count = 1 if n is None else int(n)
        if count < 0:
            raise ValueError(f"cannot sample {count} architectures")
        draws = rng.integers(0, np.asarray(self.cardinalities), size=(count, self.num_decisions))
        vectors = [tuple(int(v) for v in row) for row in draws]
        return vectors[0] if n is None else vectors


@dataclass(frozen=True)
class GeneratorSpace(_DecisionSpace):
    """A cell of ``num_nodes`` nodes, each an operation from ``ops`` and an input (see the module doc)."""

    num_nodes: int
    ops: tuple[str, ...]

    def __post_init__(self):
        if int(self.num_nodes) < 1:
            raise ValueError(f"a cell needs at least one node, got num_nodes={self.num_nodes}")
        if not self.ops:
            raise ValueError("a search space needs at least one operation")
        for op in self.ops:
            get_op(op)
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"operations listed twice in {self.ops}")
        object.__setattr__(self, "num_nodes", int(self.num_nodes))
        object.__setattr__(self, "ops", tuple(self.ops))
        cards: list[int] = []
        names: list[str] = []
        for i in range(self.num_nodes):
            cards += [len(self.ops), i + 1]
            names += [f"op_{i}", f"src_{i}"]
        object.__setattr__(self, "_cards", tuple(cards))
        object.__setattr__(self, "_names", tuple(names))

    @classmethod
    def named(cls, name: str = "tpsr") -> "GeneratorSpace":
        """The space of a latency-table space name (``tinysr.profile.lut.SPACES``): ``tpsr`` (the paper's)
        or ``tpsr_plus`` (:class:`PlusSpace`)."""
        try:
            spec = SPACES[name]
        except KeyError:
            raise ValueError(f"unknown search space {name!r}; known: {', '.join(SPACES)}") from None
        if "num_nodes" not in spec:
            raise ValueError(f"{name!r} is not a generator cell space; known: "
                             f"{', '.join(k for k, v in SPACES.items() if 'num_nodes' in v)}")
        if "widths" in spec:
            return PlusSpace(spec["num_nodes"], tuple(spec["ops"]), tuple(spec["widths"]), tuple(spec["depths"]),
                             tuple(spec["skeletons"]))
        return cls(spec["num_nodes"], tuple(spec["ops"]))

    # ------------------------------------------------------------------ layout
    @property
    def num_decisions(self) -> int:
        return 2 * self.num_nodes

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Number of choices of every decision: ``(len(ops), 1, len(ops), 2, ..., len(ops), num_nodes)``."""
        return self._cards

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter name of every decision: ``("op_0", "src_0", "op_1", ...)``."""
        return self._names

    def size(self) -> int:
        """Number of distinct decision vectors (= genotypes): ``len(ops)**num_nodes * num_nodes!``."""
        return len(self.ops) ** self.num_nodes * math.factorial(self.num_nodes)

    def param_choices(self) -> dict[str, tuple]:
        """``{name: choices}`` of the named parameters, in decision order (choice k = decision value k)."""
        out: dict[str, tuple] = {}
        for i in range(self.num_nodes):
            out[f"op_{i}"] = self.ops
            out[f"src_{i}"] = (CELL_INPUT_PARAM,) + tuple(str(j) for j in range(i))
        return out

    # -------------------------------------------------------------- validation
    def validate(self, decisions: Sequence[int]) -> tuple[int, ...]:
        """``decisions`` as a tuple of ints; ``ValueError`` (one line) if it is not a vector of this space."""
        values = self._as_list(decisions)
        if len(values) != self.num_decisions:
            raise ValueError(f"a decision vector has {self.num_decisions} entries "
                             f"(op and input of {self.num_nodes} nodes), got {len(values)}")
        out = []
        for d, (v, card, name) in enumerate(zip(values, self.cardinalities, self.names)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"decision {d} ({name}) = {v!r} is not an integer")
            v = int(v)
            if not 0 <= v < card:
                i = d // 2
                if d % 2 == 0:
                    what = f"an operation index 0..{card - 1}"
                else:
                    what = "0 (cell input)" + (f" or 1..{i} (node 0..{i - 1})" if i else "")
                raise ValueError(f"decision {d} ({name}) = {v} is out of range: expected {what}")
            out.append(v)
        return tuple(out)

    # ---------------------------------------------------------------- encoding
    def encode(self, genotype: Genotype | str) -> tuple[int, ...]:
        """The decision vector of ``genotype`` (a :class:`Genotype` or its text)."""
        if isinstance(genotype, str):
            genotype = Genotype.parse(genotype)
        if len(genotype.nodes) != self.num_nodes:
            raise ValueError(f"genotype {genotype} has {len(genotype.nodes)} nodes; this space has {self.num_nodes}")
        out: list[int] = []
        for i, node in enumerate(genotype.nodes):
            try:
                op = self.ops.index(node.op)
            except ValueError:
                raise ValueError(f"node {i} ({node}) uses {node.op!r}, not an operation of this space") from None
            out += [op, 0 if node.src == CELL_INPUT else node.src + 1]
        return tuple(out)

    def decode(self, decisions: Sequence[int]) -> Genotype:
        """The :class:`Genotype` of a decision vector (validated first)."""
        values = self.validate(decisions)
        return Genotype(tuple(Node(self.ops[values[2 * i]], values[2 * i + 1] - 1 if values[2 * i + 1] else CELL_INPUT)
                              for i in range(self.num_nodes)))

    def to_params(self, item: Genotype | str | Sequence[int]) -> dict[str, str]:
        """Named parameters (``op_i``: op name, ``src_i``: ``"in"`` or ``"j"``) of a genotype or decision vector."""
        return self._named(self.encode(item) if isinstance(item, (Genotype, NetworkGenotype, str))
                           else self.validate(item))

    def params_to_decisions(self, params: Mapping[str, object]) -> tuple[int, ...]:
        out = []
        for name, choices in self.param_choices().items():
            if name not in params:
                raise ValueError(f"parameter {name!r} missing: a generator needs {', '.join(self.names)}")
            value = params[name]
            if name.startswith("src_") and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                value = str(int(value))  # an index given as a number
            try:
                out.append(choices.index(value))
            except ValueError:
                raise ValueError(f"parameter {name} = {value!r} is not one of {', '.join(map(str, choices))}") from None
        return tuple(out)

    # ---------------------------------------------------------------- sampling
    def sample_genotype(self, rng: np.random.Generator) -> Genotype:
        return self.decode(self.sample(rng))

    def identity(self) -> dict:
        """What a strategy's state and a run's meta record of the space (JSON-ready; the stored form
        of every generator checkpoint: ``{"num_nodes", "ops"}``)."""
        return {"num_nodes": self.num_nodes, "ops": list(self.ops)}

    def describe(self) -> str:
        return f"a {self.num_nodes}-node generator space over {len(self.ops)} operations"


@dataclass(frozen=True)
class PlusSpace(GeneratorSpace):
    """The extended generator space ``tpsr_plus``: the paper's cell decisions plus three skeleton decisions
    in front, ``width`` (``widths``, default 16 / 24 / 32), ``depth`` (cells in sequence, 1 / 2) and
    ``skeleton`` (``tpsr``, ``anchor``, ``anchor+clip``, ``anchor+clip+linear``:
    :class:`~tinysr.models.tpsr.CellSR`'s up-sampler, output clip and collapsible linear training), so a decision vector is ``(width, depth, skeleton, op_0, src_0, ...)``
    (23 integers) and decodes to a :class:`~tinysr.genotype.NetworkGenotype`. Named parameters:
    ``width`` and ``depth`` are ints, ``skeleton`` the choice's name, then the cell's as in the paper's space.
    """

    widths: tuple[int, ...] = (16, 24, 32)
    depths: tuple[int, ...] = (1, 2)
    skeletons: tuple[str, ...] = ("tpsr", "anchor", "anchor+clip", "anchor+clip+linear")

    def __post_init__(self):
        super().__post_init__()
        for name in ("widths", "depths", "skeletons"):
            values = tuple(getattr(self, name))
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct and not empty, got {values}")
            object.__setattr__(self, name, values if name == "skeletons" else tuple(int(v) for v in values))
        for sk in self.skeletons:
            if sk not in SKELETONS:
                raise ValueError(f"unknown skeleton {sk!r}; known: {', '.join(SKELETONS)}")
        if min(self.widths) < 1 or min(self.depths) < 1:
            raise ValueError("widths and depths must be positive")
        object.__setattr__(self, "_cell", GeneratorSpace(self.num_nodes, self.ops))  # the cell's decisions
        object.__setattr__(self, "_cards", (len(self.widths), len(self.depths), len(self.skeletons)) + self._cards)
        object.__setattr__(self, "_names", ("width", "depth", "skeleton") + self._names)

    @property
    def num_decisions(self) -> int:
        return 3 + 2 * self.num_nodes

    def size(self) -> int:
        return len(self.widths) * len(self.depths) * len(self.skeletons) * self._cell.size()

    def param_choices(self) -> dict[str, tuple]:
        return {"width": self.widths, "depth": self.depths, "skeleton": self.skeletons, **self._cell.param_choices()}

    def validate(self, decisions: Sequence[int]) -> tuple[int, ...]:
        values = self._as_list(decisions)
        if len(values) != self.num_decisions:
            raise ValueError(f"a decision vector has {self.num_decisions} entries (width, depth, skeleton, then op "
                             f"and input of {self.num_nodes} nodes), got {len(values)}")
        head = []
        for d, (v, card, name) in enumerate(zip(values[:3], self.cardinalities, self.names)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"decision {d} ({name}) = {v!r} is not an integer")
            if not 0 <= int(v) < card:
                raise ValueError(f"decision {d} ({name}) = {v} is out of range: expected 0..{card - 1}")
            head.append(int(v))
        return tuple(head) + self._cell.validate(values[3:])

    def encode(self, genotype) -> tuple[int, ...]:
        if isinstance(genotype, str):
            genotype = parse_genotype(genotype)
        if isinstance(genotype, Genotype):
            genotype = NetworkGenotype(genotype)
        sk = skeleton_name(genotype.upsampler, genotype.clip, genotype.linear, genotype.skip)
        for what, value, choices in (("width", genotype.n_feats, self.widths), ("depth", genotype.n_cells, self.depths),
                                     ("skeleton", sk, self.skeletons)):
            if value not in choices:
                raise ValueError(f"{genotype}: {what} {value} is not one of this space's {', '.join(map(str, choices))}")
        return ((self.widths.index(genotype.n_feats), self.depths.index(genotype.n_cells), self.skeletons.index(sk))
                + self._cell.encode(genotype.cell))

    def decode(self, decisions: Sequence[int]) -> NetworkGenotype:
        values = self.validate(decisions)
        return NetworkGenotype(self._cell.decode(values[3:]), self.widths[values[0]], self.depths[values[1]],
                               *SKELETONS[self.skeletons[values[2]]])

    def params_to_decisions(self, params: Mapping[str, object]) -> tuple[int, ...]:
        head = []
        for name, choices in list(self.param_choices().items())[:3]:
            if name not in params:
                raise ValueError(f"parameter {name!r} missing: a generator needs {', '.join(self.names)}")
            value = params[name]
            if name != "skeleton" and isinstance(value, str) and value.isdigit():
                value = int(value)
            try:
                head.append(choices.index(value))
            except ValueError:
                raise ValueError(f"parameter {name} = {value!r} is not one of {', '.join(map(str, choices))}") from None
        return tuple(head) + self._cell.params_to_decisions(params)

    def identity(self) -> dict:
        return {"name": "tpsr_plus", "num_nodes": self.num_nodes, "ops": list(self.ops), "widths": list(self.widths),
                "depths": list(self.depths), "skeletons": list(self.skeletons)}

    def describe(self) -> str:
        return (f"a {self.num_nodes}-node generator space over {len(self.ops)} operations with widths "
                f"{'/'.join(map(str, self.widths))}, depths {'/'.join(map(str, self.depths))} and skeletons "
                f"{'/'.join(self.skeletons)}")


class DiscriminatorSpace(_DecisionSpace):
    """The discriminator space S_D = (Op x ROp)^5 as the 10 decisions ``(op_0, rop_0, ..., op_4, rop_4)``.

    The numbering is :class:`~tinysr.models.discriminators.DiscriminatorGenotype`'s own
    (``encode`` / ``decode``: op an index into :data:`tinysr.ops.OP_NAMES`, rop into
    :data:`~tinysr.models.discriminators.ROP_NAMES`); this class gives it the interface of
    :class:`GeneratorSpace` that the strategies and the run store use. Named parameters: ``op_b`` the
    operation name, ``rop_b`` the reduction name of block ``b``.
    """

    def __init__(self):
        from tinysr.models.discriminators import DECISION_SIZES, NUM_BLOCKS, ROP_NAMES
        from tinysr.ops import OP_NAMES

        self.num_blocks, self.ops, self.rops = NUM_BLOCKS, tuple(OP_NAMES), tuple(ROP_NAMES)
        self.cardinalities = tuple(DECISION_SIZES)
        self.names = tuple(n for b in range(NUM_BLOCKS) for n in (f"op_{b}", f"rop_{b}"))

    def __eq__(self, other) -> bool:
        return isinstance(other, DiscriminatorSpace) and other.identity() == self.identity()

    def __hash__(self) -> int:
        return hash((self.num_blocks, self.ops, self.rops))

    def __repr__(self) -> str:
        return f"DiscriminatorSpace({self.num_blocks} blocks, {len(self.ops)} ops, {len(self.rops)} reductions)"

    @property
    def num_decisions(self) -> int:
        return len(self.cardinalities)

    def size(self) -> int:
        """``(len(ops) * len(rops)) ** num_blocks`` (16 * 7 = 112 per block: ~1.76e10)."""
        return math.prod(self.cardinalities)

    def param_choices(self) -> dict[str, tuple]:
        return {name: (self.ops if name.startswith("op_") else self.rops) for name in self.names}

    def identity(self) -> dict:
        return {"kind": "discriminator", "num_blocks": self.num_blocks, "ops": list(self.ops), "rops": list(self.rops)}

    def describe(self) -> str:
        return f"the {self.num_blocks}-block discriminator space"

    def validate(self, decisions: Sequence[int]) -> tuple[int, ...]:
        """``decisions`` as a tuple of ints; one-line ``ValueError`` if it is not a vector of this space."""
        values = self._as_list(decisions)
        for d, v in enumerate(values):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"decision {d} = {v!r} is not an integer")
        return self.decode(values).encode()

    def encode(self, genotype) -> tuple[int, ...]:
        """The decision vector of a :class:`DiscriminatorGenotype` or its text."""
        from tinysr.models.discriminators import DiscriminatorGenotype

        if isinstance(genotype, str):
            genotype = DiscriminatorGenotype.parse(genotype)
        return genotype.encode()

    def decode(self, decisions: Sequence[int]):
        from tinysr.models.discriminators import DiscriminatorGenotype

        return DiscriminatorGenotype.decode(decisions)

    def to_params(self, item) -> dict[str, str]:
        """Named parameters (``op_b``, ``rop_b``: names) of a genotype, its text or a decision vector."""
        return self._named(self.encode(item) if isinstance(item, str) or hasattr(item, "blocks") else self.validate(item))

    def params_to_decisions(self, params: Mapping[str, object]) -> tuple[int, ...]:
        out = []
        for name, choices in self.param_choices().items():
            if name not in params:
                raise ValueError(f"parameter {name!r} missing: a discriminator needs {', '.join(self.names)}")
            try:
                out.append(choices.index(params[name]))
            except ValueError:
                raise ValueError(f"parameter {name} = {params[name]!r} is not one of {', '.join(choices)}") from None
        return tuple(out)


def space_from_identity(spec):
    """The space a :meth:`identity` (or a latency-table space name) describes."""
    if isinstance(spec, str):
        return GeneratorSpace.named(spec)
    if isinstance(spec, Mapping) and spec.get("kind") == "discriminator":
        space = DiscriminatorSpace()
        if dict(spec) != space.identity():
            raise ValueError(f"a discriminator space {dict(spec)} other than this tinysr's {space.identity()}")
        return space
    if isinstance(spec, Mapping) and "num_nodes" in spec and "ops" in spec and "widths" in spec:
        return PlusSpace(int(spec["num_nodes"]), tuple(spec["ops"]), tuple(spec["widths"]), tuple(spec["depths"]),
                         tuple(spec["skeletons"]))
    if isinstance(spec, Mapping) and "num_nodes" in spec and "ops" in spec:
        return GeneratorSpace(int(spec["num_nodes"]), tuple(spec["ops"]))
    raise ValueError(f"a space is a space name, {{'num_nodes', 'ops'}} or a discriminator space, got {spec!r}")


#: The paper's generator space: 10 nodes over the 16 operations of :data:`tinysr.ops.OP_NAMES`.
TPSR_SPACE = GeneratorSpace.named("tpsr")
#: The extended generator space: the paper's cell with a searched width, depth and skeleton (:class:`PlusSpace`).
TPSR_PLUS_SPACE = GeneratorSpace.named("tpsr_plus")
#: The paper's discriminator space: 5 blocks, each an operation and a reduction (Sec. 3.3).
TPSR_D_SPACE = DiscriminatorSpace()


def space_size(space: GeneratorSpace = TPSR_SPACE) -> int:
    """Number of architectures in ``space`` (the paper's: ``16**10 * 10!``)."""
    return space.size()


def encode(genotype: Genotype | str, space: GeneratorSpace = TPSR_SPACE) -> tuple[int, ...]:
    return space.encode(genotype)


def decode(decisions: Sequence[int], space: GeneratorSpace = TPSR_SPACE) -> Genotype:
    return space.decode(decisions)
