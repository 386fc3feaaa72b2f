"""Child processes that outlive the command that started them: own process group, pid file,
readiness check, clean stop of the whole group.

A pid file records pid, process group, start time and argv; a stale or reused pid is recognised
by comparing the recorded start time with ``/proc/<pid>/stat``, so we never signal a stranger.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from pushbutton.errors import StackError

# every process of a platform home carries STACK_MARKER=<home>: `pushbutton down` finds strays by it
STACK_MARKER = "PUSHBUTTON_STACK_HOME"

# what the platform's own processes need and model code must not see: Airflow's connections,
# variables and configuration (database URL, fernet and JWT keys), the webhook secret, cloud keys
_SECRET_PREFIXES = ("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__", "_AIRFLOW_")
_SECRET_NAMES = {
    "AIRFLOW_HOME",  # leads to airflow.cfg (database URL, fernet and JWT keys)
    "AIRFLOW_CONFIG",
    "PUSHBUTTON_WEBHOOK_SECRET",
    "PUSHBUTTON_STORE_URL",  # may carry the platform database's password
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
}


def model_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for processes that run model code or install its requirements (serving
    microservices, model checks and tests, ``uv pip install``, the retrain DAG's training): this one without the platform's
    secrets and without Python path settings of the platform's interpreter. Models load their
    artifacts through the MLflow server (``--serve-artifacts``), so they need no storage keys."""
    source = os.environ if environ is None else environ
    return {
        k: v
        for k, v in source.items()
        if k not in _SECRET_NAMES
        and not k.startswith(_SECRET_PREFIXES)
        and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


@dataclass(frozen=True)
class ProcInfo:
    name: str
    pid: int
    pgid: int
    started: float  # process start time in clock ticks since boot (from /proc/<pid>/stat)
    argv: list[str]
    log: str
    boot: str = ""  # /proc/sys/kernel/random/boot_id when started: ids of another boot mean nothing

    def alive(self) -> bool:
        return self.boot in ("", _boot_id()) and _start_ticks(self.pid) == self.started

    def group_alive(self) -> bool:
        """Whether processes of our group outlive its leader (never true for a record of another boot)."""
        if self.boot != _boot_id():
            return False
        leader = _start_ticks(self.pgid)
        if leader is not None and leader != self.started:
            # Linux never hands out a pid still in use as a process group id: a live stranger
            # holding the leader's pid means our group is gone (and its pgid may be the stranger's)
            return False
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a group of another user's: not ours
            return False
        return True


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # zombie: exited, waiting to be reaped
        return None
    return float(fields[19])


def listens_in_group(pgid: int, port: int) -> bool | None:
    """Whether a process of group ``pgid`` holds a listening TCP socket on ``port`` (from ``/proc``;
    None where there is no ``/proc/net`` to tell)."""
    inodes: set[str] = set()
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not any(t.exists() for t in tables):
        return None
    for table in tables:
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()  # sl local_address rem_address st ... inode
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) != pgid:
                continue
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return True
        except (OSError, ValueError):
            continue
    return False


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_port(host: str, port: int, what: str, setting: str) -> None:
    if not port_free(host, port):
        raise StackError(
            f"port {port} on {host} is taken, so {what} cannot start; stop whatever listens there "
            f"(`ss -ltnp 'sport = :{port}'`) or choose another port with {setting}=<port>"
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ProcessGroup:
    """Named background processes whose pid files live in one run directory."""

    def __init__(self, run_dir: Path, log_dir: Path):
        self.run_dir = Path(run_dir)
        self.log_dir = Path(log_dir)

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ProcInfo:
        """Start ``argv`` in a new session (its own process group), output appended to ``<name>.log``."""
        existing = self.get(name)
        if existing is not None and existing.alive():
            raise StackError(f"{name} is already running (pid {existing.pid}); stop it first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        ticks = None
        for _ in range(100):  # /proc entry appears immediately on Linux; guard against races anyway
            ticks = _start_ticks(proc.pid)
            if ticks is not None:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        info = ProcInfo(name, proc.pid, proc.pid, ticks or -1.0, list(argv), str(log_path), _boot_id())
        tmp = self._pidfile(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info)))
        tmp.replace(self._pidfile(name))
        return info

    def get(self, name: str) -> ProcInfo | None:
        try:
            return ProcInfo(**json.loads(self._pidfile(name).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.run_dir.glob("*.json"))

    def stop(self, name: str, timeout: float = 20.0) -> bool:
        """SIGTERM the process group, SIGKILL what is left after ``timeout``; True if it was running."""
        info = self.get(name)
        if info is None:
            return False
        was_running = info.alive()
        if was_running or info.group_alive():
            with contextlib.suppress(PermissionError):
                stop_group(info.pgid, timeout)
        self._pidfile(name).unlink(missing_ok=True)
        return was_running

    def stop_all(self, timeout: float = 20.0) -> list[str]:
        return [name for name in self.names() if self.stop(name, timeout)]


def stop_group(pgid: int, timeout: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        _reap(-pgid)
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    _reap(-pgid)


def _reap(target: int) -> None:
    """Collect exited children of ours in ``target`` (a pid, or ``-pgid`` for a process group) so
    they do not linger as zombies — never another child, whose exit status its owner still awaits
    (e.g. ``subprocess.run`` in another thread)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(target, os.WNOHANG)[0]:
            pass


def tail(path: str | Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(
    info: ProcInfo,
    check: Callable[[], bool],
    timeout: float,
    what: str,
) -> None:
    """Poll ``check`` until it passes; fail early (with the log tail) if the process dies."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if check():
            return
        if not info.alive():
            raise StackError(f"{what} exited during start-up; last lines of {info.log}:\n{tail(info.log)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    raise StackError(
        f"{what} was not ready after {timeout:.0f}s; last lines of {info.log}:\n{tail(info.log)}"
    )


def http_ok(url: str, timeout: float = 2.0) -> Callable[[], bool]:
    """A readiness check: GET ``url`` answers 2xx."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=timeout).is_success
        except httpx.HTTPError:
            return False

    return check


# -- processes that left their group: found by an environment marker ------------------------


def _ancestors() -> set[int]:
    pids, pid = {os.getpid()}, os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError):
            break
        pids.add(pid)
    return pids


def processes_with_env(key: str, value: str) -> list[int]:
    """Pids (not ours, nor our ancestors') whose environment has ``key=value``."""
    needle, skip, found = f"{key}={value}".encode(), _ancestors(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return sorted(found)


def process_cmdline(pid: int) -> str:
    """The command line of ``pid`` (for error messages), ``?`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def kill_processes(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM ``pids``, SIGKILL what is left after ``timeout``; a reused pid is never signalled."""
    ticks = {pid: _start_ticks(pid) for pid in pids}
    live = {pid: t for pid, t in ticks.items() if t is not None}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, t in live.items():
            if _start_ticks(pid) == t:  # still the same process, never a reused pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in live:
                _reap(pid)
            live = {pid: t for pid, t in live.items() if _start_ticks(pid) == t}
            if not live:
                return
            time.sleep(0.1)
