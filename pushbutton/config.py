"""Platform settings, read from ``PUSHBUTTON_*`` environment variables.

Everything the embedded stack writes (databases, artifacts, logs, pid files, serving
environments) lives under one home directory, ``PUSHBUTTON_HOME``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where things live and which ports they use. Override any field with ``PUSHBUTTON_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="PUSHBUTTON_", extra="forbid")

    home: Path = Field(default_factory=lambda: Path.home() / ".pushbutton")
    models_dir: Path = REPO_ROOT / "models"
    dags_dir: Path = REPO_ROOT / "dags"
    plugins_dir: Path = REPO_ROOT / "plugins"
    host: str = "127.0.0.1"
    mlflow_port: int = Field(5000, ge=1, le=65535)
    airflow_port: int = Field(8080, ge=1, le=65535)
    gateway_port: int = Field(8000, ge=1, le=65535)
    namespace: str = "models"
    serving_python: str = Field(default_factory=lambda: sys.executable)
    webhook_secret: SecretStr | None = None
    store_url: str | None = None
    artifacts_destination: str | None = None  # e.g. s3://bucket/mlflow (MinIO/S3); default: under home
    strict_specs: bool = False  # any broken spec fails DAG parsing of the factory itself (CI)

    @field_validator("home", "models_dir", "dags_dir", "plugins_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

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
    def store(self) -> str:
        """SQLAlchemy URL of the platform store (serving history, later indicators)."""
        return self.store_url or f"sqlite:///{self.home / 'pushbutton.db'}"

    def path(self, *parts: str) -> Path:
        """A path under the platform home (parent directories are created)."""
        target = self.home.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


@functools.cache
def settings() -> Settings:
    """Process-wide settings; tests call ``settings.cache_clear()`` after changing the environment."""
    return Settings()
