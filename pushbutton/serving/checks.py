"""Model checks run inside the serving environment: predictions on a frame, and the model's tests.

Both run the env's own interpreter (the platform cannot import the model's dependencies), so a
version that passes here loads and predicts exactly as its seldon-core microservice will.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton.errors import ServingError
from pushbutton.procs import model_env
from pushbutton.serving.envs import ServingEnv

if TYPE_CHECKING:
    import pandas as pd

RUNNER = Path(__file__).resolve().parent / "runtime" / "check_model.py"
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
