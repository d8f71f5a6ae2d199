"""Sampling strategies over the generator space: what to try next, given what was measured.

One small interface (:class:`Strategy`), called by a search driver:

* ``ask(n) -> [decisions, ...]``: ``n`` decision vectors (:mod:`tinysr.search.core.space`; decode
  with ``space.decode``);
* ``tell([(decisions or Genotype, reward or None), ...]) -> int``: results, in any number and any
  order; ``None`` marks a rejected candidate (a constraint violation, see below). Returns how many
  policy updates the call made;
* ``state_dict()`` / ``load_state_dict(state)``: everything the strategy depends on (parameters,
  optimiser moments, baseline, random-generator state, pending results, counters, settings) as
  plain JSON-compatible data (tensors as ``{"__tensor__": nested list, "dtype": ...}``, float32
  values are exact in JSON). A driver that saves the state after every ``tell`` and restores it
  into a fresh object continues exactly, bit for bit, as an uninterrupted run.

*Objectives.* A strategy declares what ``tell`` receives per result: :attr:`Strategy.objectives`
(names) and :attr:`Strategy.directions` (``"maximize"`` / ``"minimize"``). The default is one
objective, ``("reward",)`` maximised: a result is ``(decisions, reward or None)``. A
multi-objective strategy (``nsga2``, ``tpe``: ``("psnr", "latency")``, maximise / minimise) takes
``(decisions, (value, ...) or None)``, one finite number per objective in that order. Such a
strategy has no single best result: ``best_reward`` / ``best_decisions`` / ``best_genotype`` stay
``None`` (the driver picks its best from its own run store; the Optuna strategies list their
non-dominated results with ``pareto_front()``).

Strategies (by name: :data:`tinysr.search.core.registry.STRATEGIES`, :func:`tinysr.search.core.registry.make_strategy`):

``random``
    Uniform sampling (:meth:`GeneratorSpace.sample`): the baseline every claim about a search is
    measured against. ``tell`` only keeps the counters and the best result.

``reinforce``
    The paper's controller: REINFORCE (Williams 1992) over the 20 decisions with a
    moving-average baseline, an entropy bonus and one policy update per ``batch_size`` results.

    *Policy: independent logits per decision*, not ENAS' LSTM. A 20 x 16 table of logits (the
    ``src_i`` rows masked to their ``i + 1`` valid inputs), each decision a categorical
    distribution, starting uniform (the first batch *is* random search). Why: (1) the choice set of
    every decision is fixed (node ``i`` always chooses among 16 operations and ``i + 1`` inputs,
    whatever the other nodes chose), so a factorised policy reaches every architecture, and a
    converged policy is a point mass either way; (2) an evaluation here is a trained network, so
    the budget is hundreds to a few thousand samples, too few to fit a 64-unit LSTM's ~3e4
    shared weights but enough for 20 x 16 logits that each move only with their own decision's
    credit; (3) the entropy is exact (a sum over decisions) rather than a sampled estimate, the
    probabilities are readable per decision (:meth:`ReinforceStrategy.probabilities`) and the
    whole state is a few hundred numbers, so exact checkpointing is simple. The price: the policy
    cannot express correlations between decisions (an operation good only behind a certain
    input), which an LSTM can. ENAS' tanh constant and temperature exist to keep an LSTM's
    logits bounded; with a logit table the entropy bonus plays that role, so neither is used.
    (ProxylessNAS' REINFORCE variant and FBNet likewise keep independent per-layer architecture
    parameters.)

    *Update* for a batch of results ``(a_k, R_k)``: the baseline ``b`` starts at the first
    batch's mean reward, then ``b <- decay * b + (1 - decay) * mean_k R_k`` (updated before the
    advantages are taken, as ENAS does); loss ``= -mean_k (R_k - b) log pi(a_k) - entropy_weight *
    H(pi)``; one Adam step. Log-probabilities are computed at update time under the current
    policy (a result told after other updates has been sampled from an older policy: the usual
    small off-policy error of asynchronous REINFORCE).

    *Defaults*: Adam (torch's default betas, as ENAS-pytorch), baseline decay 0.95 and entropy
    weight 1e-4 are ENAS-pytorch's. The learning rate is **not** ENAS-pytorch's 3.5e-4: ENAS
    scores a candidate on a validation minibatch with shared weights and so affords many
    controller steps, while a TPSR search evaluates hundreds to thousands of trained candidates;
    at 3.5e-4 a logit moves by at most ~3.5e-4 per Adam step, so a few hundred updates leave
    the policy near uniform (on the surrogate benchmark of
    ``tests/test_search_core.py``, 3000 samples, seeds 0-4, it found 53-62 % of the optimum where
    random search found 54-68 %). :data:`DEFAULT_LR` is the value tuned there (Adam's
    steps do not depend on the reward's scale, so the value carries over to PSNR rewards); pass
    ``lr=ENAS_PYTORCH_LR`` for the published one. ``batch_size`` 4 (one update per 4 results) is
    tuned there too, not a published value: on that benchmark, at a 3000-sample budget, lr 0.03
    with batches of 4 reached 98.5-100 % of the optimum over 12 seeds, while larger steps (lr
    0.1-0.2, or batches of 8) converged early onto suboptimal operations (down to 89 %) and lr
    0.02 was still short of the optimum (97 %).

    *Rejected candidates* (reward ``None``), ``rejected=``:

    - ``"worst"`` (default): the candidate enters the update with the lowest accepted reward seen
      so far (in earlier batches and this one). The policy learns to avoid infeasible regions
      without a constant that depends on the reward's scale. While no accepted reward has been
      seen, rejected results are skipped.
    - a number: that fixed reward (e.g. 0.0 = an architecture at ``psnr_min``, see
      :mod:`tinysr.search.generator.reward`).
    - ``None``: skipped, the policy never sees them (the driver resamples instead). They still
      count towards ``batch_size``. Beware: a policy drawn towards the constraint boundary then
      keeps proposing infeasible candidates.

    Rejected results never move the baseline.

``evolution``
    Regularized evolution (Real et al., "Regularized Evolution for Image Classifier Architecture
    Search", AAAI 2019; the strongest simple baseline of NAS-Bench-101): a population of the last
    ``population`` accepted results; each new candidate is a copy of the best of ``sample`` members
    drawn at random, with one decision changed to another of its values (the mutation), and each
    accepted result replaces the *oldest* member (ageing, which keeps the search from resting on one
    lucky evaluation). Until the population is full, candidates are uniform samples, preceded by the
    genotypes given as ``initial`` (for example an earlier round's winners, to continue a search in a
    new space or under a new proxy rather than start from random cells). A child that was already
    asked is drawn again (up to 100 times), so no evaluation is spent twice on one architecture.
    Rejected candidates (over a budget) never enter the population. Local by design: with tens of
    evaluations it refines what it has, where a factorised policy needs hundreds to move.

``nsga2``, ``tpe``
    Multi-objective samplers from Optuna (NSGA-II; TPE with hypervolume-based splits) over
    ``(psnr, latency)``, for a whole Pareto front rather than one latency budget. An in-memory
    Optuna study behind this interface, checkpointed exactly: see
    :mod:`tinysr.search.core.optuna_strategy`. Optuna is imported only when one of them is built.
"""
from __future__ import annotations

import abc
import math
from typing import Iterable, Sequence

import numpy as np
import torch

from tinysr.genotype import Genotype
from tinysr.models.discriminators import DiscriminatorGenotype

from tinysr.search.core.space import TPSR_SPACE, GeneratorSpace, space_from_identity

STATE_VERSION = 1
#: ENAS-pytorch's controller learning rate (Adam), for reference.
ENAS_PYTORCH_LR = 3.5e-4
#: The ``reinforce`` default learning rate: tuned on the surrogate benchmark (see the module doc).
DEFAULT_LR = 0.03
DEFAULT_BATCH = 4
DEFAULT_BASELINE_DECAY = 0.95
DEFAULT_ENTROPY_WEIGHT = 1e-4


# ------------------------------------------------------------------------- state helpers
def _to_jsonable(obj):
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        return {"__tensor__": t.tolist(), "dtype": str(t.dtype).replace("torch.", "")}
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return obj


def _from_jsonable(obj):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return torch.tensor(obj["__tensor__"], dtype=getattr(torch, obj["dtype"]))
        return {k: _from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_jsonable(v) for v in obj]
    return obj


def _check_reward(reward, where: str):
    if reward is None:
        return None
    if isinstance(reward, bool) or not isinstance(reward, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: a reward is a number or None (rejected), got {reward!r}")
    r = float(reward)
    if not math.isfinite(r):
        raise ValueError(f"{where}: reward {r} is not finite (report a failed candidate as None)")
    return r


def _check_values(values, where: str, objectives: Sequence[str]):
    """One result of a multi-objective strategy: ``None`` (rejected) or one finite number per objective."""
    if values is None:
        return None
    names = ", ".join(objectives)
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list, np.ndarray)):
        raise ValueError(f"{where}: expected {len(objectives)} values ({names}) or None (rejected), got {values!r}")
    if len(values) != len(objectives):
        raise ValueError(f"{where}: expected {len(objectives)} values ({names}), got {len(values)}: {list(values)!r}")
    out = []
    for name, v in zip(objectives, values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{where}: {name} must be a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"{where}: {name} = {v} is not finite (report a failed candidate as None)")
        out.append(v)
    return tuple(out)


# ----------------------------------------------------------------------------- interface
class Strategy(abc.ABC):
    """Base class: counters, best result, RNG and the ``ask`` / ``tell`` / state contract."""

    name = ""
    #: Names of the values ``tell`` takes per result (one: a plain number; more: a sequence in this order).
    objectives: tuple[str, ...] = ("reward",)
    #: ``"maximize"`` or ``"minimize"`` per objective.
    directions: tuple[str, ...] = ("maximize",)

    def __init__(self, space: GeneratorSpace = TPSR_SPACE, seed: int | None = 0):
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.asked = 0
        self.told = 0
        self.rejected = 0
        self.best_reward: float | None = None
        self.best_decisions: tuple[int, ...] | None = None

    # -------------------------------------------------------------- interface
    def ask(self, n: int = 1) -> list[tuple[int, ...]]:
        n = int(n)
        if n < 0:
            raise ValueError(f"cannot ask for {n} candidates")
        out = self._sample(n)
        self.asked += n
        return out

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def tell(self, results: Iterable[tuple[Sequence[int] | Genotype, float | Sequence[float] | None]]) -> int:
        """Record results ``(decisions or Genotype, reward or None)``; returns the number of policy updates made.

        A multi-objective strategy takes ``(decisions or Genotype, (value, ...) or None)``, one
        value per entry of :attr:`objectives`. Every result is checked before any is recorded.
        """
        batch = []
        what = "reward" if not self.multi_objective else "(" + ", ".join(self.objectives) + ")"
        for k, item in enumerate(results):
            try:
                cand, reward = item
            except (TypeError, ValueError):
                raise ValueError(f"result {k}: expected (decisions, {what}), got {item!r}") from None
            decisions = (self.space.encode(cand) if isinstance(cand, (Genotype, DiscriminatorGenotype, str))
                         else self.space.validate(cand))
            reward = (_check_values(reward, f"result {k}", self.objectives) if self.multi_objective
                      else _check_reward(reward, f"result {k}"))
            batch.append((decisions, reward))
        for decisions, reward in batch:
            self.told += 1
            if reward is None:
                self.rejected += 1
            elif self.multi_objective:
                continue  # no single best: see the module doc
            elif self.best_reward is None or reward > self.best_reward:
                self.best_reward, self.best_decisions = reward, decisions
        return self._observe(batch)

    @property
    def best_genotype(self) -> Genotype | None:
        """The best result's genotype (``None`` before any accepted result; always for a multi-objective strategy)."""
        return None if self.best_decisions is None else self.space.decode(self.best_decisions)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        state = {"strategy": self.name, "version": STATE_VERSION,
                 "space": self.space.identity(),
                 "seed": self.seed, "rng": self.rng.bit_generator.state,
                 "counters": {"asked": self.asked, "told": self.told, "rejected": self.rejected},
                 "best": {"reward": self.best_reward,
                          "decisions": None if self.best_decisions is None else list(self.best_decisions)}}
        state.update(self._extra_state())
        return _to_jsonable(state)

    def load_state_dict(self, state: dict) -> None:
        if state.get("strategy") != self.name:
            raise ValueError(f"state is for strategy {state.get('strategy')!r}, not {self.name!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')} is not {STATE_VERSION}: written by another tinysr")
        try:
            theirs = space_from_identity(state["space"])
        except (TypeError, ValueError, KeyError):
            theirs = None
        if theirs is None or theirs.identity() != self.space.identity():
            what = "an unknown space" if theirs is None else theirs.describe()
            raise ValueError(f"state is for {what}, not {self.space.describe()}")
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        self.seed = state.get("seed")
        self.rng = rng
        c = state["counters"]
        self.asked, self.told, self.rejected = int(c["asked"]), int(c["told"]), int(c["rejected"])
        best = state["best"]
        self.best_reward = None if best["reward"] is None else float(best["reward"])
        self.best_decisions = None if best["decisions"] is None else tuple(int(v) for v in best["decisions"])
        self._load_extra_state(state)

    # ------------------------------------------------------------ subclasses
    @abc.abstractmethod
    def _sample(self, n: int) -> list[tuple[int, ...]]:
        """``n`` decision vectors from the strategy's current distribution."""

    def _observe(self, batch: list) -> int:
        return 0

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


class RandomStrategy(Strategy):
    """Uniform sampling over the space (the baseline)."""

    name = "random"

    def _sample(self, n: int) -> list[tuple[int, ...]]:
        return self.space.sample(self.rng, n)


class ReinforceStrategy(Strategy):
    """REINFORCE over independent per-decision logits (see the module doc for every choice)."""

    name = "reinforce"
    REJECTED_MODES = ("worst",)

    def __init__(self, space: GeneratorSpace = TPSR_SPACE, seed: int | None = 0, lr: float = DEFAULT_LR,
                 batch_size: int = DEFAULT_BATCH, baseline_decay: float = DEFAULT_BASELINE_DECAY,
                 entropy_weight: float = DEFAULT_ENTROPY_WEIGHT, rejected: str | float | None = "worst"):
        super().__init__(space, seed)
        self._configure(lr, batch_size, baseline_decay, entropy_weight, rejected)
        cards = space.cardinalities
        width = max(cards)
        self.valid = torch.arange(width).unsqueeze(0) < torch.tensor(cards).unsqueeze(1)  # (D, K)
        self._valid_np = self.valid.numpy()
        self.logits = torch.zeros(len(cards), width, dtype=torch.float32, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=self.lr)
        self.baseline: float | None = None
        self.worst: float | None = None
        self.pending: list[tuple[tuple[int, ...], float | None]] = []
        self.updates = 0

    def _configure(self, lr, batch_size, baseline_decay, entropy_weight, rejected):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        if not entropy_weight >= 0:
            raise ValueError(f"entropy_weight must be >= 0, got {entropy_weight}")
        if isinstance(rejected, str) and rejected not in self.REJECTED_MODES:
            raise ValueError(f"rejected must be 'worst', a number or None, not {rejected!r}")
        if rejected is not None and not isinstance(rejected, str):
            rejected = _check_reward(rejected, "rejected")
        self.lr, self.batch_size = float(lr), int(batch_size)
        self.baseline_decay, self.entropy_weight = float(baseline_decay), float(entropy_weight)
        self.rejected_reward = rejected

    # ----------------------------------------------------------------- policy
    def _log_probs(self) -> torch.Tensor:
        """(D, K) log-probabilities; invalid (masked) entries are -inf.

        Written out (shift by the row maximum, taken outside autograd: log-softmax does not
        depend on it) rather than ``torch.log_softmax``: torch parallelises row-wise reductions
        over its thread pool, which on a loaded machine costs milliseconds per call on this
        20 x 16 table, while these element-wise ops and full-row sums stay serial.
        """
        z = self.logits.masked_fill(~self.valid, float("-inf"))
        top = np.where(self._valid_np, self.logits.detach().numpy(), -np.inf).max(axis=1, keepdims=True)
        shifted = z - torch.from_numpy(top)
        return shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))

    def probabilities(self) -> list[np.ndarray]:
        """Per decision, the probabilities of its choices (float64 arrays of lengths ``space.cardinalities``)."""
        with torch.no_grad():
            p = torch.exp(self._log_probs()).double().numpy()
        return [p[d, :card].copy() for d, card in enumerate(self.space.cardinalities)]

    def entropy(self) -> float:
        with torch.no_grad():
            return float(self._entropy(self._log_probs()))

    def _entropy(self, logp: torch.Tensor) -> torch.Tensor:
        safe = torch.where(self.valid, logp, torch.zeros_like(logp))
        return -(torch.exp(safe) * safe * self.valid).sum()

    def most_likely(self) -> tuple[int, ...]:
        """The policy's mode: the most probable choice of every decision."""
        return tuple(int(np.argmax(p)) for p in self.probabilities())

    def _sample(self, n: int) -> list[tuple[int, ...]]:
        probs = self.probabilities()
        u = self.rng.random((n, len(probs)))
        cols = []
        for d, p in enumerate(probs):
            cdf = np.cumsum(p)
            idx = np.searchsorted(cdf, u[:, d] * cdf[-1], side="right")
            cols.append(np.minimum(idx, len(p) - 1))
        draws = np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=int)
        return [tuple(int(v) for v in row) for row in draws]

    # ----------------------------------------------------------------- update
    def _observe(self, batch: list) -> int:
        self.pending.extend(batch)
        updates = 0
        while len(self.pending) >= self.batch_size:
            chunk, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
            updates += self._update(chunk)
        return updates

    def _update(self, chunk: list) -> int:
        accepted = [r for _, r in chunk if r is not None]
        if accepted:
            low = min(accepted)
            self.worst = low if self.worst is None else min(self.worst, low)
        samples = []
        for decisions, r in chunk:
            if r is None:
                if self.rejected_reward is None or (self.rejected_reward == "worst" and self.worst is None):
                    continue
                r = self.worst if self.rejected_reward == "worst" else self.rejected_reward
            samples.append((decisions, r))
        if not samples:
            return 0
        if accepted:
            mean = sum(accepted) / len(accepted)
            self.baseline = mean if self.baseline is None else (
                self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * mean)
        baseline = self.baseline if self.baseline is not None else sum(r for _, r in samples) / len(samples)
        # sum_k adv_k log pi(a_k) = sum_{d,c} credit[d, c] log pi_d(c), credit = sum_k adv_k onehot(a_k)
        credit = np.zeros(tuple(self.logits.shape))
        cols = np.arange(self.space.num_decisions)
        for decisions, r in samples:
            credit[cols, decisions] += r - baseline
        logp = self._log_probs()
        safe = torch.where(self.valid, logp, torch.zeros_like(logp))
        policy_term = (torch.from_numpy(credit / len(samples)).float() * safe).sum()
        loss = -policy_term - self.entropy_weight * self._entropy(logp)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        return 1

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {"config": {"lr": self.lr, "batch_size": self.batch_size, "baseline_decay": self.baseline_decay,
                           "entropy_weight": self.entropy_weight, "rejected": self.rejected_reward},
                "logits": self.logits.detach().clone(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "worst": self.worst, "updates": self.updates,
                "pending": [[list(d), r] for d, r in self.pending]}

    def _load_extra_state(self, state: dict) -> None:
        cfg = state["config"]
        self._configure(cfg["lr"], cfg["batch_size"], cfg["baseline_decay"], cfg["entropy_weight"], cfg["rejected"])
        logits = _from_jsonable(state["logits"])
        if tuple(logits.shape) != tuple(self.logits.shape):
            raise ValueError(f"state logits have shape {tuple(logits.shape)}, expected {tuple(self.logits.shape)}")
        with torch.no_grad():
            self.logits.copy_(logits)
        opt = _from_jsonable(state["optimizer"])
        opt["state"] = {int(k): v for k, v in opt["state"].items()}
        for group in opt["param_groups"]:
            if "betas" in group:
                group["betas"] = tuple(group["betas"])
        self.optimizer = torch.optim.Adam([self.logits], lr=self.lr)
        self.optimizer.load_state_dict(opt)
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.worst = None if state["worst"] is None else float(state["worst"])
        self.updates = int(state["updates"])
        self.pending = [(tuple(int(v) for v in d), None if r is None else float(r)) for d, r in state["pending"]]


class EvolutionStrategy(Strategy):
    """Regularized evolution: tournament selection, one-decision mutation, ageing (see the module doc)."""

    name = "evolution"

    def __init__(self, space: GeneratorSpace = TPSR_SPACE, seed: int | None = 0, population: int = 16, sample: int = 4,
                 initial: Sequence = ()):
        super().__init__(space, seed)
        self._configure(population, sample, initial)
        self.members: list[tuple[tuple[int, ...], float]] = []  # accepted results, oldest first
        self.seen: set[tuple[int, ...]] = set()

    def _configure(self, population, sample, initial):
        if int(population) < 1:
            raise ValueError(f"population must be at least 1, got {population}")
        if not 1 <= int(sample) <= int(population):
            raise ValueError(f"sample must be between 1 and the population ({population}), got {sample}")
        if isinstance(initial, (str, Genotype)):
            initial = [initial]
        vectors = []
        for k, item in enumerate(initial):
            try:
                vectors.append(self.space.encode(item) if isinstance(item, (str, Genotype)) else self.space.validate(item))
            except ValueError as e:
                raise ValueError(f"initial genotype {k} ({item}) is not in {self.space.describe()}: {e}") from None
        self.population_size, self.sample_size, self.initial = int(population), int(sample), vectors

    def _mutate(self, parent: tuple[int, ...]) -> tuple[int, ...]:
        free = [d for d, card in enumerate(self.space.cardinalities) if card > 1]
        if not free:
            return parent
        child = list(parent)
        d = free[int(self.rng.integers(len(free)))]
        other = int(self.rng.integers(self.space.cardinalities[d] - 1))
        child[d] = other if other < parent[d] else other + 1
        return self.space.validate(child)

    def _one(self, k: int) -> tuple[int, ...]:
        if k < len(self.initial):
            return self.initial[k]
        if k < self.population_size or not self.members:
            return self.space.sample(self.rng, 1)[0]
        picks = self.rng.choice(len(self.members), size=min(self.sample_size, len(self.members)), replace=False)
        parent = max((self.members[int(i)] for i in picks), key=lambda m: m[1])[0]
        return self._mutate(parent)

    def _sample(self, n: int) -> list[tuple[int, ...]]:
        out = []
        for i in range(n):
            k = self.asked + i
            child = self._one(k)
            for _ in range(100):
                if child not in self.seen or k < len(self.initial):
                    break
                child = self._one(k)
            self.seen.add(child)
            out.append(child)
        return out

    def _observe(self, batch: list) -> int:
        for decisions, reward in batch:
            if reward is None:
                continue
            self.members.append((tuple(decisions), float(reward)))
            if len(self.members) > self.population_size:
                self.members.pop(0)  # ageing: the oldest goes, however good
        return 0

    def _extra_state(self) -> dict:
        return {"config": {"population": self.population_size, "sample": self.sample_size,
                           "initial": [list(v) for v in self.initial]},
                "members": [[list(d), r] for d, r in self.members],
                "seen": sorted(list(v) for v in self.seen)}

    def _load_extra_state(self, state: dict) -> None:
        cfg = state["config"]
        self._configure(cfg["population"], cfg["sample"], [tuple(v) for v in cfg["initial"]])
        self.members = [(tuple(int(v) for v in d), float(r)) for d, r in state["members"]]
        self.seen = {tuple(int(x) for x in v) for v in state["seen"]}
