"""Serving envs built the less common ways: on Python 3.12 (seldon-core 1.19.0) and with pip when
uv is unavailable. Each env must serve the platform-trained iris model, offline and over HTTP.

Python 3.12 comes from ``PUSHBUTTON_TEST_PYTHON312`` (``.ci/run`` sets it), else ``python3.12`` on
PATH; without one that test is skipped, or fails under ``PUSHBUTTON_TEST_REQUIRE_ALL``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pushbutton.config import Settings
from pushbutton.errors import ServingError
from pushbutton.serving import envs
from pushbutton.serving.checks import predict_http, predict_in_env
from pushbutton.serving.microservice import Microservices
from tests.integration.serving_fixtures import IrisBuild, listening_addresses
from tests.prerequisites import missing

pytestmark = pytest.mark.integration
PYTHON312 = "PUSHBUTTON_TEST_PYTHON312"


def python312() -> str:
    """The configured interpreter (which must be 3.12), else a working ``python3.12`` on PATH."""
    configured = os.environ.get(PYTHON312, "").strip()
    if configured:
        try:
            version = envs.python_version(configured)
        except ServingError as exc:
            pytest.fail(f"{PYTHON312}={configured!r} does not run: {exc}", pytrace=False)
        if version != "3.12":
            pytest.fail(f"{PYTHON312}={configured!r} is Python {version}, not 3.12", pytrace=False)
        return configured
    on_path = shutil.which("python3.12")
    if on_path:
        try:
            if envs.python_version(on_path) == "3.12":
                return on_path
        except ServingError:  # e.g. a pyenv shim while no 3.12 is selected
            pass
    return missing(
        "a Python 3.12 interpreter",
        f"set {PYTHON312} to one, e.g. $(pyenv prefix 3.12.1)/bin/python3.12 (.ci/run finds or installs it)",
    )


def installed(env: envs.ServingEnv) -> list[str]:
    code = "import importlib.metadata as m, sys; print(sys.version_info[1], m.version('seldon-core'))"
    return subprocess.run(
        [str(env.python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()


def assert_serves_iris(env: envs.ServingEnv, build: IrisBuild, home: Path) -> None:
    """The env predicts the golden rows like the platform did: in a one-off load and as a microservice."""
    class_ref = build.spec.predict.class_
    assert (
        predict_in_env(env, build.code_dir, class_ref, build.v1.model_uri, build.golden) == build.expected_v1
    )
    services = Microservices(Settings(home=home))
    try:
        svc = services.start(
            env,
            namespace="variants",
            model="iris",
            version="1",
            code_dir=build.code_dir,
            class_ref=class_ref,
            model_uri=build.v1.model_uri,
            timeout=120,
        )
        rows = build.golden.to_numpy().tolist()
        assert predict_http(svc.url, list(build.golden.columns), rows) == build.expected_v1
        assert listening_addresses(svc.http_port) == listening_addresses(svc.metrics_port) == {svc.host}
    finally:
        services.stop_all()
    assert services.list() == []


def test_python312_env_gets_seldon_1_19_and_serves(iris_build: IrisBuild, tmp_path: Path) -> None:
    requirements = envs.model_requirements(iris_build.code_dir, iris_build.v1.model_uri)
    env = envs.ensure_env(requirements, python=python312(), root=tmp_path / "envs")
    assert installed(env) == ["12", "1.19.0"]
    assert_serves_iris(env, iris_build, tmp_path / "home")


def test_pip_built_env_works_after_the_rename(
    iris_build: IrisBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(envs, "_uv", lambda: None)
    requirements = envs.model_requirements(iris_build.code_dir, iris_build.v1.model_uri)
    env = envs.ensure_env(requirements, root=tmp_path / "envs")
    assert env.created and not (env.path / "bin" / "uv").exists()
    minor, seldon = installed(env)
    assert f"seldon-core=={seldon}" in envs.base_requirements(f"3.{minor}")
    entry = env.bin("seldon-core-microservice").read_text().splitlines()[0]
    assert entry == f"#!{env.python}"  # pip wrote the build dir's path; it now names the final env
    assert ".build-" not in "".join(p.name for p in (tmp_path / "envs").iterdir())
    assert_serves_iris(env, iris_build, tmp_path / "home")
