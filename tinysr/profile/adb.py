"""Per-operator latency on Android devices: TFLite's ``benchmark_model`` run over adb.

The ``adb`` executable (``$ADB``, else ``adb`` on ``PATH``) is driven through ``subprocess``:
``adb devices -l`` to find the device, ``adb -s SERIAL shell getprop`` for what it is, ``push``
for the model and the ``benchmark_model`` binary (the caller supplies the binary: the Android
build from the TFLite/LiteRT releases; its ELF machine must match the device ABI), then
``shell`` runs of the binary. The op profiler slows the inferences it measures, so whole-model
latency and per-operator rows come from two separate runs::

    benchmark_model --graph=... --num_threads=N --use_xnnpack=... --use_gpu=... --use_nnapi=...
        --warmup_runs=N --num_runs=N --enable_op_profiling=false

gives the profile's summary (init, first inference, warm-up, steady-state avg / median / std);
then, unless ``per_op=False``, the same command with::

        --enable_op_profiling=true
        --op_profiling_output_mode=proto --op_profiling_output_file=/data/local/tmp/tinysr/prof.pb

and a ``pull`` of the proto give the per-operator rows, read by
:mod:`tinysr.profile.benchmark_output` (the text table of the log is the fallback for binaries
that write no proto). The profiled run's own average is kept as ``summary["profiled_run_avg_ms"]``
and ``runtime["timings_from"]`` names the run behind each part. Pushed files are kept on the
device in ``/data/local/tmp/tinysr/`` under a name carrying their sha256 and remembered per
serial in ``~/.cache/tinysr/adb/`` (``$TINYSR_ADB_CACHE``), so an unchanged model or binary is
not pushed again. Every failure is a :class:`DeviceError` with a one-line message, raised before
any profile file is written.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tinysr.profile.benchmark_output import GPU_NOTE, P90_NOTE, parse_proto, parse_runtime, parse_summary, parse_text
from tinysr.profile.record import Profile
from tinysr.provenance import file_sha256

DEVICE_DIR = "/data/local/tmp/tinysr"
PROTO_NAME = "prof.pb"
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
EXIT_MARK = "__TINYSR_EXIT__="
_ELF_MACHINES = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}
#: What ``runtime["timings_from"]`` says about the two runs of :func:`profile_on_device`.
SUMMARY_FROM = "benchmark_model, op profiling off"
OPS_FROM = "benchmark_model --enable_op_profiling=true (separate run)"
_DISCONNECT = re.compile(r"error: (device '.*' not found|device not found|closed|no devices/emulators found|"
                         r"device offline|protocol fault)|adb: device '.*' not found", re.I)


class DeviceError(RuntimeError):
    """Anything that stops a profile on a device; the message is one line meant for the user."""


@dataclass
class AdbDevice:
    """One line of ``adb devices -l``: serial, state (device/unauthorized/offline/...) and details."""

    serial: str
    state: str
    details: dict = field(default_factory=dict)


def find_adb(adb: str | None = None) -> str:
    """Path of the adb executable: the argument, ``$ADB``, or ``adb`` on ``PATH``."""
    cand = adb or os.environ.get("ADB") or shutil.which("adb")
    if not cand:
        raise DeviceError("adb not found: install Android platform-tools (adb) or set $ADB to its path")
    path = shutil.which(cand) or (cand if os.path.isfile(cand) and os.access(cand, os.X_OK) else None)
    if not path:
        raise DeviceError(f"adb not found or not executable: {cand}")
    return path


def parse_devices(text: str) -> list:
    """Devices from ``adb devices -l`` output (header and daemon chatter skipped)."""
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*") or line.startswith("adb "):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        serial, rest = parts[0], parts[1:]
        state = rest[0]
        if state == "no" and len(rest) > 1:  # "no permissions (...)"
            state = "no permissions"
        details = dict(p.split(":", 1) for p in rest[1:] if ":" in p and not p.startswith("("))
        devices.append(AdbDevice(serial, state, details))
    return devices


def elf_abi(path) -> str:
    """Android ABI name of an ELF executable from its header's ``e_machine`` field."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise DeviceError(f"benchmark binary is not an ELF executable: {path}")
    order = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], order)
    if machine not in _ELF_MACHINES:
        raise DeviceError(f"benchmark binary has unsupported ELF machine {machine}: {path}")
    return _ELF_MACHINES[machine]


class Adb:
    """adb bound to one device serial (or to none, for ``devices``)."""

    def __init__(self, adb: str | None = None, serial: str | None = None, timeout: float = 600.0):
        self.exe = find_adb(adb)
        self.serial = serial
        self.timeout = timeout

    def for_serial(self, serial: str) -> "Adb":
        other = Adb.__new__(Adb)
        other.exe, other.serial, other.timeout = self.exe, serial, self.timeout
        return other

    def run(self, args: list, what: str, timeout: float | None = None, check: bool = True):
        """Run ``adb [-s SERIAL] ARGS``; adb-level failures become :class:`DeviceError`."""
        cmd = [self.exe] + (["-s", self.serial] if self.serial else []) + [str(a) for a in args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self._who()}: adb timed out during {what}") from None
        except OSError as e:
            raise DeviceError(f"cannot run adb ({self.exe}): {e}") from None
        out = (proc.stdout or "") + (proc.stderr or "")
        if "unauthorized" in out and "error" in out.lower():
            raise DeviceError(f"{self._who()} is unauthorized: accept the USB debugging prompt on the device")
        m = _DISCONNECT.search(out)
        if m and proc.returncode != 0:
            raise DeviceError(f"{self._who()} disconnected during {what} ({m.group(0)})")
        if check and proc.returncode != 0:
            last = _last_line(out) or f"exit status {proc.returncode}"
            raise DeviceError(f"{self._who()}: adb {what} failed: {last}")
        return proc

    def _who(self) -> str:
        return f"device {self.serial}" if self.serial else "adb"

    def devices(self) -> list:
        return parse_devices(self.run(["devices", "-l"], "devices").stdout)

    def shell(self, command: str, what: str, check: bool = True, timeout: float | None = None) -> str:
        return self.run(["shell", command], what, timeout=timeout, check=check).stdout

    def push(self, local, remote: str) -> None:
        self.run(["push", str(local), remote], f"push of {Path(local).name}")

    def pull(self, remote: str, local) -> bool:
        """Pull a file; ``False`` when it does not exist on the device."""
        proc = self.run(["pull", remote, str(local)], f"pull of {remote}", check=False)
        if proc.returncode == 0 and Path(local).exists():
            return True
        out = (proc.stdout or "") + (proc.stderr or "")
        if "No such file" in out or "does not exist" in out:
            return False
        raise DeviceError(f"{self._who()}: adb pull of {remote} failed: {_last_line(out)}")


def _last_line(text: str) -> str:
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else ""


def list_devices(adb: str | None = None) -> list:
    """``adb devices -l`` as :class:`AdbDevice` rows."""
    return Adb(adb).devices()


def select_device(client: Adb, serial: str | None = None) -> str:
    """The serial to use: the given one (which must be listed and ready) or the only ready device."""
    devices = client.devices()
    if serial:
        match = [d for d in devices if d.serial == serial]
        if not match:
            listed = ", ".join(d.serial for d in devices) or "none"
            raise DeviceError(f"device {serial} not found (connected: {listed})")
        dev = match[0]
    else:
        if not devices:
            raise DeviceError("no Android device connected (adb devices lists none)")
        ready = [d for d in devices if d.state == "device"]
        if len(ready) > 1:
            raise DeviceError("several devices connected: choose one with a serial ("
                              + ", ".join(d.serial for d in ready) + ")")
        dev = ready[0] if ready else devices[0]
    if dev.state == "unauthorized":
        raise DeviceError(f"device {dev.serial} is unauthorized: accept the USB debugging prompt on the device")
    if dev.state != "device":
        raise DeviceError(f"device {dev.serial} is {dev.state}, not ready")
    return dev.serial


def parse_getprop(text: str) -> dict:
    """``[key]: [value]`` lines of ``getprop`` as a dict."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M))


def device_info(client: Adb) -> dict:
    """Model, SoC, ABI, Android release and CPU governor of ``client``'s device."""
    props = parse_getprop(client.shell("getprop", "getprop"))
    gov = client.shell("cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null",
                       "governor read", check=False).strip()
    abilist = props.get("ro.product.cpu.abilist") or props.get("ro.product.cpu.abi", "")
    return {
        "serial": client.serial,
        "model": props.get("ro.product.model", ""),
        "manufacturer": props.get("ro.product.manufacturer", ""),
        "platform": props.get("ro.board.platform", ""),
        "soc": props.get("ro.soc.model", ""),
        "abi": props.get("ro.product.cpu.abi", ""),
        "abilist": [a for a in abilist.split(",") if a],
        "android": props.get("ro.build.version.release", ""),
        "sdk": props.get("ro.build.version.sdk", ""),
        "governor": gov if gov and " " not in gov and "denied" not in gov.lower() else None,
    }


class PushCache:
    """Which files (by sha256) are already on which device, kept in ``cache_dir/SERIAL.json``."""

    def __init__(self, cache_dir=None):
        self.dir = Path(cache_dir or os.environ.get("TINYSR_ADB_CACHE") or Path.home() / ".cache/tinysr/adb")

    def _file(self, serial: str) -> Path:
        return self.dir / (re.sub(r"[^\w.-]", "_", serial) + ".json")

    def load(self, serial: str) -> dict:
        try:
            return json.loads(self._file(serial).read_text())
        except (OSError, ValueError):
            return {}

    def remember(self, serial: str, remote: str, digest: str) -> None:
        data = self.load(serial)
        data[remote] = digest
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._file(serial).with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self._file(serial))


def push_cached(client: Adb, local, cache: PushCache, executable: bool = False) -> tuple:
    """Push ``local`` to ``DEVICE_DIR`` unless the same bytes are there; ``(remote, pushed)``."""
    local = Path(local)
    digest = file_sha256(local)
    remote = f"{DEVICE_DIR}/{digest[:16]}-{local.name}"
    known = cache.load(client.serial).get(remote) == digest
    if known:
        present = client.shell(f"[ -f {shlex.quote(remote)} ] && echo present", "cache check", check=False)
        if "present" in present:
            return remote, False
    client.shell(f"mkdir -p {DEVICE_DIR}", "mkdir")
    client.push(local, remote)
    if executable:
        client.shell(f"chmod +x {shlex.quote(remote)}", "chmod")
    cache.remember(client.serial, remote, digest)
    return remote, True


def benchmark_flags(graph: str, threads: int, delegate: str, warmup: int, runs: int, proto: bool,
                    op_profiling: bool = True) -> list:
    """The ``benchmark_model`` command-line flags for one run.

    ``op_profiling=False``: ``--enable_op_profiling=false`` and no profiling-output flags (whole-
    model timings free of the profiler's overhead). ``proto``: with op profiling, write the
    per-operator profile as a proto file instead of printing the text table.
    """
    if delegate not in DELEGATES:
        raise ValueError(f"delegate must be one of {', '.join(DELEGATES)}, not {delegate!r}")
    b = lambda on: "true" if on else "false"  # noqa: E731
    flags = [f"--graph={graph}", f"--num_threads={int(threads)}", f"--use_xnnpack={b(delegate == 'xnnpack')}",
             f"--use_gpu={b(delegate == 'gpu')}", f"--use_nnapi={b(delegate == 'nnapi')}",
             f"--warmup_runs={int(warmup)}", f"--num_runs={int(runs)}", f"--enable_op_profiling={b(op_profiling)}"]
    if op_profiling and proto:
        flags += ["--op_profiling_output_mode=proto", f"--op_profiling_output_file={DEVICE_DIR}/{PROTO_NAME}"]
    return flags


def _run_benchmark(client: Adb, binary: str, flags: list) -> tuple:
    cmd = (f"cd {DEVICE_DIR} && rm -f {PROTO_NAME} && {shlex.quote(binary)} "
           + " ".join(shlex.quote(f) for f in flags) + f" 2>&1; echo {EXIT_MARK}$?")
    proc = client.run(["shell", cmd], "benchmark_model run", check=False)
    out = proc.stdout + proc.stderr
    m = re.search(rf"{EXIT_MARK}(\d+)", out)
    if m is None:  # the shell never finished: connection lost
        d = _DISCONNECT.search(out)
        reason = d.group(0) if d else (_last_line(out) or f"adb exit status {proc.returncode}")
        raise DeviceError(f"device {client.serial} disconnected during benchmark_model run ({reason})")
    return int(m.group(1)), out[: m.start()]


def _check_status(client: Adb, status: int, out: str) -> None:
    if status != 0:
        what = f"killed by signal {status - 128}" if status > 128 else f"exit status {status}"
        tail = " | ".join(l.strip() for l in out.strip().splitlines()[-3:] if l.strip())
        raise DeviceError(f"benchmark_model failed on device {client.serial} ({what}): {tail}")


def _profiled_run(client: Adb, remote_bin: str, remote_model: str, model: str, threads: int, delegate: str,
                  warmup: int, runs: int) -> tuple:
    """The op-profiled run: ``(Profile with its per-operator rows, "proto" | "text", notes)``."""
    notes = []
    flags = lambda proto: benchmark_flags(remote_model, threads, delegate, warmup, runs, proto=proto)  # noqa: E731
    status, out = _run_benchmark(client, remote_bin, flags(True))
    if status != 0 and re.search(r"op_profiling_output|Unconsumed cmdline flags|unknown flag", out, re.I):
        notes.append("benchmark_model does not know --op_profiling_output_mode (older build): text table used")
        status, out = _run_benchmark(client, remote_bin, flags(False))
    _check_status(client, status, out)
    with tempfile.TemporaryDirectory(prefix="tinysr-adb-") as tmp:
        local_proto = Path(tmp) / PROTO_NAME
        have_proto = not notes and client.pull(f"{DEVICE_DIR}/{PROTO_NAME}", local_proto)
        if have_proto:
            try:
                profile = parse_proto(local_proto.read_bytes(), model=model, log_text=out)
            except ValueError as e:
                raise DeviceError(f"device {client.serial}: unreadable profiling proto ({e})") from None
        else:
            if not notes:
                notes.append("no profiling proto written (older benchmark_model?): text table used")
            profile = parse_text(out, model=model)
    if not profile.ops:
        raise DeviceError(f"benchmark_model on device {client.serial} printed no per-operator profile")
    return profile, "proto" if have_proto else "text", notes


def profile_on_device(model_path, serial: str | None = None, benchmark_binary=None, threads: int = 1,
                      delegate: str = "cpu", warmup: int = 10, runs: int = 50, save=None,
                      adb: str | None = None, cache_dir=None, per_op: bool = True) -> Profile:
    """Profile ``model_path`` with ``benchmark_model`` on one Android device.

    ``benchmark_binary`` is the local Android ``benchmark_model`` executable (default
    ``$TINYSR_BENCHMARK_MODEL``). ``delegate``: ``cpu`` (builtin kernels, XNNPACK off),
    ``xnnpack``, ``gpu`` or ``nnapi``. ``save``: JSON path written atomically after success.

    The summary (whole-model latency) comes from a run with ``--enable_op_profiling=false``; with
    ``per_op`` (default) a second run with op profiling on gives the per-operator rows, and its
    own average is kept as ``summary["profiled_run_avg_ms"]`` (the profiler's overhead shows as
    its excess over ``avg_ms``). ``per_op=False``: only the unprofiled run, no rows.
    Raises :class:`DeviceError` (one-line message) for any device, adb or binary failure.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise DeviceError(f"model not found: {model_path}")
    binary = benchmark_binary or os.environ.get("TINYSR_BENCHMARK_MODEL")
    if not binary:
        raise DeviceError("no benchmark_model binary: pass benchmark_binary or set $TINYSR_BENCHMARK_MODEL")
    binary = Path(binary)
    if not binary.is_file():
        raise DeviceError(f"benchmark_model binary not found: {binary}")
    if delegate not in DELEGATES:
        raise DeviceError(f"unknown delegate {delegate!r} (choose from {', '.join(DELEGATES)})")
    binary_abi = elf_abi(binary)

    client = Adb(adb)
    client = client.for_serial(select_device(client, serial))
    info = device_info(client)
    if info["abilist"] and binary_abi not in info["abilist"]:
        raise DeviceError(f"device {client.serial} ABI {info['abi'] or info['abilist'][0]} does not run "
                          f"this benchmark_model ({binary_abi}): use the {info['abilist'][0]} build")
    cache = PushCache(cache_dir)
    remote_bin, bin_pushed = push_cached(client, binary, cache, executable=True)
    remote_model, model_pushed = push_cached(client, model_path, cache)

    # whole-model latency: op profiling off, so no profiler overhead in these numbers
    status, log = _run_benchmark(client, remote_bin, benchmark_flags(remote_model, threads, delegate, warmup, runs,
                                                                     proto=False, op_profiling=False))
    _check_status(client, status, log)
    summary = parse_summary(log)
    if summary["avg_ms"] is None:
        raise DeviceError(f"benchmark_model on device {client.serial} printed no inference timings")
    runtime = parse_runtime(log)
    summary.update(op_total_ms=None, nodes=None, profiled_run_avg_ms=None)
    ops, notes, source = [], [], "text"
    if per_op:
        profiled, source, notes = _profiled_run(client, remote_bin, remote_model, str(model_path), threads,
                                                delegate, warmup, runs)
        ops = profiled.ops
        summary.update(op_total_ms=profiled.summary.get("op_total_ms"), nodes=profiled.summary.get("nodes"),
                       profiled_run_avg_ms=profiled.summary.get("avg_ms"))
        notes += [n for n in profiled.notes if n not in notes]
        if delegate == "gpu" and not any("GPU delegate" in n for n in notes):
            notes.insert(0, GPU_NOTE)
    else:
        notes.append(P90_NOTE)
    notes.insert(0, _timings_note(summary, per_op))
    runtime.update({"tool": "benchmark_model", "binary": binary.name, "binary_abi": binary_abi,
                    "threads": int(threads), "delegate": delegate, "warmup_runs": int(warmup),
                    "num_runs": int(runs), "pushed": {"binary": bin_pushed, "model": model_pushed},
                    "source": source,
                    "timings_from": {"summary": SUMMARY_FROM, "ops": OPS_FROM if per_op else None}})
    runtime.pop("graph", None)
    profile = Profile(model=str(model_path), device=info, runtime=runtime, ops=ops, summary=summary, notes=notes)
    if save:
        profile.save(save)
    return profile


def _timings_note(summary: dict, per_op: bool) -> str:
    head = "summary (init, first inference, warm-up, avg, median, std): benchmark_model run with op profiling off"
    if not per_op:
        return head + "; no per-operator rows (per-op profiling not requested)"
    note = head + "; per-operator rows: a separate run with --enable_op_profiling=true"
    prof, avg = summary.get("profiled_run_avg_ms"), summary.get("avg_ms")
    if prof is not None:
        note += f", whose own average was {prof:.3f} ms"
        if avg:
            note += f" ({100.0 * (prof - avg) / avg:+.1f}% vs. unprofiled: the profiler's overhead)"
    return note


def profile_on_devices(model_path, serials, save=None, **kwargs) -> dict:
    """:func:`profile_on_device` on each serial in turn; ``{serial: Profile}``.

    ``save``: a path containing ``{serial}``, or a folder (``MODEL_STEM.SERIAL.json`` in it).
    Stops at the first failing device (its :class:`DeviceError` names it); profiles of devices
    finished before are already saved.
    """
    serials = list(serials)
    if not serials:
        raise DeviceError("no device serials given")
    results = {}
    for serial in serials:
        target = None
        if save:
            s = str(save)
            safe = re.sub(r"[^\w.-]", "_", serial)
            target = s.format(serial=safe) if "{serial}" in s else Path(s) / f"{Path(model_path).stem}.{safe}.json"
        results[serial] = profile_on_device(model_path, serial=serial, save=target, **kwargs)
    return results
