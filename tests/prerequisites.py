"""What some tests need from the machine (PostgreSQL, Python 3.12, Chromium, the compose schema).

Locally a missing prerequisite skips the tests that need it, saying how to install it. Under CI,
``PUSHBUTTON_TEST_REQUIRE_ALL=1`` (set by ``.ci/run``, which installs them all) turns that skip into a
failure: a CI run never passes with part of the suite silently left out.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ALL = "PUSHBUTTON_TEST_REQUIRE_ALL"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


def require_all(environ: dict[str, str] | None = None) -> bool:
    """Whether a missing prerequisite fails the run (``PUSHBUTTON_TEST_REQUIRE_ALL``)."""
    value = (os.environ if environ is None else environ).get(REQUIRE_ALL, "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise pytest.UsageError(
            f"environment variable {REQUIRE_ALL}={value!r} is invalid (fix: set it to 1 to fail on a "
            "missing prerequisite, or unset it to skip those tests)"
        )
    return value in _TRUE


def missing(what: str, fix: str) -> NoReturn:
    """Skip the calling test because ``what`` is not available, or fail it under ``REQUIRE_ALL``."""
    message = f"{what} not found (fix: {fix})"
    if require_all():
        pytest.fail(f"{message}; {REQUIRE_ALL} is set, so a missing prerequisite fails", pytrace=False)
    pytest.skip(message)


def redis_server() -> str:
    """Path of Debian's ``redis-server`` (the Celery broker of the distributed-executor test)."""
    import shutil

    found = shutil.which("redis-server")
    if found is None:
        missing(
            "Redis server (redis-server)",
            "install Debian's redis-server package (apt-get install redis-server; .ci/run does)",
        )
    return found
