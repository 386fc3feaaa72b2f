"""``seldon-core-microservice`` bound to one host instead of every interface.

Runs inside the serving environment (no pushbutton there):
``python -m pushbutton_serve --bind-host HOST <seldon-core-microservice arguments>``.
seldon-core 1.18/1.19 hard-codes ``0.0.0.0`` for its REST, metrics and gRPC servers, which would
let anyone on the network call a model past the gateway; this launcher rewrites those addresses to
``HOST`` (the platform's host, loopback by default) and hands over to seldon's own ``main``.
Gunicorn's config hook and seldon's gRPC entry are touched for that.

Two more gunicorn settings are fixed here. The worker timeout: seldon sets 5 s, so a predict taking
longer had its worker killed while the gateway still waited for the answer; it becomes
``PUSHBUTTON_WORKER_TIMEOUT`` (the version's ``serving.timeout_seconds`` plus a margin, set by
pushbutton; ``DEFAULT_WORKER_TIMEOUT`` when unset). And the worker heartbeat: gunicorn 20.1 compares
its own clock (``time.time()``) with the file system's (a temp file's ``st_ctime``); when the process
clock is shifted (libfaketime, as the ``at-time`` tool runs a whole stack at another date) every worker
looked dead and was killed every second. The heartbeat then writes and reads one clock, as gunicorn 21
does: the worker stamps the file's mtime with ``time.time()``, the arbiter reads that stamp back.
"""

from __future__ import annotations

import os
import sys
import time

ALL_INTERFACES = "0.0.0.0"
WORKER_TIMEOUT_VARIABLE = "PUSHBUTTON_WORKER_TIMEOUT"
DEFAULT_WORKER_TIMEOUT = 660  # the longest serving.timeout_seconds (600) plus a margin
USAGE = "usage: python -m pushbutton_serve --bind-host HOST <seldon-core-microservice arguments>"


def rebind(address: str, host: str) -> str:
    """``0.0.0.0:PORT`` -> ``HOST:PORT`` (``[HOST]:PORT`` for IPv6); any other address unchanged."""
    bound, sep, port = address.rpartition(":")
    if not sep or bound != ALL_INTERFACES:
        return address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def install(host: str) -> None:
    """Make every server seldon starts in this process (and its forks) bind ``host``."""
    from gunicorn.app.base import BaseApplication
    from seldon_core import microservice

    load_config = BaseApplication.do_load_config

    def do_load_config(self) -> None:
        load_config(self)
        self.cfg.set("bind", [rebind(address, host) for address in self.cfg.bind])
        self.cfg.set("timeout", worker_timeout(os.environ))

    BaseApplication.do_load_config = do_load_config
    one_clock_heartbeat()

    run_grpc_server = microservice._run_grpc_server

    def _run_grpc_server(*args, **kwargs):
        if "bind_address" in kwargs:
            kwargs["bind_address"] = rebind(kwargs["bind_address"], host)
        else:
            args = (*args[:-1], rebind(args[-1], host))
        return run_grpc_server(*args, **kwargs)

    microservice._run_grpc_server = _run_grpc_server


def worker_timeout(environ: dict[str, str] | os._Environ) -> int:
    """Seconds a worker may spend on one request before gunicorn restarts it."""
    value = environ.get(WORKER_TIMEOUT_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_WORKER_TIMEOUT


def one_clock_heartbeat() -> None:
    """Make gunicorn's worker heartbeat compare ``time.time()`` with ``time.time()`` (see module doc)."""
    from gunicorn.workers.workertmp import WorkerTmp

    def notify(self) -> None:
        now = time.time()
        os.utime(self._tmp.fileno(), (now, now))

    def last_update(self) -> float:
        return os.fstat(self._tmp.fileno()).st_mtime

    WorkerTmp.notify = notify
    WorkerTmp.last_update = last_update


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "--bind-host" or not argv[1]:
        sys.exit(f"pushbutton_serve: {USAGE}")
    install(argv[1])
    from seldon_core import microservice

    sys.argv = ["seldon-core-microservice", *argv[2:]]
    microservice.main()


if __name__ == "__main__":
    main(sys.argv[1:])
