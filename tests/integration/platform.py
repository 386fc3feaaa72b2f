"""Helpers to run pushbutton against real local servers in integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pushbutton.config import Settings, settings
from pushbutton.procs import free_port

# what every test stack runs with: no time schedules, so a `*/30` monitor run or a weekly retrain
# never starts in the middle of a test (the DAGs still run when triggered)
TEST_STACK_ENV = {"PUSHBUTTON_SCHEDULES": "off"}


@contextmanager
def platform_settings(home: Path, **extra: str) -> Iterator[Settings]:
    """Point every ``PUSHBUTTON_*`` setting at ``home`` and free ports, for this process and its children."""
    env = {
        "PUSHBUTTON_HOME": str(home),
        "PUSHBUTTON_MLFLOW_PORT": str(free_port()),
        "PUSHBUTTON_AIRFLOW_PORT": str(free_port()),
        "PUSHBUTTON_GATEWAY_PORT": str(free_port()),
        "PUSHBUTTON_LOGGER_PORT": str(free_port()),
        **TEST_STACK_ENV,
        **extra,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings.cache_clear()
    try:
        yield settings()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        settings.cache_clear()


def model_copy(
    source: Path,
    target: Path,
    *,
    name: str,
    namespace: str | None = None,
    edits: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """A copy of the model directory ``source`` at ``target`` registered as ``name`` (and served in
    ``namespace``), with text ``edits`` to its model.yaml and extra or replaced ``files``: modules
    sharing one MLflow and gateway each get their own model line."""
    import re
    import shutil

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    spec = target / "model.yaml"
    text, named = re.subn(r"^name: .*$", f"name: {name}", spec.read_text(), count=1, flags=re.M)
    assert named == 1, f"{spec} has no top-level name"
    if namespace:
        text, moved = re.subn(r"^(  namespace:) .*$", rf"\1 {namespace}", text, count=1, flags=re.M)
        assert moved == 1, f"{spec} has no serving.namespace"
    for old, new in (edits or {}).items():
        assert old in text, f"{old!r} is not in {spec}"
        text = text.replace(old, new)
    spec.write_text(text)
    for relative, content in (files or {}).items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(content)
    return target
