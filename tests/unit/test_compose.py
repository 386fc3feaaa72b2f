"""docker-compose.yaml is a valid Compose document (official compose-spec JSON schema).

This validates the document only: no Docker engine runs in this repository's CI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from pushbutton.config import REPO_ROOT
from tests.prerequisites import missing

SCHEMAS = Path(os.environ.get("PUSHBUTTON_SCHEMAS_DIR", REPO_ROOT.parent / "shared" / "schemas"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())


def test_compose_file_validates_against_the_compose_spec(compose: dict) -> None:
    schema_file = SCHEMAS / "compose" / "compose-spec.json"
    if not schema_file.exists():
        missing(f"the compose-spec schema {schema_file}", "set PUSHBUTTON_SCHEMAS_DIR to ../shared/schemas")
    jsonschema.validate(compose, json.loads(schema_file.read_text()))


def test_every_platform_service_reaches_its_systems_through_connections(compose: dict) -> None:
    services = compose["services"]
    assert {"postgres", "minio", "mlflow", "airflow-api", "airflow-scheduler", "gateway"} <= set(services)
    env = services["airflow-scheduler"]["environment"]
    for conn in (
        "AIRFLOW_CONN_PUSHBUTTON_MLFLOW",
        "AIRFLOW_CONN_PUSHBUTTON_SELDON",
        "AIRFLOW_CONN_PUSHBUTTON_STORE",
    ):
        assert conn in env


def test_no_secret_is_written_in_the_file() -> None:
    text = (REPO_ROOT / "docker-compose.yaml").read_text()
    for variable in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "PUSHBUTTON_WEBHOOK_SECRET"):
        assert f"${{{variable}" in text  # interpolated from the environment, not a literal value
