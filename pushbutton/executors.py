"""What still needs one host: the ``local`` serving runtime.

Its microservices run as processes on the machine of the task that starts them, its gateway routes to
them on that machine, and its serving envs (the venv cache) live in that machine's platform home. With
Airflow's distributed executors (CeleryExecutor, KubernetesExecutor, or an executor list naming one)
the CI/CD tasks of one run land on different workers, so a ``local`` runtime there would test a
version on one machine and serve it on another. That combination is refused before anything is
built or served; the Kubernetes runtimes (``seldon-v1``) need nothing of the worker's host.
"""

from __future__ import annotations

from collections.abc import Mapping

from pushbutton.errors import SpecError, SpecIssue

SINGLE_HOST_ENV = "PUSHBUTTON_WORKERS_ON_ONE_HOST"  # opt-in: every worker runs on this very host
DISTRIBUTED = ("CeleryExecutor", "KubernetesExecutor", "EdgeExecutor")  # also their hybrids by suffix
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


def distributed_executors(setting: str) -> list[str]:
    """The executors of ``[core] executor`` that run tasks on other hosts. The setting is a comma-separated
    list whose entries are a name (``CeleryExecutor``), a class path, or ``alias:class.path``."""
    found = []
    for entry in setting.split(","):
        entry = entry.strip()
        name = entry.rsplit(":", 1)[-1].rsplit(".", 1)[-1]  # alias:pkg.mod.Class → Class
        if name.endswith(DISTRIBUTED):  # CeleryKubernetesExecutor, LocalKubernetesExecutor too
            found.append(entry)
    return found


def single_host_opt_in(environ: Mapping[str, str]) -> bool:
    value = environ.get(SINGLE_HOST_ENV, "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise SpecError([SpecIssue(
            f"environment variable {SINGLE_HOST_ENV}", "", f"value {value!r} is not a boolean",
            "set it to 1 when every Airflow worker runs on this host, or unset it",
        )])  # fmt: skip
    return value in _TRUE


def check_local_runtime(executor: str, environ: Mapping[str, str], conn_id: str) -> None:
    """Refuse the ``local`` runtime under a distributed executor (``SpecError`` naming the setting and
    the fix), unless ``PUSHBUTTON_WORKERS_ON_ONE_HOST`` says all workers run on this host."""
    distributed = distributed_executors(executor)
    if not distributed or single_host_opt_in(environ):
        return
    raise SpecError([SpecIssue(
        f"connection {conn_id}",
        "extra.runtime",
        f"runtime 'local' serves from microservices and serving envs on the worker's own host, but Airflow's "
        f"[core] executor ({executor!r}) runs tasks on other hosts ({', '.join(distributed)}): a version "
        "would be tested on one worker and served from another",
        f"set extra.runtime of connection {conn_id} to 'seldon-v1' (serving on Kubernetes), or run Airflow "
        f"with the LocalExecutor (AIRFLOW__CORE__EXECUTOR=LocalExecutor); if every worker runs on this "
        f"host, set {SINGLE_HOST_ENV}=1",
    )])  # fmt: skip
