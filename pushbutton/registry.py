"""MLflow Model Registry access: versions, aliases (never the deprecated stages), tags, artifacts.

Transport and MLflow errors are re-raised as ``NotFound`` / ``AlreadyExists`` / ``PushbuttonError``
``from`` the original. mlflow is imported lazily so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushbutton.errors import AlreadyExists, NotFound, PushbuttonError

CHAMPION, CANDIDATE, PREVIOUS = "champion", "candidate", "previous"
TAG = "pushbutton."  # prefix of every tag pushbutton writes
STATUS = TAG + "status"  # registered | failed | rejected | candidate | champion | retired
TESTS = TAG + "tests"  # passed | failed
REASON = TAG + "reason"
BUILD = TAG + "build_hash"
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
    from mlflow.exceptions import MlflowException, RestException

    try:
        yield
    except (MlflowException, RestException) as exc:
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower():
            raise NotFound(f"{what}: not found in the MLflow registry") from exc
        if code == "RESOURCE_ALREADY_EXISTS":
            raise AlreadyExists(f"{what}: already exists in the MLflow registry") from exc
        raise PushbuttonError(f"{what}: MLflow registry error: {exc}") from exc
    except OSError as exc:  # connection refused, DNS, timeouts surface as requests/urllib3 OSErrors
        raise PushbuttonError(f"{what}: MLflow is unreachable ({exc}); is `pushbutton up` running?") from exc


class Registry:
    """One MLflow tracking server's model registry."""

    def __init__(self, tracking_uri: str):
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def ping(self, timeout: float = 5.0) -> None:
        """Fail fast (instead of MLflow's minutes of retries) when the tracking server is down."""
        import httpx

        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        try:
            httpx.get(f"{self.tracking_uri}/health", timeout=timeout).raise_for_status()
        except httpx.HTTPError as exc:
            raise PushbuttonError(
                f"MLflow is unreachable at {self.tracking_uri} ({exc}); start it with `pushbutton up` "
                "or point PUSHBUTTON_MLFLOW_PORT at the running server"
            ) from exc

    def _version(self, mv: Any) -> Version:
        return Version(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            source=mv.source or "",
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", ()) or ()),
        )

    def get(self, name: str, version: str) -> Version:
        with _translate(f"model '{name}' version {version}"):
            return self._version(self.client.get_model_version(name, str(version)))

    def by_alias(self, name: str, alias: str) -> Version | None:
        """The version an alias points at, or None when the alias (or the model) does not exist."""
        try:
            with _translate(f"alias '{alias}' of model '{name}'"):
                return self._version(self.client.get_model_version_by_alias(name, alias))
        except NotFound:
            return None

    def versions(self, name: str) -> list[Version]:
        with _translate(f"versions of model '{name}'"):
            found = self.client.search_model_versions(f"name = '{name}'")
        return sorted((self._version(v) for v in found), key=lambda v: int(v.version))

    def exists(self, name: str) -> bool:
        try:
            with _translate(f"model '{name}'"):
                self.client.get_registered_model(name)
        except NotFound:
            return False
        return True

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with _translate(f"alias '{alias}' -> {name} v{version}"):
            self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with contextlib.suppress(NotFound), _translate(f"alias '{alias}' of model '{name}'"):
            self.client.delete_registered_model_alias(name, alias)

    def set_tags(self, name: str, version: str, tags: dict[str, Any]) -> None:
        with _translate(f"tags of {name} v{version}"):
            for key, value in tags.items():
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
                self.client.set_model_version_tag(name, str(version), key, text[:_TAG_LIMIT])

    def ensure_model(self, name: str, description: str, tags: dict[str, str]) -> None:
        if self.exists(name):
            return
        with contextlib.suppress(AlreadyExists), _translate(f"model '{name}'"):
            self.client.create_registered_model(name, tags=tags, description=description)

    def download(self, name: str, version: str, dest: Path) -> Path:
        """Materialise a version for serving: ``dest/model`` (MLflow model) and ``dest/code`` (model dir).

        Idempotent: a complete download (marker file) is reused; a partial one is replaced.
        """
        import mlflow.artifacts

        marker = dest / ".complete"
        if marker.exists():
            return dest
        mv = self.get(name, version)
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with _translate(f"artifacts of {name} v{version}"):
            model = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", tracking_uri=self.tracking_uri
            )
            shutil.copytree(model, staging / "model")
            mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path="code", dst_path=str(staging), tracking_uri=self.tracking_uri
            )
        (staging / ".complete").write_text(json.dumps({"name": name, "version": version}))
        shutil.rmtree(dest, ignore_errors=True)
        staging.replace(dest)
        return dest
