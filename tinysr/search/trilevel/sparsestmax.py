r"""Sparsemax, SparsestMax and the sorted SparsestMax: sparse, differentiable architecture weights.

**Sparsemax** (Martins & Astudillo, "From Softmax to Sparsemax: A Sparse Model of Attention and
Multi-Label Classification", ICML 2016) maps logits :math:`z \in \mathbb{R}^k` to their Euclidean
projection onto the probability simplex
:math:`\Delta^{k-1} = \{p \ge 0, \sum_i p_i = 1\}`:

.. math::

    \operatorname{sparsemax}(z) = \arg\min_{p \in \Delta^{k-1}} \lVert p - z \rVert^2
    = [z - \tau(z)]_+ ,

where, with :math:`z_{(1)} \ge \dots \ge z_{(k)}` sorted, the support size is
:math:`k(z) = \max\{j : 1 + j z_{(j)} > \sum_{i \le j} z_{(i)}\}` and the threshold is
:math:`\tau(z) = (\sum_{i \le k(z)} z_{(i)} - 1) / k(z)`. Unlike softmax it returns exact zeros; it
is piecewise linear, so autograd through the sort, the gather and the clamp gives its Jacobian
(almost everywhere).

**SparsestMax** (Shao, Ding, Zhang, Luo, Wang & Luo, "SSN: Learning Sparse Switchable Normalization
via SparsestMax", CVPR 2019) adds a *circular constraint*: with :math:`u = (1/k, \dots, 1/k)` the
centre of the simplex, the output must lie in
:math:`\{p \in \Delta^{k-1} : \lVert p - u \rVert \ge r\}`. The radius :math:`r` is annealed from
0 (sparsemax) to the distance from the centre to a vertex,
:math:`\lVert e_i - u \rVert = \sqrt{1 - 1/k}` (:func:`vertex_distance`), where the only feasible
points are the vertices: the weights become one-hot. SSN computes it in closed form by steps:

1. :math:`p_0 = \operatorname{sparsemax}(z)`; if :math:`\lVert p_0 - u \rVert \ge r` it is the
   answer.
2. Otherwise push :math:`p_0` radially out of the ball:
   :math:`p_1 = u + r (p_0 - u) / \lVert p_0 - u \rVert`; if :math:`p_1 \ge 0` it is the answer.
3. Otherwise :math:`p_1` left the simplex: :math:`p_2 = \operatorname{sparsemax}(p_1)` puts it on a
   lower face (its negative coordinates, and possibly more, become 0). The ball meets that face in
   a sphere of the face's own: its centre :math:`u'` is uniform over the face's support (the
   projection of :math:`u` onto the face's affine hull) and, because :math:`p - u'` is orthogonal
   to :math:`u' - u` for every :math:`p` of the face, its radius is
   :math:`r' = \sqrt{\max(r^2 - \lVert u - u' \rVert^2, 0)}`. Repeat step 2 on the face with
   :math:`(u', r')`.

Each pass of step 3 shrinks the support strictly (the threshold is positive when a coordinate is
negative and the coordinates sum to 1), so there are at most :math:`k - 1` of them; a one-point face
is a vertex, at the largest possible distance from :math:`u`. On a face, :math:`p - u'` is
proportional to :math:`z - \operatorname{mean}(z)` over the support (every step is an increasing
affine map of the logits there), so the largest logit is never dropped and at the vertex radius
the answer is the one-hot of :math:`\arg\max z`. When :math:`p = u'` (the logits are equal over the
support) the direction is undefined; here it is taken towards the vertex of the first largest
logit, so the output stays on the sphere and its gradient (zero: the output does not move with
the logits there) is finite.

**Sorted SparsestMax** (Wu, Liu, Jiang, Zhang & Li, "Trilevel Neural Architecture Search for
Efficient Single Image Super-Resolution", 2021) applies SparsestMax at the network level, where the
weights choose among nested paths (e.g. how many cells to keep), and adds an ordering penalty
:math:`\sum_{(a, b)} \max(w_b - w_a, 0)` over (parent, child) pairs (:func:`order_penalty`). It is
zero iff every child's weight is at most its parent's, so along each path the weights are
non-increasing and the zeros that SparsestMax produces fall at the tail, which
:func:`tail_prune` then cuts off without losing any positive weight.

Everything here is plain torch, runs along ``dim`` with any leading batch dimensions, in float32 or
float64, and is differentiated by autograd.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "sparsemax", "vertex_distance", "sparsestmax", "order_penalty", "sorted_sparsestmax",
    "chain_pairs", "tail_prune",
]


def sparsemax(z: Tensor, dim: int = -1) -> Tensor:
    """The Euclidean projection of ``z`` onto the probability simplex along ``dim``."""
    z = z.movedim(dim, -1)
    k = z.shape[-1]
    z = z - z.detach().amax(dim=-1, keepdim=True)  # shift-invariant; keeps the cumsum small
    zs, _ = torch.sort(z, dim=-1, descending=True)
    cs = zs.cumsum(dim=-1) - 1.0
    ks = torch.arange(1, k + 1, dtype=z.dtype, device=z.device)
    k_z = (ks * zs > cs).sum(dim=-1, keepdim=True)  # >= 1: the largest logit is always in
    tau = cs.gather(-1, k_z - 1) / k_z.to(z.dtype)
    return torch.clamp(z - tau, min=0.0).movedim(-1, dim)


def vertex_distance(k: int) -> float:
    """The distance from the simplex centre ``(1/k, ..., 1/k)`` to a vertex: ``sqrt(1 - 1/k)``."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return math.sqrt(1.0 - 1.0 / k)


def _tolerance(dtype: torch.dtype) -> float:
    return 64.0 * torch.finfo(dtype).eps


def sparsestmax(z: Tensor, r: float, dim: int = -1) -> Tensor:
    """SSN's SparsestMax: ``z`` projected onto the simplex outside the ball of radius ``r`` about its
    centre, along ``dim``. ``r`` is clamped to ``[0, vertex_distance(k)]``; 0 gives sparsemax, the
    vertex distance the one-hot of the (first) largest logit."""
    z = z.movedim(dim, -1)
    k = z.shape[-1]
    r = min(max(float(r), 0.0), vertex_distance(k))
    p = sparsemax(z)
    if r == 0.0:
        return p.movedim(-1, dim)
    if r >= vertex_distance(k):
        one_hot = torch.nn.functional.one_hot(z.detach().argmax(dim=-1), k).to(z.dtype)
        return (one_hot + 0.0 * p).movedim(-1, dim)  # 0 * p: stays in the graph, zero gradient

    tol = _tolerance(z.dtype)
    tiny = torch.finfo(z.dtype).tiny
    zd = z.detach()
    u = torch.full_like(zd, 1.0 / k)
    centre = u
    radius = torch.full(zd.shape[:-1] + (1,), r, dtype=z.dtype, device=z.device)
    done = torch.zeros(zd.shape[:-1] + (1,), dtype=torch.bool, device=z.device)
    for _ in range(k):
        with torch.no_grad():
            done = done | ((p - u).square().sum(dim=-1, keepdim=True).sqrt() >= r - tol)
        if bool(done.all()):
            break
        support = centre > 0
        size = support.sum(dim=-1, keepdim=True).to(z.dtype)
        d = torch.where(support, p - centre, torch.zeros_like(p))
        d = d - torch.where(support, d.sum(dim=-1, keepdim=True) / size, torch.zeros_like(d))  # on the face
        n2 = d.square().sum(dim=-1, keepdim=True)
        degenerate = n2.detach() <= tol * tol
        n = torch.where(degenerate, torch.ones_like(n2), n2).sqrt()
        with torch.no_grad():  # towards the vertex of the first largest logit of the support
            j = torch.where(support, zd, torch.full_like(zd, -math.inf)).argmax(dim=-1)
            fallback = torch.nn.functional.one_hot(j, k).to(z.dtype) - centre
            fallback = fallback / fallback.norm(dim=-1, keepdim=True).clamp_min(tiny)
        q = centre + radius * torch.where(degenerate, fallback, d / n)
        negative = (q.detach() < -tol).any(dim=-1, keepdim=True)
        q_in = q.clamp(min=0.0)
        q_in = q_in / q_in.sum(dim=-1, keepdim=True)
        q_face = sparsemax(q)
        p = torch.where(done, p, torch.where(negative, q_face, q_in))
        with torch.no_grad():
            done = done | ~negative
            support = q_face > 0
            size = support.sum(dim=-1, keepdim=True).to(z.dtype)
            face_centre = torch.where(support, 1.0 / size, torch.zeros_like(zd))
            offset2 = (face_centre - u).square().sum(dim=-1, keepdim=True)
            face_radius = (r * r - offset2).clamp_min(0.0).sqrt()
            centre = torch.where(done, centre, face_centre)
            radius = torch.where(done, radius, face_radius)
    return p.movedim(-1, dim)


def order_penalty(weights: Tensor, pairs: Sequence[tuple[int, int]]) -> Tensor:
    """``sum relu(w[child] - w[parent])`` over the (parent, child) ``pairs`` of the last dim, summed
    over any batch dims: zero iff no child outweighs its parent."""
    if len(pairs) == 0:
        return weights.sum() * 0.0
    parents = torch.tensor([a for a, _ in pairs], dtype=torch.long, device=weights.device)
    children = torch.tensor([b for _, b in pairs], dtype=torch.long, device=weights.device)
    return torch.relu(weights[..., children] - weights[..., parents]).sum()


def sorted_sparsestmax(z: Tensor, r: float, pairs: Sequence[tuple[int, int]],
                       dim: int = -1) -> tuple[Tensor, Tensor]:
    """The sorted SparsestMax: ``(sparsestmax(z, r, dim), its order penalty over pairs)``."""
    p = sparsestmax(z, r, dim=dim)
    return p, order_penalty(p.movedim(dim, -1), pairs)


def chain_pairs(n: int) -> list[tuple[int, int]]:
    """The (parent, child) pairs of one path ``0 -> 1 -> ... -> n-1``."""
    return [(i, i + 1) for i in range(n - 1)]


def tail_prune(weights: Tensor | Sequence[float], pairs: Sequence[tuple[int, int]],
               eps: float = 0.0) -> list[int]:
    """The sorted indices kept: an index survives iff its weight is above ``eps`` and its parent (if
    it has one in ``pairs``) survives."""
    w = torch.as_tensor(weights).detach()
    if w.dim() != 1:
        raise ValueError(f"weights must be one-dimensional, got shape {tuple(w.shape)}")
    values = [float(x) for x in w.tolist()]
    n = len(values)
    parent: dict[int, int] = {}
    for a, b in pairs:
        if not (0 <= a < n and 0 <= b < n):
            raise ValueError(f"pair {(a, b)} is out of range for {n} weights")
        if b in parent and parent[b] != a:
            raise ValueError(f"index {b} has two parents: {parent[b]} and {a}")
        parent[b] = a
    state: dict[int, bool] = {}
    kept = []
    for i in range(n):
        path = []
        j = i
        while j not in state:
            if j in path:
                raise ValueError(f"the pairs contain a cycle through index {j}")
            path.append(j)
            if j not in parent:
                break
            j = parent[j]
        alive = state.get(j, True)
        for j in reversed(path):
            alive = alive and values[j] > eps
            state[j] = alive
        if state[i]:
            kept.append(i)
    return kept
