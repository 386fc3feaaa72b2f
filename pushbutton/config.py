"""Platform settings, read from ``PUSHBUTTON_*`` environment variables.

Everything the embedded stack writes (databases, artifacts, logs, pid files, serving
environments) lives under one home directory, ``PUSHBUTTON_HOME``.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pushbutton.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HITL_SETTLE_SECONDS = 5.0
HITL_SETTLE_EXPECTED = "a number of seconds, 0 or more (0 turns the hold off), e.g. 5"


def hitl_settle_seconds(value: str | float) -> float:
    """``PUSHBUTTON_HITL_SETTLE_SECONDS`` as seconds; ``ValueError`` unless a finite number >= 0.

    The one parser of the value: the CLI's settings check and the plugin's middleware both use it."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError("not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("not a finite number of seconds, 0 or more")
    return seconds


class Settings(BaseSettings):
    """Where things live and which ports they use. Override any field with ``PUSHBUTTON_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="PUSHBUTTON_", extra="forbid")

    home: Path = Field(default_factory=lambda: Path.home() / ".pushbutton")
    models_dir: Path = REPO_ROOT / "models"
    dags_dir: Path = REPO_ROOT / "dags"  # the repository's DAG files (factory, promotions)
    # the generated per-model DAG stubs: default <home>/dags (see stub_root), never the source tree
    stubs_dir: Path | None = None
    plugins_dir: Path = REPO_ROOT / "plugins"
    host: str = "127.0.0.1"
    mlflow_port: int = Field(5000, ge=1, le=65535)
    airflow_port: int = Field(8080, ge=1, le=65535)
    gateway_port: int = Field(8000, ge=1, le=65535)
    logger_port: int = Field(8002, ge=1, le=65535)  # the request logger (monitoring)
    # logger processes sharing its port (pushbutton/monitoring/workers.py): more only helps many senders
    logger_workers: int = Field(1, ge=1, le=16)
    namespace: str = "models"
    serving_python: str = Field(default_factory=lambda: sys.executable)
    webhook_secret: SecretStr | None = None
    store_url: str | None = None
    # the monitoring store (request log, labels, indicators): a SQLAlchemy URL or elasticsearch+https://…;
    # default: a SQLite file <home>/monitoring.db
    monitoring_url: str | None = None
    artifacts_destination: str | None = None  # e.g. s3://bucket/mlflow (MinIO/S3); default: under home
    # `off`: the retrain and monitor DAGs get no time schedule (manual and asset triggers only), e.g.
    # for the demo and test stacks, where a tick must never start a run mid-way
    schedules: Literal["on", "off"] = "on"
    strict_specs: bool = False  # any broken spec fails DAG parsing of the factory itself (CI)
    # read by the plugin's HITL middleware on the Airflow API server; here so the CLI checks it
    hitl_settle_seconds: float = DEFAULT_HITL_SETTLE_SECONDS
    # how often an `auto` promotion policy looks at its canary (CanaryPolicySensor, reschedule mode)
    policy_poke_seconds: float = Field(60.0, ge=1.0, le=3600.0)
    # the gateway answers larger prediction requests 413 without reading them (10 MiB; 1 KiB..1 GiB)
    gateway_max_request_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=1024**3)

    @field_validator("home", "models_dir", "dags_dir", "plugins_dir", "stubs_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("host")
    @classmethod
    def _bare_host(cls, value: str) -> str:
        """Every URL is ``http://{host}:{port}`` and every server binds it: no scheme, port or IPv6."""
        if not value or any(c in value for c in ":/@ \t"):
            raise ValueError("not a bare host name or IPv4 address")
        return value

    @field_validator("hitl_settle_seconds", mode="before")
    @classmethod
    def _settle_seconds(cls, value: str | float) -> float:
        return hitl_settle_seconds(value)

    @property
    def stub_root(self) -> Path:
        """Where the per-model DAG stubs live: a DAG bundle of their own (``<stub_root>/models/``)."""
        return self.stubs_dir or self.home / "dags"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def logger_url(self) -> str:
        return f"http://{self.host}:{self.logger_port}"

    @property
    def monitoring(self) -> str:
        """URL of the monitoring store (``monitoring_url``, else the SQLite file ``<home>/monitoring.db``)."""
        return self.monitoring_url or f"sqlite:///{self.home / 'monitoring.db'}"

    @property
    def store(self) -> str:
        """SQLAlchemy URL of the platform store (serving history, later indicators)."""
        return self.store_url or f"sqlite:///{self.home / 'pushbutton.db'}"

    def path(self, *parts: str) -> Path:
        """A path under the platform home (parent directories are created)."""
        target = self.home.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


# read by the test suite and its fixtures (tests/), never by the platform
TEST_VARIABLES = {
    "PUSHBUTTON_TEST_PYTHON312",  # the Python 3.12 interpreter of the 3.12 serving-env test
    "PUSHBUTTON_TEST_REQUIRE_ALL",  # 1 (set by .ci/run): a missing prerequisite fails instead of skipping
    "PUSHBUTTON_TEST_SESSION",  # marks every process a test session starts (leftover guard)
    "PUSHBUTTON_SCHEMAS_DIR",  # the compose-spec schema for the compose-file test
    "PUSHBUTTON_CHROMIUM",  # the browser of the Airflow UI test
}
# read outside the settings: the stack's process marker, and the test suite's variables
OTHER_VARIABLES = {"PUSHBUTTON_STACK_HOME", *TEST_VARIABLES}


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``PUSHBUTTON_*`` variable nothing reads (a typo is otherwise silently ignored)."""
    known = {f"PUSHBUTTON_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    warnings = []
    for variable in sorted(environ if environ is not None else os.environ):
        if not variable.startswith("PUSHBUTTON_") or variable in known:
            continue
        suffixes = {name.removeprefix("PUSHBUTTON_"): name for name in sorted(known)}
        close = difflib.get_close_matches(variable.removeprefix("PUSHBUTTON_"), suffixes, n=1, cutoff=0.75)
        fix = (
            f"did you mean {suffixes[close[0]]}?"
            if close
            else f"known: {', '.join(sorted(known - OTHER_VARIABLES))}"
        )
        warnings.append(f"{variable} is not a pushbutton setting and is ignored ({fix})")
    return warnings


_EXPECTED = {int: "an integer", bool: "true or false", Path: "a path", str: "a string"}
_EXPECTED_FIELD = {
    "host": "a host name or IPv4 address, e.g. 127.0.0.1 (no scheme, no port, no IPv6 literal)",
    "hitl_settle_seconds": HITL_SETTLE_EXPECTED,
    "schedules": "on or off (off: retrain and monitor DAGs run only when triggered)",
}


@functools.cache
def settings() -> Settings:
    """Process-wide settings; tests call ``settings.cache_clear()`` after changing the environment.

    A bad ``PUSHBUTTON_*`` value is a ``ConfigError`` naming the variable and what it must hold."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError("; ".join(_problem(error) for error in exc.errors())) from None


def _problem(error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    variable = f"PUSHBUTTON_{field.upper()}"
    info = Settings.model_fields.get(field)
    annotation = info.annotation if info else None
    expected = _EXPECTED_FIELD.get(field) or next(
        (text for kind, text in _EXPECTED.items() if annotation is kind), "a valid value"
    )
    metadata = info.metadata if info else []
    low = next((m.ge for m in metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in metadata if hasattr(m, "le")), None)
    if annotation is int and low is not None and high is not None:
        expected = f"an integer from {low} to {high}"
    message = str(error["msg"])
    return (
        f"environment variable {variable}={error.get('input')!r} is invalid: {message[0].lower()}"
        f"{message[1:]} (fix: set it to {expected}, or unset it for the default)"
    )
