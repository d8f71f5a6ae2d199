"""The generator-search driver: the paper's Algorithm 1 (generator part) over a run store.

A search proceeds in *rounds*. To form a round the driver asks the strategy for one candidate
at a time, decodes it and checks the constraints (Mult-Adds limit, latency budgets); a rejected
candidate is recorded at once (a PRUNED trial with its reason and figures), told to the strategy,
and sampling continues, until ``round_size`` candidates are accepted. The accepted candidates
are then evaluated together (in parallel on the backend), each starting from the weight store as
it stood at the start of the round: trained on the proxy task, scored by validation PSNR,
recorded as a COMPLETE trial (with its proxy-trained weights under ``RUN/trials/``) as soon as it
finishes. At the end of the round, in candidate order, each is offered to the store (Eq. 5, by
PSNR) and its reward told to the strategy; then the strategy's state, the store and the counters
are checkpointed, in one atomic write, to ``RUN/checkpoint.pt``. ``round_size: 1`` is the paper's
strictly sequential loop; larger rounds trade a slightly staler store for parallel evaluation.

**Resume.** The driver is the study's only writer. Every candidate has a sequence number (its
position in the strategy's stream), stored on its trial. After a kill at any moment, ``resume``
marks the study's RUNNING (and WAITING) trials *interrupted* (FAIL with ``interrupted: true``),
restores the last checkpoint and replays the stream from there: a candidate whose trial already
finished (COMPLETE, PRUNED, or failed with an evaluation error, which is final) is taken from the
study (its weights from its file) instead of being evaluated again, the others (interrupted
ones included) are evaluated anew. Since strategies restore exactly and evaluations are deterministic, the resumed
run's finished trials equal an uninterrupted run's.

The same driver runs the discriminator search (:mod:`tinysr.search.discriminator.search`): a subclass
replaces the problem hooks of :class:`Search` (space, constraint check, weight store, job, score,
saved model, meta); rounds, records, checkpoint and resume are the ones described here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tinysr.checkpoint import read_checkpoint, save_checkpoint
from tinysr.genotype import TPSR_GENOTYPE
from tinysr.imageio import atomic_write
from tinysr.models.tpsr import CellSR

from tinysr.search.core import run_store
from tinysr.search.core.backends import check_ray_address, make_backend
from tinysr.search.core.config import RUNTIME_FIELDS
from tinysr.search.generator.config import SearchConfig
from tinysr.search.generator.proxy import GeneratorJob, ProxyData, bicubic_psnr
from tinysr.search.generator.reward import Reward
from tinysr.search.core.space import TPSR_SPACE, PlusSpace
from tinysr.search.core.registry import make_strategy
from tinysr.search.generator.weight_store import PlusWeightStore, WeightStore

CHECKPOINT_FORMAT = "tinysr.search-checkpoint/1"


@dataclass
class _Candidate:
    number: int
    decisions: tuple
    genotype: object
    figures: dict
    cached: object = None  # the finished trial of an earlier attempt (resume)
    trial: object = None
    psnr: float | None = None
    reward: float | None = None
    state_dict: dict | None = None
    error: str | None = None


@dataclass
class _Counters:
    rounds: int = 0
    candidates: int = 0
    evaluated: int = 0
    rejected: int = 0
    failed: int = 0
    history: list = field(default_factory=list)  # per round: timings and counts


def objective_names(cfg: SearchConfig, strategy) -> list[str]:
    if len(strategy.objectives) == 1:
        return ["reward"]
    second = f"latency_ms:{cfg.latency[0].name}" if cfg.latency else "mult_adds_g"
    return ["psnr_db", second]


def _objective_values(names: list[str], c: _Candidate) -> list[float]:
    if names == ["reward"]:
        return [c.reward]
    second = (c.figures["latency_ms"][names[1].split(":", 1)[1]] if names[1].startswith("latency_ms:")
              else c.figures["mult_adds"] / 1e9)
    return [c.psnr, second]


def _run_meta(cfg: SearchConfig, strategy, constraints, psnr_min: float, bicubic: float, fingerprint: str) -> dict:
    names = objective_names(cfg, strategy)
    space = {} if getattr(cfg, "space", "tpsr") == "tpsr" else {"space": strategy.space.identity()}
    return {**space, "format": run_store.RUN_FORMAT, "strategy": cfg.strategy, "objectives": names,
            "directions": list(strategy.directions), "budgets": constraints.budgets,
            "max_mult_adds": cfg.max_mult_adds, "scale": cfg.scale, "n_feats": cfg.n_feats,
            "input_size": list(cfg.input_size), "psnr_min": psnr_min, "psnr_max": cfg.psnr_max,
            "bicubic_psnr": bicubic, "data": fingerprint,
            "reference": {"genotype": str(TPSR_GENOTYPE), **constraints.figures(TPSR_GENOTYPE)},
            "config": cfg.to_dict()}


def _save_checkpoint(path: Path, strategy, store: WeightStore, n: _Counters) -> None:
    payload = {"format": CHECKPOINT_FORMAT, "strategy": strategy.state_dict(), "store": store.state(),
               "counters": {k: getattr(n, k) for k in ("rounds", "candidates", "evaluated", "rejected", "failed")},
               "history": n.history}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _load_checkpoint(path: Path, strategy, store_class=WeightStore) -> tuple[WeightStore, _Counters]:
    state = read_checkpoint(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a search checkpoint ({state.get('format')!r})")
    strategy.load_state_dict(state["strategy"])
    store = store_class.from_state(state["store"], str(path))
    return store, _Counters(**state["counters"], history=list(state["history"]))


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every key that differs; sections (dicts on both sides) by their own
    keys (``proxy.steps: 200 -> 100``), so a long section never fills the message."""
    out = []
    for k in sorted(set(a) | set(b)):
        old, new = a.get(k), b.get(k)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            out += _differences(old, new, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}: {old!r} -> {new!r}")
    return out


class _Sigint:
    """Ctrl-C in the driver, never lost: SIGINT raises KeyboardInterrupt as Python's default handler does and
    is also remembered, so that one which lands in code that swallows exceptions (a finalizer or weakref
    callback, e.g. SQLAlchemy's session cleanup: "Exception ignored in ...") still stops the run at the next
    result (:meth:`Search._interrupted`). Installed only in the main thread; the previous handler is restored."""

    def __init__(self):
        self.seen = False
        self.previous = None

    def _handle(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


class Search:
    """One search run (see the module doc). ``run()`` until ``cfg.evaluations`` candidates are scored.

    The search problem is the generator's; a subclass searches another space by overriding the
    hooks marked "problem" (:class:`tinysr.search.discriminator.search.DiscriminatorSearch`): the rounds, the
    study records, the checkpoint and the resume logic are shared.
    """

    #: problem: the space the strategy samples, the config class, the weight store's class
    space = TPSR_SPACE
    config_class = SearchConfig
    store_class = WeightStore

    def __init__(self, cfg: SearchConfig, resume: bool = False, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self._sigint: _Sigint | None = None
        if getattr(cfg, "space", "tpsr") != "tpsr":  # the extended generator space (tpsr_plus)
            self.space = cfg.search_space()
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        exists = (self.run_dir / "run.json").is_file()
        if resume and not exists:
            raise FileNotFoundError(f"{self.run_dir}: no search run to resume (no run.json)")
        if not resume and exists:
            raise ValueError(f"{self.run_dir} already holds a search run: continue it with --resume, "
                             "or choose another run_dir")
        if cfg.backend == "ray" and cfg.address:  # before anything is created: a wrong address leaves nothing behind
            check_ray_address(cfg.address, cfg.connect_timeout)
        if resume:  # the run and its config are checked before any data is loaded
            self.info, self.study = run_store.open_run(self.run_dir)
            meta = self.info.meta
            diffs = _differences(self._stored_identity(meta["config"]), cfg.identity())
            if diffs:
                raise ValueError(f"{self.run_dir} was started with another configuration ({'; '.join(diffs)}); "
                                 f"only {', '.join(RUNTIME_FIELDS)} may change")
        self._prepare()
        self.data = ProxyData.load(cfg.proxy, progress=progress)
        self.strategy = make_strategy(cfg.strategy, self.space, seed=cfg.seed, **cfg.strategy_options)
        if resume:
            if meta["data"] != self.data.fingerprint():
                raise ValueError(f"{self.run_dir}: the proxy data changed since the run started "
                                 "(other training or validation images)")
            self._resume_meta(meta)
            if self.ckpt_path.is_file() or self.study.get_trials(deepcopy=False):
                self.store, self.n = _load_checkpoint(self.ckpt_path, self.strategy, self.store_class)
            else:  # stopped between creating the run and writing its first checkpoint: its state is a new run's
                self.store, self.n = self._new_store(), _Counters()
                _save_checkpoint(self.ckpt_path, self.strategy, self.store, self.n)
            self.stale = run_store.interrupt_stale_trials(self.study)
        else:
            meta = self._new_meta()
            self.info, self.study = run_store.create_run(self.run_dir, meta, cfg.storage, self.run_dir.name)
            self.store, self.n = self._new_store(), _Counters()
            self.stale = 0
            _save_checkpoint(self.ckpt_path, self.strategy, self.store, self.n)
        self.objectives = self.info.meta["objectives"]
        self._ready()
        self.trials_dir = self.run_dir / "trials"
        self.trials_dir.mkdir(parents=True, exist_ok=True)
        self.best: _Candidate | None = None
        self._carry_s = 0.0  # the last checkpoint write, counted in the next round's driver time

    def _stored_identity(self, stored: dict) -> dict:
        """The identity of the run's recorded config (its fields as this version reads them)."""
        try:
            return self.config_class.from_dict(stored, "the run's config").identity()
        except (ValueError, FileNotFoundError):  # e.g. a folder or table since moved: compare as recorded
            return {k: v for k, v in stored.items() if k not in RUNTIME_FIELDS + ("run_dir", "storage")}

    # ----------------------------------------------------------------- problem
    def _prepare(self) -> None:
        """Before the data is loaded: what the problem needs built (the constraints)."""
        self.constraints = self.cfg.constraints()

    def _new_meta(self) -> dict:
        """The run meta of a new run (:mod:`tinysr.search.core.run_store`)."""
        bicubic = bicubic_psnr(self.data.val, self.cfg.scale)
        self.psnr_min = self.cfg.psnr_floor(bicubic)
        return _run_meta(self.cfg, self.strategy, self.constraints, self.psnr_min, bicubic, self.data.fingerprint())

    def _resume_meta(self, meta: dict) -> None:
        """What a resumed run takes from its meta (after the config and data checks)."""
        self.psnr_min = meta["psnr_min"]

    def _new_store(self):
        cls = PlusWeightStore if isinstance(self.space, PlusSpace) else WeightStore
        return cls(self.space, self.cfg.scale, self.cfg.n_feats, self.cfg.seed)

    def _ready(self) -> None:
        """After the run is created or opened: the reward."""
        cfg = self.cfg
        self.reward = Reward(psnr_min=self.psnr_min, psnr_max=cfg.psnr_max, alpha=cfg.alpha, beta=cfg.beta,
                             budgets=self.constraints.budgets)

    def _check(self, genotype) -> tuple[bool, str, dict]:
        """``(accepted, reason, figures)`` of a candidate before any training."""
        return self.constraints.check(genotype)

    def _job(self, c: _Candidate):
        """The backend job that evaluates ``c`` (:func:`tinysr.search.core.backends.run_job`)."""
        init = self.store.get(c.genotype) if self.cfg.weight_sharing else None  # None: fresh, seeded weights
        return GeneratorJob(str(c.genotype), init, self.cfg.n_feats, self.cfg.precision)

    def _score(self, c: _Candidate, value) -> dict:
        """Set ``c``'s psnr, reward and state dict from an evaluation result; returns its trial attributes."""
        c.psnr, c.state_dict = value.psnr, value.state_dict
        c.reward = self.reward(c.psnr, c.figures)
        extra = {} if getattr(value, "psnr_fp32", None) is None else {"psnr_fp32": value.psnr_fp32}
        return {"psnr": c.psnr, "reward": c.reward, "train_s": value.train_s, "val_s": value.val_s,
                "eval_s": value.train_s + value.val_s, **extra}

    def _model(self, c: _Candidate):
        """The network saved as ``c``'s trial weights (its state dict loaded)."""
        model = CellSR.of(c.genotype, self.cfg.scale, self.cfg.n_feats)
        model.load_state_dict(c.state_dict)
        return model

    def _figures_of(self, rec) -> dict:
        """A finished trial's figures, as :meth:`_check` gave them."""
        return {"mult_adds": rec.mult_adds, "latency_ms": dict(rec.latency_ms),
                "latency_predicted_ms": dict(rec.latency_predicted_ms),
                "latency_measured_ms": dict(rec.latency_measured_ms)}

    def _best_text(self, b: _Candidate) -> list[str]:
        lat = ", ".join(f"{k} {v:.1f}ms" for k, v in b.figures["latency_ms"].items())
        return [f"best R {b.reward:.4g}", f"PSNR {b.psnr:.2f}"] + ([lat] if lat else [])

    # ----------------------------------------------------------------- records
    def _attrs(self, c: _Candidate, round_: int) -> dict:
        f = c.figures
        return {"candidate": c.number, "round": round_, "genotype": str(c.genotype), "mult_adds": f["mult_adds"],
                "latency_ms": f["latency_ms"], "latency_predicted_ms": f["latency_predicted_ms"],
                "latency_measured_ms": f["latency_measured_ms"]}

    def _cache(self) -> dict:
        cache = dict(run_store.finished_by_candidate(self.study))
        for rec in run_store.trial_records(self.study, ("failed",)):  # evaluation errors are final (interruptions not)
            if rec.error and rec.candidate is not None:
                cache.setdefault(rec.candidate, rec)
        return cache

    def _from_cache(self, c: _Candidate) -> bool:
        rec = c.cached
        if rec.genotype != str(c.genotype):
            raise ValueError(f"{self.run_dir}: candidate {c.number} is {rec.genotype} in the study but {c.genotype} "
                             "after restoring the checkpoint: the run's files do not belong together")
        c.figures = self._figures_of(rec)
        if rec.state == "failed":
            c.error = rec.error
            return True
        if rec.state != "complete":
            return True
        path = self.run_dir / rec.weights
        if not path.is_file():
            return False  # weights lost with the kill: evaluate again
        c.psnr, c.reward = rec.psnr, rec.reward
        c.state_dict = read_checkpoint(path)["state_dict"]
        return True

    # ------------------------------------------------------------------- round
    def _form_round(self, cache: dict, bar) -> list[_Candidate]:
        accepted: list[_Candidate] = []
        want = min(self.cfg.round_size, self.cfg.evaluations - self.n.evaluated - self.n.failed)
        while len(accepted) < want:
            if self.n.candidates >= self.cfg.max_samples:
                raise RuntimeError(f"{self.n.candidates} candidates sampled, {self.n.rejected} rejected, and only "
                                   f"{self.n.evaluated} evaluated: the constraints reject almost everything "
                                   "(raise max_candidates or loosen max_mult_adds / the latency budgets)")
            decisions = self.strategy.ask(1)[0]
            c = _Candidate(self.n.candidates, decisions, self.space.decode(decisions), {})
            self.n.candidates += 1
            c.cached = cache.get(c.number)
            if c.cached is not None and c.cached.state == "rejected":
                self._from_cache(c)
                ok, reason = False, c.cached.rejected
            elif c.cached is not None:
                ok, reason = True, ""
            else:
                ok, reason, c.figures = self._check(c.genotype)
            if ok:
                accepted.append(c)
                continue
            self.n.rejected += 1
            if c.cached is None:
                run_store.add_finished_trial(self.study, self.space.to_params(c.genotype), "rejected",
                                             attrs={**self._attrs(c, self.n.rounds), "rejected": reason})
            self.strategy.tell([(decisions, None)])
            bar.set_postfix_str(self._postfix(), refresh=False)
        return accepted

    def _evaluate(self, accepted: list[_Candidate], backend) -> float:
        """Evaluate the round's candidates; returns the seconds spent waiting for the backend."""
        todo = [c for c in accepted if c.cached is None or not self._from_cache(c)]
        jobs = []
        for c in todo:
            c.trial = run_store.new_trial(self.study, self.space.to_params(c.genotype), self._attrs(c, self.n.rounds))
            jobs.append(self._job(c))
        waited = 0.0
        results = backend.evaluate(jobs)
        while True:
            t0 = time.perf_counter()
            try:
                i, (status, value) = next(results)
            except StopIteration:
                break
            finally:
                waited += time.perf_counter() - t0
            self._interrupted()
            c = todo[i]
            if status == "error":
                c.error = value
                run_store.finish_trial(self.study, c.trial, "failed", attrs={"error": value})
                continue
            attrs = self._score(c, value)
            rel = f"trials/c{c.number:06d}.pt"
            save_checkpoint(self.run_dir / rel, self._model(c),
                            meta={"search": {"run": self.run_dir.name, "candidate": c.number, "psnr": c.psnr,
                                             "reward": c.reward}})
            run_store.finish_trial(self.study, c.trial, "complete", _objective_values(self.objectives, c),
                                   {**attrs, "weights": rel})
        return waited

    def _postfix(self) -> str:
        parts = [f"cand {self.n.candidates}", f"rejected {self.n.rejected}"]
        if self.best is not None:
            parts[1:1] = self._best_text(self.best)
        if self.n.failed:
            parts.append(f"failed {self.n.failed}")
        return ", ".join(parts)

    def _finish_round(self, accepted: list[_Candidate], started: float, waited: float) -> None:
        results = []
        for c in accepted:
            if c.error is not None:
                self.n.failed += 1
                results.append((c.decisions, None))
                continue
            self.store.offer(c.genotype, c.state_dict, c.psnr)
            self.n.evaluated += 1
            value = _objective_values(self.objectives, c)
            results.append((c.decisions, value[0] if len(value) == 1 else tuple(value)))
            if self.best is None or c.reward > self.best.reward:
                self.best = c
        self.strategy.tell(results)
        self.n.rounds += 1
        wall = time.perf_counter() - started
        # the driver's time in this round: sampling, checks, study and weight writes, offers, tells, and
        # the previous round's checkpoint write (this round's is timed below and counted in the next)
        self.n.history.append({"round": self.n.rounds, "accepted": len(accepted), "wall_s": wall + self._carry_s,
                               "wait_s": waited, "candidates": self.n.candidates,
                               "driver_s": wall - waited + self._carry_s})
        t0 = time.perf_counter()
        _save_checkpoint(self.ckpt_path, self.strategy, self.store, self.n)
        self._carry_s = time.perf_counter() - t0

    def _load_best(self):
        recs = run_store.records_sorted(run_store.trial_records(self.study, states=("complete",)))
        if recs:
            r = recs[0]  # the report's ranking: highest reward, ties to the lowest candidate
            self.best = _Candidate(r.candidate, (), r.genotype, {"latency_ms": r.latency_ms}, psnr=r.psnr,
                                   reward=r.reward)

    def _interrupted(self) -> None:
        """Raise KeyboardInterrupt if a Ctrl-C reached the driver but was swallowed where it landed."""
        if self._sigint is not None and self._sigint.seen:
            raise KeyboardInterrupt

    def run(self, backend=None) -> dict:
        """Run rounds until ``evaluations`` candidates are scored (or failed); returns :meth:`summary`."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        self._load_best()
        cache = self._cache()
        backend = backend or make_backend(cfg.backend, cfg.proxy, self.data, cfg.workers, cfg.threads, cfg.address,
                                          cfg.connect_timeout)
        bar = tqdm(total=cfg.evaluations, initial=min(cfg.evaluations, self.n.evaluated + self.n.failed),
                   desc=f"search {self.run_dir.name}", unit="eval", disable=not self.progress, dynamic_ncols=True)
        self._sigint = _Sigint()
        try:
            with self._sigint, backend:
                while self.n.evaluated + self.n.failed < cfg.evaluations:
                    self._interrupted()
                    started = time.perf_counter()
                    accepted = self._form_round(cache, bar)
                    waited = self._evaluate(accepted, backend)
                    self._finish_round(accepted, started, waited)
                    bar.n = min(cfg.evaluations, self.n.evaluated + self.n.failed)
                    bar.set_postfix_str(self._postfix(), refresh=False)
                    bar.refresh()
        except BaseException as e:  # a clean stop leaves no RUNNING trial behind (the driver is the only writer)
            why = "stopped (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else f"stopped ({type(e).__name__})"
            run_store.interrupt_stale_trials(self.study, f"the run was {why}")
            raise
        finally:
            bar.close()
        return self.summary()

    def summary(self) -> dict:
        hist = self.n.history
        driver = sum(h.get("driver_s", 0.0) for h in hist)
        evals = run_store.trial_records(self.study, states=("complete",))
        eval_s = [r.eval_s for r in evals if r.eval_s is not None]
        return {"run_dir": str(self.run_dir), "storage": self.info.storage, "candidates": self.n.candidates, "evaluated": self.n.evaluated,
                "rejected": self.n.rejected, "failed": self.n.failed, "rounds": self.n.rounds,
                "interrupted": len(run_store.trial_records(self.study, ("interrupted",))),
                "interrupted_on_start": self.stale, "driver_s": driver,
                "driver_s_per_evaluation": driver / max(1, self.n.evaluated),
                "eval_s_mean": sum(eval_s) / len(eval_s) if eval_s else math.nan,
                "wall_s": sum(h["wall_s"] for h in hist),
                "best": None if self.best is None else {"candidate": self.best.number, "genotype": str(self.best.genotype),
                                                        "psnr": self.best.psnr, "reward": self.best.reward,
                                                        "latency_ms": self.best.figures.get("latency_ms", {})}}


def run_search(cfg: SearchConfig, resume: bool = False, progress: bool = True, backend=None) -> dict:
    """Start (or with ``resume`` continue) the search of ``cfg``; returns the run's summary."""
    return Search(cfg, resume=resume, progress=progress).run(backend)
