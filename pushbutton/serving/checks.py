"""Model checks run inside the serving environment: predictions on a frame, and the model's tests.

Both run the env's own interpreter (the platform cannot import the model's dependencies), so a
version that passes here loads and predicts exactly as its seldon-core microservice will. Against
a running microservice: predictions over HTTP, and request latency (``measure_latency``).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton.errors import ServingError
from pushbutton.gate.latency import Latency
from pushbutton.procs import model_env
from pushbutton.serving.envs import ServingEnv

if TYPE_CHECKING:
    import pandas as pd

RUNNER = Path(__file__).resolve().parent / "runtime" / "check_model.py"
# latency sampling: up to this many requests, or until the budget (seconds) is spent (one at least).
# 200 single-row requests give a p99 that is not just the slowest one; a few-ms model such as iris
# takes ~1 s for both kinds, a slow one is cut off by the budget after its first request.
SINGLE_REQUESTS, SINGLE_BUDGET = 200, 2.0
BATCH_REQUESTS, BATCH_BUDGET = 30, 1.0
# file -> section that makes it pytest's configuration ("" = the file alone does)
PYTEST_CONFIGS = {
    "pytest.ini": "",
    ".pytest.ini": "",
    "pyproject.toml": "[tool.pytest.ini_options]",
    "tox.ini": "[pytest]",
    "setup.cfg": "[tool:pytest]",
}


def _local(model_uri: str) -> str:
    """A relative local model path made absolute (the checks run with the code dir as cwd)."""
    return (
        str(Path(model_uri).resolve()) if "://" not in model_uri and Path(model_uri).exists() else model_uri
    )


def _env(model_uri: str) -> dict[str, str]:
    from pushbutton.config import settings

    env = model_env()
    env.setdefault("MLFLOW_TRACKING_URI", settings().mlflow_url)
    env["MODEL_URI"] = model_uri
    env["PYTHONNOUSERSITE"] = "1"
    return env


def predict_in_env(
    env: ServingEnv,
    code_dir: str | Path,
    class_ref: str,
    model_uri: str,
    frame: pd.DataFrame,
    *,
    timeout: float = 600.0,
) -> list[Any]:
    """``Class(model_uri=...).predict(frame.values, list(frame.columns))`` in ``env``, as a list.

    Raises ``ServingError`` naming the stage (``load`` or ``predict``) and the model's error.
    """
    code_dir, model_uri = Path(code_dir).resolve(), _local(model_uri)
    what = f"{class_ref} from {code_dir} (model_uri={model_uri}, env {env.key})"
    with tempfile.TemporaryDirectory(prefix="pushbutton-check-") as tmp:
        rows, out = Path(tmp) / "rows.csv", Path(tmp) / "out.json"
        frame.to_csv(rows, index=False)
        argv = [str(env.python), str(RUNNER), "--code-dir", str(code_dir), "--class-ref", class_ref,
                "--model-uri", model_uri, "--input", str(rows), "--output", str(out)]  # fmt: skip
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, env=_env(model_uri), cwd=code_dir, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise ServingError(f"{what} did not finish within {timeout:.0f}s; is predict() stuck?") from exc
        except OSError as exc:
            raise ServingError(f"cannot run {env.python} for {what}: {exc}; rebuild the env") from exc
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError):
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise ServingError(f"{what} crashed (exit {proc.returncode}) without a result:\n{tail}") from None
    if "error" in result:
        trace = "\n".join(result.get("traceback", "").splitlines()[-15:])
        raise ServingError(
            f"{what} failed at stage '{result.get('stage')}': {result['error']}\n{trace}".rstrip()
        )
    return result["predictions"]


def _has_pytest_config(code_dir: Path) -> bool:
    for name, section in PYTEST_CONFIGS.items():
        path = code_dir / name
        if path.is_file() and section in path.read_text(encoding="utf-8", errors="replace"):
            return True
    return False


def run_model_tests(
    env: ServingEnv,
    code_dir: str | Path,
    tests_path: str | Path,
    model_uri: str,
    *,
    timeout: float = 900.0,
) -> tuple[bool, str]:
    """``python -m pytest -q <tests>`` in ``env`` with cwd ``code_dir`` and ``MODEL_URI`` set.

    A code dir without its own pytest configuration gets an empty one, so the platform
    repository's settings (plugins, options) never leak into the model's tests.
    """
    code_dir, model_uri = Path(code_dir).resolve(), _local(model_uri)
    with tempfile.TemporaryDirectory(prefix="pushbutton-tests-") as tmp:
        argv = [str(env.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(code_dir)]
        if not _has_pytest_config(code_dir):
            ini = Path(tmp) / "pytest.ini"
            ini.write_text("[pytest]\n")
            argv += ["-c", str(ini)]
        argv.append(str(Path(tests_path).resolve()))
        try:
            proc = subprocess.run(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=_env(model_uri),
                cwd=code_dir,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            output = (
                exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            )
            return False, f"{output}\nmodel tests timed out after {timeout:.0f}s"
        except OSError as exc:
            raise ServingError(f"cannot run pytest with {env.python}: {exc}; rebuild the env") from exc
    return proc.returncode == 0, proc.stdout


def predict_http(url: str, names: list[str], rows: list[list[Any]], timeout: float = 60.0) -> list[Any]:
    """Predictions from a running seldon microservice (``POST /api/v1.0/predictions``)."""
    import httpx

    body = {"data": {"names": names, "ndarray": rows}}
    try:
        response = httpx.post(f"{url}/api/v1.0/predictions", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ServingError(f"{url} did not answer a prediction request: {exc}") from exc
    if response.status_code != 200:
        raise ServingError(f"predict at {url} failed with HTTP {response.status_code}: {response.text[:800]}")
    data = response.json().get("data") or {}
    values = data.get("ndarray", (data.get("tensor") or {}).get("values"))
    if values is None:
        raise ServingError(f"{url} answered without data.ndarray or data.tensor: {response.text[:300]}")
    return values


def _batches(rows: Sequence[list[Any]], size: int) -> list[list[list[Any]]]:
    """The holdout cut into requests of ``size`` rows (all of it when it has fewer; no ragged tail)."""
    rows = list(rows)
    if len(rows) <= size:
        return [rows]
    return [rows[i : i + size] for i in range(0, len(rows) - size + 1, size)]


def _timed(
    client: Any,
    url: str,
    names: list[str],
    requests: list[list[list[Any]]],
    count: int,
    budget: float,
    clock: Callable[[], float],
) -> tuple[list[float], int]:
    """Milliseconds per request, sending ``requests`` in turn (cycling) one at a time; stops after
    ``count`` requests, once ``budget`` seconds are spent, or at the first timeout (counted)."""
    import httpx

    samples: list[float] = []
    started = clock()
    for index in range(count):
        if index and clock() - started >= budget:
            break
        body = {"data": {"names": names, "ndarray": requests[index % len(requests)]}}
        before = clock()
        try:
            response = client.post(f"{url}/api/v1.0/predictions", json=body)
        except httpx.TimeoutException:
            samples.append(client.timeout.read * 1000)
            return samples, 1
        except httpx.HTTPError as exc:
            raise ServingError(f"{url} did not answer a latency request: {exc}") from exc
        samples.append((clock() - before) * 1000)
        if response.status_code != 200:
            raise ServingError(
                f"a latency request of {len(body['data']['ndarray'])} row(s) to {url} failed with HTTP "
                f"{response.status_code}: {response.text[:500]}"
            )
    return samples, 0


def measure_latency(
    url: str,
    names: list[str],
    rows: Sequence[list[Any]],
    *,
    batch_rows: int,
    timeout: float,
    single: tuple[int, float] = (SINGLE_REQUESTS, SINGLE_BUDGET),
    batch: tuple[int, float] = (BATCH_REQUESTS, BATCH_BUDGET),
    clock: Callable[[], float] = time.perf_counter,
) -> Latency:
    """Latency of a running seldon microservice over ``rows`` (the holdout): single-row requests,
    then ``batch_rows``-row requests, sequentially; ``single``/``batch`` are (requests, budget s).

    A request slower than ``timeout`` (the version's ``serving.timeout_seconds``) counts as timed
    out and ends that kind's sampling. Raises ``ServingError`` when a request fails.
    """
    import httpx

    if not rows:
        raise ServingError(f"no holdout rows to measure the latency of {url} with")
    batches = _batches(rows, batch_rows)
    with httpx.Client(timeout=timeout) as client:
        single_ms, single_timeouts = _timed(client, url, names, [[r] for r in rows], *single, clock)
        batch_ms, batch_timeouts = _timed(client, url, names, batches, *batch, clock)
    return Latency(
        tuple(single_ms), tuple(batch_ms), len(batches[0]), single_timeouts, batch_timeouts, timeout
    )
