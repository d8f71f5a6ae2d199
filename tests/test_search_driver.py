"""The generator-search driver end to end: constraints recorded in the study, Eq. 5 store updates,
kill -9 and resume, the local process pool and a real local Ray instance, the CLI."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tinysr.genotype import TPSR_GENOTYPE
from tinysr.search.core import run_store
from tinysr.search.generator.config import SearchConfig
from tinysr.search.generator.driver import Search, run_search

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "host-amd-epyc-litert-1t.json"


def config(photo_dir, run_dir, **over) -> dict:
    cfg = {"run_dir": str(run_dir), "seed": 3, "scale": 4, "n_feats": 16, "input_size": [180, 320],
           "max_mult_adds": 2.5e9, "strategy": "reinforce", "evaluations": 6, "round_size": 2,
           "workers": 0, "threads": 1,
           "proxy": {"train_data": [str(photo_dir)], "scale": 4, "val_images": 1, "val_size": 16, "patch_size": 8,
                     "batch_size": 4, "steps": 2, "lr": 2e-3, "seed": 0}}
    cfg.update(over)
    return cfg


def finished(run_dir) -> list[tuple]:
    """Every finished trial as comparable data, by candidate (no trial numbers, no timings)."""
    _, study = run_store.open_run(run_dir)
    out = []
    for r in run_store.trial_records(study):
        if r.state in ("complete", "rejected"):
            out.append((r.candidate, r.state, tuple(sorted(r.params.items())), r.values, r.genotype, r.psnr, r.reward,
                        r.rejected, r.mult_adds, tuple(sorted(r.latency_ms.items()))))
    return sorted(out)


def test_a_search_records_every_candidate_and_respects_the_limits(photo_dir, tmp_path):
    cfg = SearchConfig.from_dict(config(photo_dir, tmp_path / "run", latency=[
        {"name": "epyc", "profile": str(PROFILE), "budget_ms": 55.0}]))
    summary = run_search(cfg, progress=False)
    _, study = run_store.open_run(tmp_path / "run")
    recs = run_store.trial_records(study)
    done = [r for r in recs if r.state == "complete"]
    rejected = [r for r in recs if r.state == "rejected"]
    assert len(done) == summary["evaluated"] == 6 and len(rejected) == summary["rejected"] > 0
    assert summary["candidates"] == len(recs)
    for r in done:  # read back from the study: every accepted trial is within both limits
        assert r.mult_adds <= 2.5e9 and r.latency_ms["epyc"] <= 55.0
        assert r.values == [pytest.approx(r.reward)] and (tmp_path / "run" / r.weights).is_file()
        assert r.psnr > 0 and r.eval_s > 0
    for r in rejected:
        over_ma, over_lat = r.mult_adds > 2.5e9, r.latency_ms["epyc"] > 55.0
        assert over_ma or over_lat
        assert ("Mult-Adds" in r.rejected) == over_ma and ("latency epyc" in r.rejected) == over_lat
    meta = study.user_attrs["tinysr"]
    assert meta["reference"]["genotype"] == str(TPSR_GENOTYPE) and meta["reference"]["latency_ms"]["epyc"] > 55
    assert meta["psnr_min"] == pytest.approx(meta["bicubic_psnr"])  # auto: bicubic with a latency target
    # the reward is MnasNet's over the PSNR gain on bicubic
    r = done[0]
    gain = max(0.0, r.psnr - meta["psnr_min"])
    assert r.reward == pytest.approx(gain * (r.latency_ms["epyc"] / 55.0) ** -0.07, rel=1e-9)
    # Eq. 5: the store holds, per (node, op), the best PSNR of the candidates that used it
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    from tinysr.search import WeightStore

    store = WeightStore.from_state(ckpt["store"])
    best = {}
    for r in done:
        for i, node in enumerate(r.genotype.split()):
            key = (i, node.split("@")[0])
            best[key] = max(best.get(key, -1e9), r.psnr)
    assert {k: store.score(*k) for k in best} == best


def test_resume_after_a_crash_equals_an_uninterrupted_run(photo_dir, tmp_path):
    ref = SearchConfig.from_dict(config(photo_dir, tmp_path / "ref"))
    run_search(ref, progress=False)

    class Crash(Exception):
        pass

    class CrashingBackend:
        """The in-process backend, crashing after ``after`` evaluations (mid-round)."""

        def __init__(self, search, after):
            from tinysr.search.core.backends import InProcessBackend

            self.inner, self.after, self.done = InProcessBackend(search.cfg.proxy, search.data), after, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def evaluate(self, jobs):
            for item in self.inner.evaluate(jobs):
                if self.done == self.after:
                    raise Crash()
                self.done += 1
                yield item

    cfg = SearchConfig.from_dict(config(photo_dir, tmp_path / "run"))
    s = Search(cfg, progress=False)
    with pytest.raises(Crash):
        s.run(CrashingBackend(s, 3))
    _, study = run_store.open_run(tmp_path / "run")
    states = [r.state for r in run_store.trial_records(study)]
    assert states.count("interrupted") == 1 and "failed" not in states  # the one running at the crash
    s = Search(cfg, resume=True, progress=False)
    summary = s.run()
    assert summary["evaluated"] == 6
    assert finished(tmp_path / "run") == finished(tmp_path / "ref")


def test_a_run_is_not_overwritten_and_resume_refuses_another_config(photo_dir, tmp_path):
    data = config(photo_dir, tmp_path / "run", evaluations=2)
    run_search(SearchConfig.from_dict(data), progress=False)
    with pytest.raises(ValueError, match="already holds a search run"):
        run_search(SearchConfig.from_dict(data), progress=False)
    with pytest.raises(ValueError, match="max_mult_adds: 2500000000.0 -> 3000000000.0"):
        run_search(SearchConfig.from_dict({**data, "max_mult_adds": 3e9}), resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no search run to resume"):
        run_search(SearchConfig.from_dict({**data, "run_dir": str(tmp_path / "none")}), resume=True, progress=False)
    # more evaluations may be asked for on resume: the run goes on from where it stopped
    summary = run_search(SearchConfig.from_dict({**data, "evaluations": 4}), resume=True, progress=False)
    assert summary["evaluated"] == 4


def test_resume_names_the_changed_proxy_keys_before_loading_any_data(photo_dir, tmp_path, monkeypatch):
    data = config(photo_dir, tmp_path / "run", evaluations=1)
    run_search(SearchConfig.from_dict(data), progress=False)
    from tinysr.data import proxy

    def no_load(*a, **k):
        raise AssertionError("the data was loaded before the config was checked")

    monkeypatch.setattr(proxy.ProxyData, "load", no_load)
    changed = {**data, "proxy": {**data["proxy"], "steps": 3, "lr": 1e-3}}
    with pytest.raises(ValueError) as e:
        run_search(SearchConfig.from_dict(changed), resume=True, progress=False)
    msg = str(e.value)
    assert "proxy.lr: 0.002 -> 0.001; proxy.steps: 2 -> 3" in msg and "train_data" not in msg and "\n" not in msg


def test_a_missing_train_data_folder_names_the_config_and_key(photo_dir, tmp_path):
    cfg_path = tmp_path / "s.yaml"
    data = config(photo_dir, tmp_path / "run")
    data["proxy"]["train_data"] = [str(photo_dir), str(tmp_path / "T92")]
    cfg_path.write_text(yaml.safe_dump(data))
    r = _cli("search", "generator", "--config", str(cfg_path), "-q")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{cfg_path}: proxy: train_data: {tmp_path / 'T92'}: no such folder" in r.stderr
    assert not (tmp_path / "run").exists()


def test_a_wrong_ray_address_fails_in_one_line_within_the_timeout_and_leaves_nothing(photo_dir, tmp_path):
    """Nothing at the address: refused at once; a port that accepts but never answers (not a Ray GCS):
    refused after --connect-timeout. Either way one line, exit 2, and no run folder."""
    import socket

    cfg_path = tmp_path / "s.yaml"
    cfg_path.write_text(yaml.safe_dump(config(photo_dir, tmp_path / "run")))
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        for address, timeout, what in ((f"127.0.0.1:{port}", "20", "cannot connect"),
                                       (f"127.0.0.1:{silent.getsockname()[1]}", "1.5", "no answer within 1.5 s")):
            t0 = time.time()
            r = _cli("search", "generator", "--config", str(cfg_path), "-q", "--backend", "ray", "--workers", "1", "--address", address,
                     "--connect-timeout", timeout, timeout=120)
            assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
            assert f"Ray cluster at {address}: {what}" in r.stderr
            assert time.time() - t0 < 60
            assert not (tmp_path / "run").exists()
    finally:
        silent.close()


def test_an_impossible_budget_stops_with_a_clear_error(photo_dir, tmp_path):
    cfg = SearchConfig.from_dict(config(photo_dir, tmp_path / "run", max_mult_adds=1e6, max_candidates=30))
    with pytest.raises(RuntimeError, match="30 candidates sampled, 30 rejected, and only 0 evaluated"):
        run_search(cfg, progress=False)


def test_the_process_pool_and_ray_give_the_same_trials(photo_dir, tmp_path):
    """Two spawned worker processes, then a real local Ray instance (ray.init(num_cpus=2)), against
    evaluations in the driver's process."""
    ray = pytest.importorskip("ray")
    base = config(photo_dir, tmp_path / "inproc", evaluations=4)
    run_search(SearchConfig.from_dict(base), progress=False)
    run_search(SearchConfig.from_dict({**base, "run_dir": str(tmp_path / "pool"), "workers": 2}), progress=False)
    assert finished(tmp_path / "pool") == finished(tmp_path / "inproc")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        from tinysr.search.core.backends import check_ray_address

        check_ray_address(ray.get_runtime_context().gcs_address, 10.0)  # a real GCS passes the address check
        run_search(SearchConfig.from_dict({**base, "run_dir": str(tmp_path / "ray"), "backend": "ray", "workers": 2}),
                   progress=False)
        assert ray.is_initialized()  # an instance the caller started is left running
    finally:
        ray.shutdown()
    assert finished(tmp_path / "ray") == finished(tmp_path / "inproc")


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "tinysr.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, **kw)


def test_kill_9_at_random_moments_then_resume(photo_dir, tmp_path):
    """A real search process killed with SIGKILL at random moments, resumed each time: its finished
    trials equal an uninterrupted run's, no finished candidate is recorded twice, and the trials
    that were running at a kill are marked failed."""
    data = config(photo_dir, tmp_path / "ref", evaluations=16, round_size=2)
    data["proxy"]["steps"] = 100  # ~0.5-0.8 s per evaluation: kills land in evaluations, writes and start-up alike
    run_search(SearchConfig.from_dict(data), progress=False)
    cfg_path = tmp_path / "kill.yaml"
    cfg_path.write_text(yaml.safe_dump({**data, "run_dir": str(tmp_path / "run")}))
    rng = random.Random(7)
    kills, resume = 0, []
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "tinysr.cli.main", "search", "generator", "--config",
                                 str(cfg_path), "-q", *resume], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        time.sleep(rng.uniform(3.5, 8.0))  # start-up (imports, data) takes ~4 s
        while proc.poll() is None and not (tmp_path / "run" / "run.json").is_file():
            time.sleep(0.1)  # a loaded machine starts slowly: the run must exist before the first kill
        if not resume:
            time.sleep(rng.uniform(0.0, 3.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        out, err = proc.communicate()
        if (tmp_path / "run" / "run.json").is_file():
            resume = ["--resume"]
        if proc.returncode == 0:
            break
    else:
        r = _cli("search", "generator", "--config", str(cfg_path), "-q", "--resume")
        assert r.returncode == 0, r.stderr
    assert kills >= 3
    got = finished(tmp_path / "run")
    assert len({c[0] for c in got}) == len(got)  # no candidate finished twice
    assert got == finished(tmp_path / "ref")
    _, study = run_store.open_run(tmp_path / "run")
    states = [r.state for r in run_store.trial_records(study)]
    assert "running" not in states and "failed" not in states
    assert states.count("interrupted") >= 1  # at least one kill hit a running evaluation


KILL_AT_ENQUEUE = """
import os, sys
from tinysr.search.core import run_store
calls = []
def hook():  # the process dies at the Nth new trial, between enqueue_trial and ask
    calls.append(1)
    if len(calls) == int(os.environ["KILL_AT_TRIAL"]):
        os._exit(9)
run_store.HOOKS["enqueued"] = hook
from tinysr.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_between_enqueue_and_ask_loses_no_candidate(photo_dir, tmp_path):
    """Killed exactly between ``enqueue_trial`` and ``ask`` (the study holds a WAITING trial): the
    resume marks it interrupted (not a failed evaluation), evaluates its candidate again and ends
    with an uninterrupted run's trials; ``search show`` and the summary count it as interrupted."""
    data = config(photo_dir, tmp_path / "ref", evaluations=6, round_size=2)
    run_search(SearchConfig.from_dict(data), progress=False)
    cfg_path = tmp_path / "kill.yaml"
    cfg_path.write_text(yaml.safe_dump({**data, "run_dir": str(tmp_path / "run")}))
    args = ["search", "generator", "--config", str(cfg_path), "-q"]
    r = subprocess.run([sys.executable, "-c", KILL_AT_ENQUEUE, *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "KILL_AT_TRIAL": "3"})
    assert r.returncode == 9, r.stderr
    _, study = run_store.open_run(tmp_path / "run")
    assert [r.state for r in run_store.trial_records(study)].count("waiting") == 1
    r = _cli(*args, "--resume", "--json", str(tmp_path / "summary.json"))
    assert r.returncode == 0, r.stderr
    assert "0 failed, 1 interrupted" in r.stdout
    summary = yaml.safe_load((tmp_path / "summary.json").read_text())
    assert (summary["evaluated"], summary["failed"], summary["interrupted"]) == (6, 0, 1)
    assert finished(tmp_path / "run") == finished(tmp_path / "ref")
    _, study = run_store.open_run(tmp_path / "run")
    recs = run_store.trial_records(study)
    (waited,) = [r for r in recs if r.state == "interrupted"]
    assert waited.user_attrs["interrupted"] is True and "before it started" in waited.user_attrs["reason"]
    assert waited.error is None and "failed" not in [r.state for r in recs]
    r = _cli("search", "show", str(tmp_path / "run"), "--no-plots")
    assert r.returncode == 0 and "failed 0, interrupted 1, running 0" in r.stdout, r.stdout + r.stderr


def test_ctrl_c_stops_in_one_line_and_resume_is_exact(photo_dir, tmp_path):
    """SIGINT to the process group (what a terminal's Ctrl-C does) during the local pool's evaluations:
    exit 130 with one line on stderr, no worker tracebacks; the resume ends with an uninterrupted run's trials."""
    data = config(photo_dir, tmp_path / "ref", evaluations=6, round_size=2, workers=2)
    data["proxy"]["steps"] = 60
    run_search(SearchConfig.from_dict({**data, "workers": 0}), progress=False)  # same trials on every backend
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({**data, "run_dir": str(tmp_path / "run")}))
    args = [sys.executable, "-m", "tinysr.cli.main", "search", "generator", "--config", str(cfg_path), "-q"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    trials, deadline = tmp_path / "run" / "trials", time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (trials.is_dir() and any(trials.iterdir())):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.2)  # the next evaluations are running
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == "tinysr: interrupted\n", err
    _, study = run_store.open_run(tmp_path / "run")
    states = [r.state for r in run_store.trial_records(study)]
    assert "running" not in states and "failed" not in states
    r = _cli("search", "generator", "--config", str(cfg_path), "-q", "--resume", "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert finished(tmp_path / "run") == finished(tmp_path / "ref")


def test_cli_search_show_and_export(photo_dir, tmp_path):
    cfg_path = tmp_path / "s.yaml"
    cfg_path.write_text(yaml.safe_dump(config(photo_dir, tmp_path / "run", evaluations=2, latency=[
        {"name": "epyc", "profile": str(PROFILE), "budget_ms": 60.0}])))
    r = _cli("search", "generator", "--config", str(cfg_path), "-q")
    assert r.returncode == 0, r.stderr
    assert "2 evaluated" in r.stdout and (tmp_path / "run" / "pareto.png").is_file()
    r = _cli("search", "show", str(tmp_path / "run"), "--top", "3")
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "best.pt"
    r = _cli("search", "export", str(tmp_path / "run"), "--best", "-o", str(ckpt))
    assert r.returncode == 0, r.stderr
    r = _cli("lut", "predict", str(ckpt), "--profile", str(PROFILE))
    assert r.returncode == 0, r.stderr
    r = _cli("train", "--genotype", str(ckpt), "--init-from", str(ckpt), "--train-data", str(photo_dir), "--steps", "2",
             "--out-dir", str(tmp_path / "train"), "--set", "patch_size=8", "--set", "batch_size=2", "-q")
    assert r.returncode == 0, r.stderr
    assert f"initialised {len(torch.load(ckpt, weights_only=True)['state_dict'])}/" in r.stdout + r.stderr
    r = _cli("export", "--model", str(ckpt), "--target", "onnx", "--input-size", "16x16", "-o",
             str(tmp_path / "best.onnx"), "-q")
    assert r.returncode == 0, r.stderr
    r = _cli("search", "generator", "--config", str(cfg_path), "-q")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--resume" in r.stderr


def test_optuna_dashboard_shows_the_objective_values(photo_dir, tmp_path):
    """The dashboard's own web app (WSGI, no server) reads the run: the study with its objective
    name, and every evaluated trial with its reward as the value and the genotype as an attribute."""
    import io
    import json
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    run_search(SearchConfig.from_dict(config(photo_dir, tmp_path / "run", evaluations=2)), progress=False)
    info, study = run_store.open_run(tmp_path / "run")
    app = wsgi(info.storage)

    def get(path):
        env = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
        setup_testing_defaults(env)
        status = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (path, status)
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [info.study_name]
    detail = get(f"/api/studies/{studies[0]['study_id']}")
    assert detail["objective_names"] == ["reward"]
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    records = {r.number: r for r in run_store.trial_records(study, states=("complete",))}
    assert len(complete) == 2
    for t in complete:
        assert t["values"] == [pytest.approx(records[t["number"]].reward)]
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        assert attrs["genotype"] == records[t["number"]].genotype


def test_a_multi_objective_run_records_psnr_and_latency(photo_dir, tmp_path):
    """nsga2 (Optuna's NSGA-II) through the driver: a two-objective study (PSNR up, latency down),
    the front read back by the report."""
    from tinysr.search.core.report import summarise

    cfg = SearchConfig.from_dict(config(photo_dir, tmp_path / "run", strategy="nsga2", evaluations=4, latency=[
        {"name": "epyc", "profile": str(PROFILE), "budget_ms": 80.0, "hard": False}], max_mult_adds=None))
    run_search(cfg, progress=False)
    _, study = run_store.open_run(tmp_path / "run")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["psnr_db", "latency_ms:epyc"]
    done = run_store.trial_records(study, states=("complete",))
    assert len(done) == 4 and not run_store.trial_records(study, states=("rejected",))  # a soft target never rejects
    for r in done:
        assert r.values == [pytest.approx(r.psnr), pytest.approx(r.latency_ms["epyc"])]
    front = {row["candidate"] for row in summarise(tmp_path / "run")["pareto"]}
    brute = {r.candidate for r in done if not any(
        o.psnr >= r.psnr and o.latency_ms["epyc"] <= r.latency_ms["epyc"] and o is not r
        and (o.psnr, o.latency_ms["epyc"]) != (r.psnr, r.latency_ms["epyc"]) for o in done)}
    assert front == brute


def test_a_phone_in_the_loop_that_disconnects_stops_the_search_and_resume_goes_on(photo_dir, tmp_path, fake_adb,
                                                                                     monkeypatch):
    """A latency target measured on a phone over adb (the adb test double speaking benchmark_model's
    output): every candidate is converted, pushed and timed; the phone disconnecting mid-search stops
    it with a one-line error, and a resume with the phone back ends with an uninterrupted run's trials."""
    from tinysr.profile.adb import DeviceError

    phone = {"name": "phone", "device": "adb:FAKE0001", "budget_ms": 5000.0, "runs": 2, "warmup": 1,
             "benchmark_binary": str(fake_adb.binary)}
    data = config(photo_dir, tmp_path / "ref", evaluations=2, round_size=1, input_size=[12, 16], max_mult_adds=None,
                  latency=[phone])
    run_search(SearchConfig.from_dict(data), progress=False)
    _, study = run_store.open_run(tmp_path / "ref")
    for r in run_store.trial_records(study, states=("complete",)):
        assert r.latency_measured_ms == r.latency_ms and r.latency_predicted_ms == {}
        assert r.latency_ms["phone"] == pytest.approx(2950.34)  # the double's benchmark_model average

    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "phone2"))  # the same phone model, counting runs anew
    monkeypatch.setenv("FAKE_ADB_SCENARIO", "disconnect")
    monkeypatch.setenv("FAKE_ADB_DISCONNECT_AT", "after:1")  # gone after timing the first candidate
    cfg = SearchConfig.from_dict({**data, "run_dir": str(tmp_path / "run")})
    with pytest.raises(DeviceError) as e:
        run_search(cfg, progress=False)
    assert "\n" not in str(e.value) and "FAKE0001" in str(e.value)
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "phone3"))  # reconnected
    monkeypatch.delenv("FAKE_ADB_SCENARIO")
    run_search(cfg, resume=True, progress=False)
    assert finished(tmp_path / "run") == finished(tmp_path / "ref")
