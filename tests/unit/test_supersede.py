"""A newer version's queued CI/CD run supersedes an approval still waiting (issue 13 §2).

The database side (answering a parked request on the API server) runs against real Airflow in
``tests/e2e/test_supersede_e2e.py``; here: the rules, the approval task's check before it parks, the
discard step's history entry, and the plugin hooks that start the database side."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

import operators.lifecycle as ops
import plugins.pushbutton_plugin as plugin
from operators.supersede import newer_queued_version, superseded_event
from pushbutton import supersede as rules
from pushbutton.webhook import cicd_run_id


def test_a_run_knows_its_version_from_conf_or_its_automatic_id() -> None:
    assert rules.run_version("manual__2026-11-30", {"version": "7"}) == 7
    assert rules.run_version("registered__v12__ab12cd34", {"version": "latest"}) == 12
    assert rules.run_version("registered__v3", None) == 3
    assert rules.run_version("manual__2026-11-30", {"version": "latest"}) is None


def test_only_a_newer_version_supersedes_and_the_newest_wins() -> None:
    waiting = rules.Run("registered__v4__aa", 4)
    queued = [rules.Run("registered__v5__bb", 5), rules.Run("registered__v6__cc", 6), rules.Run("m", None)]
    assert rules.superseding(waiting, queued) == rules.Run("registered__v6__cc", 6)
    assert rules.superseding(waiting, [rules.Run("registered__v4__aa", 4), rules.Run("old", 3)]) is None
    assert rules.superseding(rules.Run("manual", None), queued) is None  # unknown version: never


def test_the_responder_names_the_newer_version_and_reads_back() -> None:
    user = rules.responder("9")
    assert rules.superseded_by(user) == "9"
    assert rules.superseded_by({"id": "admin", "name": "admin"}) is None
    assert rules.superseded_by(None) is None
    assert rules.reason("9", "ada@example.org") == "superseded by v9 (pushed by ada@example.org)"


@dataclass
class Version:
    version: str
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)


class Registry:
    def __init__(self, *versions: Version):
        self._versions = list(versions)

    def versions(self, model: str) -> list[Version]:
        return self._versions

    def get(self, model: str, version: str) -> Version:
        return next(v for v in self._versions if v.version == version)


def queued_counter(queued: set[str]):
    asked: list[dict] = []

    def dr_count(dag_id: str, run_ids: list[str], states: list[str]) -> int:
        asked.append({"dag_id": dag_id, "run_ids": run_ids, "states": states})
        return sum(1 for r in run_ids if r in queued) if states == ["queued"] else 0

    return dr_count, asked


def test_the_newest_queued_newer_version_is_found() -> None:
    registry = Registry(
        Version("3", "r3"),
        Version("4", "r4"),
        Version("5", "r5xxxxxxxx", {"pushbutton.run_id": "mlrun5abcdef"}),
    )
    dr_count, asked = queued_counter({cicd_run_id("5", "mlrun5abcdef")})
    assert newer_queued_version("iris", "3", "iris__cicd", registry, dr_count) == "5"
    assert asked[0]["run_ids"] == ["registered__v5__mlrun5ab"]  # newest first, by its automatic run id
    nothing, _ = queued_counter(set())
    assert newer_queued_version("iris", "3", "iris__cicd", registry, nothing) is None
    assert newer_queued_version("iris", "5", "iris__cicd", registry, dr_count) is None  # nothing newer
    assert newer_queued_version("iris", "", "iris__cicd", registry, dr_count) is None


class FakeTI:
    dag_id, run_id, task_id = "iris__cicd", "registered__v3__r3", "approve"

    def __init__(self, queued: set[str]):
        self.get_dr_count, self.asked = queued_counter(queued)
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get(key)


@pytest.fixture
def approval(monkeypatch: pytest.MonkeyPatch):
    """The release approval of iris v3 with v4 registered; asking a person is recorded, not done."""
    registry = Registry(Version("3", "r3"), Version("4", "r4", {"pushbutton.actor": "ada@example.org"}))
    monkeypatch.setattr(
        ops, "MlflowRegistryHook", lambda: type("Hook", (), {"get_conn": lambda self: registry})()
    )
    asked: list[str] = []
    monkeypatch.setattr(
        ops.ApprovalOperator, "execute", lambda self, context: asked.append("parked") or "parked"
    )
    op = ops.ReleaseApprovalOperator(
        task_id="approve", subject="Release iris v3?", params={"comment": None}, model="iris", version="3"
    )
    op.params["comment"] = None
    return op, registry, asked


def test_an_approval_with_a_newer_run_queued_is_superseded_without_asking(approval) -> None:
    op, _, asked = approval
    ti = FakeTI(queued={cicd_run_id("4", "r4")})
    result = op.execute({"ti": ti, "task": op})
    assert asked == []  # no Required Action was created
    assert result["chosen_options"] == ["Reject"]
    answer = ti.xcoms[ops.ANSWER_KEY]
    assert answer["responded_by_user"] == {
        "id": "pushbutton:superseded-by:4",
        "name": "pushbutton (superseded by v4)",
    }
    assert answer["params_input"] == {"comment": "superseded by v4"}
    assert ops.superseded_by(answer["responded_by_user"]) == "4"


def test_without_a_newer_queued_run_the_person_is_asked(approval) -> None:
    op, _, asked = approval
    assert op.execute({"ti": FakeTI(queued=set()), "task": op}) == "parked"
    assert asked == ["parked"]


def test_a_registry_outage_never_blocks_the_question(approval, monkeypatch) -> None:
    op, _, asked = approval

    class Down:
        def get_conn(self):
            raise ConnectionError("MLflow is down")

    monkeypatch.setattr(ops, "MlflowRegistryHook", Down)
    assert op.execute({"ti": FakeTI(queued={"x"}), "task": op}) == "parked"
    assert asked == ["parked"]


def test_discarding_a_superseded_candidate_records_who_pushed_the_newer_version(monkeypatch) -> None:
    registry = Registry(Version("3", "r3"), Version("4", "r4", {"pushbutton.actor": "ada@example.org"}))
    calls: list[dict] = []
    monkeypatch.setattr(ops, "platform", lambda: type("P", (), {"registry": registry})())
    monkeypatch.setattr(
        "pushbutton.lifecycle.reject",
        lambda p, name, version, actor, run_id, reason, **kw: (
            calls.append({"version": version, "actor": actor, "reason": reason, **kw})
            or {"rejected": version}
        ),
    )
    ti = FakeTI(queued=set())
    ti.xcom_push(ops.ANSWER_KEY, {"chosen_options": ["Reject"], **superseded_event("4")})
    op = ops.SeldonDiscardCandidateOperator(task_id="discard_candidate", model="iris", version="3")
    op.execute({"ti": ti, "run_id": "registered__v3__r3"})
    assert calls == [
        {
            "version": "3",
            "actor": "ada@example.org",
            "reason": "superseded by v4 (pushed by ada@example.org)",
            "action": "supersede",
            "detail": {"superseded_by": "4", "pushed_by": "ada@example.org"},
        }
    ]


def test_a_person_s_reject_is_still_a_plain_reject(monkeypatch) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(ops, "platform", lambda: None)
    monkeypatch.setattr(
        "pushbutton.lifecycle.reject",
        lambda p, name, version, actor, run_id, reason, **kw: calls.append(
            {"actor": actor, "reason": reason, **kw}
        ),
    )
    ti = FakeTI(queued=set())
    ti.xcom_push(
        ops.ANSWER_KEY,
        {
            "chosen_options": ["Reject"],
            "params_input": {"comment": "no"},
            "responded_by_user": {"id": "1", "name": "bo"},
        },
    )
    ops.SeldonDiscardCandidateOperator(task_id="d", model="iris", version="3").execute(
        {"ti": ti, "run_id": "r"}
    )
    assert calls == [{"actor": "bo", "reason": "rejected by bo: no"}]


async def _app(status: int, scope: dict, receive, send) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize(
    ("method", "path", "status", "started"),
    [
        ("POST", "/api/v2/dags/iris__cicd/dagRuns", 200, ["iris__cicd"]),  # the UI's or REST API's trigger
        ("POST", "/api/v2/dags/iris__cicd/dagRuns", 409, []),  # not created
        ("GET", "/api/v2/dags/iris__cicd/dagRuns", 200, []),
        ("POST", "/api/v2/dags/iris__retrain/dagRuns", 200, []),
    ],
)
def test_a_cicd_run_created_through_the_api_starts_the_supersede(method, path, status, started) -> None:
    import asyncio

    seen: list[str] = []
    middleware = plugin.SupersedeMiddleware(lambda *a: _app(status, *a), start=seen.append)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        return None

    asyncio.run(middleware({"type": "http", "method": method, "path": path}, receive, send))
    assert seen == started


def test_the_webhook_starts_the_supersede_for_a_new_and_a_known_run(monkeypatch) -> None:
    from tests.webhook_deliveries import created_body, signed_headers

    started: list[str] = []
    monkeypatch.setattr(plugin, "_secret", lambda: "s3cret")
    monkeypatch.setattr(plugin, "supersede_soon", started.append)
    monkeypatch.setattr(plugin, "_trigger", lambda name, version, run, delivery: (200, {
        "status": "triggered", "dag_id": f"{name}__cicd", "run_id": "registered__v5"}))  # fmt: skip
    body = created_body("iris", "5")
    with TestClient(plugin.app) as client:
        assert (
            client.post("/webhooks/mlflow", content=body, headers=signed_headers("s3cret", body)).status_code
            == 200
        )
    assert started == ["iris__cicd"]


def test_a_superseded_answer_is_a_valid_reject_event() -> None:
    event = superseded_event("4", now=datetime(2026, 11, 30, tzinfo=UTC))
    op = ops.ReleaseApprovalOperator(task_id="approve", subject="s", params={"comment": None})
    op.params["comment"] = None
    ti = FakeTI(queued=set())
    assert op.execute_complete({"ti": ti, "task": op}, event)["chosen_options"] == ["Reject"]
