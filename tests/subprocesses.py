"""A child process run to completion in a process group of its own: on a timeout, or anything else
that interrupts the wait (pytest-timeout, Ctrl-C), the whole group is stopped, grandchildren too."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from pushbutton.procs import stop_group


def run_in_own_group(
    argv: Sequence[str],
    *,
    timeout: float,
    output: Path,
    env: Mapping[str, str] | None = None,
    grace: float = 20.0,
) -> int:
    """Run ``argv`` with stdout and stderr in ``output``; its exit code. Raises
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds, once its process group has stopped."""
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            list(argv), stdout=sink, stderr=subprocess.STDOUT, env=None if env is None else dict(env),
            start_new_session=True,
        )  # fmt: skip
        try:
            return proc.wait(timeout=timeout)
        except BaseException:
            stop_group(proc.pid, timeout=grace)  # SIGTERM, then SIGKILL after the grace time
            proc.poll()
            raise
