"""Servers and builds the integration modules share, each made once per session:

* ``serving_envs`` — one serving-env root: every platform home of the tier links its ``envs`` there,
  so an env (keyed by requirements) is built once for the whole tier;
* ``iris_build`` — two trained iris versions and their serving env (``serving_fixtures.build_iris``);
* ``shared_stack`` — one MLflow tracking server and one gateway (``pushbutton up`` without Airflow),
  with no time schedules. Each module registers its own model name and serves in its own
  namespace (``platform.model_copy``), so modules never see each other's versions, aliases or routes.

Modules that start, stop or break a stack on purpose (test_stack, the S3 stand-in, test_serving's
gateway restarts and ``down``/``up``) keep a home of their own, linked to the same env root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pushbutton.config import Settings
from tests.integration.platform import platform_settings
from tests.integration.serving_fixtures import IrisBuild, Serving, build_iris, serving_home


def home_with_shared_envs(root: Path, serving_envs: Path) -> Path:
    """A fresh platform home under ``root`` whose serving envs are the tier's shared root."""
    home = root / "home"
    home.mkdir(parents=True)
    (home / "envs").symlink_to(serving_envs, target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def serving_envs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving-envs")


@pytest.fixture(scope="session")
def iris_build(tmp_path_factory: pytest.TempPathFactory, serving_envs: Path) -> IrisBuild:
    return build_iris(tmp_path_factory.mktemp("iris-build"), serving_envs)


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory, serving_envs: Path) -> Iterator[Settings]:
    """MLflow + gateway for the whole tier (settings in this process's environment while it runs)."""
    from pushbutton.stack import down, up

    home = home_with_shared_envs(tmp_path_factory.mktemp("shared-stack"), serving_envs)
    with platform_settings(home) as cfg:
        try:
            up(cfg, airflow=False)
            yield cfg
        finally:
            down(cfg)


@pytest.fixture(scope="module")
def serving(
    tmp_path_factory: pytest.TempPathFactory, serving_envs: Path, iris_build: IrisBuild
) -> Iterator[Serving]:
    """A gateway and a LocalRuntime on a home of their own (its tests restart the gateway and take the
    home down and up), sharing the env root with ``iris_build``."""
    with serving_home(home_with_shared_envs(tmp_path_factory.mktemp("serving"), serving_envs)) as result:
        yield result
