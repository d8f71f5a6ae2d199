"""Proxy fidelity (tinysr search fidelity): the rank statistics against scipy, the picking of candidates
spread over a run's proxy-PSNR range, and a tiny study end to end with its resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tinysr.search.generator.fidelity import kendall_tau, pick_candidates, run_fidelity, spearman_rho
from test_search_space_plus import _small_space, _tiny_config, fake_plus_table


@pytest.mark.parametrize("seed", range(4))
def test_rank_statistics_match_scipy(seed):
    stats = pytest.importorskip("scipy.stats", reason="scipy gives the reference values")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 12).astype(float).tolist()  # ties in both
    y = (np.asarray(x) * 0.3 + rng.integers(0, 4, 12)).tolist()
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0 and kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    from tinysr.search.generator.driver import run_search

    profile = tmp_path / "plus.json"
    profile.write_text(json.dumps(fake_plus_table()))
    _small_space(monkeypatch)
    cfg = _tiny_config(tmp_path, profile).replace(evaluations=6)
    run_search(cfg, progress=False)
    return cfg


def test_tiny_study_end_to_end_and_resume(tiny_run, tmp_path, monkeypatch):
    from tinysr.search.core import run_store
    from tinysr.search.generator import fidelity

    _, study = run_store.open_run(tiny_run.run_dir)
    evaluated = sorted((r.psnr, r.genotype) for r in run_store.trial_records(study, ("complete",)))
    picks = pick_candidates([tiny_run.run_dir], 3)
    assert len({p["genotype"] for p in picks}) == 3
    psnrs = [p["proxy_psnr"] for p in picks]
    assert psnrs == sorted(psnrs) and psnrs[0] == evaluated[0][0] and psnrs[-1] == evaluated[-1][0]
    with pytest.raises(ValueError, match="distinct evaluated candidates"):
        pick_candidates([tiny_run.run_dir], 50)
    # only networks within the run's budgets (a soft budget lets a search evaluate others)
    lats = sorted(r.latency_ms["fake"] for r in run_store.trial_records(study, ("complete",)))
    real_open = run_store.open_run

    def tight(run):
        info, st = real_open(run)
        info.meta["budgets"] = {"fake": lats[2]}
        return info, st

    with monkeypatch.context() as m:
        m.setattr(run_store, "open_run", tight)
        inside = pick_candidates([tiny_run.run_dir], 2)
        assert all(p["latency_ms"]["fake"] <= lats[2] for p in inside)
        assert len(pick_candidates([tiny_run.run_dir], 2, within_budget=False)) == 2
        with pytest.raises(ValueError, match="within its budgets"):
            pick_candidates([tiny_run.run_dir], 4)

    bench = tmp_path / "bench"
    (bench / "HR").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(bench / "HR" / f"b{i}.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"train_data": tiny_run.proxy.train_data, "val_data": None, "patch_size": 6,
                                  "batch_size": 2, "steps": 50, "lr": 0.001, "seed": 0, "threads": 1, "repeat": 1,
                                  "val_every": 1000, "ckpt_every": 1}))
    out = tmp_path / "fid"
    calls, kill = [], [True]
    real = fidelity._train_one

    def counting(job):
        calls.append(job["genotype"])
        if len(calls) == 2 and kill[0]:  # the second candidate dies mid-study: the first one's result is saved
            kill[0] = False
            raise RuntimeError("killed")
        return real(job)

    monkeypatch.setattr(fidelity, "_train_one", counting)
    with pytest.raises(RuntimeError, match="killed"):
        run_fidelity([tiny_run.run_dir], out, [bench], n=3, recipe=recipe, steps=3, progress=False)
    saved = json.loads((out / "fidelity.json").read_text())
    assert ["scores" in c for c in saved["candidates"]] == [True, False, False]
    calls.clear()
    record = run_fidelity([tiny_run.run_dir], out, [bench], n=3, recipe=recipe, steps=3, progress=False)
    assert calls == [picks[1]["genotype"], picks[2]["genotype"]]  # the finished one is not trained again
    assert all(c["steps"] == 3 and np.isfinite(c["scores"]["bench"]["psnr_y"]) for c in record["candidates"])
    x = [c["proxy_psnr"] for c in record["candidates"]]
    y = [c["scores"]["bench"]["psnr_y"] for c in record["candidates"]]
    assert record["correlation"]["bench"] == {"n": 3, "kendall_tau": round(kendall_tau(x, y), 4),
                                              "spearman_rho": round(spearman_rho(x, y), 4)}
    md = (out / "fidelity.md").read_text()
    assert (out / "fidelity.png").stat().st_size > 0 and "Kendall tau-b" in md
    import re

    rows = [line for line in md.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 3 and all(len(re.findall(r"(?<!\\)\|", r)) == 7 for r in rows)  # a network's '|' escaped
    with pytest.raises(ValueError, match="another folder"):
        run_fidelity([tiny_run.run_dir], out, [bench], n=3, recipe=recipe, steps=4, progress=False)
