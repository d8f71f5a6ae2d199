"""Sparsemax, SparsestMax and the sorted SparsestMax of ``tinysr.search.trilevel.sparsestmax``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinysr.search.trilevel.sparsestmax import (chain_pairs, order_penalty, sorted_sparsestmax, sparsemax, sparsestmax,
                                       tail_prune, vertex_distance)

DTYPES = (torch.float32, torch.float64)


def bisection_sparsemax(z: np.ndarray, iters: int = 200) -> np.ndarray:
    """The simplex projection of one vector by bisection on the threshold of ``sum max(z - tau, 0) = 1``."""
    lo, hi = float(z.min()) - 1.0, float(z.max())
    for _ in range(iters):
        tau = 0.5 * (lo + hi)
        if np.maximum(z - tau, 0.0).sum() > 1.0:
            lo = tau
        else:
            hi = tau
    return np.maximum(z - 0.5 * (lo + hi), 0.0)


def assert_on_simplex(p: torch.Tensor, dim: int = -1) -> None:
    assert torch.isfinite(p).all()
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(dim=dim), torch.ones_like(p.sum(dim=dim)), atol=1e-5, rtol=0)


def centre_distance(p: torch.Tensor) -> torch.Tensor:
    return (p - 1.0 / p.shape[-1]).norm(dim=-1)


def test_sparsemax_known_example() -> None:
    p = sparsemax(torch.tensor([1.0, 0.5, -1.0]))
    torch.testing.assert_close(p, torch.tensor([0.75, 0.25, 0.0]))


def test_sparsemax_matches_bisection_reference() -> None:
    torch.manual_seed(0)
    for k in range(1, 10):
        z = torch.randn(20, k, dtype=torch.float64) * 2.0
        p = sparsemax(z)
        assert_on_simplex(p)
        ref = np.stack([bisection_sparsemax(row) for row in z.numpy()])
        np.testing.assert_allclose(p.numpy(), ref, atol=1e-9)
    dense = sparsemax(torch.tensor([0.1, 0.0, -0.1]))
    assert (dense > 0).all()
    sparse = sparsemax(torch.tensor([3.0, 0.0, -0.1]))
    torch.testing.assert_close(sparse, torch.tensor([1.0, 0.0, 0.0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparsemax_along_dim_with_batch_dims(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    z = torch.randn(3, 6, 4, dtype=dtype)
    p = sparsemax(z, dim=1)
    assert p.shape == z.shape and p.dtype == dtype
    assert_on_simplex(p, dim=1)
    torch.testing.assert_close(p, sparsemax(z.movedim(1, -1)).movedim(-1, 1))


def test_vertex_distance() -> None:
    assert vertex_distance(1) == 0.0
    assert math.isclose(vertex_distance(2), math.sqrt(0.5))
    for k in (3, 5, 8):
        vertex = torch.zeros(k, dtype=torch.float64)
        vertex[2] = 1.0
        assert math.isclose(vertex_distance(k), float(centre_distance(vertex)), rel_tol=1e-12)
    with pytest.raises(ValueError):
        vertex_distance(0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparsestmax_on_simplex_and_outside_ball(dtype: torch.dtype) -> None:
    torch.manual_seed(2)
    for k in range(2, 9):
        z = torch.randn(64, k, dtype=dtype) * 2.0
        z[:8] = z[:8].round()  # ties
        z[8:12] = 0.3  # the centre
        p0 = sparsemax(z)
        for r in np.linspace(0.0, vertex_distance(k), 11):
            p = sparsestmax(z, float(r))
            assert p.dtype == dtype
            assert_on_simplex(p)
            distance = centre_distance(p)
            assert (distance >= r - 1e-5).all()
            inside = centre_distance(p0) < r  # pushed out: onto the sphere itself
            torch.testing.assert_close(distance[inside], torch.full_like(distance[inside], float(r)),
                                       atol=1e-5, rtol=0)
            outside = ~inside
            torch.testing.assert_close(p[outside], p0[outside])


def test_sparsestmax_radial_push_inside_simplex() -> None:
    torch.manual_seed(3)
    k, r = 5, 0.2
    u = torch.full((k,), 1.0 / k, dtype=torch.float64)
    for _ in range(10):
        d = torch.randn(k, dtype=torch.float64)
        d = d - d.mean()
        z = u + 0.05 * d / d.norm()  # a point of the simplex inside the ball; the push stays in it
        expected = u + r * (z - u) / (z - u).norm()
        assert (expected > 0).all()
        torch.testing.assert_close(sparsestmax(z, r), expected)
        torch.testing.assert_close(sparsestmax(z + 7.0, r), expected)  # shift invariance


def test_sparsestmax_face_drop_example() -> None:
    z = torch.tensor([0.3, 0.2, 0.1, -0.05], dtype=torch.float64)
    r = 0.4
    p = sparsestmax(z, r)
    assert p[3] == 0.0 and (p[:3] > 0).all()
    # on the face {0, 1, 2}: centre u' = 1/3 there, and p - u' is orthogonal to u' - u
    face_centre = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0], dtype=torch.float64)
    face_radius = math.sqrt(r * r - float(centre_distance(face_centre)) ** 2)
    assert math.isclose(float((p - face_centre).norm()), face_radius, rel_tol=1e-9)
    assert math.isclose(float(centre_distance(p)), r, rel_tol=1e-9)
    assert bool((p[:-1] >= p[1:]).all())  # the order of the logits is kept


def test_sparsity_grows_with_r() -> None:
    torch.manual_seed(4)
    grew = 0
    for k in range(2, 9):
        z = torch.randn(32, k, dtype=torch.float64)
        radii = np.linspace(0.0, vertex_distance(k), 15)
        zeros = torch.stack([(sparsestmax(z, float(r)) == 0).sum(dim=-1) for r in radii])
        assert (zeros[1:] >= zeros[:-1]).all()
        dense = (sparsemax(z) > 0).all(dim=-1)
        assert (zeros[-1][dense] == k - 1).all()
        grew += int((zeros[-1][dense] > zeros[0][dense]).sum())
    assert grew > 0
    z = torch.tensor([0.1, 0.0, -0.05, 0.02])
    assert int((sparsestmax(z, 0.0) == 0).sum()) == 0
    assert int((sparsestmax(z, 0.6) == 0).sum()) > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_hot_at_vertex_distance(dtype: torch.dtype) -> None:
    torch.manual_seed(5)
    for k in range(2, 9):
        z = torch.randn(16, k, dtype=dtype)
        one_hot = torch.nn.functional.one_hot(z.argmax(dim=-1), k).to(dtype)
        torch.testing.assert_close(sparsestmax(z, vertex_distance(k)), one_hot, atol=0, rtol=0)
        torch.testing.assert_close(sparsestmax(z, 10.0), one_hot, atol=0, rtol=0)  # clamped
        torch.testing.assert_close(sparsestmax(z, vertex_distance(k) * (1 - 1e-9)), one_hot, atol=1e-5, rtol=0)
    torch.testing.assert_close(sparsestmax(torch.zeros(4), vertex_distance(4)), torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_near_tie_close_to_vertex_float32() -> None:
    """Two nearly equal logits: p - u' is tiny there, and float32 rounding must not tilt it off the face."""
    z = torch.tensor([1.3400893211364746, 1.340800166130066, -3.999905586242676, -2.414774179458618,
                      0.4553498327732086])
    r = float(torch.tensor(vertex_distance(5), dtype=torch.float32))
    p = sparsestmax(z, r)
    assert_on_simplex(p)
    assert float(centre_distance(p)) >= r - 1e-5
    torch.testing.assert_close(p, torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]), atol=1e-5, rtol=0)


def test_r_zero_is_sparsemax() -> None:
    torch.manual_seed(6)
    z = torch.randn(8, 6)
    torch.testing.assert_close(sparsestmax(z, 0.0), sparsemax(z), atol=0, rtol=0)
    torch.testing.assert_close(sparsestmax(z, -1.0), sparsemax(z), atol=0, rtol=0)  # clamped


def test_k_one_returns_ones() -> None:
    z = torch.randn(3, 1, requires_grad=True)
    p = sparsestmax(z, 0.5)
    torch.testing.assert_close(p, torch.ones(3, 1))
    (g,) = torch.autograd.grad(p.sum(), z)
    torch.testing.assert_close(g, torch.zeros(3, 1))


def test_sparsestmax_along_dim_with_batch_dims() -> None:
    torch.manual_seed(7)
    z = torch.randn(2, 5, 3)
    p = sparsestmax(z, 0.5, dim=1)
    assert p.shape == z.shape
    assert_on_simplex(p, dim=1)
    torch.testing.assert_close(p, sparsestmax(z.movedim(1, -1), 0.5).movedim(-1, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_finite(dtype: torch.dtype) -> None:
    torch.manual_seed(8)
    k = 6
    z = torch.randn(32, k, dtype=dtype)
    z[0] = 0.0  # the centre: every logit equal
    z[1] = 1.5
    z[2, :3] = 2.0  # ties among the largest
    for r in (0.0, 0.2, 0.5, 0.8, vertex_distance(k)):
        leaf = z.clone().requires_grad_(True)
        p = sparsestmax(leaf, r)
        (g,) = torch.autograd.grad((p * torch.randn_like(p)).sum(), leaf)
        assert torch.isfinite(g).all()
        assert torch.isfinite(p).all()
    centre = torch.zeros(4, dtype=dtype, requires_grad=True)
    p = sparsestmax(centre, 0.3)
    assert math.isclose(float(centre_distance(p.detach())), 0.3, rel_tol=1e-5)
    (g,) = torch.autograd.grad((p * torch.arange(4, dtype=dtype)).sum(), centre)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("r", [0.2, 0.3, 0.4, 0.6])  # sparsemax, radial push, one and two face drops
def test_gradcheck(r: float) -> None:
    z = torch.tensor([0.3, 0.2, 0.1, -0.05], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: sparsestmax(x, r), (z,))
    zero = torch.tensor([0.4, 0.2, 0.25, -1.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sparsemax, (zero,))


def test_order_penalty() -> None:
    pairs = chain_pairs(4)
    assert float(order_penalty(torch.tensor([0.4, 0.3, 0.3, 0.0]), pairs)) == 0.0
    unsorted = torch.tensor([0.1, 0.3, 0.2, 0.4])
    assert math.isclose(float(order_penalty(unsorted, pairs)), 0.2 + 0.2, rel_tol=1e-6)
    batch = torch.stack([unsorted, torch.tensor([0.4, 0.3, 0.3, 0.0])])
    assert math.isclose(float(order_penalty(batch, pairs)), 0.4, rel_tol=1e-6)
    tree = [(0, 1), (1, 2), (0, 3)]
    assert math.isclose(float(order_penalty(torch.tensor([0.2, 0.1, 0.0, 0.7]), tree)), 0.5, rel_tol=1e-6)
    assert float(order_penalty(unsorted, [])) == 0.0


def test_sorted_sparsestmax_returns_weights_and_penalty() -> None:
    z = torch.tensor([[0.0, 0.1, 0.2, 0.3], [0.3, 0.2, 0.1, 0.0]])
    pairs = chain_pairs(4)
    w, penalty = sorted_sparsestmax(z, 0.3, pairs)
    torch.testing.assert_close(w, sparsestmax(z, 0.3))
    torch.testing.assert_close(penalty, order_penalty(w, pairs))
    assert float(penalty) > 0.0
    w_t, penalty_t = sorted_sparsestmax(z.T, 0.3, pairs, dim=0)
    torch.testing.assert_close(w_t, w.T)
    torch.testing.assert_close(penalty_t, penalty)


def test_penalty_sorts_output_against_tail_objective() -> None:
    torch.manual_seed(0)
    n, steps = 5, 200
    pairs = chain_pairs(n)
    c = torch.linspace(0.0, 1.0, n)  # rewards weight on the tail
    r_max = 0.6 * vertex_distance(n)
    logits = torch.sort(torch.rand(n) * 0.3).values.requires_grad_(True)
    start = sparsestmax(logits.detach(), r_max)
    assert float(order_penalty(start, pairs)) > 0.1
    optimiser = torch.optim.Adam([logits], lr=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0 - step / steps)
    for step in range(steps):
        r = r_max * min(1.0, step / (0.4 * steps))  # SSN's radius annealing
        w, penalty = sorted_sparsestmax(logits, r, pairs)
        loss = -(w * c).sum() + 10.0 * penalty
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    w = sparsestmax(logits.detach(), r_max)
    assert_on_simplex(w)
    assert bool((w[1:] <= w[:-1] + 1e-3).all()), w
    assert bool((w == 0).any()), w
    kept = tail_prune(w, pairs)
    assert kept == list(range(len(kept)))
    assert kept == [i for i in range(n) if float(w[i]) > 0.0]  # only zeros are cut: they are at the tail
    assert len(kept) < n
    assert float(order_penalty(w, pairs)) < 1e-3


def test_chain_pairs() -> None:
    assert chain_pairs(4) == [(0, 1), (1, 2), (2, 3)]
    assert chain_pairs(1) == []


def test_tail_prune() -> None:
    tree = [(0, 1), (1, 2), (0, 3)]
    assert tail_prune(torch.tensor([0.5, 0.0, 0.2, 0.3]), tree) == [0, 3]
    assert tail_prune(torch.tensor([0.5, 0.1, 0.2, 0.3]), tree) == [0, 1, 2, 3]
    assert tail_prune(torch.tensor([0.5, 0.1, 0.2, 0.3]), tree, eps=0.15) == [0, 3]
    assert tail_prune(torch.tensor([0.0, 0.1, 0.2, 0.3]), tree) == []
    assert tail_prune([0.3, 0.2, 0.0, 0.5], chain_pairs(4)) == [0, 1]
    assert tail_prune([0.0, 0.2, 0.5], []) == [1, 2]  # no pairs: every index is a root
    with pytest.raises(ValueError):
        tail_prune([0.5, 0.5, 0.0], [(0, 2), (1, 2)])
    with pytest.raises(ValueError):
        tail_prune([0.5, 0.5], [(0, 1), (1, 0)])
    with pytest.raises(ValueError):
        tail_prune([0.5, 0.5], [(0, 2)])
