"""A small synchronous client of the gateway (admin API, status, predictions) and the command line
that starts one."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from pushbutton.errors import ServingError
from pushbutton.serving.routes import external_path


class GatewayClient:
    """Small synchronous client of the gateway (admin API and predictions)."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServingError(
                f"gateway at {self.base_url} is not reachable ({exc}); start the stack with `pushbutton up`"
            ) from exc

    def health(self) -> bool:
        try:
            return self._http.get("/health").is_success
        except httpx.HTTPError:
            return False

    def put_route(
        self,
        namespace: str,
        deployment: str,
        backends: Mapping[str, Mapping[str, Any]],
        weights: Mapping[str, int],
        shadows: Iterable[str] = (),
    ) -> dict[str, Any]:
        body = {"backends": dict(backends), "weights": dict(weights), "shadows": list(shadows)}
        resp = self._call("PUT", f"/admin/deployments/{namespace}/{deployment}", json=body)
        if resp.status_code != 200:
            raise ServingError(f"gateway refused route {namespace}/{deployment}: {resp.text}")
        return resp.json()

    def delete_route(self, namespace: str, deployment: str) -> bool:
        """True if a route was removed, False if there was none."""
        resp = self._call("DELETE", f"/admin/deployments/{namespace}/{deployment}")
        if resp.status_code not in (200, 404):
            raise ServingError(f"gateway could not delete route {namespace}/{deployment}: {resp.text}")
        return resp.status_code == 200

    def describe(self) -> dict[str, Any]:
        resp = self._call("GET", "/admin/deployments")
        if resp.status_code != 200:
            raise ServingError(f"gateway at {self.base_url} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def status(self) -> dict[str, Any]:
        """``GET /status``: route count and the request-log counters (``logging``: queued, sent,
        spooled, replayed, dropped by reason, spool_pending, logger_up …)."""
        resp = self._call("GET", "/status")
        if resp.status_code != 200:
            raise ServingError(f"gateway at {self.base_url} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def routes(self) -> dict[str, Any]:
        """``namespace/deployment`` -> route with per-backend health and counters."""
        return self.describe()["deployments"]

    def route(self, namespace: str, deployment: str) -> dict[str, Any] | None:
        return self.routes().get(f"{namespace}/{deployment}")

    def wait_drained(self, urls: Iterable[str], timeout: float = 30.0) -> bool:
        """Wait until no request is in flight to ``urls``; False on timeout."""
        urls = {u.rstrip("/") for u in urls}
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            backends = self.describe()["backends"]
            if all(backends.get(u, {}).get("inflight", 0) == 0 for u in urls):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def predict(self, namespace: str, deployment: str, payload: Any) -> httpx.Response:
        """POST ``payload`` (JSON-able, or ``bytes`` sent as is) to the deployment's external path."""
        path = external_path(namespace, deployment)
        if isinstance(payload, bytes):
            return self._call("POST", path, content=payload, headers={"Content-Type": "application/json"})
        return self._call("POST", path, json=payload)


def gateway_argv(
    host: str,
    port: int,
    state: str | Path,
    python: str | None = None,
    *,
    max_request_bytes: int | None = None,
    request_timeout: float | None = None,
    logger_url: str | None = None,
    spool_dir: str | Path | None = None,
) -> list[str]:
    """Command line that runs the gateway (for ``ProcessGroup.start``); limits left at None come
    from ``PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES`` and the defaults, the request logger from
    ``PUSHBUTTON_LOGGER_PORT`` (``logger_url=""`` turns request logging off) and the spool sits
    beside the state file unless ``spool_dir`` says otherwise."""
    argv = [python or sys.executable, "-m", "pushbutton.serving.gateway", "--host", host, "--port", str(port),
            "--state", str(state)]  # fmt: skip
    if max_request_bytes is not None:
        argv += ["--max-request-bytes", str(max_request_bytes)]
    if request_timeout is not None:
        argv += ["--request-timeout", str(request_timeout)]
    if logger_url is not None:
        argv += ["--logger-url", logger_url]
    if spool_dir is not None:
        argv += ["--spool-dir", str(spool_dir)]
    return argv
