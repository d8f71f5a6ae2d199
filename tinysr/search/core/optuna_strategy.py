"""Multi-objective search strategies from Optuna: NSGA-II and TPE over (PSNR, latency).

For users who want the whole quality / latency Pareto front of a search rather than the best
architecture under one latency budget. Both are :class:`~tinysr.search.core.strategies.Strategy`
objects (``make_strategy("nsga2")``, ``make_strategy("tpe")``) with two objectives::

    objectives = ("psnr", "latency")       # tell([(decisions, (psnr_db, latency), ...)])
    directions = ("maximize", "minimize")

``latency`` is whatever cost the driver minimises: the predicted milliseconds of its first latency
target, or Mult-Adds (in G) when it has none. A rejected candidate (a constraint violation, a
failed training) is told as ``None``: its trial is marked FAIL, which both samplers ignore. There
is no single best result (``best_reward`` stays ``None``); :meth:`OptunaStrategy.pareto_front`
lists the non-dominated results told so far.

``nsga2`` (:class:`NSGA2Strategy`): :class:`optuna.samplers.NSGAIISampler` (Deb et al. 2002):
generations of ``population_size`` completed trials; each child is a uniform crossover of two
parents picked by binary tournament from the elite population (non-dominated rank, then crowding
distance), each parameter mutated (resampled uniformly) with probability ``mutation_prob``
(default ``1 / 20``: one decision per child on average). The first generation is uniform random.

``tpe`` (:class:`TPEStrategy`): :class:`optuna.samplers.TPESampler` on two objectives (MOTPE,
Ozaki et al. 2020/2022): after ``n_startup_trials`` uniform samples, the finished trials are split
into a "good" set (non-dominated ranks, ties broken by hypervolume contribution) and the rest;
every parameter is drawn from the good set's categorical Parzen estimator, ``n_ei_candidates``
at a time, keeping the candidate with the best density ratio. ``constant_liar`` (default on)
counts asked-but-untold trials as bad results so that a batch of asks spreads out.

**Asks and tells.** ``ask(n)`` asks the study ``n`` trials (each sees the earlier, still untold
ones as running trials); ``tell`` matches each result to the oldest untold trial with the same
decisions and finishes it, in any order. A result for decisions this strategy never proposed
(e.g. a seed architecture) is added as a finished trial: TPE learns from it; NSGA-II ignores it
(it only breeds from the generations it proposed). ``tell`` returns the number of accepted
results recorded (every one changes what the samplers propose next).

**Exact resume.** Optuna keeps a sampler's random state in the sampler object and nowhere in a
study, so a study restored from storage does not continue as the original would. Here the
sampler's randomness is instead a pure function of the strategy's own checkpointed generator:
the study's sampler is a thin delegate, and before every ask it is handed a *fresh* Optuna sampler
seeded from :attr:`Strategy.rng` (one draw per ask). Nothing else in these samplers carries over
between asks (they refit from the study's trials every time), so the next ask depends only on
the trials and that generator. The state (:meth:`state_dict`) holds every trial (decisions,
state COMPLETE / FAIL / RUNNING, values, the system attributes samplers write on trials, e.g.
NSGA-II's generation number and TPE's constant-liar parameters) and the study's system
attributes (NSGA-II's cached parent populations, by trial id); :meth:`load_state_dict` rebuilds
an in-memory study from them with ``optuna.trial.create_trial`` / ``Study.add_trials``, in trial
order, so trial numbers and ids are the original ones and asked-but-untold trials are running
again. Only public Optuna API is used.

*Defaults* for budgets of ~50-500 evaluated candidates. NSGA-II ``population_size``
:data:`DEFAULT_POPULATION` = 10, not Optuna's 50 (which leaves 1-10 generations in such a
budget). On the bi-objective surrogate benchmark of ``tests/test_search_optuna.py`` (seeds 0-4,
batches of 4 asks; hypervolume over the region that dominates an average random architecture),
the mean hypervolume for populations 10 / 20 / 30 / 50 was 1173 / 923 / 828 / 687 at 100
samples, 1952 / 1727 / 1597 / 1294 at 300 and 2235 / 1992 / 1885 / 1683 at 500 (random search:
631, 834, 899); population 10 stayed ahead with Gaussian noise of s.d. 1 and 2 added to the told
score (random architectures' scores have s.d. ~4; 300 samples: 1822 / 1693 / 1591 and 1688 /
1612 / 1523 for 10 / 20 / 30), though its spread over seeds grew. Its price: about 10 % of its
proposals repeat an architecture already proposed (5 % at population 20), so a driver should
answer those from its run store instead of training again. TPE ``n_startup_trials``
:data:`DEFAULT_STARTUP` is Optuna's default (10 uniform samples before the model is fitted); on
the same benchmark TPE's hypervolume was 1158 / 1495 / 1651 at 100 / 300 / 500 samples: as good
as NSGA-II at 100, behind it later.

*Rejected* candidates (FAIL trials) never become NSGA-II parents nor TPE observations: the
samplers do not learn from them directly, but NSGA-II's children inherit the decisions of
accepted parents, so a violation tied to certain decisions fades out of its proposals.

*Cost* per ask (2-core machine, 20 decisions): NSGA-II ~1 ms at 100 and 1000 trials; TPE
(independent per decision, refitted every ask) ~11 ms at 100 trials and ~77 ms at 1000
(``multivariate=True``: ~20 ms at 1000, one joint fit per ask; hypervolume 1456 at 300 samples,
about that of the independent default). The state is ~0.2 MB of JSON at 1000 trials;
``state_dict`` + ``json.dumps`` take ~17 ms and rebuilding the study on load ~0.4 s.

Optuna is not imported with :mod:`tinysr.search`; only building one of these strategies needs it.
Optuna's info log lines and experimental-feature warnings are silenced during the strategy's
own calls only.
"""
from __future__ import annotations

import abc
import contextlib
import functools
import warnings

from tinysr.search.core.space import TPSR_SPACE, GeneratorSpace
from tinysr.search.core.strategies import Strategy

#: NSGA-II population size (see the module doc).
DEFAULT_POPULATION = 10
#: TPE's number of uniform samples before its model is used (Optuna's default).
DEFAULT_STARTUP = 10
_STUDY_NAME = "tinysr-strategy"
_TRIAL_STATES = ("COMPLETE", "FAIL", "RUNNING")


@functools.lru_cache(maxsize=None)
def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("the nsga2 and tpe search strategies need optuna: pip install optuna") from None
    return optuna


@contextlib.contextmanager
def _quiet():
    """Optuna without its info log lines and experimental-feature warnings, for one call."""
    optuna = _optuna()
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield optuna
    finally:
        optuna.logging.set_verbosity(level)


@functools.lru_cache(maxsize=None)
def _delegate_class():
    base = _optuna().samplers.BaseSampler

    class DelegateSampler(base):
        """The study's sampler: forwards every call to ``inner``, which the strategy replaces before each ask.

        Except the relative search space: ``relative_space(study)`` computes it, with state that
        lasts across asks (a fresh sampler would recompute its search space from every trial,
        comparing distributions pairwise: 50 ms an ask at 300 trials). The result is the same
        (``tests/test_search_optuna.py`` compares it with the inner sampler's own).
        """

        def __init__(self, inner, relative_space):
            self.inner, self.relative_space = inner, relative_space

        def infer_relative_search_space(self, study, trial):
            return self.relative_space(study)

        def sample_relative(self, study, trial, search_space):
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.inner.sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial):
            self.inner.before_trial(study, trial)

        def after_trial(self, study, trial, state, values):
            self.inner.after_trial(study, trial, state, values)

        def reseed_rng(self):
            self.inner.reseed_rng()

    return DelegateSampler


class OptunaStrategy(Strategy):
    """A multi-objective Optuna sampler behind the :class:`Strategy` interface (see the module doc)."""

    objectives = ("psnr", "latency")
    directions = ("maximize", "minimize")

    def __init__(self, space: GeneratorSpace = TPSR_SPACE, seed: int | None = 0, **options):
        super().__init__(space, seed)
        optuna = _optuna()
        self._configure(**options)
        self._dists = {name: optuna.distributions.CategoricalDistribution(choices)
                       for name, choices in space.param_choices().items()}
        self._build_study([], {})

    # ------------------------------------------------------------ subclasses
    @abc.abstractmethod
    def _configure(self, **options) -> None:
        """Check and store the sampler settings (``options`` as in :meth:`_config`)."""

    @abc.abstractmethod
    def _config(self) -> dict:
        """The sampler settings, JSON-ready (the constructor's keyword arguments)."""

    @abc.abstractmethod
    def _make_sampler(self, seed: int):
        """A fresh Optuna sampler with these settings and ``seed``."""

    #: Whether the sampler's intersection search space counts pruned trials (none are made here).
    _include_pruned = False

    def _relative_space(self, study) -> dict:
        """What ``_make_sampler(seed).infer_relative_search_space(study, trial)`` returns.

        NSGA-II and multivariate TPE: the intersection of the finished trials' distributions
        without single-choice parameters (``src_0``), sorted by name.
        """
        return {name: dist for name, dist in self._intersection.calculate(study, use_cache=True).items()
                if not dist.single()}

    # ----------------------------------------------------------------- study
    def _build_study(self, trials: list, study_attrs: dict) -> None:
        with _quiet() as optuna:
            self._storage = optuna.storages.InMemoryStorage()
            # after_trial of both samplers draws no random numbers; tells go through this one
            self._tell_sampler = self._make_sampler(0)
            self._intersection = optuna.search_space.IntersectionSearchSpace(include_pruned=self._include_pruned)
            self._sampler = _delegate_class()(self._tell_sampler, self._relative_space)
            self.study = optuna.create_study(storage=self._storage, sampler=self._sampler, study_name=_STUDY_NAME,
                                             directions=list(self.directions))
            study_id = self._storage.get_study_id_from_name(_STUDY_NAME)
            for key, value in study_attrs.items():
                self._storage.set_study_system_attr(study_id, key, value)
            state = optuna.trial.TrialState
            self.study.add_trials(
                [optuna.trial.create_trial(state=state[t["state"]], params=self.space.to_params(t["decisions"]),
                                           distributions=self._dists, values=t["values"],
                                           system_attrs=dict(t["system_attrs"])) for t in trials])
        self._study_id = study_id
        self._decisions = [tuple(t["decisions"]) for t in trials]  # by trial number
        self._pending = [(k, self._decisions[k]) for k, t in enumerate(trials) if t["state"] == "RUNNING"]

    def _sample(self, n: int) -> list[tuple[int, ...]]:
        out = []
        with _quiet():
            for _ in range(n):
                self._sampler.inner = self._make_sampler(int(self.rng.integers(2 ** 32)))
                try:
                    trial = self.study.ask(self._dists)
                finally:
                    self._sampler.inner = self._tell_sampler
                decisions = self.space.params_to_decisions(trial.params)
                if trial.number != len(self._decisions):
                    raise RuntimeError(f"trial {trial.number} asked, expected trial {len(self._decisions)}")
                self._decisions.append(decisions)
                self._pending.append((trial.number, decisions))
                out.append(decisions)
        return out

    def _observe(self, batch: list) -> int:
        accepted = 0
        with _quiet() as optuna:
            state = optuna.trial.TrialState
            for decisions, values in batch:
                match = next((k for k, (_, d) in enumerate(self._pending) if d == decisions), None)
                if match is None:  # not proposed here: recorded as a finished trial
                    self.study.add_trial(optuna.trial.create_trial(
                        state=state.FAIL if values is None else state.COMPLETE,
                        params=self.space.to_params(decisions), distributions=self._dists,
                        values=None if values is None else list(values)))
                    self._decisions.append(decisions)
                else:
                    number, _ = self._pending.pop(match)
                    if values is None:
                        self.study.tell(number, state=state.FAIL)
                    else:
                        self.study.tell(number, list(values))
                accepted += values is not None
        return accepted

    # ---------------------------------------------------------------- queries
    @property
    def pending(self) -> list[tuple[int, ...]]:
        """Decision vectors asked and not yet told, oldest first."""
        return [d for _, d in self._pending]

    def pareto_front(self) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
        """The non-dominated results told so far, ``[(decisions, (psnr, latency)), ...]``, each
        architecture once (its first result), in the order they were told."""
        with _quiet():
            best = self.study.best_trials
        front: dict[tuple[int, ...], tuple[float, ...]] = {}
        for t in sorted(best, key=lambda t: t.number):
            front.setdefault(self._decisions[t.number], tuple(t.values))
        return list(front.items())

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        trials = [{"decisions": list(self._decisions[t.number]), "state": t.state.name,
                   "values": None if t.values is None else list(t.values), "system_attrs": dict(t.system_attrs)}
                  for t in self.study.get_trials(deepcopy=False)]
        return {"config": self._config(), "objectives": list(self.objectives), "trials": trials,
                "study_system_attrs": dict(self._storage.get_study_system_attrs(self._study_id))}

    def _load_extra_state(self, state: dict) -> None:
        if tuple(state["objectives"]) != self.objectives:
            raise ValueError(f"state is over objectives {tuple(state['objectives'])}, not {self.objectives}")
        trials = []
        for k, t in enumerate(state["trials"]):
            if t["state"] not in _TRIAL_STATES:
                raise ValueError(f"state trial {k}: state {t['state']!r} is not one of {', '.join(_TRIAL_STATES)}")
            values = t["values"]
            if (values is None) != (t["state"] != "COMPLETE") or (
                    values is not None and len(values) != len(self.objectives)):
                raise ValueError(f"state trial {k}: a {t['state']} trial with values {values!r}")
            trials.append({"decisions": self.space.validate(t["decisions"]), "state": t["state"],
                           "values": None if values is None else [float(v) for v in values],
                           "system_attrs": t["system_attrs"]})
        self._configure(**state["config"])
        self._build_study(trials, state["study_system_attrs"])


class NSGA2Strategy(OptunaStrategy):
    """NSGA-II (:class:`optuna.samplers.NSGAIISampler`) over (PSNR, latency); see the module doc."""

    name = "nsga2"

    def __init__(self, space: GeneratorSpace = TPSR_SPACE, seed: int | None = 0,
                 population_size: int = DEFAULT_POPULATION, mutation_prob: float | None = None,
                 crossover_prob: float = 0.9, swapping_prob: float = 0.5):
        super().__init__(space, seed, population_size=population_size, mutation_prob=mutation_prob,
                         crossover_prob=crossover_prob, swapping_prob=swapping_prob)

    def _configure(self, population_size, mutation_prob, crossover_prob, swapping_prob) -> None:
        if isinstance(population_size, bool) or int(population_size) != population_size or population_size < 2:
            raise ValueError(f"population_size must be an integer >= 2, got {population_size!r}")
        if mutation_prob is not None and not 0 <= mutation_prob <= 1:
            raise ValueError(f"mutation_prob must be in [0, 1] or None (1 / number of decisions), got {mutation_prob}")
        for what, p in (("crossover_prob", crossover_prob), ("swapping_prob", swapping_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{what} must be in [0, 1], got {p}")
        self.population_size = int(population_size)
        self.mutation_prob = None if mutation_prob is None else float(mutation_prob)
        self.crossover_prob, self.swapping_prob = float(crossover_prob), float(swapping_prob)

    def _config(self) -> dict:
        return {"population_size": self.population_size, "mutation_prob": self.mutation_prob,
                "crossover_prob": self.crossover_prob, "swapping_prob": self.swapping_prob}

    def _make_sampler(self, seed: int):
        return _optuna().samplers.NSGAIISampler(
            population_size=self.population_size, mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob, swapping_prob=self.swapping_prob, seed=seed)


class TPEStrategy(OptunaStrategy):
    """Multi-objective TPE (:class:`optuna.samplers.TPESampler`) over (PSNR, latency); see the module doc."""

    name = "tpe"

    def __init__(self, space: GeneratorSpace = TPSR_SPACE, seed: int | None = 0,
                 n_startup_trials: int = DEFAULT_STARTUP, n_ei_candidates: int = 24,
                 multivariate: bool = False, constant_liar: bool = True):
        super().__init__(space, seed, n_startup_trials=n_startup_trials, n_ei_candidates=n_ei_candidates,
                         multivariate=multivariate, constant_liar=constant_liar)

    def _configure(self, n_startup_trials, n_ei_candidates, multivariate, constant_liar) -> None:
        if isinstance(n_startup_trials, bool) or int(n_startup_trials) != n_startup_trials or n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be an integer >= 0, got {n_startup_trials!r}")
        if isinstance(n_ei_candidates, bool) or int(n_ei_candidates) != n_ei_candidates or n_ei_candidates < 1:
            raise ValueError(f"n_ei_candidates must be an integer >= 1, got {n_ei_candidates!r}")
        self.n_startup_trials, self.n_ei_candidates = int(n_startup_trials), int(n_ei_candidates)
        self.multivariate, self.constant_liar = bool(multivariate), bool(constant_liar)

    def _config(self) -> dict:
        return {"n_startup_trials": self.n_startup_trials, "n_ei_candidates": self.n_ei_candidates,
                "multivariate": self.multivariate, "constant_liar": self.constant_liar}

    _include_pruned = True

    def _relative_space(self, study) -> dict:
        # independent TPE (the multi-objective default) samples every parameter on its own
        return super()._relative_space(study) if self.multivariate else {}

    def _make_sampler(self, seed: int):
        return _optuna().samplers.TPESampler(
            n_startup_trials=self.n_startup_trials, n_ei_candidates=self.n_ei_candidates,
            multivariate=self.multivariate, constant_liar=self.constant_liar, seed=seed)


