"""The multi-objective Optuna strategies (``nsga2``, ``tpe``): registration, asks, tells, exact
resume through a JSON checkpoint, and a bi-objective surrogate benchmark (NSGA-II's Pareto front
against random search's, by hypervolume)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from tinysr.genotype import TPSR_GENOTYPE  # noqa: E402
from tinysr.profile.predict import load_table, predict_latency  # noqa: E402
from tinysr.search import (STRATEGIES, TPSR_SPACE, NSGA2Strategy, OptunaStrategy, ReinforceStrategy,  # noqa: E402
                           TPEStrategy, make_strategy)

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "host-amd-epyc-litert-1t.json"
# small settings so that the resume tests cross many NSGA-II generations / fit TPE early
FAST = {"nsga2": {"population_size": 6}, "tpe": {"n_startup_trials": 5}}


class BiSurrogate:
    """Two known objectives over the real space: the additive score of ``test_search_core``'s
    surrogate (same draws per seed, no latency term) as "psnr", and the latency predicted from the
    committed table as "latency" (ms)."""

    def __init__(self, seed, space=TPSR_SPACE):
        self.space, self.table = space, load_table(PROFILE)
        rng = np.random.default_rng(10_000 + seed)
        n, k = space.num_nodes, len(space.ops)
        a = rng.standard_normal((n, k))
        self.A = a - a.mean(axis=1, keepdims=True)
        self.B = [b - b.mean() for b in (rng.standard_normal(i + 1) for i in range(n))]
        op_ms = np.array([self.table.op_ms[o] for o in space.ops])
        # a uniformly random architecture: score 0 on average, this latency on average
        self.mean_ms = self.table.base_ms + n * op_ms.mean() + self.table.add_ms * ((n + 1) / 2 - 1)

    def __call__(self, decisions):
        score = sum(self.A[i, decisions[2 * i]] + self.B[i][decisions[2 * i + 1]] for i in range(self.space.num_nodes))
        return float(score), float(predict_latency(self.space.decode(decisions), self.table))


def hypervolume(points, ref):
    """Area dominated by ``points`` (maximise the first value, minimise the second) and dominating ``ref``."""
    pts = sorted((-p, q) for p, q in points if p > ref[0] and q < ref[1])  # both minimised, by the first
    area, floor = 0.0, ref[1]
    for f1, f2 in pts:
        if f2 < floor:
            area += (-ref[0] - f1) * (floor - f2)
            floor = f2
    return area


def _result(surrogate, decisions):
    """The surrogate's values, with a fifth of all architectures, scattered, 'infeasible' (rejected)."""
    return None if sum(decisions) % 5 == 0 else surrogate(decisions)


# --------------------------------------------------------------------------- basics
def test_hypervolume_by_hand():
    ref = (0.0, 10.0)
    assert hypervolume([(2.0, 4.0)], ref) == 12.0  # 2 x 6
    # (3, 6) adds 1 x 4 above (2, 4)'s box; (1, 5) is dominated; (5, 12) and (-1, 1) miss the reference box
    assert hypervolume([(2.0, 4.0), (3.0, 6.0), (1.0, 5.0), (5.0, 12.0), (-1.0, 1.0)], ref) == 16.0
    assert hypervolume([], ref) == 0.0


def test_registration_and_settings():
    assert STRATEGIES["nsga2"] is NSGA2Strategy and STRATEGIES["tpe"] is TPEStrategy
    s = make_strategy("nsga2", seed=3, population_size=12, mutation_prob=0.1)
    assert isinstance(s, OptunaStrategy) and s.multi_objective
    assert (s.objectives, s.directions) == (("psnr", "latency"), ("maximize", "minimize"))
    assert (s.population_size, s.mutation_prob) == (12, 0.1)
    t = make_strategy("tpe", n_startup_trials=4, multivariate=True)
    assert (t.n_startup_trials, t.multivariate, t.constant_liar) == (4, True, True)
    for single in ("random", "reinforce"):
        assert make_strategy(single).objectives == ("reward",) and not make_strategy(single).multi_objective
    with pytest.raises(ValueError, match="population_size must be an integer >= 2"):
        make_strategy("nsga2", population_size=1)
    with pytest.raises(ValueError, match="n_startup_trials"):
        make_strategy("tpe", n_startup_trials=-1)
    with pytest.raises(TypeError):
        make_strategy("nsga2", n_startup_trials=4)  # another sampler's setting
    with pytest.raises(TypeError):
        OptunaStrategy()  # abstract


@pytest.mark.parametrize("name", ["nsga2", "tpe"])
def test_asks_tells_and_pareto_front(name):
    s = make_strategy(name, seed=0, **FAST[name])
    sur = BiSurrogate(0)
    seen = []
    for _ in range(8):
        batch = s.ask(4)
        assert len(batch) == 4 and s.pending[-4:] == batch
        for d in batch:
            assert TPSR_SPACE.validate(d) == d and d[1] == 0
        # told in reverse order: results are matched to asks by their decisions
        s.tell([(d, _result(sur, d)) for d in reversed(batch)])
        seen += [(d, _result(sur, d)) for d in batch]
    assert s.pending == [] and (s.asked, s.told) == (32, 32)
    assert s.rejected == sum(v is None for _, v in seen) and s.best_reward is None and s.best_genotype is None
    told = [(d, v) for d, v in seen if v is not None]
    front = s.pareto_front()
    assert front and all(item in told for item in front)
    for d, (p, q) in front:  # nothing told dominates a front member, and the front is complete
        assert not any(p2 >= p and q2 <= q and (p2, q2) != (p, q) for _, (p2, q2) in told)
    assert len({v for _, v in front}) == len({v for _, v in told if not any(
        p2 >= v[0] and q2 <= v[1] and (p2, q2) != v for _, (p2, q2) in told)})
    # a result for an architecture never asked (a seed architecture) is recorded as a finished trial
    psnr_best = max(p for _, (p, _) in told)
    assert s.tell([(TPSR_GENOTYPE, (psnr_best + 1.0, 1.0))]) == 1
    assert s.pareto_front() == [(TPSR_SPACE.encode(TPSR_GENOTYPE), (psnr_best + 1.0, 1.0))]
    assert len(s.study.trials) == 33 and s.pending == []
    s.ask(2)  # asking goes on after it
    assert len(s.pending) == 2


@pytest.mark.parametrize("name", ["nsga2", "tpe"])
def test_rejected_results(name):
    s = make_strategy(name, seed=1, **FAST[name])
    batch = s.ask(10)
    assert s.tell([(d, None) for d in batch]) == 0
    assert (s.told, s.rejected, s.pending, s.pareto_front()) == (10, 10, [], [])
    states = {t.state for t in s.study.trials}
    assert states == {optuna.trial.TrialState.FAIL}  # ignored by the samplers
    more = s.ask(3)  # the samplers still propose (uniformly: nothing finished yet)
    assert len(set(more)) == 3


def test_tell_errors_are_one_line_and_atomic():
    s = make_strategy("nsga2", seed=0)
    d = s.ask(2)
    cases = [((30.0,), "expected 2 values \\(psnr, latency\\), got 1"),
             ((30.0, 5.0, 1.0), "got 3"),
             (30.0, "expected 2 values \\(psnr, latency\\) or None \\(rejected\\), got 30.0"),
             ("30,5", "expected 2 values"),
             ((30.0, float("inf")), "latency = inf is not finite"),
             ((float("nan"), 5.0), "psnr = nan is not finite"),
             ((True, 5.0), "psnr must be a number"),
             ((30.0, None), "latency must be a number")]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            s.tell([(d[0], (31.0, 4.0)), (d[1], bad)])
        assert "\n" not in str(err.value) and str(err.value).startswith("result 1: ")
    assert (s.told, len(s.pending), len(s.study.trials)) == (0, 2, 2)  # nothing of a bad call was recorded
    assert s.tell([(d[0], (31.0, 4.0)), (d[1], np.array([30.0, 5.0]))]) == 2  # any sequence of numbers
    with pytest.raises(ValueError, match="a reward is a number"):
        ReinforceStrategy(seed=0).tell([(d[0], (31.0, 4.0))])  # single-objective strategies are unchanged


# ---------------------------------------------------------------------- exact resume
def _ops(rng, steps):
    """A driver's schedule: ask a batch, tell some of what is pending (oldest first), repeat."""
    ops = []
    pending = 0
    for _ in range(steps):
        n = int(rng.integers(1, 6))
        ops.append(("ask", n))
        pending += n
        m = int(rng.integers(0, pending + 1))
        ops.append(("tell", m))
        pending -= m
    ops.append(("tell", pending))
    return ops


def _apply(strategy, op, sur, log):
    kind, n = op
    if kind == "ask":
        log.append(strategy.ask(n))
    else:
        due = strategy.pending[:n]
        strategy.tell([(d, _result(sur, d)) for d in due])


@pytest.mark.parametrize("name, options", [("nsga2", FAST["nsga2"]), ("tpe", FAST["tpe"]),
                                           ("tpe", {"n_startup_trials": 5, "multivariate": True})])
def test_checkpoints_resume_exactly(name, options):
    sur = BiSurrogate(1)
    ops = _ops(np.random.default_rng(7), 24)
    straight = make_strategy(name, seed=5, **options)
    asked_straight = []
    for op in ops:
        _apply(straight, op, sur, asked_straight)

    points = set(np.random.default_rng(8).choice(len(ops), size=8, replace=False).tolist())
    resumed, asked, with_pending = make_strategy(name, seed=5, **options), [], 0
    for k, op in enumerate(ops):
        _apply(resumed, op, sur, asked)
        if k in points:  # what a driver writes to disk, read back into a new process's strategy
            with_pending += bool(resumed.pending)
            state = json.loads(json.dumps(resumed.state_dict()))
            resumed = make_strategy(name, seed=999, **FAST[name])  # seed and settings come from the state
            resumed.load_state_dict(state)

    assert with_pending >= 2  # checkpoints taken with asked-but-untold candidates
    assert asked == asked_straight
    assert resumed.state_dict() == straight.state_dict()
    assert resumed.pareto_front() == straight.pareto_front()
    trials = straight.study.trials
    assert len(trials) == straight.asked > 60 and straight.rejected > 0
    if name == "nsga2":  # the comparison crossed many generations, not just the random first one
        assert max(t.system_attrs["NSGAIISampler:generation"] for t in trials) >= 5
    # the checkpoint is what makes the asks repeat: the same history under another seed asks otherwise
    other, asked_other = make_strategy(name, seed=6, **options), []
    for op in ops[:8]:
        _apply(other, op, sur, asked_other)
    assert asked_other != asked_straight[:len(asked_other)]


@pytest.mark.parametrize("name, options", [("nsga2", FAST["nsga2"]), ("tpe", {"multivariate": True})])
def test_relative_search_space_is_the_samplers_own(name, options):
    """The delegate computes the relative search space itself (incrementally, for speed); it must be
    exactly what a fresh Optuna sampler computes, names and order included."""
    s = make_strategy(name, seed=2, **options)
    sur = BiSurrogate(2)
    for step in range(6):
        fresh = s._make_sampler(step)
        own = s._relative_space(s.study)
        ref = fresh.infer_relative_search_space(s.study, s.study.trials[-1] if s.study.trials else None)
        assert list(own.items()) == list(ref.items())
        assert bool(own) == (step > 0)  # empty until a finished trial exists; then 19 (src_0 has one choice)
        assert not own or (len(own) == 19 and "src_0" not in own)
        batch = s.ask(7)
        s.tell([(d, sur(d)) for d in batch[:5]])  # two left running


def test_state_checks():
    s = make_strategy("nsga2", seed=0)
    s.tell([(d, (1.0, 2.0)) for d in s.ask(3)])
    state = json.loads(json.dumps(s.state_dict()))
    with pytest.raises(ValueError, match="state is for strategy 'nsga2', not 'tpe'"):
        make_strategy("tpe").load_state_dict(state)
    bad = json.loads(json.dumps(state))
    bad["trials"][1]["values"] = None
    with pytest.raises(ValueError, match="state trial 1: a COMPLETE trial with values None"):
        make_strategy("nsga2").load_state_dict(bad)
    bad = json.loads(json.dumps(state))
    bad["trials"][0]["decisions"][3] = 5
    with pytest.raises(ValueError, match="decision 3"):
        make_strategy("nsga2").load_state_dict(bad)


# ----------------------------------------------------------------- surrogate benchmark
HV_BUDGET = 300
HV_SEEDS = range(3)


def _front_hypervolume(name, seed, sur, **options):
    s = make_strategy(name, seed=seed, **options)
    values = []
    while s.told < HV_BUDGET:
        batch = s.ask(min(4, HV_BUDGET - s.told))  # a driver with four workers
        results = [(d, sur(d)) for d in batch]
        values += [v for _, v in results]
        s.tell(results if s.multi_objective else [(d, None) for d, _ in results])
    if s.multi_objective:
        assert sorted(v for _, v in s.pareto_front()) == sorted(
            v for v in set(values) if not any(w[0] >= v[0] and w[1] <= v[1] and w != v for w in values))
    # reference point: an average uniformly random architecture (score 0, mean latency)
    return hypervolume(values, (0.0, sur.mean_ms))


def test_nsga2_front_beats_random_search():
    rows = []
    for seed in HV_SEEDS:
        sur = BiSurrogate(seed)
        rows.append((seed, _front_hypervolume("nsga2", seed, sur), _front_hypervolume("random", seed, sur)))
    report = "; ".join(f"seed {k}: nsga2 {a:.0f}, random {b:.0f}" for k, a, b in rows)
    print(f"\nbi-objective surrogate, {HV_BUDGET} samples, hypervolume: {report}")
    for _, a, b in rows:
        assert a > 1.5 * b, report
