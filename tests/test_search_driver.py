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
from conftest import run_cli

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


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """conftest's photo_dir made once for this module (the runs only read it): the same four images."""
    from PIL import Image

    from tinysr.bundled import sample_image

    src = Image.open(sample_image()).convert("RGB")
    d = tmp_path_factory.mktemp("photos")
    for i, (angle, size) in enumerate([(0, 160), (90, 144), (180, 128), (270, 150)]):
        src.rotate(angle).resize((size, size + 8 * i), Image.BICUBIC).save(d / f"img{i}.png")
    return d


@pytest.fixture(scope="module")
def reference(photo_dir, tmp_path_factory):
    """The finished trials of one uninterrupted in-process run of ``config()``: what every backend and
    every resumed run of that config must end with (trials are identical on every backend)."""
    run = tmp_path_factory.mktemp("ref") / "run"
    run_search(SearchConfig.from_dict(config(photo_dir, run)), progress=False)
    return finished(run)


def finished(run_dir) -> list[tuple]:
    """Every finished trial as comparable data, by candidate (no trial numbers, no timings)."""
    _, study = run_store.open_run(run_dir)
    out = []
    for r in run_store.trial_records(study):
        if r.state in ("complete", "rejected"):
            out.append((r.candidate, r.state, tuple(sorted(r.params.items())), r.values, r.genotype, r.psnr, r.reward,
                        r.rejected, r.mult_adds, tuple(sorted(r.latency_ms.items()))))
    return sorted(out)


_main = run_cli  # tinysr ARGS in this process


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


def test_resume_after_a_crash_equals_an_uninterrupted_run(photo_dir, tmp_path, reference):
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
    assert finished(tmp_path / "run") == reference


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


def test_a_missing_train_data_folder_names_the_config_and_key(photo_dir, tmp_path, capsys):
    cfg_path = tmp_path / "s.yaml"
    data = config(photo_dir, tmp_path / "run")
    data["proxy"]["train_data"] = [str(photo_dir), str(tmp_path / "T92")]
    cfg_path.write_text(yaml.safe_dump(data))
    code, out, err = _main(capsys, "search", "generator", "--config", cfg_path, "-q")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{cfg_path}: proxy: train_data: {tmp_path / 'T92'}: no such folder" in err
    assert not (tmp_path / "run").exists()


def test_a_wrong_ray_address_fails_in_one_line_within_the_timeout_and_leaves_nothing(photo_dir, tmp_path, capsys):
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
            code, out, err = _main(capsys, "search", "generator", "--config", cfg_path, "-q", "--backend", "ray",
                                   "--workers", "1", "--address", address, "--connect-timeout", timeout)
            assert code == 2 and err.count("\n") == 1, err
            assert f"Ray cluster at {address}: {what}" in err
            assert time.time() - t0 < 60
            assert not (tmp_path / "run").exists()
    finally:
        silent.close()


def test_an_impossible_budget_stops_with_a_clear_error(photo_dir, tmp_path):
    cfg = SearchConfig.from_dict(config(photo_dir, tmp_path / "run", max_mult_adds=1e6, max_candidates=30))
    with pytest.raises(RuntimeError, match="30 candidates sampled, 30 rejected, and only 0 evaluated"):
        run_search(cfg, progress=False)


def test_the_process_pool_and_ray_give_the_same_trials(photo_dir, tmp_path, reference):
    """Two spawned worker processes, then a real local Ray instance (ray.init(num_cpus=2)), against
    evaluations in the driver's process (the module's reference run)."""
    ray = pytest.importorskip("ray")
    base = config(photo_dir, tmp_path / "pool", workers=2)
    run_search(SearchConfig.from_dict(base), progress=False)
    assert finished(tmp_path / "pool") == reference
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        from tinysr.search.core.backends import check_ray_address

        check_ray_address(ray.get_runtime_context().gcs_address, 10.0)  # a real GCS passes the address check
        run_search(SearchConfig.from_dict({**base, "run_dir": str(tmp_path / "ray"), "backend": "ray", "workers": 2}),
                   progress=False)
        assert ray.is_initialized()  # an instance the caller started is left running
    finally:
        ray.shutdown()
    assert finished(tmp_path / "ray") == reference


#: ``python -c KILLABLE ARGS``: ``tinysr ARGS`` that, with ``KILL_AT=POINT:N``, sends itself SIGKILL the Nth
#: time it reaches POINT: ``enqueued`` (between the study's enqueue_trial and ask), ``trial_write`` /
#: ``checkpoint_write`` (half of a trial's weights / of the search checkpoint in its temporary file, not yet
#: renamed into place), ``trial_written`` (a trial's weights in place, the study not yet told). With
#: ``KILL_MARK=FILE`` it creates FILE at its first new trial: its evaluations have started.
KILLABLE = """
import os, signal, sys
import torch
from tinysr.search.core import run_store
point, _, nth = os.environ.get("KILL_AT", "none:0").partition(":")
seen = {}
def reached(name, before=None):
    seen[name] = seen.get(name, 0) + 1
    if name == point and seen[name] == int(nth):
        if before is not None:
            before()
        os.kill(os.getpid(), signal.SIGKILL)
def enqueued():
    mark = os.environ.get("KILL_MARK")
    if mark and not os.path.exists(mark):
        open(mark, "w").close()
    reached("enqueued")
run_store.HOOKS["enqueued"] = enqueued
real_save, real_replace = torch.save, os.replace
def half(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
def save(obj, f, *args, **kw):
    real_save(obj, f, *args, **kw)
    path = os.fspath(f)
    if os.path.basename(path).startswith(".checkpoint.pt."):
        reached("checkpoint_write", lambda: half(path))
    elif os.path.basename(os.path.dirname(path)) == "trials":
        reached("trial_write", lambda: half(path))
torch.save = save
def replace(src, dst, *args, **kw):
    real_replace(src, dst, *args, **kw)
    if os.path.basename(os.path.dirname(os.fspath(dst))) == "trials":
        reached("trial_written")
os.replace = replace
from tinysr.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _killable(*args, env: dict, **kw):
    return subprocess.run([sys.executable, "-c", KILLABLE, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **env}, **kw)


def _states(run_dir) -> list[str]:
    _, study = run_store.open_run(run_dir)
    return [r.state for r in run_store.trial_records(study)]


def test_kill_9_at_chosen_and_random_moments_then_resume(photo_dir, tmp_path, reference, capsys):
    """A real search process killed with SIGKILL and resumed, again and again: first at chosen moments
    (half-way through writing the checkpoint of the run it has just created, a trial's weights, and a
    round's checkpoint; a trial's weights just in place, the study not yet told), then twice at random
    moments of its evaluations and writes. Its finished trials equal an uninterrupted run's, no
    finished candidate is recorded twice, and the trials that were running at a kill are marked
    interrupted (none failed, none left running)."""
    run = tmp_path / "run"
    cfg_path = tmp_path / "kill.yaml"
    cfg_path.write_text(yaml.safe_dump(config(photo_dir, run)))
    args = ["search", "generator", "--config", cfg_path, "-q"]
    # point, running trials left by the kill (a checkpoint is written between trials)
    chosen = [("checkpoint_write:1", 0), ("trial_write:2", 1), ("trial_written:1", 1), ("checkpoint_write:1", 0)]
    for i, (at, running) in enumerate(chosen):
        r = _killable(*args, *(["--resume"] if i else []), env={"KILL_AT": at}, timeout=300)
        assert r.returncode == -signal.SIGKILL, (at, r.stderr[-2000:])
        assert _states(run).count("running") == running, at
        if i == 0:  # the run exists; its first checkpoint does not
            assert (run / "run.json").is_file() and not (run / "checkpoint.pt").exists()
    rng = random.Random(7)
    mark, kills = tmp_path / "evaluating", 0
    for attempt in range(2):
        mark.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE, *map(str, args), "--resume"], cwd=ROOT,
                                env={**os.environ, "KILL_MARK": str(mark)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while proc.poll() is None and not mark.is_file() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # into its evaluations, study and weight writes, round checkpoints
        if proc.poll() is None:
            proc.kill()
            kills += 1
        err = proc.communicate()[1].decode()
        assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
    assert kills >= 1  # the 4 evaluations left (and their writes) last longer than one random wait
    code, out, err = _main(capsys, *args, "--resume")
    assert code == 0, err
    got = finished(run)
    assert len({c[0] for c in got}) == len(got)  # no candidate finished twice
    assert got == reference
    states = _states(run)
    assert "running" not in states and "failed" not in states
    assert states.count("interrupted") >= 2  # the trials running at the chosen kills


def test_a_kill_between_enqueue_and_ask_loses_no_candidate(photo_dir, tmp_path, reference, capsys):
    """Killed exactly between ``enqueue_trial`` and ``ask`` (the study holds a WAITING trial): the
    resume marks it interrupted (not a failed evaluation), evaluates its candidate again and ends
    with an uninterrupted run's trials; ``search show`` and the summary count it as interrupted."""
    cfg_path = tmp_path / "kill.yaml"
    cfg_path.write_text(yaml.safe_dump(config(photo_dir, tmp_path / "run")))
    args = ["search", "generator", "--config", str(cfg_path), "-q"]
    r = _killable(*args, env={"KILL_AT": "enqueued:3"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert _states(tmp_path / "run").count("waiting") == 1
    code, out, err = _main(capsys, *args, "--resume", "--json", tmp_path / "summary.json")
    assert code == 0, err
    assert "0 failed, 1 interrupted" in out
    summary = yaml.safe_load((tmp_path / "summary.json").read_text())
    assert (summary["evaluated"], summary["failed"], summary["interrupted"]) == (6, 0, 1)
    assert finished(tmp_path / "run") == reference
    _, study = run_store.open_run(tmp_path / "run")
    recs = run_store.trial_records(study)
    (waited,) = [r for r in recs if r.state == "interrupted"]
    assert waited.user_attrs["interrupted"] is True and "before it started" in waited.user_attrs["reason"]
    assert waited.error is None and "failed" not in [r.state for r in recs]
    code, out, err = _main(capsys, "search", "show", tmp_path / "run", "--no-plots")
    assert code == 0 and "failed 0, interrupted 1, running 0" in out, out + err


def test_ctrl_c_stops_in_one_line_and_resume_is_exact(photo_dir, tmp_path, capsys):
    """SIGINT to the process group (what a terminal's Ctrl-C does) during the local pool's evaluations:
    exit 130 with one line on stderr, no worker tracebacks; the resume ends with an uninterrupted run's trials."""
    data = config(photo_dir, tmp_path / "ref", evaluations=6, round_size=2, workers=2)
    data["proxy"]["steps"] = 200  # evaluations long enough for the signal to land in them (60 was not, on an idle machine)
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
    states = _states(tmp_path / "run")
    assert "running" not in states and "failed" not in states
    # the resume in this process: what is checked is its result, not its process
    code, out, err = _main(capsys, "search", "generator", "--config", cfg_path, "-q", "--resume", "--workers", "0")
    assert code == 0, err
    assert finished(tmp_path / "run") == finished(tmp_path / "ref")


def test_cli_search_show_and_export(photo_dir, tmp_path, capsys):
    """search generator, show, export, then lut predict, train and export with the exported checkpoint:
    the commands run in this process (their parsing, outputs and exit codes are what is checked;
    tinysr as a process of its own is checked by the tests above)."""
    cfg_path = tmp_path / "s.yaml"
    cfg_path.write_text(yaml.safe_dump(config(photo_dir, tmp_path / "run", evaluations=2, latency=[
        {"name": "epyc", "profile": str(PROFILE), "budget_ms": 60.0}])))
    code, out, err = _main(capsys, "search", "generator", "--config", cfg_path, "-q")
    assert code == 0, err
    assert "2 evaluated" in out and (tmp_path / "run" / "pareto.png").is_file()
    code, out, err = _main(capsys, "search", "show", tmp_path / "run", "--top", "3")
    assert code == 0, err
    ckpt = tmp_path / "best.pt"
    code, out, err = _main(capsys, "search", "export", tmp_path / "run", "--best", "-o", ckpt)
    assert code == 0, err
    code, out, err = _main(capsys, "lut", "predict", ckpt, "--profile", PROFILE)
    assert code == 0, err
    code, out, err = _main(capsys, "train", "--genotype", ckpt, "--init-from", ckpt, "--train-data", photo_dir,
                           "--steps", "2", "--out-dir", tmp_path / "train", "--set", "patch_size=8", "--set",
                           "batch_size=2", "--set", "workers=0", "-q")  # no data-loader processes forked from here
    assert code == 0, err
    assert f"initialised {len(torch.load(ckpt, weights_only=True)['state_dict'])}/" in out + err
    code, out, err = _main(capsys, "export", "--model", ckpt, "--target", "onnx", "--input-size", "16x16", "-o",
                           tmp_path / "best.onnx", "-q")
    assert code == 0, err
    code, out, err = _main(capsys, "search", "generator", "--config", cfg_path, "-q")
    assert code == 2 and err.count("\n") == 1 and "--resume" in err


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
    import hashlib

    from tinysr.profile import predict
    from tinysr.profile.adb import DeviceError

    converted, convert = {}, predict.convert_network

    def convert_once(model, size, *args, **kw):
        """Each network (architecture and weights) converted to .tflite once: the three runs below
        convert the same networks (TPSR, the candidates) again, at ~5-15 s a conversion."""
        weights = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()
        key = (type(model).__name__, str(getattr(model, "genotype", "")), tuple(size), weights)
        if key not in converted:
            converted[key] = convert(model, size, *args, **kw)
        return converted[key]

    monkeypatch.setattr(predict, "convert_network", convert_once)
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


def test_a_worker_stopped_by_ctrl_c_stops_the_driver_as_ctrl_c(monkeypatch):
    """Ctrl-C reaches the workers too; a worker's SystemExit(130) (its quiet stop) can be the first thing the
    driver sees: it must stop as Ctrl-C (the one line 'tinysr: interrupted'), not exit silently with 130."""
    import concurrent.futures as cf
    import concurrent.futures.process  # noqa: F401  (what a process pool loads; evaluate() names its error)

    from tinysr.search.core import backends

    def stopped(job):
        raise SystemExit(130)

    backend = backends.LocalBackend.__new__(backends.LocalBackend)
    backend.pool = cf.ThreadPoolExecutor(1)
    monkeypatch.setattr(backends, "_pool_run", stopped)
    try:
        with pytest.raises(KeyboardInterrupt):
            list(backend.evaluate([object()]))
    finally:
        backend.pool.shutdown()


def test_an_int8_search_scores_the_int8_network_and_refuses_an_fp32_table(photo_dir, tmp_path):
    """precision: int8: every candidate's PSNR is its int8 form's (fake-quantized as the export, ranges from
    training batches), the float PSNR kept beside; a latency table of another precision is refused."""
    from tinysr.search.generator.proxy import ProxyData, ProxyTask, evaluate_candidate

    with pytest.raises(ValueError, match="times fp32 networks, the search's precision is int8"):
        SearchConfig.from_dict(config(photo_dir, tmp_path / "bad", precision="int8", latency=[
            {"name": "epyc", "profile": str(PROFILE), "budget_ms": 55.0}])).constraints()
    with pytest.raises(ValueError, match="precision must be fp32 or int8"):
        SearchConfig.from_dict(config(photo_dir, tmp_path / "bad", precision="int4"))
    cfg = SearchConfig.from_dict(config(photo_dir, tmp_path / "run", precision="int8", evaluations=2, weight_sharing=False))
    assert cfg.to_dict()["precision"] == "int8"
    assert "precision" not in SearchConfig.from_dict(config(photo_dir, tmp_path / "f")).to_dict()  # old runs' records
    run_search(cfg, progress=False)
    _, study = run_store.open_run(tmp_path / "run")
    recs = [r for r in run_store.trial_records(study) if r.state == "complete"]
    assert len(recs) == 2
    task = ProxyTask.from_dict(config(photo_dir, tmp_path)["proxy"])
    data = ProxyData.load(task)
    for r in recs:
        again = evaluate_candidate(r.genotype, None, task, data, n_feats=16, precision="int8")
        fp32 = evaluate_candidate(r.genotype, None, task, data, n_feats=16)
        assert r.psnr == again.psnr and r.user_attrs["psnr_fp32"] == again.psnr_fp32 == fp32.psnr
        assert r.psnr != fp32.psnr  # the int8 score is not the float one


def test_a_ctrl_c_swallowed_where_it_lands_still_stops_the_run():
    """A SIGINT that lands in code which swallows exceptions (a finalizer: "Exception ignored in ...") is remembered:
    the driver raises KeyboardInterrupt at its next result; the previous handler comes back afterwards."""
    from tinysr.search.generator.driver import _Sigint

    before = signal.getsignal(signal.SIGINT)
    search = Search.__new__(Search)
    with _Sigint() as guard:
        search._sigint = guard
        search._interrupted()  # nothing seen yet: goes on
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        except KeyboardInterrupt:
            pass  # swallowed where it landed
        with pytest.raises(KeyboardInterrupt):
            search._interrupted()
    assert signal.getsignal(signal.SIGINT) is before
