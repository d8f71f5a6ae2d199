"""The search run store (writer and reader API) and the report built on it: summary, leaderboard,
Pareto front, plots and the export of a found network as a tinysr checkpoint."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from optuna.trial import TrialState

from tinysr.checkpoint import load_model, read_checkpoint, save_checkpoint
from tinysr.genotype import TPSR_GENOTYPE, Genotype
from tinysr.models.tpsr import CellSR, mult_adds
from tinysr.profile.predict import load_table, predict_latency
from tinysr.search import TPSR_SPACE, GeneratorSpace, WeightStore
from tinysr.search.core import report, run_store
from tinysr.search.core.run_store import (RUN_FORMAT, add_finished_trial, create_run, interrupt_stale_trials,
                                     finish_trial, finished_by_candidate, new_trial, open_run, trial_records)

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "host-amd-epyc-litert-1t.json"
SMALL = GeneratorSpace(3, ("conv3", "dsep3", "identity"))

# 10-node cells of the paper's space, cheap to build: candidates 0..5 of run A
GENOS = [
    "conv3@in identity@0 conv1@1 identity@2 conv3@3 identity@4 conv1@5 identity@6 conv3@7 identity@8",
    "conv7@in conv7@0 conv7@1 conv7@2 conv7@3 conv7@4 conv7@5 conv7@6 conv7@7 conv7@8",  # over the Mult-Adds limit
    "dsep3@in conv3@0 identity@1 conv1@2 dsep3@3 identity@in conv3@5 identity@6 conv1@7 identity@8",
    "conv5@in conv5@0 conv5@1 conv5@2 conv5@3 conv3@4 conv3@5 conv3@6 conv3@7 conv3@8",  # over the latency budget
    "conv1@in identity@0 dsep3@1 identity@2 conv1@3 identity@4 dsep3@5 conv1@6 identity@7 conv1@8",
    "identity@in conv1@0 identity@1 conv3@2 identity@3 conv1@4 identity@5 conv3@6 identity@7 conv1@8",
]


def _png_ok(path: Path):
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        im.load()


def _model(genotype: str, seed: int) -> CellSR:
    torch.manual_seed(seed)
    return CellSR(genotype, 4, 16)


@pytest.fixture(scope="module")
def table():
    return load_table(PROFILE)


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, table):
    """Single-objective run: 3 evaluated (two tie on reward), 2 rejected, 1 failed, 1 running."""
    run = tmp_path_factory.mktemp("search") / "run-a"
    figs = [{"mult_adds": mult_adds(g), "latency_ms": {"epyc": predict_latency(Genotype.parse(g), table)}}
            for g in GENOS]
    max_ma = max(figs[i]["mult_adds"] for i in (0, 2, 3, 4, 5)) * 1.0001
    assert figs[1]["mult_adds"] > max_ma
    budget = max(figs[i]["latency_ms"]["epyc"] for i in (0, 2, 4, 5)) * 1.01
    assert figs[3]["latency_ms"]["epyc"] > budget
    ref = TPSR_GENOTYPE
    meta = {"strategy": "reinforce", "objectives": ["reward"], "directions": ["maximize"],
            "budgets": {"epyc": budget}, "max_mult_adds": max_ma, "scale": 4, "n_feats": 16,
            "input_size": [180, 320], "psnr_min": 24.0, "psnr_max": 28.0,
            "reference": {"genotype": str(ref), "mult_adds": mult_adds(ref),
                          "latency_ms": {"epyc": predict_latency(ref, table)}},
            "config": {"candidates": 6, "seed": 0}}
    info, study = create_run(run, meta)

    def attrs(i, rnd):
        f = figs[i]
        return {"candidate": i, "round": rnd, "genotype": GENOS[i], "mult_adds": f["mult_adds"],
                "latency_ms": f["latency_ms"], "latency_predicted_ms": f["latency_ms"], "latency_measured_ms": {}}

    psnr = {0: 25.1, 2: 26.3, 4: 26.3}
    reward = {0: 0.275, 2: 0.575, 4: 0.575}  # 2 and 4 tie: the lower candidate is the best
    models = {}
    for i in range(6):
        params = TPSR_SPACE.to_params(GENOS[i])
        if i == 1:  # rejected in one step
            n = add_finished_trial(study, params, "rejected", attrs={
                **attrs(i, 0), "rejected": f"Mult-Adds {figs[1]['mult_adds'] / 1e9:.4f} G over the limit "
                                          f"{max_ma / 1e9:.4f} G"})
            assert n == 1
            continue
        trial = new_trial(study, params, attrs(i, i // 3))
        if i == 3:
            finish_trial(study, trial, "rejected", attrs={
                "rejected": f"latency epyc {figs[3]['latency_ms']['epyc']:.3f} ms over the budget {budget:.3f} ms"})
            continue
        if i == 5:
            finish_trial(study, trial, "failed", attrs={"error": "RuntimeError: out of memory"})
            continue
        model = _model(GENOS[i], seed=100 + i)
        rel = f"trials/c{i:06d}.pt"
        save_checkpoint(run / rel, model, meta={"proxy": {"steps": 10}})
        models[i] = model
        finish_trial(study, trial, "complete", reward[i], attrs={
            "psnr": psnr[i], "reward": reward[i], "train_s": 1.5, "val_s": 0.25, "eval_s": 1.75, "weights": rel})
    # a candidate still in training when the run was read
    new_trial(study, TPSR_SPACE.to_params(GENOS[0]), {"candidate": 6, "round": 2, "genotype": GENOS[0]})

    store = WeightStore(TPSR_SPACE, 4, 16, seed=3)
    store.offer(GENOS[2], models[2].state_dict(), psnr[2])
    torch.save({"format": "tinysr.search-checkpoint/1", "store": store.state(), "candidates": 6},
               run / "checkpoint.pt")
    return {"run": run, "models": models, "store": store, "budget": budget, "max_ma": max_ma, "figs": figs}


@pytest.fixture(scope="module")
def run_b(tmp_path_factory):
    """Multi-objective run over a 3-node space (PSNR up, latency down), soft budget: one over it."""
    run = tmp_path_factory.mktemp("search") / "run-b"
    meta = {"strategy": "random", "objectives": ["psnr_db", "latency_ms:epyc"], "directions": ["maximize", "minimize"],
            "budgets": {"epyc": 5.0}, "max_mult_adds": None, "scale": 4, "n_feats": 16, "input_size": [180, 320],
            "psnr_min": 24.0, "psnr_max": None, "reference": {"genotype": str(TPSR_GENOTYPE), "mult_adds": 4.4e9,
                                                              "latency_ms": {"epyc": 4.2}},
            "space": {"num_nodes": SMALL.num_nodes, "ops": list(SMALL.ops)}, "config": {}}
    info, study = create_run(run, meta)
    rng = np.random.default_rng(7)
    genos = [str(SMALL.decode(v)) for v in SMALL.sample(rng, 12)]
    points = []
    for i, g in enumerate(genos):
        lat = float(rng.uniform(1.0, 4.9)) if i != 5 else 6.5  # candidate 5 over the soft budget
        psnr = float(np.round(rng.uniform(25.0, 27.0), 2))
        if i == 8:  # an exact duplicate of candidate 3's point: both or neither on the front
            psnr, lat = points[3]
        points.append((psnr, lat))
        trial = new_trial(study, SMALL.to_params(g), {"candidate": i, "round": 0, "genotype": g,
                                                       "mult_adds": 1e8 * (i + 1), "latency_ms": {"epyc": lat}})
        finish_trial(study, trial, "complete", [psnr, lat], attrs={"psnr": psnr, "reward": psnr - lat / 10})
    return {"run": run, "points": points, "genos": genos}


# ------------------------------------------------------------------- run store
def test_create_and_open_round_trip(run_a):
    run = run_a["run"]
    record = json.loads((run / "run.json").read_text())
    assert record["format"] == RUN_FORMAT == "tinysr.search-run/1"
    assert record["storage"] == run_store.default_storage(run) == f"sqlite:///{run.absolute()}/study.db"
    info, study = open_run(run)
    assert info.run_dir == run.absolute() and info.study_name == record["study_name"]
    assert info.meta["format"] == RUN_FORMAT and info.meta["budgets"] == {"epyc": run_a["budget"]}
    assert study.user_attrs["tinysr"] == info.meta
    assert study.metric_names == ["reward"] and [d.name for d in study.directions] == ["MAXIMIZE"]
    recs = trial_records(study)
    assert [r.number for r in recs] == list(range(7))
    assert [r.state for r in recs] == ["complete", "rejected", "complete", "rejected", "complete", "failed", "running"]
    first = recs[0]
    assert first.params == TPSR_SPACE.to_params(GENOS[0]) and len(first.params) == 20
    assert first.genotype == GENOS[0] and first.candidate == 0 and first.round == 0
    assert first.values == [0.275] and first.psnr == 25.1 and first.weights == "trials/c000000.pt"
    assert first.latency_ms == run_a["figs"][0]["latency_ms"] and first.train_s == 1.5
    assert first.datetime_start is not None and first.datetime_complete is not None
    assert recs[5].error == "RuntimeError: out of memory" and recs[3].rejected.startswith("latency epyc")
    # the distributions optuna-dashboard sees are the space's categorical choices
    frozen = study.get_trials(deepcopy=False)[0]
    assert frozen.distributions["src_9"].choices == ("in",) + tuple(str(j) for j in range(9))
    assert [r.number for r in trial_records(study, ("rejected", "failed"))] == [1, 3, 5]


def test_run_folder_can_move(run_a, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(run_a["run"], moved)
    info, study = open_run(moved)
    assert info.storage == f"sqlite:///{moved.absolute()}/study.db"
    assert len(trial_records(study, "complete")) == 3


def test_create_refuses_existing_run_and_bad_meta(run_a, tmp_path):
    with pytest.raises(ValueError, match="already a search run") as e:
        create_run(run_a["run"], {"objectives": ["reward"], "directions": ["maximize"]})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="2 objectives"):
        create_run(tmp_path / "r", {"objectives": ["psnr_db", "latency_ms:x"], "directions": ["maximize"]})
    assert not (tmp_path / "r" / "run.json").exists()


def test_open_run_errors_are_one_line(run_a, tmp_path):
    cases = []
    with pytest.raises(FileNotFoundError, match="no such search run folder") as e:
        open_run(tmp_path / "nowhere")
    cases.append(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a search run") as e:
        open_run(tmp_path / "empty")
    cases.append(e)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "run.json").write_text(json.dumps({"format": "tinysr.search-run/0", "storage": "x", "study_name": "y"}))
    with pytest.raises(ValueError, match="expected 'tinysr.search-run/1'") as e:
        open_run(wrong)
    cases.append(e)
    nodb = tmp_path / "nodb"
    shutil.copytree(run_a["run"], nodb)
    (nodb / "study.db").unlink()
    with pytest.raises(ValueError, match="storage missing") as e:
        open_run(nodb)
    cases.append(e)
    assert not (nodb / "study.db").exists()  # opening did not create an empty database
    nostudy = tmp_path / "nostudy"
    shutil.copytree(run_a["run"], nostudy)
    record = json.loads((nostudy / "run.json").read_text())
    (nostudy / "run.json").write_text(json.dumps({**record, "study_name": "other"}))
    with pytest.raises(ValueError, match="holds no study 'other'") as e:
        open_run(nostudy)
    cases.append(e)
    assert all("\n" not in str(c.value) for c in cases)


def test_interrupt_stale_trials_running_and_waiting(tmp_path):
    """Trials a kill left RUNNING or WAITING become *interrupted* (FAIL with the interrupted attribute
    and a reason), never failed evaluations; state filters tell the two FAIL kinds apart."""
    info, study = create_run(tmp_path / "run", {"objectives": ["reward"], "directions": ["maximize"]},
                             study_name="stale")
    params = [TPSR_SPACE.to_params(g) for g in GENOS[:4]]
    done = new_trial(study, params[0], {"candidate": 0})
    finish_trial(study, done, "complete", 0.5, {"reward": 0.5})
    bad = new_trial(study, params[3], {"candidate": 9})
    finish_trial(study, bad, "failed", attrs={"error": "ValueError: the training loss became nan"})
    new_trial(study, params[1], {"candidate": 1})  # killed while training: RUNNING
    study.enqueue_trial(params[2], user_attrs={"candidate": 2})  # killed between enqueue and ask: WAITING
    _, reopened = open_run(tmp_path / "run")
    with pytest.raises(ValueError, match="interrupt_stale_trials"):
        new_trial(reopened, params[0], {"candidate": 3})
    assert interrupt_stale_trials(reopened) == 2
    recs = trial_records(reopened)
    assert [r.state for r in recs] == ["complete", "failed", "interrupted", "interrupted"]
    assert recs[1].error.startswith("ValueError")
    for r in recs[2:]:
        assert r.error is None and r.user_attrs["interrupted"] is True and "interrupted" in r.user_attrs["reason"]
    assert "before it started" in recs[3].user_attrs["reason"] and "while running" in recs[2].user_attrs["reason"]
    assert recs[3].params == params[2] and recs[3].candidate == 2
    assert [r.number for r in trial_records(reopened, ("failed",))] == [1]
    assert [r.number for r in trial_records(reopened, ("interrupted",))] == [2, 3]
    assert [r.number for r in trial_records(reopened, (TrialState.FAIL,))] == [1, 2, 3]
    assert interrupt_stale_trials(reopened) == 0
    t = new_trial(reopened, params[0], {"candidate": 3})  # writes go on after the clean-up
    assert t.number == 4 and t.params == params[0]
    counts = report.summarise(tmp_path / "run")["counts"]
    assert (counts["failed"], counts["interrupted"], counts["running"]) == (1, 2, 1)
    assert "failed 1, interrupted 2, running 1" in report.format_leaderboard(report.summarise(tmp_path / "run"))


def test_trial_api_rejects_malformed_input(run_b):
    _, study = open_run(run_b["run"])
    good = SMALL.to_params(run_b["genos"][0])
    with pytest.raises(ValueError, match="unknown parameter"):
        add_finished_trial(study, {**good, "lr": 0.1}, "rejected")
    with pytest.raises(ValueError, match="parameter src_2 = '7' is not one of"):
        add_finished_trial(study, {**good, "src_2": "7"}, "rejected")
    with pytest.raises(ValueError, match="2 objective"):
        add_finished_trial(study, good, "complete", 1.0)
    with pytest.raises(ValueError, match="a trial finishes as"):
        add_finished_trial(study, good, "pruned")
    assert len(trial_records(study)) == len(run_b["genos"])


def test_finished_by_candidate(run_a):
    _, study = open_run(run_a["run"])
    cache = finished_by_candidate(study)
    assert sorted(cache) == [0, 1, 2, 3, 4]
    assert {c: r.state for c, r in cache.items()} == {0: "complete", 1: "rejected", 2: "complete", 3: "rejected",
                                                       4: "complete"}
    assert cache[2].genotype == GENOS[2] and cache[2].reward == 0.575 and cache[1].rejected.startswith("Mult-Adds")


# ----------------------------------------------------------------------- report
def test_summarise_single_objective(run_a):
    s = report.summarise(run_a["run"])
    json.dumps(s)  # JSON-ready
    assert s["counts"] == {"trials": 7, "candidates": 5, "evaluated": 3, "rejected": 2,
                           "rejected_by": {"mult_adds": 1, "latency:epyc": 1}, "failed": 1, "interrupted": 0, "running": 1}
    assert s["best"]["candidate"] == 2 and s["best"]["trial"] == 2 and s["best"]["genotype"] == GENOS[2]
    assert [r["candidate"] for r in s["leaderboard"]] == [2, 4, 0]
    assert [r["rank"] for r in s["leaderboard"]] == [1, 2, 3]
    assert s["rejected_candidates"] == [1, 3]
    assert s["within_budget"] is True and s["over_budget"] == []
    assert s["pareto_axes"] == ["epyc"] and s["targets"] == ["epyc"]
    lat = {r["trial"]: r["latency_ms"]["epyc"] for r in s["leaderboard"]}
    psnr = {r["trial"]: r["psnr"] for r in s["leaderboard"]}
    assert {r["trial"] for r in s["pareto"]} == _brute_front(psnr, {t: [v] for t, v in lat.items()})


def _brute_front(psnr: dict, lats: dict) -> set:
    """Non-dominated trials (PSNR up, every latency down) by comparing every pair."""
    out = set()
    for a in psnr:
        dominated = any(
            psnr[b] >= psnr[a] and np.all(np.array(lats[b]) <= np.array(lats[a]))
            and (psnr[b] > psnr[a] or np.any(np.array(lats[b]) < np.array(lats[a])))
            for b in psnr if b != a)
        if not dominated:
            out.add(a)
    return out


def test_summarise_multi_objective_pareto_and_budget(run_b):
    s = report.summarise(run_b["run"])
    assert s["objectives"] == ["psnr_db", "latency_ms:epyc"] and s["directions"] == ["maximize", "minimize"]
    assert s["counts"]["evaluated"] == 12 and s["counts"]["rejected"] == 0
    board = {r["trial"]: r for r in s["leaderboard"]}
    assert all(r["values"] == [r["psnr"], r["latency_ms"]["epyc"]] for r in board.values())
    psnr = {t: r["psnr"] for t, r in board.items()}
    lats = {t: [r["latency_ms"]["epyc"]] for t, r in board.items()}
    front = {r["trial"] for r in s["pareto"]}
    assert front == _brute_front(psnr, lats) == set(s["pareto_by_axis"]["epyc"])
    assert 0 < len(front) < 12
    assert (3 in front) == (8 in front)  # equal points stand or fall together
    # the same front as optuna's own for this two-objective study
    _, study = open_run(run_b["run"])
    assert front == {t.number for t in study.best_trials}
    assert s["within_budget"] is False
    assert [o["candidate"] for o in s["over_budget"]] == [5]
    assert "latency epyc 6.500 ms over" in s["over_budget"][0]["why"][0]
    best = max(board.values(), key=lambda r: (r["reward"], -r["candidate"]))
    assert s["best"]["trial"] == best["trial"]


def test_summarise_without_latency_target_uses_mult_adds(tmp_path):
    _, study = create_run(tmp_path / "run", {"objectives": ["reward"], "directions": ["maximize"], "budgets": {},
                                             "max_mult_adds": 2e9, "reference": {"mult_adds": 1.5e9}})
    rows = [(26.0, 1.0e9), (26.5, 1.2e9), (26.2, 1.5e9), (25.0, 0.8e9), (26.5, 2.5e9)]
    for i, (p, ma) in enumerate(rows):
        add_finished_trial(study, TPSR_SPACE.to_params(GENOS[i]), "complete", p,
                           {"candidate": i, "psnr": p, "reward": p, "mult_adds": ma, "genotype": GENOS[i]})
    s = report.summarise(tmp_path / "run")
    assert s["pareto_axes"] == ["mult_adds"]
    assert {r["trial"] for r in s["pareto"]} == _brute_front(dict(enumerate(p for p, _ in rows)),
                                                             {i: [ma] for i, (_, ma) in enumerate(rows)}) == {0, 1, 3}
    assert s["within_budget"] is False and s["over_budget"][0]["candidate"] == 4
    assert s["best"]["candidate"] == 1  # 1 and 4 tie at 26.5: the lower candidate
    _png_ok(report.plot_pareto(s, tmp_path / "pareto.png"))


def test_leaderboard_text(run_a):
    s = report.summarise(run_a["run"])
    text = report.format_leaderboard(s)
    lines = text.splitlines()
    assert "candidates 5: evaluated 3, rejected 2 (latency:epyc 1, mult_adds 1); failed 1, interrupted 0, running 1" in text
    assert f"epyc <= {run_a['budget']:.3f} ms" in text and "every evaluated candidate within budget" in text
    best_line = next(line for line in lines if line.endswith(GENOS[2]))
    assert best_line.split()[:3] == ["1", "2", "2"] and "0.5750" in best_line and "26.300" in best_line
    assert f"{run_a['figs'][2]['latency_ms']['epyc']:.3f}" in best_line
    assert len([line for line in lines if line.endswith(tuple(GENOS))]) == 3
    short = report.format_leaderboard(s, top=1)
    assert GENOS[2] in short and GENOS[0] not in short and "(2 more evaluated candidate(s))" in short


def test_leaderboard_marks_measured_latency(tmp_path):
    _, study = create_run(tmp_path / "run", {"objectives": ["reward"], "directions": ["maximize"],
                                             "budgets": {"phone": 40.0}})
    add_finished_trial(study, TPSR_SPACE.to_params(GENOS[0]), "complete", 0.3,
                       {"candidate": 0, "genotype": GENOS[0], "psnr": 26.0, "reward": 0.3, "mult_adds": 1e9,
                        "latency_ms": {"phone": 31.25}, "latency_predicted_ms": {"phone": 29.0},
                        "latency_measured_ms": {"phone": 31.25}})
    text = report.format_leaderboard(report.summarise(tmp_path / "run"))
    assert "31.250*" in text and "* measured on the device" in text


def test_plots_are_pngs(run_a, run_b, tmp_path):
    _png_ok(report.plot_pareto(run_a["run"], tmp_path / "a" / "pareto.png"))
    _png_ok(report.plot_reward(run_a["run"], tmp_path / "a" / "reward.png"))
    s = report.summarise(run_b["run"])
    _png_ok(report.plot_pareto(s, tmp_path / "b" / "pareto.png"))
    _png_ok(report.plot_reward(s, tmp_path / "b" / "reward.png"))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["pareto.png", "reward.png"]  # no temporaries left


# ----------------------------------------------------------------------- export
def _same_output(a, b):
    x = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_best_trial(run_a):
    best = report.best_trial(run_a["run"])
    assert best.number == 2 and best.candidate == 2 and best.state == "complete"


def test_export_best_and_by_trial(run_a, tmp_path):
    out = tmp_path / "best.pt"
    meta = report.export_checkpoint(run_a["run"], out)
    search = meta["search"]
    assert search["trial"] == 2 and search["candidate"] == 2 and search["genotype"] == GENOS[2]
    assert search["weights"] == "trial" and search["psnr"] == 26.3 and search["reward"] == 0.575
    assert search["latency_ms"] == run_a["figs"][2]["latency_ms"] and meta["proxy"] == {"steps": 10}
    ckpt = read_checkpoint(out)
    assert ckpt["meta"] == meta and ckpt["config"] == {"genotype": GENOS[2], "scale": 4, "n_feats": 16}
    model = load_model(str(out))
    assert str(model.genotype) == GENOS[2] and _same_output(model, run_a["models"][2])
    assert not _same_output(model, run_a["models"][4])

    out0 = tmp_path / "t0.pt"
    report.export_checkpoint(run_a["run"], out0, trial=0)
    model0 = load_model(str(out0))
    assert str(model0.genotype) == GENOS[0] and _same_output(model0, run_a["models"][0])

    from tinysr.cli.main import main

    assert main(["lut", "predict", str(out), "--profile", str(PROFILE)]) == 0


def test_export_from_weight_store(run_a, tmp_path):
    out = tmp_path / "store.pt"
    meta = report.export_checkpoint(run_a["run"], out, trial=0, weights="store")
    assert meta["search"]["weights"] == "store" and meta["search"]["source"] == "checkpoint.pt"
    model = load_model(str(out))
    want = run_a["store"].get(GENOS[0])
    got = model.state_dict()
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert not _same_output(model, run_a["models"][0])  # not the candidate's own weights


def test_export_errors_are_one_line(run_a, tmp_path):
    run = run_a["run"]
    with pytest.raises(ValueError, match=r"trial 1 \(candidate 1\) was rejected before training, not evaluated: "
                                         r"Mult-Adds .* over the limit") as e1:
        report.export_checkpoint(run, tmp_path / "x.pt", trial=1)
    with pytest.raises(ValueError, match="trial 5 .* failed, not evaluated: RuntimeError: out of memory") as e2:
        report.export_checkpoint(run, tmp_path / "x.pt", trial=5)
    with pytest.raises(ValueError, match="still running") as e3:
        report.export_checkpoint(run, tmp_path / "x.pt", trial=6)
    with pytest.raises(ValueError, match=r"no trial 99 \(trials 0..6\)") as e4:
        report.export_checkpoint(run, tmp_path / "x.pt", trial=99)
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "trials" / "c000004.pt").unlink()
    (broken / "checkpoint.pt").unlink()
    with pytest.raises(FileNotFoundError, match="weights of trial 4 missing") as e5:
        report.export_checkpoint(broken, tmp_path / "x.pt", trial=4)
    with pytest.raises(FileNotFoundError, match="weight store") as e6:
        report.export_checkpoint(broken, tmp_path / "x.pt", trial=4, weights="store")
    assert all("\n" not in str(e.value) for e in (e1, e2, e3, e4, e5, e6))
    assert not (tmp_path / "x.pt").exists()


def test_small_space_export_and_rejected_error(run_b, tmp_path):
    """A run over another space (3-node cells) exports too; a rejected trial's error names the reason."""
    run = tmp_path / "run-b"
    shutil.copytree(run_b["run"], run)
    _, study = open_run(run)
    g = run_b["genos"][0]
    model = _model(g, seed=5)
    save_checkpoint(run / "trials" / "extra.pt", model)
    n = add_finished_trial(study, SMALL.to_params(g), "complete", [27.5, 0.5],
                           {"candidate": 50, "genotype": g, "psnr": 27.5, "reward": 27.45, "weights": "trials/extra.pt",
                            "latency_ms": {"epyc": 0.5}})
    rej = add_finished_trial(study, SMALL.to_params(g), "rejected", None,
                             {"candidate": 51, "genotype": g,
                              "rejected": "latency epyc 9.000 ms over the budget 5.000 ms"})
    assert (n, rej) == (12, 13)
    meta = report.export_checkpoint(run, tmp_path / "b.pt")
    assert meta["search"]["trial"] == 12
    loaded = load_model(str(tmp_path / "b.pt"))
    assert str(loaded.genotype) == g and len(loaded.genotype.nodes) == 3 and _same_output(loaded, model)
    with pytest.raises(ValueError) as e:
        report.export_checkpoint(run, tmp_path / "c.pt", trial=rej)
    assert str(e.value).endswith("not evaluated: latency epyc 9.000 ms over the budget 5.000 ms")
    assert "\n" not in str(e.value)
