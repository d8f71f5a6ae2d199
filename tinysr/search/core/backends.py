"""Where proxy evaluations run: in the driver's process, a local process pool, or a Ray cluster.

The driver keeps the study, the strategy and the weight store; a backend only turns jobs into
results with :func:`run_job`: any picklable object with ``evaluate(task, data, threads)``, e.g. a
generator job (:class:`~tinysr.search.generator.proxy.GeneratorJob`: a
:class:`~tinysr.search.generator.proxy.ProxyResult`) or a discriminator job
(:class:`~tinysr.search.discriminator.proxy.DiscriminatorJob`: a
:class:`~tinysr.search.discriminator.proxy.GanProxyResult`). Backends know no search problem. Every backend runs the same function with the
same thread count on the same data, so a search gives the same trials on any backend and with any
number of workers (evaluations are deterministic; the driver applies results in candidate order).

* ``inprocess`` (``workers: 0``): one evaluation at a time in the driver (tests, debugging,
  measuring the driver's overhead).
* ``local`` (default): a pool of ``workers`` spawned processes, each loading the proxy data once.
* ``ray``: ``workers`` Ray actors, each reserving ``threads`` CPUs. Without an ``address`` a local
  Ray instance is started (and stopped at the end); with one (``ray://host:10001`` or
  ``host:6379``) the actors run on that cluster. The driver puts the decoded proxy data in Ray's
  object store once, so the cluster's machines need tinysr installed but not the image files.
  An ``address`` is checked first (:func:`check_ray_address`: its port answers as a gRPC server
  within ``connect_timeout`` seconds), before a run folder is created: a wrong address fails in
  one line instead of Ray retrying its connection for minutes.

An evaluation that fails on its own (a diverging loss, a candidate that cannot be built) comes back
as a one-line error for that candidate; a backend that breaks (a worker process killed, a lost
Ray node) raises, and the search resumes from its checkpoint.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from typing import Iterator, Sequence

from tinysr.data.proxy import ProxyData, ProxyTask

Job = object  # an object with evaluate(task, data, threads)
Outcome = tuple  # ("ok", ProxyResult) or ("error", one-line message)

_WORKER: dict = {}


def run_job(job: Job, task: ProxyTask, data: ProxyData, threads: int) -> Outcome:
    """``job.evaluate(task, data, threads)``; an evaluation's own failure as ``("error", one line)``."""
    try:
        return "ok", job.evaluate(task, data, threads)
    except (ValueError, RuntimeError, FloatingPointError) as e:  # FloatingPointError: a diverging GAN
        return "error", f"{type(e).__name__}: {' '.join(str(e).split())}"


class InProcessBackend:
    """Evaluations one at a time in this process."""

    name = "inprocess"

    def __init__(self, task: ProxyTask, data: ProxyData, threads: int = 1):
        self.task, self.data, self.threads = task, data, threads

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def evaluate(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Outcome]]:
        for i, job in enumerate(jobs):
            yield i, run_job(job, self.task, self.data, self.threads)


def _pool_init(task_dict: dict, threads: int):
    import signal
    import warnings

    import torch

    # SIGINT (Ctrl-C in a terminal reaches the whole process group; the driver sends it too when it
    # stops) ends the worker's evaluation quietly: no KeyboardInterrupt traceback of its own
    signal.signal(signal.SIGINT, _stop_worker)
    torch.set_num_threads(threads)
    task = ProxyTask.from_dict(task_dict)
    with warnings.catch_warnings():  # the driver loaded the same files and already named the unusable ones
        warnings.simplefilter("ignore")
        data = ProxyData.load(task)
    _WORKER.update(task=task, data=data, threads=threads)


def _stop_worker(signum, frame):
    """SIGINT in a worker: end the evaluation it is running (if any) without a traceback; an idle
    worker (waiting for or unpacking a job, sending a result) ignores it and ends at the pool's shutdown."""
    if _WORKER.get("busy"):
        _WORKER["busy"] = False  # once: a second SIGINT must not interrupt the way out
        raise SystemExit(130)


def _pool_run(job: Job) -> Outcome:
    _WORKER["busy"] = True
    try:
        return run_job(job, _WORKER["task"], _WORKER["data"], _WORKER["threads"])
    finally:
        _WORKER["busy"] = False


class LocalBackend:
    """A pool of ``workers`` spawned processes (spawn: no torch/OpenMP state is forked)."""

    name = "local"

    def __init__(self, task: ProxyTask, workers: int = 2, threads: int = 1):
        self.task, self.workers, self.threads = task, int(workers), int(threads)
        self.pool: cf.ProcessPoolExecutor | None = None

    def __enter__(self):
        self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                                           initargs=(self.task.to_dict(), self.threads))
        return self

    def __exit__(self, *exc):
        pool, self.pool = self.pool, None
        if pool is None:
            return False
        if exc[0] is None:
            pool.shutdown(wait=True)
            return False
        # stopped (Ctrl-C, a crash): the evaluations in flight are not waited for (the resume redoes
        # them); each worker is told to stop now (SIGINT: see _pool_init), not after its evaluation
        import os
        import signal

        for w in list((getattr(pool, "_processes", None) or {}).values()):
            if w.is_alive():
                try:
                    os.kill(w.pid, signal.SIGINT)
                except OSError:  # gone meanwhile
                    pass
        pool.shutdown(wait=True, cancel_futures=True)
        return False

    def evaluate(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Outcome]]:
        futures = {self.pool.submit(_pool_run, job): i for i, job in enumerate(jobs)}
        try:
            for fut in cf.as_completed(futures):
                try:
                    outcome = fut.result()
                except cf.process.BrokenProcessPool:
                    raise RuntimeError("a search worker process died (killed or out of memory); "
                                       "resume the search with --resume") from None
                except SystemExit:
                    # a worker ended its evaluation on SIGINT (_stop_worker): Ctrl-C reached the whole process
                    # group, and the worker's result can arrive before the driver's own KeyboardInterrupt
                    raise KeyboardInterrupt from None
                yield futures[fut], outcome
        finally:
            for fut in futures:
                fut.cancel()


class _RayEvaluator:
    def __init__(self, task_dict: dict, data: ProxyData, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.task, self.data, self.threads = ProxyTask.from_dict(task_dict), data, threads

    def run(self, job: Job) -> Outcome:
        return run_job(job, self.task, self.data, self.threads)


#: HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, a Ray Client
#: server) answers with a SETTINGS frame of its own
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_ray_address(address: str, timeout: float = 20.0) -> None:
    """One-line ``ConnectionError`` unless the Ray cluster at ``address`` (``host:port`` of its GCS,
    or ``ray://host:port`` of a Ray Client server) answers as a gRPC server within ``timeout``
    seconds. Ray's own ``ray.init(address=...)`` retries a wrong address for minutes; this check
    fails at once when nothing listens there and within ``timeout`` when something else does.
    Other forms (``auto``) are left to Ray."""
    import socket
    import time

    text = address.strip()
    bare = text[len("ray://"):] if text.startswith("ray://") else text
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdigit():
        if text in ("auto", "local"):
            return
        raise ValueError(f"Ray address {address!r}: expected host:port (the head's GCS, e.g. 10.0.0.5:6379) or "
                         "ray://host:port (a Ray Client server)")
    host = host.strip("[]") or "127.0.0.1"
    where = f"Ray cluster at {address}"
    deadline = time.monotonic() + timeout
    head = b""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(_H2_PREFACE)
            while len(head) < 9:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except socket.timeout:
        raise ConnectionError(f"{where}: no answer within {timeout:g} s (connect_timeout; not a Ray head's GCS "
                              "port, or the network drops the connection)") from None
    except OSError as e:
        raise ConnectionError(f"{where}: cannot connect ({e.strerror or e}); is `ray start --head` running there, "
                              "and is the address its GCS port (default 6379)?") from None
    if len(head) < 9 or head[3] != 4:  # an HTTP/2 SETTINGS frame
        raise ConnectionError(f"{where}: the port does not answer as a Ray head's GCS (no gRPC server there)")


class RayBackend:
    """``workers`` Ray actors on a local instance (no ``address``) or on the cluster at ``address``."""

    name = "ray"

    def __init__(self, task: ProxyTask, data: ProxyData, workers: int = 2, threads: int = 1,
                 address: str | None = None, connect_timeout: float = 20.0):
        self.task, self.data, self.workers, self.threads, self.address = task, data, int(workers), int(threads), address
        self.connect_timeout = float(connect_timeout)
        self.actors: list = []
        self._started = False

    def __enter__(self):
        import logging

        import ray

        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            if self.address:
                check_ray_address(self.address, self.connect_timeout)
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.workers * self.threads, **kwargs)
            self._started = True
        data_ref = ray.put(self.data)
        actor = ray.remote(num_cpus=self.threads)(_RayEvaluator)
        self.actors = [actor.remote(self.task.to_dict(), data_ref, self.threads) for _ in range(self.workers)]
        return self

    def __exit__(self, *exc):
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self._started:
            ray.shutdown()
            self._started = False
        return False

    def evaluate(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Outcome]]:
        import ray

        queue = list(enumerate(jobs))
        idle = list(self.actors)
        running: dict = {}
        while queue or running:
            while queue and idle:
                i, job = queue.pop(0)
                actor = idle.pop(0)
                running[actor.run.remote(job)] = (i, actor)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                i, actor = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise RuntimeError(f"a Ray worker failed ({type(e).__name__}); resume the search with --resume") \
                        from None
                idle.append(actor)
                yield i, outcome


def make_backend(name: str, task: ProxyTask, data: ProxyData, workers: int, threads: int, address: str | None = None,
                 connect_timeout: float = 20.0):
    if name == "ray":
        return RayBackend(task, data, workers, threads, address, connect_timeout)
    if name != "local":
        raise ValueError(f"backend must be local or ray, not {name!r}")
    if workers == 0:
        return InProcessBackend(task, data, threads)
    return LocalBackend(task, workers, threads)
