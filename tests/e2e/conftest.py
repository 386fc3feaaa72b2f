"""The one Airflow stack the e2e tests share: the README's demo (`make demo`), run to completion and
kept up (``demo``). Every e2e module that needs a running platform uses it (the tier's collection
order runs the tests that start a stack of their own first, so two Airflows never run at once).

Teardown runs on every path: a demo that fails or hangs past its timeout has its whole process group
stopped, and ``pushbutton down`` stops what it started either way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushbutton.config import REPO_ROOT, Settings
from tests.integration.platform import platform_settings
from tests.subprocesses import run_in_own_group

DEMO_TIMEOUT = 2400.0


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, dict[str, Any], str]]:
    """``(settings, report, output)`` of the demo, whose stack stays up for the checks; stopped after."""
    from pushbutton.stack import down, stack_processes

    root = tmp_path_factory.mktemp("demo")
    home, report, models, output = root / "home", root / "report.json", root / "models", root / "demo.log"
    shutil.copytree(REPO_ROOT / "models", models, ignore=shutil.ignore_patterns("__pycache__"))
    with platform_settings(home, PUSHBUTTON_MODELS_DIR=str(models)) as cfg:  # a test adds a model
        try:
            argv = [sys.executable, "-m", "pushbutton.demo", "--home", str(home), "--report", str(report),
                    "--keep-up"]  # fmt: skip
            try:
                code = run_in_own_group(argv, timeout=DEMO_TIMEOUT, output=output)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the demo did not finish within {DEMO_TIMEOUT:.0f}s:\n{tail(output)}")
            assert code == 0, f"the demo failed (exit code {code}):\n{tail(output)}"
            yield cfg, json.loads(report.read_text()), output.read_text()
        finally:
            down(cfg)
            assert stack_processes(cfg) == [], "pushbutton down left processes behind"


def tail(path: Path, characters: int = 6000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else "(no output)"
