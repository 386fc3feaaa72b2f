"""Helpers to run pushbutton against real local servers in integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pushbutton.config import Settings, settings
from pushbutton.procs import free_port


@contextmanager
def platform_settings(home: Path, **extra: str) -> Iterator[Settings]:
    """Point every ``PUSHBUTTON_*`` setting at ``home`` and free ports, for this process and its children."""
    env = {
        "PUSHBUTTON_HOME": str(home),
        "PUSHBUTTON_MLFLOW_PORT": str(free_port()),
        "PUSHBUTTON_AIRFLOW_PORT": str(free_port()),
        "PUSHBUTTON_GATEWAY_PORT": str(free_port()),
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
