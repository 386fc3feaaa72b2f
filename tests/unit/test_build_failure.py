"""A failed `build` says why on the version itself (status ``failed``, a one-line reason naming the
requirements file's line), never over a champion's, retired or rejected status; a later successful
build forgets it; a run that failed where no step said why leaves a reason too. MLflow is a fake."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import pushbutton.serving.envs as envs
from pushbutton import registry as reg
from pushbutton.config import REPO_ROOT, Settings
from pushbutton.errors import RequirementsError, ServingError
from pushbutton.lifecycle import Platform, build, withdraw

# uv 0.13.9's answer for a requirements.txt naming a package no index has (`uv pip install` against an
# index without it; tests/unit/test_requirements_errors.py runs uv for real)
UV_MISSING = (
    "error: No solution found when resolving dependencies\n"
    "  cause: Because nosuch-pkg was not found in the package registry and you require nosuch-pkg, we "
    "can conclude that your requirements are unsatisfiable.\n"
)


class FakeRegistry:
    def __init__(self, status: str = "registered", tags: dict[str, str] | None = None):
        self.tags: dict[str, str] = {reg.STATUS: status, **(tags or {})}
        self.aliases: dict[str, str] = {}

    def get(self, name: str, version: str) -> reg.Version:
        return reg.Version(name, version, "run", "src", dict(self.tags))

    def set_tags(self, name: str, version: str, tags: dict[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def delete_tags(self, name: str, version: str, keys: list[str]) -> None:
        for key in keys:
            self.tags.pop(key, None)

    def by_alias(self, name: str, alias: str) -> reg.Version | None:
        version = self.aliases.get(alias)
        return None if version is None else self.get(name, version)

    def download(self, name: str, version: str, dest: Path) -> Path:
        if (dest / "code").is_dir():  # downloaded before (Registry.download reuses a complete one)
            return dest
        shutil.copytree(
            REPO_ROOT / "models" / "iris", dest / "code", ignore=shutil.ignore_patterns("__pycache__")
        )
        (dest / "code" / "requirements.txt").write_text("# serving\nscikit-learn==1.6.1\nNosuch_Pkg>=1\n")
        (dest / "model").mkdir()
        return dest


class NoRuntime:
    def release(self, *args: object) -> bool:
        return False


def platform(tmp_path: Path, registry: FakeRegistry) -> Platform:
    return Platform(Settings(home=tmp_path / "home"), registry, NoRuntime(), history=None)  # type: ignore[arg-type]


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> list[Exception | None]:
    """What the serving environment's install does next: raise the queued error, or build."""
    outcomes: list[Exception | None] = []

    def ensure_env(requirements: list[str], *, python: str, root: Path) -> envs.ServingEnv:
        assert "Nosuch_Pkg>=1" in requirements
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return envs.ServingEnv("k" * 16, root / "k", root / "k" / "bin" / "python", created=True)

    monkeypatch.setattr(envs, "ensure_env", ensure_env)
    return outcomes


def test_a_missing_package_fails_the_build_and_the_version_says_where(tmp_path, install) -> None:
    registry = FakeRegistry()
    install.append(envs.install_failure(UV_MISSING, UV_MISSING))
    with pytest.raises(RequirementsError) as failure:
        build(platform(tmp_path, registry), "iris", "3", run_id="registered__v3__abcd1234")
    first = str(failure.value).splitlines()[0]
    assert first.startswith(
        "requirements.txt:3: package 'nosuch-pkg' does not exist on the package index (fix: "
    )
    assert registry.tags[reg.STATUS] == "failed" and registry.tags[reg.FAILED_STEP] == "build"
    assert registry.tags[reg.REASON] == f"build failed: {first}"
    assert registry.tags["pushbutton.dag_run_id"] == "registered__v3__abcd1234"


def test_a_transient_failure_is_recorded_then_forgotten_when_the_retry_builds(tmp_path, install) -> None:
    registry = FakeRegistry()
    install += [ServingError("uv pip install failed: Connection refused; may pass on a retry"), None]
    p = platform(tmp_path, registry)
    with pytest.raises(ServingError):
        build(p, "iris", "3", run_id="r")
    assert registry.tags[reg.STATUS] == "failed" and "Connection refused" in registry.tags[reg.REASON]
    build(p, "iris", "3", run_id="r")  # the task's retry
    assert registry.tags[reg.STATUS] == "registered"
    assert reg.REASON not in registry.tags and reg.FAILED_STEP not in registry.tags


def test_a_failed_test_verdict_is_not_forgotten_by_a_build(tmp_path, install) -> None:
    registry = FakeRegistry("failed", {reg.REASON: "accuracy 0.5 < min 0.9", reg.TESTS: "failed"})
    install.append(None)
    build(platform(tmp_path, registry), "iris", "3", run_id="r")
    assert (registry.tags[reg.STATUS], registry.tags[reg.REASON]) == ("failed", "accuracy 0.5 < min 0.9")


@pytest.mark.parametrize("status", ["champion", "retired", "rejected"])
def test_a_failed_rebuild_never_overwrites_a_past_candidates_status(tmp_path, install, status) -> None:
    registry = FakeRegistry(status, {reg.CICD_RUN: "r"})  # its own run, cleared and run again
    install.append(envs.install_failure(UV_MISSING, UV_MISSING))
    with pytest.raises(RequirementsError):
        build(platform(tmp_path, registry), "iris", "3", run_id="r")
    assert registry.tags[reg.STATUS] == status and reg.REASON not in registry.tags


def test_a_run_failing_where_no_step_said_why_leaves_its_reason(tmp_path) -> None:
    registry = FakeRegistry("registered", {reg.TESTS: "passed"})  # e.g. `register` failed
    reason = "CI/CD run r-9 failed before activation"
    assert (
        withdraw(platform(tmp_path, registry), "iris", "3", run_id="r-9", reason=reason) == "nothing to undo"
    )
    assert (registry.tags[reg.STATUS], registry.tags[reg.REASON]) == ("failed", reason)


def test_withdraw_keeps_the_reason_a_failed_step_recorded(tmp_path) -> None:
    registry = FakeRegistry("failed", {reg.REASON: "build failed: requirements.txt:3: …"})
    withdraw(platform(tmp_path, registry), "iris", "3", run_id="r-9", reason="CI/CD run r-9 failed")
    assert registry.tags[reg.REASON] == "build failed: requirements.txt:3: …"
