#!/usr/bin/env python3
"""TEST DOUBLE of the Android ``adb`` client: not adb, used only by tinysr's tests.

Implements the subset ``tinysr.profile.adb`` uses: ``devices -l``, ``get-state``,
``[-s SERIAL] shell CMD``, ``push LOCAL REMOTE``, ``pull REMOTE LOCAL``. The "device" is a folder:
``$FAKE_ADB_ROOT/devices/SERIAL/fs`` stands for its filesystem, and every invocation is logged
as a JSON line to ``$FAKE_ADB_ROOT/calls.log``. ``shell`` understands a small sh subset
(``cd``, ``rm -f``, ``mkdir -p``, ``chmod``, ``cat``, ``getprop``, ``echo``, ``[ -f X ]``,
``&&``, ``;``, ``2>&1``, ``$?``); running a pushed executable plays ``benchmark_model``.

What it prints follows ``--enable_op_profiling`` (default false, as in the real binary, where
``BenchmarkTfLiteModel::MayCreateProfilingListener`` installs no profiler then):

* off: the fixture log (``tests/fixtures/benchmark_model``) up to its first profiling section,
  with ``Enable op profiling: [0]``: parameters, init, the warm-up and regular ``count=`` lines
  and ``Inference timings in us: ...``, numbers as in the fixture; no operator tables, and no
  proto file even if ``--op_profiling_output_*`` flags are given.
* on: the fixture log with its operator tables, every whole-model timing (``Initialized session
  in``, the ``count=`` lines, ``Inference timings in us``) multiplied by ``1 + overhead``
  (``$FAKE_ADB_PROFILER_OVERHEAD``, default 0.12), because a real profiler slows the runs it
  measures; the operator rows keep the fixture's numbers. With
  ``--op_profiling_output_mode=proto`` it writes a real ``BenchmarkProfilingData`` proto built
  from the fixture's tables to ``--op_profiling_output_file`` and, like the real binary in proto
  mode, prints the log without the tables.

Environment:
  FAKE_ADB_ROOT       state folder (required)
  FAKE_ADB_SERIALS    comma-separated serials of the attached devices (default FAKE0001)
  FAKE_ADB_SCENARIO   ok | unauthorized | none | disconnect | crash | oldbinary | abi
  FAKE_ADB_DISCONNECT_AT  ``disconnect`` scenario: ``N`` (default 1) cuts the connection during
                      the device's N-th benchmark_model run ("error: closed"); ``after:N`` lets
                      run N finish, then the device is gone (later calls: device not found)
  FAKE_ADB_PROFILER_OVERHEAD  slow-down of op-profiled runs (default 0.12)
  FAKE_ADB_ABI        device ABI (default arm64-v8a; x86_64 in the ``abi`` scenario)
  FAKE_ADB_FIXTURE    text log printed for CPU runs (default the MobileNet v1 fixture)
  FAKE_ADB_GPU_FIXTURE  text log printed for --use_gpu=true runs
"""
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "benchmark_model"
ROOT = Path(os.environ["FAKE_ADB_ROOT"])
SCENARIO = os.environ.get("FAKE_ADB_SCENARIO", "ok")
SERIALS = [s for s in os.environ.get("FAKE_ADB_SERIALS", "FAKE0001").split(",") if s]
ABI = os.environ.get("FAKE_ADB_ABI") or ("x86_64" if SCENARIO == "abi" else "arm64-v8a")
ABILISTS = {"arm64-v8a": "arm64-v8a,armeabi-v7a,armeabi", "x86_64": "x86_64,x86", "x86": "x86",
            "armeabi-v7a": "armeabi-v7a,armeabi"}


def fail(msg, code=1):
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def fs(serial, remote):
    return ROOT / "devices" / serial / "fs" / remote.lstrip("/")


def disconnected_flag(serial):
    return ROOT / "devices" / serial / "disconnected"


def state_of(serial):
    if SCENARIO == "unauthorized":
        return "unauthorized"
    return "device"


def attached():
    if SCENARIO == "none":
        return []
    return [s for s in SERIALS if not disconnected_flag(s).exists()]


def cmd_devices(long):
    out = ["List of devices attached"]
    for i, s in enumerate(attached(), start=1):
        st = state_of(s)
        if long and st == "device":
            out.append(f"{s:<22} {st} usb:1-{i} product:fake{i} model:Fake_Phone_{i} device:fake{i} "
                       f"transport_id:{i}")
        elif long:
            out.append(f"{s:<22} {st} usb:1-{i} transport_id:{i}")
        else:
            out.append(f"{s}\t{st}")
    print("\n".join(out) + "\n")


def resolve_serial(serial):
    devs = attached()
    if serial is None:
        if not devs:
            fail("adb: no devices/emulators found")
        if len(devs) > 1:
            fail("adb: more than one device/emulator")
        serial = devs[0]
    if serial not in devs:
        fail(f"adb: device '{serial}' not found")
    if state_of(serial) == "unauthorized":
        fail("adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
             "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device.")
    return serial


def getprop(serial):
    idx = SERIALS.index(serial) + 1 if serial in SERIALS else 1
    props = {
        "ro.product.model": f"Fake Phone {idx}", "ro.product.manufacturer": "TestDouble",
        "ro.board.platform": "fakesoc", "ro.soc.model": f"FS{8000 + idx}", "ro.product.cpu.abi": ABI,
        "ro.product.cpu.abilist": ABILISTS.get(ABI, ABI), "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
    }
    return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items()))


INIT_MARKER = "Profiling Info for Benchmark Initialization:"
_TIMED_KEYS = ("first", "curr", "min", "max", "avg", "std", "p5", "median", "p95")


def flag_bool(flags, name):
    """A bool flag the way benchmark_model reads it (absent: false)."""
    return flags.get(name, "false").lower() in ("true", "1")


def without_tables(text):
    """The log up to the line that opens its first profiling section."""
    cut = text.find(INIT_MARKER)
    if cut < 0:
        cut = text.find("Operator-wise Profiling Info")
    return text if cut < 0 else text[: text.rfind("\n", 0, cut) + 1]


def fmt_like(old, value):
    """``value`` printed the way the log printed ``old``: integers stay integers, else 6 significant digits."""
    return str(round(value)) if re.fullmatch(r"\d+", old) else f"{value:g}"


def slow_down(text, factor):
    """Whole-model timings of a log scaled by ``factor`` (the operator tables are left as they are)."""
    def kv(m):
        key, val = m.group(1), m.group(2)
        return f"{key}={fmt_like(val, float(val) * factor)}" if key in _TIMED_KEYS else m.group(0)

    def timings(m):
        return m.group(1) + re.sub(r"(: )([\d.e+-]+)", lambda n: n.group(1) + fmt_like(n.group(2),
                                   float(n.group(2)) * factor), m.group(2))

    head = without_tables(text)
    tail = text[len(head):]
    lines = []
    for line in head.splitlines(True):
        if re.match(r"^(INFO: )?count=", line):
            line = re.sub(r"(\w+)=([\d.e+-]+)", kv, line)
        elif re.search(r"inference timings in us:", line, re.I):
            line = re.sub(r"(.*?inference timings in us:)(.*)", timings, line, flags=re.I)
        elif "Initialized session in" in line:
            line = re.sub(r"in ([\d.]+)ms", lambda m: f"in {float(m.group(1)) * factor:g}ms", line)
        lines.append(line)
    return "".join(lines) + tail


def next_run(serial):
    """Count this device's benchmark_model runs (1, 2, ...)."""
    counter = ROOT / "devices" / serial / "benchmark_runs"
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    return n


def run_benchmark(serial, cwd, argv, out):
    flags = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    graph = flags.get("graph", "")
    gpath = fs(serial, graph if graph.startswith("/") else f"{cwd}/{graph}")
    if not gpath.is_file():
        out.append(f"ERROR: Could not open '{graph}'.\nERROR: Benchmarking failed.\n")
        return 1
    run = next_run(serial)
    gpu = flags.get("use_gpu") == "true"
    fixture = os.environ.get("FAKE_ADB_GPU_FIXTURE" if gpu else "FAKE_ADB_FIXTURE") or str(
        FIXTURES / ("mnv3_seg_float_android_gpu.txt" if gpu else "mobilenet_v1_riscv64_cpu.txt"))
    text = Path(fixture).read_text()
    profiling = flag_bool(flags, "enable_op_profiling")
    if profiling:
        text = slow_down(text, 1.0 + float(os.environ.get("FAKE_ADB_PROFILER_OVERHEAD", "0.12")))
    else:
        text = without_tables(text.replace("Enable op profiling: [1]", "Enable op profiling: [0]")
                              .replace("--enable_op_profiling=true", "--enable_op_profiling=false"))
    if SCENARIO == "crash":
        out.append(text[: text.find("Running benchmark")] + "Segmentation fault \n")
        return 139
    cut_at = os.environ.get("FAKE_ADB_DISCONNECT_AT", "1")
    if SCENARIO == "disconnect" and cut_at == str(run):
        sys.stdout.write(text[: text.find("Running benchmark")])
        disconnected_flag(serial).parent.mkdir(parents=True, exist_ok=True)
        disconnected_flag(serial).touch()
        fail("error: closed")
    if SCENARIO == "disconnect" and cut_at == f"after:{run}":
        disconnected_flag(serial).touch()  # this run's output still arrives; the device is gone after it
    if SCENARIO == "oldbinary" and "op_profiling_output_mode" in flags:  # a flag this build does not know
        out.append(text + "Unconsumed cmdline flags: --op_profiling_output_mode=proto "
                   f"--op_profiling_output_file={flags.get('op_profiling_output_file')}\n")
        return 1
    if profiling and flags.get("op_profiling_output_mode") == "proto":
        sys.path.insert(0, str(HERE))
        from profiling_proto import proto_from_text

        dest = flags["op_profiling_output_file"]
        p = fs(serial, dest if dest.startswith("/") else f"{cwd}/{dest}")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(proto_from_text(text, model_name=graph))
        text = without_tables(text)
    out.append(text)
    return 0


def split_commands(tokens):
    """[(connector, [words])] with connector '' / ';' / '&&'; redirections dropped."""
    cmds, cur, conn, i = [], [], "", 0
    while i < len(tokens):
        t = tokens[i]
        if t in (";", "&&"):
            cmds.append((conn, cur))
            cur, conn = [], t
        elif t in (">", ">&") and cur and cur[-1] == "2":
            cur.pop()
            i += 1  # target (1 or /dev/null)
        else:
            cur.append(t)
        i += 1
    cmds.append((conn, cur))
    return [(c, w) for c, w in cmds if w]


def shell(serial, command):
    lex = shlex.shlex(command, posix=True, punctuation_chars=";&>")
    lex.whitespace_split = True
    tokens = list(lex)
    cwd, status, out = "/", 0, []
    for conn, words in split_commands(tokens):
        if conn == "&&" and status != 0:
            continue
        words = [w.replace("$?", str(status)) for w in words]
        name, args = words[0], words[1:]
        if name == "cd":
            status = 0 if fs(serial, args[0]).is_dir() else 2
            if status == 0:
                cwd = args[0]
            else:
                out.append(f"/system/bin/sh: cd: {args[0]}: No such file or directory\n")
        elif name == "rm":
            for a in args:
                if not a.startswith("-"):
                    p = fs(serial, a if a.startswith("/") else f"{cwd}/{a}")
                    if p.is_file():
                        p.unlink()
            status = 0
        elif name == "mkdir":
            for a in args:
                if not a.startswith("-"):
                    fs(serial, a).mkdir(parents=True, exist_ok=True)
            status = 0
        elif name == "chmod":
            p = fs(serial, args[-1])
            status = 0 if p.is_file() else 1
            if p.is_file():
                p.chmod(0o755)
        elif name == "getprop":
            out.append(getprop(serial))
            status = 0
        elif name == "cat":
            if args and args[0].endswith("scaling_governor"):
                out.append("schedutil\n")
                status = 0
            else:
                p = fs(serial, args[0])
                status = 0 if p.is_file() else 1
                out.append(p.read_text() if p.is_file() else "")
        elif name == "echo":
            out.append(" ".join(args) + "\n")
            status = 0
        elif name in ("[", "test"):
            target = args[1] if len(args) > 1 else ""
            status = 0 if fs(serial, target).is_file() else 1
        else:
            p = fs(serial, name if name.startswith("/") else f"{cwd}/{name}")
            if not p.is_file():
                out.append(f"/system/bin/sh: {name}: inaccessible or not found\n")
                status = 127
            elif not os.access(p, os.X_OK):
                out.append(f"/system/bin/sh: {name}: can't execute: Permission denied\n")
                status = 126
            else:
                status = run_benchmark(serial, cwd, words, out)
    sys.stdout.write("".join(out))
    return 0


def main(argv):
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / "calls.log", "a") as f:
        f.write(json.dumps(argv) + "\n")
    serial = None
    while argv and argv[0] in ("-s", "-P", "-H"):
        if argv[0] == "-s":
            serial = argv[1]
        argv = argv[2:]
    if not argv:
        fail("adb: usage: no command specified")
    cmd, args = argv[0], argv[1:]
    if cmd == "devices":
        cmd_devices("-l" in args)
        return 0
    serial = resolve_serial(serial)
    if cmd == "get-state":
        print(state_of(serial))
        return 0
    if cmd == "shell":
        return shell(serial, " ".join(args))
    if cmd == "push":
        local, remote = args
        dest = fs(serial, remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
        print(f"{local}: 1 file pushed, 0 skipped. 12.3 MB/s ({os.path.getsize(local)} bytes in 0.001s)")
        return 0
    if cmd == "pull":
        remote, local = args
        src = fs(serial, remote)
        if not src.is_file():
            fail(f"adb: error: failed to stat remote object '{remote}': No such file or directory")
        shutil.copyfile(src, local)
        print(f"{remote}: 1 file pulled, 0 skipped. 10.0 MB/s ({src.stat().st_size} bytes in 0.001s)")
        return 0
    fail(f"adb: unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
