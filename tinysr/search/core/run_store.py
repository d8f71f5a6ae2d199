"""The run store of a generator search: one folder, one Optuna study.

A search *run* is a folder ``RUN``:

``RUN/run.json``
    ``{"format": "tinysr.search-run/1", "storage": URL, "study_name": NAME, ...}``: where the
    study lives (any SQLAlchemy URL; by default ``sqlite:///<absolute RUN>/study.db``). When the
    study is the default SQLite file inside ``RUN``, ``"storage_file": "study.db"`` is recorded
    too, and :func:`open_run` uses the file in the folder it opens, so a run folder can be moved.
    Written atomically, last: a folder with ``run.json`` holds a complete study.

the study (Optuna RDB storage)
    Its user attribute ``"tinysr"`` is the run meta: ``format``, ``strategy``, ``objectives``
    (metric names), ``directions``, ``budgets`` (``{target: ms}``), ``max_mult_adds``, ``scale``,
    ``n_feats``, ``input_size``, ``psnr_min``, ``psnr_max``, ``reference`` (the published TPSR
    cell's ``genotype``, ``mult_adds`` and ``latency_ms``), ``config``, and optionally ``space``
    (``{"num_nodes": n, "ops": [...]}`` or a latency-table space name; default the paper's
    space :data:`~tinysr.search.core.space.TPSR_SPACE`; a discriminator search's
    :meth:`~tinysr.search.core.space.DiscriminatorSpace.identity`). Single-objective runs have objectives
    ``["reward"]`` (maximised; the trial value is the reward); multi-objective runs e.g.
    ``["psnr_db", "latency_ms:epyc"]`` with directions ``["maximize", "minimize"]``. The
    objectives are the study's metric names, so optuna-dashboard labels its axes with them.

trials
    Params: the space's decisions as named categorical parameters
    (:meth:`GeneratorSpace.to_params`; ``op_i`` operation name, ``src_i`` ``"in"`` or ``"j"``).
    States: COMPLETE = evaluated, PRUNED = rejected by a constraint before training,
    FAIL = the evaluation failed (``error``: its one-line reason; final) or was *interrupted*
    (``interrupted: true`` and ``reason``, which optuna-dashboard shows: the run was stopped or
    killed before the trial finished; the candidate is evaluated again on resume),
    RUNNING / WAITING = in progress. Records tell the two FAIL kinds apart: state ``failed`` or
    ``interrupted``. User attributes:
    ``candidate`` (the candidate's global sequence number, unique among COMPLETE and PRUNED
    trials), ``round``, ``genotype``, ``mult_adds``, ``latency_ms`` (``{target: ms}`` used by the
    constraints and the reward), ``latency_predicted_ms``, ``latency_measured_ms``; COMPLETE
    trials add ``psnr``, ``reward``, ``train_s``, ``val_s``, ``eval_s`` and ``weights`` (the
    candidate's trained tinysr checkpoint, relative to ``RUN``, e.g. ``trials/c000012.pt``);
    PRUNED trials add ``rejected`` (the reason); failed trials add ``error``, interrupted ones
    ``interrupted`` and ``reason``.

``RUN/checkpoint.pt``
    The driver's resume state (``torch.save``): at least
    ``{"format": "tinysr.search-checkpoint/1", "store": WeightStore.state(), ...}``.

Writers use :func:`create_run` / :func:`open_run`, :func:`new_trial` + :func:`finish_trial` (a
candidate evaluated over time), :func:`add_finished_trial` (a candidate recorded in one step,
e.g. rejected) and :func:`interrupt_stale_trials` (after a crash); readers use
:func:`trial_records` and :func:`finished_by_candidate`.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from tinysr.imageio import atomic_write

from tinysr.search.core.space import TPSR_SPACE, GeneratorSpace, space_from_identity

RUN_FORMAT = "tinysr.search-run/1"
CHECKPOINT_FORMAT = "tinysr.search-checkpoint/1"
RUN_FILE = "run.json"
STUDY_FILE = "study.db"
CHECKPOINT_FILE = "checkpoint.pt"
META_ATTR = "tinysr"

#: record state name -> Optuna trial state ("failed" and "interrupted" are both FAIL, told apart by
#: the trial's ``interrupted`` attribute)
STATES = {"complete": TrialState.COMPLETE, "rejected": TrialState.PRUNED, "failed": TrialState.FAIL,
          "interrupted": TrialState.FAIL, "running": TrialState.RUNNING, "waiting": TrialState.WAITING}
_STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "rejected", TrialState.FAIL: "failed",
                TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
_FINISH_STATES = ("complete", "rejected", "failed", "interrupted")
#: the user attribute that marks an interrupted trial, and the one with its reason (optuna-dashboard shows both)
INTERRUPTED_ATTR, REASON_ATTR = "interrupted", "reason"
#: the reason an earlier version recorded (as ``error``) for a trial killed between enqueue and ask
_OLD_INTERRUPTED_ERROR = "interrupted before it started"
#: Test hooks: ``HOOKS[name]()`` is called at the named moment (``"enqueued"``: in :func:`new_trial`,
#: between ``enqueue_trial`` and ``ask``), so a test can kill the process exactly there.
HOOKS: dict = {}


def interrupted_attrs(reason: str) -> dict:
    """The user attributes of a trial interrupted for ``reason``."""
    return {INTERRUPTED_ATTR: True, REASON_ATTR: reason}


def is_interrupted(attrs: Mapping) -> bool:
    """Whether a FAIL trial's user attributes mark it interrupted (not a failed evaluation)."""
    return bool(attrs.get(INTERRUPTED_ATTR)) or attrs.get("error") == _OLD_INTERRUPTED_ERROR


@contextmanager
def _quiet():
    """Optuna without its INFO log lines and experimental-feature warnings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _jsonable(value: Any) -> Any:
    """``value`` with tuples, paths and numpy / torch scalars turned into JSON types (user attributes are JSON)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):
        return _jsonable(value.tolist())
    raise ValueError(f"cannot store {type(value).__name__} {value!r} in a search run: not JSON data")


# ---------------------------------------------------------------------- runs
def default_storage(run_dir: str | os.PathLike) -> str:
    """``sqlite:///<absolute run_dir>/study.db``."""
    return f"sqlite:///{(Path(run_dir).expanduser().absolute() / STUDY_FILE).as_posix()}"


@dataclass
class RunInfo:
    run_dir: Path
    storage: str
    study_name: str
    meta: dict


def space_of(meta: Mapping | None):
    """The search space of a run's meta (``meta["space"]``; default the paper's generator space)."""
    spec = (meta or {}).get("space")
    if spec is None:
        return TPSR_SPACE
    try:
        return space_from_identity(spec)
    except ValueError as e:
        raise ValueError(f"run meta 'space': {e}") from None


def study_meta(study: optuna.Study) -> dict:
    """The run meta of ``study`` (its ``"tinysr"`` user attribute; ``{}`` when absent)."""
    return dict(study.user_attrs.get(META_ATTR) or {})


def _distributions(space: GeneratorSpace) -> dict[str, CategoricalDistribution]:
    return {name: CategoricalDistribution(choices) for name, choices in space.param_choices().items()}


def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL (None: another database, or in memory)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def open_storage(url: str):
    """The Optuna storage for ``url``. A SQLite file is opened in write-ahead-log mode with
    ``synchronous=NORMAL``: a commit survives the driver being killed (``kill -9``) at any moment
    and costs a fraction of the default rollback journal's (a run writes a trial per rejected
    candidate, hundreds per minute); only a power loss can lose the last commits. Other URLs
    (PostgreSQL, MySQL, ...) are passed to Optuna unchanged."""
    if _sqlite_file(url) is None:
        return url
    import sqlalchemy

    storage = optuna.storages.RDBStorage(url)

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # connections opened while Optuna set the schema up get the pragmas too
    return storage


def _check_meta(meta: Mapping) -> dict:
    if not isinstance(meta, Mapping):
        raise ValueError(f"run meta must be a dict, got {type(meta).__name__}")
    meta = _jsonable(dict(meta))
    meta.setdefault("format", RUN_FORMAT)
    objectives = meta.get("objectives") or ["reward"]
    directions = meta.get("directions") or ["maximize"] * len(objectives)
    if isinstance(objectives, str) or isinstance(directions, str):
        raise ValueError("run meta 'objectives' and 'directions' are lists")
    if len(objectives) != len(directions):
        raise ValueError(f"run meta has {len(objectives)} objectives {objectives} but {len(directions)} directions")
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad:
        raise ValueError(f"run meta directions must be 'maximize' or 'minimize', got {bad[0]!r}")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"run meta objectives must be unique, got {objectives}")
    meta["objectives"], meta["directions"] = [str(o) for o in objectives], list(directions)
    space_of(meta)  # a malformed space fails here
    return meta


def create_run(run_dir: str | os.PathLike, meta: dict, storage: str | None = None,
               study_name: str | None = None) -> tuple[RunInfo, optuna.Study]:
    """Start a new run in ``run_dir``: the folder, the study (directions and metric names from
    ``meta``, meta as its ``"tinysr"`` attribute), then ``run.json`` (atomically, last).

    ``ValueError`` (one line) if ``run_dir`` already holds a run, or the storage already holds a
    study of that name with trials. A study left without ``run.json`` by an interrupted
    :func:`create_run` (no trials) is replaced.
    """
    run_dir = Path(run_dir).expanduser().absolute()
    if (run_dir / RUN_FILE).exists():
        raise ValueError(f"{run_dir}: already a search run ({RUN_FILE} exists); resume it or choose another folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: exists and is not a folder")
    meta = _check_meta(meta)
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(run_dir)
    name = study_name or f"tinysr-search-{run_dir.name}"
    with _quiet():
        store = open_storage(url)
        try:
            study = optuna.create_study(storage=store, study_name=name, directions=meta["directions"])
        except optuna.exceptions.DuplicatedStudyError:
            old = optuna.load_study(study_name=name, storage=store)
            if old.get_trials(deepcopy=False):
                raise ValueError(f"storage {url} already holds a study {name!r} with trials; "
                                 "choose another study name") from None
            optuna.delete_study(study_name=name, storage=store)
            study = optuna.create_study(storage=store, study_name=name, directions=meta["directions"])
        study.set_metric_names(list(meta["objectives"]))
        study.set_user_attr(META_ATTR, meta)
    record = {"format": RUN_FORMAT, "storage": url, "study_name": name,
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "objectives": meta["objectives"], "directions": meta["directions"]}
    if storage is None:
        record["storage_file"] = STUDY_FILE
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(run_dir / RUN_FILE, lambda tmp: Path(tmp).write_text(text))
    return RunInfo(run_dir, url, name, meta), study


def read_run_file(run_dir: str | os.PathLike) -> dict:
    """``RUN/run.json`` checked (one-line errors), with ``storage`` resolved for the folder's location."""
    run_dir = Path(run_dir).expanduser().absolute()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such search run folder")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir}: not a search run (no {RUN_FILE})")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{path}: unreadable ({type(e).__name__}: {msg})") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        have = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path}: format {have!r}, expected {RUN_FORMAT!r}")
    for key in ("storage", "study_name"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise ValueError(f"{path}: no {key!r}")
    if record.get("storage_file"):
        record["storage"] = f"sqlite:///{(run_dir / record['storage_file']).as_posix()}"
    return record


def open_run(run_dir: str | os.PathLike) -> tuple[RunInfo, optuna.Study]:
    """The run in ``run_dir`` and its study; one-line errors: no such folder, not a search run
    (no ``run.json``), wrong format, storage or study missing."""
    run_dir = Path(run_dir).expanduser().absolute()
    record = read_run_file(run_dir)
    url, name = record["storage"], record["study_name"]
    db = _sqlite_file(url)
    if db is not None and not db.is_file():  # load_study would create an empty database
        raise ValueError(f"{run_dir}: study storage missing ({db} not found)")
    with _quiet():
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(url))
        except KeyError:
            raise ValueError(f"{run_dir}: storage {url} holds no study {name!r}") from None
        except Exception as e:  # SQLAlchemy / driver errors
            msg = str(e).splitlines()[0] if str(e) else ""
            raise ValueError(f"{run_dir}: cannot open storage {url} ({type(e).__name__}: {msg})") from None
    return RunInfo(run_dir, url, name, study_meta(study)), study


# ------------------------------------------------------------------- trials
def _params(study: optuna.Study, params: Mapping) -> tuple[dict, dict]:
    space = space_of(study_meta(study))
    params = dict(params)
    extra = sorted(set(params) - set(space.names))
    if extra:
        raise ValueError(f"unknown parameter(s) {', '.join(extra)}: a candidate has {', '.join(space.names)}")
    space.params_to_decisions(params)  # missing names and values outside the choices: one-line errors
    params = space.to_params(space.params_to_decisions(params))  # canonical values ("3", not 3)
    return params, _distributions(space)


def _values(study: optuna.Study, values) -> list[float]:
    if values is None:
        raise ValueError("a complete trial needs its objective value(s)")
    try:
        vals = list(values) if not isinstance(values, (str, bytes)) else None
    except TypeError:  # one number
        vals = [values]
    try:
        vals = [float(v) for v in vals]
    except (TypeError, ValueError):
        raise ValueError(f"objective values must be numbers, got {values!r}") from None
    n = len(study.directions)
    if len(vals) != n:
        raise ValueError(f"this run has {n} objective(s), got {len(vals)} value(s)")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"objective values must be finite, got {vals}")
    return vals


def _state(state: str) -> TrialState:
    if state not in _FINISH_STATES:
        raise ValueError(f"a trial finishes as {', '.join(_FINISH_STATES)}; got {state!r}")
    return STATES[state]


def new_trial(study: optuna.Study, params: Mapping, attrs: Mapping | None = None) -> optuna.Trial:
    """A RUNNING trial with exactly ``params`` (the candidate's named decisions) and user attributes ``attrs``.

    ``ValueError`` if the study holds WAITING trials (left by an interrupted writer: call
    :func:`interrupt_stale_trials` first), since a new trial would pick one of them up.
    """
    params, dists = _params(study, params)
    attrs = _jsonable(dict(attrs or {}))
    with _quiet():
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            raise ValueError("the study holds waiting trials of an interrupted run: call interrupt_stale_trials "
                             "first")
        study.enqueue_trial(params, user_attrs=attrs)
        if "enqueued" in HOOKS:
            HOOKS["enqueued"]()
        trial = study.ask(dists)
        if trial.params != params:
            study.tell(trial, state=TrialState.FAIL)
            raise ValueError(f"trial {trial.number} did not take the candidate's parameters "
                             "(another writer is using this study?)")
    return trial


def finish_trial(study: optuna.Study, trial: optuna.Trial, state: str, values=None,
                 attrs: Mapping | None = None) -> None:
    """Finish a trial from :func:`new_trial`: ``state`` ``"complete"`` (``values``: the objective
    value(s)), ``"rejected"``, ``"failed"`` (``attrs`` with its ``error``) or ``"interrupted"`` (``attrs``
    with its ``reason``; :func:`interrupted_attrs`); ``attrs`` are set before it is told."""
    st = _state(state)
    if state == "interrupted":
        attrs = {**interrupted_attrs("interrupted"), **(attrs or {})}
    vals = _values(study, values) if st == TrialState.COMPLETE else None
    with _quiet():
        for key, value in _jsonable(dict(attrs or {})).items():
            trial.set_user_attr(key, value)
        study.tell(trial, vals, state=st)


def add_finished_trial(study: optuna.Study, params: Mapping, state: str, values=None,
                       attrs: Mapping | None = None) -> int:
    """Record a finished candidate in one step (e.g. a rejected one); returns its trial number."""
    st = _state(state)
    params, dists = _params(study, params)
    vals = _values(study, values) if st == TrialState.COMPLETE else None
    frozen = optuna.trial.create_trial(state=st, values=vals, params=params, distributions=dists,
                                       user_attrs=_jsonable(dict(attrs or {})))
    with _quiet():
        study.add_trial(frozen)
        return study.get_trials(deepcopy=False)[-1].number


def interrupt_stale_trials(study: optuna.Study, why: str = "the run was killed") -> int:
    """After a crash (or at a clean stop, by the stopping writer): every RUNNING trial, and every
    WAITING trial (killed between enqueue and ask), finished as *interrupted* (FAIL with
    ``interrupted: true`` and a ``reason`` saying ``why``; never an evaluation error, so the driver
    evaluates its candidate again); returns how many trials were interrupted."""
    count = 0
    with _quiet():
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial = optuna.trial.Trial(study, t._trial_id)
            for key, value in interrupted_attrs(f"interrupted while running: {why}; "
                                                "evaluated again on resume").items():
                trial.set_user_attr(key, value)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            count += 1
        waiting = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
        if waiting:
            dists = _distributions(space_of(study_meta(study)))
            for _ in range(len(waiting)):
                trial = study.ask(dists)
                for key, value in interrupted_attrs(f"interrupted before it started: {why}; "
                                                    "evaluated on resume").items():
                    trial.set_user_attr(key, value)
                study.tell(trial, state=TrialState.FAIL)
                count += 1
    return count


# ------------------------------------------------------------------ reading
@dataclass
class TrialRecord:
    number: int
    state: str  # complete | rejected | failed | interrupted | running | waiting
    candidate: int | None
    round: int | None
    genotype: str | None
    params: dict
    values: list | None
    mult_adds: float | None
    latency_ms: dict
    latency_predicted_ms: dict
    latency_measured_ms: dict
    psnr: float | None
    reward: float | None
    rejected: str | None
    error: str | None
    train_s: float | None
    val_s: float | None
    eval_s: float | None
    weights: str | None
    datetime_start: _dt.datetime | None
    datetime_complete: _dt.datetime | None
    user_attrs: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready (datetimes as ISO text)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("datetime_start", "datetime_complete"):
            out[k] = None if out[k] is None else out[k].isoformat()
        return out


def _opt_float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _opt_int(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _ms_dict(value) -> dict:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v) for k, v in value.items() if _opt_float(v) is not None}


def _record(t: optuna.trial.FrozenTrial, space: GeneratorSpace) -> TrialRecord:
    a = t.user_attrs
    genotype = a.get("genotype")
    if genotype is None and t.params:
        try:
            genotype = str(space.from_params(t.params))
        except ValueError:
            genotype = None
    state = _STATE_NAMES[t.state]
    if state == "failed" and is_interrupted(a):
        state = "interrupted"
    return TrialRecord(
        number=t.number, state=state, candidate=_opt_int(a.get("candidate")),
        round=_opt_int(a.get("round")), genotype=genotype, params=dict(t.params),
        values=None if t.values is None else [float(v) for v in t.values], mult_adds=_opt_float(a.get("mult_adds")),
        latency_ms=_ms_dict(a.get("latency_ms")), latency_predicted_ms=_ms_dict(a.get("latency_predicted_ms")),
        latency_measured_ms=_ms_dict(a.get("latency_measured_ms")), psnr=_opt_float(a.get("psnr")),
        reward=_opt_float(a.get("reward")), rejected=a.get("rejected"),
        error=None if state == "interrupted" else a.get("error"),
        train_s=_opt_float(a.get("train_s")), val_s=_opt_float(a.get("val_s")), eval_s=_opt_float(a.get("eval_s")),
        weights=a.get("weights"), datetime_start=t.datetime_start, datetime_complete=t.datetime_complete,
        user_attrs=dict(a))


def _state_filter(states: Iterable | None) -> tuple[tuple | None, set | None]:
    """(the Optuna states to read, the record state names to keep); None: all."""
    if states is None:
        return None, None
    if isinstance(states, (str, TrialState)):
        states = [states]
    out, names = [], set()
    for s in states:
        if isinstance(s, TrialState):
            out.append(s)
            names.add(_STATE_NAMES[s])
            if s == TrialState.FAIL:
                names.add("interrupted")
        elif s in STATES:
            out.append(STATES[s])
            names.add(s)
        else:
            raise ValueError(f"unknown trial state {s!r}; known: {', '.join(STATES)}")
    return tuple(dict.fromkeys(out)), names


def trial_records(study: optuna.Study, states: Iterable | None = None) -> list[TrialRecord]:
    """The study's trials as :class:`TrialRecord`, in trial-number order (``states``: record state
    names, e.g. ``"failed"`` or ``"interrupted"``, or Optuna ``TrialState`` values (``FAIL``: both);
    None: all)."""
    space = space_of(study_meta(study))
    optuna_states, names = _state_filter(states)
    with _quiet():
        trials = study.get_trials(deepcopy=False, states=optuna_states)
    records = [_record(t, space) for t in sorted(trials, key=lambda t: t.number)]
    return records if names is None else [r for r in records if r.state in names]


def finished_by_candidate(study: optuna.Study) -> dict[int, TrialRecord]:
    """COMPLETE and PRUNED trials keyed by their ``candidate`` number (a COMPLETE trial wins over a
    PRUNED one of the same number; otherwise the later trial)."""
    out: dict[int, TrialRecord] = {}
    for rec in trial_records(study, ("complete", "rejected")):
        if rec.candidate is None:
            continue
        old = out.get(rec.candidate)
        if old is None or not (old.state == "complete" and rec.state != "complete"):
            out[rec.candidate] = rec
    return out


def records_sorted(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """COMPLETE records best first: highest reward (records without one last, by PSNR), ties by lowest candidate."""
    def key(r: TrialRecord):
        cand = r.candidate if r.candidate is not None else math.inf
        if r.reward is not None:
            return (0, -r.reward, cand, r.number)
        return (1, -(r.psnr if r.psnr is not None else -math.inf), cand, r.number)

    return sorted((r for r in records if r.state == "complete"), key=key)
