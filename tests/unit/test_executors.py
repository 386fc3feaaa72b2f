"""The local runtime needs one host: refused under Airflow's distributed executors (pushbutton.executors)."""

from __future__ import annotations

import json

import pytest

from pushbutton.errors import SpecError
from pushbutton.executors import SINGLE_HOST_ENV, check_local_runtime, distributed_executors

CELERY = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"
KUBE = "airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("LocalExecutor", []),
        ("SequentialExecutor", []),
        ("CeleryExecutor", ["CeleryExecutor"]),
        ("KubernetesExecutor", ["KubernetesExecutor"]),
        (CELERY, [CELERY]),
        (f"LocalExecutor, fast:{KUBE}", [f"fast:{KUBE}"]),
        ("LocalExecutor,CeleryKubernetesExecutor", ["CeleryKubernetesExecutor"]),
        ("my.company.CeleryLikeRunner", []),
    ],
)
def test_distributed_executors_are_found_in_the_executor_list(setting: str, expected: list[str]) -> None:
    assert distributed_executors(setting) == expected


def test_the_refusal_names_the_setting_and_the_fix() -> None:
    with pytest.raises(SpecError) as refused:
        check_local_runtime(f"LocalExecutor,{CELERY}", {}, "pushbutton_seldon")
    text = str(refused.value)
    assert text.startswith("connection pushbutton_seldon: extra.runtime: runtime 'local' serves from ")
    assert f"[core] executor ('LocalExecutor,{CELERY}') runs tasks on other hosts ({CELERY})" in text
    assert "set extra.runtime of connection pushbutton_seldon to 'seldon-v1'" in text
    assert "AIRFLOW__CORE__EXECUTOR=LocalExecutor" in text and f"{SINGLE_HOST_ENV}=1" in text


@pytest.mark.parametrize(
    ("executor", "environ"),
    [
        ("LocalExecutor", {}),
        ("CeleryExecutor", {SINGLE_HOST_ENV: "1"}),
        ("KubernetesExecutor", {SINGLE_HOST_ENV: "yes"}),
    ],
)
def test_one_host_executors_and_the_opt_in_pass(executor: str, environ: dict[str, str]) -> None:
    check_local_runtime(executor, environ, "pushbutton_seldon")


def test_a_bad_opt_in_value_is_an_error_saying_how_to_fix_it() -> None:
    with pytest.raises(
        SpecError, match=rf"{SINGLE_HOST_ENV}: value 'sure' is not a boolean \(fix: set it to 1"
    ):
        check_local_runtime("CeleryExecutor", {SINGLE_HOST_ENV: "sure"}, "c")


def _local_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": 8000, "extra": {"runtime": "local"}}
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON", json.dumps(conn))


def test_seldon_hook_refuses_the_local_runtime_under_the_celery_executor(
    platform_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from operators.hooks import SeldonHook

    _local_connection(monkeypatch)
    monkeypatch.delenv(SINGLE_HOST_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    with pytest.raises(SpecError, match=r"connection pushbutton_seldon: extra\.runtime: runtime 'local' "):
        SeldonHook().get_conn()

    monkeypatch.setenv(SINGLE_HOST_ENV, "1")  # every worker on this host: the operator's call
    assert type(SeldonHook().get_conn()).__name__ == "LocalRuntime"


def test_seldon_hook_keeps_the_local_runtime_under_the_local_executor(
    platform_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from operators.hooks import SeldonHook

    _local_connection(monkeypatch)
    monkeypatch.delenv(SINGLE_HOST_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    assert type(SeldonHook().get_conn()).__name__ == "LocalRuntime"
