"""``seldon-core-microservice`` bound to one host instead of every interface.

Runs inside the serving environment (no pushbutton there):
``python -m pushbutton_serve --bind-host HOST <seldon-core-microservice arguments>``.
seldon-core 1.18/1.19 hard-codes ``0.0.0.0`` for its REST, metrics and gRPC servers, which would
let anyone on the network call a model past the gateway; this launcher rewrites those addresses to
``HOST`` (the platform's host, loopback by default) and hands over to seldon's own ``main``.
Gunicorn's config hook and seldon's gRPC entry are the only places touched.
"""

from __future__ import annotations

import sys

ALL_INTERFACES = "0.0.0.0"
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

    BaseApplication.do_load_config = do_load_config

    run_grpc_server = microservice._run_grpc_server

    def _run_grpc_server(*args, **kwargs):
        if "bind_address" in kwargs:
            kwargs["bind_address"] = rebind(kwargs["bind_address"], host)
        else:
            args = (*args[:-1], rebind(args[-1], host))
        return run_grpc_server(*args, **kwargs)

    microservice._run_grpc_server = _run_grpc_server


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "--bind-host" or not argv[1]:
        sys.exit(f"pushbutton_serve: {USAGE}")
    install(argv[1])
    from seldon_core import microservice

    sys.argv = ["seldon-core-microservice", *argv[2:]]
    microservice.main()


if __name__ == "__main__":
    main(sys.argv[1:])
