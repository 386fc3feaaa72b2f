"""MLflow Model Registry access: versions, aliases (never the deprecated stages), tags, artifacts.

MLflow errors are re-raised as ``NotFound`` / ``AlreadyExists`` / ``PushbuttonError``; metadata
calls use MLflow's REST API directly, so importing and using this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pushbutton.errors import AlreadyExists, NotFound, PushbuttonError

CHAMPION, CANDIDATE, PREVIOUS = "champion", "candidate", "previous"
TAG = "pushbutton."  # prefix of every tag pushbutton writes
STATUS = TAG + "status"  # registered | failed | rejected | candidate | champion | retired
TESTS = TAG + "tests"  # passed | failed
REASON = TAG + "reason"
BUILD = TAG + "build_hash"
ACTOR = TAG + "actor"  # who pushed (git identity or OS user), or dag:<id> for a retrain
MLFLOW_RUN = TAG + "run_id"  # the MLflow run that trained the version (also in the webhook's tags)
CICD_RUN = TAG + "cicd_run_id"  # the CI/CD run that takes the version through the pipeline
TRAIN_RUN = TAG + "train_run_id"  # the Airflow run that trained the version (retrain DAG)
FAILED_STEP = TAG + "failed_step"  # the CI/CD step that set status "failed" (e.g. build), when not test
_TAG_LIMIT = 5000  # MLflow's limit for a tag value


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return self.tags.get(STATUS, "registered")

    @property
    def tests_passed(self) -> bool:
        return self.tags.get(TESTS) == "passed"


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """MLflow client errors (artifact downloads) as pushbutton errors."""
    from mlflow.exceptions import MlflowException, RestException

    try:
        yield
    except (MlflowException, RestException) as exc:
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower():
            raise NotFound(f"{what}: not found in the MLflow registry") from exc
        raise PushbuttonError(f"{what}: MLflow registry error: {exc}") from exc
    except OSError as exc:
        raise PushbuttonError(f"{what}: MLflow is unreachable ({exc}); is `pushbutton up` running?") from exc


PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # mlflow.environment_variables
_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_saved: str | None = None


@contextlib.contextmanager
def quiet_artifact_transfers() -> Iterator[None]:
    """MLflow's artifact progress bars off for the ``with`` block, and as they were afterwards.

    MLflow draws a tqdm bar on stderr for every download, which an Airflow task log records at error
    level. MLflow reads ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` when a transfer starts, so the
    variable is set only while pushbutton's own transfers run (reference-counted: concurrent
    downloads in threads of one task restore it once, after the last) and the user's own MLflow use
    before and after keeps its setting."""
    global _quiet_users, _quiet_saved
    with _quiet_lock:
        if _quiet_users == 0:
            _quiet_saved = os.environ.get(PROGRESS_BAR_VARIABLE)
            os.environ[PROGRESS_BAR_VARIABLE] = "false"
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                if _quiet_saved is None:
                    os.environ.pop(PROGRESS_BAR_VARIABLE, None)
                else:
                    os.environ[PROGRESS_BAR_VARIABLE] = _quiet_saved


class Registry:
    """One MLflow tracking server's model registry.

    Metadata goes over MLflow's REST API (``/api/2.0/mlflow``) with httpx: a lifecycle task then
    needs milliseconds, not the seconds ``import mlflow`` costs. Artifact downloads use mlflow.
    Credentials follow MLflow's own variables (``MLFLOW_TRACKING_TOKEN`` or ``_USERNAME``/``_PASSWORD``).
    """

    def __init__(self, tracking_uri: str, timeout: float = 30.0):
        self.tracking_uri = tracking_uri.rstrip("/")
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = (
            os.environ.get("MLFLOW_TRACKING_USERNAME"),
            os.environ.get("MLFLOW_TRACKING_PASSWORD"),
        )
        self.http = httpx.Client(
            base_url=f"{self.tracking_uri}/api/2.0/mlflow",
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            auth=(user, password) if user and password else None,
        )

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PushbuttonError(
                f"{what}: MLflow is unreachable at {self.tracking_uri} ({exc}); is `pushbutton up` running?"
            ) from exc
        if response.is_success:
            return response.json() if response.content else {}
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:300]}
        code, message = body.get("error_code", ""), body.get("message", response.reason_phrase)
        if response.status_code == 404 or code == "RESOURCE_DOES_NOT_EXIST" or "not found" in message.lower():
            raise NotFound(f"{what}: not found in the MLflow registry ({message})")
        if code == "RESOURCE_ALREADY_EXISTS":
            raise AlreadyExists(f"{what}: already exists in the MLflow registry")
        raise PushbuttonError(f"{what}: MLflow answered HTTP {response.status_code} {code}: {message}")

    def ping(self, timeout: float = 5.0) -> None:
        """Fail fast when the tracking server is down (instead of retrying for minutes)."""
        try:
            httpx.get(f"{self.tracking_uri}/health", timeout=timeout).raise_for_status()
        except httpx.HTTPError as exc:
            raise PushbuttonError(
                f"MLflow is unreachable at {self.tracking_uri} ({exc}); start it with `pushbutton up` "
                "or point PUSHBUTTON_MLFLOW_PORT at the running server"
            ) from exc

    @staticmethod
    def _version(mv: dict[str, Any]) -> Version:
        return Version(
            name=mv["name"],
            version=str(mv["version"]),
            run_id=mv.get("run_id", ""),
            source=mv.get("source", ""),
            tags={t["key"]: t.get("value", "") for t in mv.get("tags", [])},
            aliases=tuple(mv.get("aliases", [])),
        )

    def get(self, name: str, version: str) -> Version:
        what = f"model '{name}' version {version}"
        found = self._call("GET", "/model-versions/get", what, params={"name": name, "version": str(version)})
        return self._version(found["model_version"])

    def by_alias(self, name: str, alias: str) -> Version | None:
        """The version an alias points at, or None when the alias (or the model) does not exist."""
        try:
            found = self._call(
                "GET",
                "/registered-models/alias",
                f"alias '{alias}' of model '{name}'",
                params={"name": name, "alias": alias},
            )
        except NotFound:
            return None
        return self._version(found["model_version"])

    def versions(self, name: str) -> list[Version]:
        found: list[Version] = []
        params: dict[str, Any] = {"filter": f"name = '{name}'", "max_results": 1000}
        while True:
            page = self._call("GET", "/model-versions/search", f"versions of model '{name}'", params=params)
            found += [self._version(v) for v in page.get("model_versions", [])]
            if not page.get("next_page_token"):
                return sorted(found, key=lambda v: int(v.version))
            params["page_token"] = page["next_page_token"]

    def exists(self, name: str) -> bool:
        try:
            self._call("GET", "/registered-models/get", f"model '{name}'", params={"name": name})
        except NotFound:
            return False
        return True

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._call(
            "POST",
            "/registered-models/alias",
            f"alias '{alias}' -> {name} v{version}",
            json={"name": name, "alias": alias, "version": str(version)},
        )

    def delete_alias(self, name: str, alias: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(
                "DELETE",
                "/registered-models/alias",
                f"alias '{alias}' of model '{name}'",
                json={"name": name, "alias": alias},
            )

    def set_tags(self, name: str, version: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            self._call(
                "POST",
                "/model-versions/set-tag",
                f"tag {key} of {name} v{version}",
                json={"name": name, "version": str(version), "key": key, "value": text[:_TAG_LIMIT]},
            )

    def delete_tags(self, name: str, version: str, keys: list[str]) -> None:
        """Remove tags from a version; a tag that is not set is not an error."""
        for key in keys:
            with contextlib.suppress(NotFound):
                self._call(
                    "DELETE",
                    "/model-versions/delete-tag",
                    f"tag {key} of {name} v{version}",
                    json={"name": name, "version": str(version), "key": key},
                )

    def ensure_model(self, name: str, description: str, tags: dict[str, str]) -> None:
        if self.exists(name):
            return
        body = {
            "name": name,
            "description": description,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        with contextlib.suppress(AlreadyExists):
            self._call("POST", "/registered-models/create", f"model '{name}'", json=body)

    def download(self, name: str, version: str, dest: Path) -> Path:
        """Materialise a version for serving: ``dest/model`` (MLflow model) and ``dest/code`` (model dir).

        Idempotent: a complete download (marker file) is reused; a partial one is replaced.
        """
        marker = dest / ".complete"
        if marker.exists():
            return dest
        import tempfile

        import mlflow.artifacts

        from pushbutton.locks import file_lock

        dest.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(dest.with_name(dest.name + ".lock")):  # concurrent tasks: one downloads
            if marker.exists():
                return dest
            mv = self.get(name, version)
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
            (staging / "model").mkdir()
            try:
                with _translate(f"artifacts of {name} v{version}"), quiet_artifact_transfers():
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=f"models:/{name}/{version}",
                        dst_path=str(staging / "model"),
                        tracking_uri=self.tracking_uri,
                    )
                    mlflow.artifacts.download_artifacts(
                        run_id=mv.run_id,
                        artifact_path="code",
                        dst_path=str(staging),
                        tracking_uri=self.tracking_uri,
                    )
                (staging / ".complete").write_text(json.dumps({"name": name, "version": version}))
                shutil.rmtree(dest, ignore_errors=True)
                staging.replace(dest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return dest
