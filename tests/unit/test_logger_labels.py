"""Late labels at the logger: ``POST /labels/{model}`` (JSON or CSV) writes through the store call
``pushbutton labels`` uses and answers its report, unknown request ids named; malformed bodies are 400
naming item, field and fix with nothing written; and a feedback event as the gateway sends it is stored
as labels of the request it names."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pushbutton.monitoring import records as R
from pushbutton.monitoring.logger import RequestLogger
from pushbutton.monitoring.store.sql import SqlStore
from pushbutton.monitoring.wire import encode
from pushbutton.serving.feedback import feedback_event, parse_feedback
from pushbutton.serving.routes import Route
from tests.unit.test_events import structured
from tests.unit.test_logger import WINDOW

BATCH = {"Content-Type": R.BATCH_CONTENT_TYPE}
LOGGED = [structured("request", event_id="e1"), structured("response", event_id="e2")]  # request r1, 2 rows


@pytest.fixture
def store(tmp_path: Path):
    with SqlStore(f"sqlite:///{tmp_path / 'monitoring.db'}") as found:
        found.ensure_model("iris", [("a", "double"), ("b", "double")], ("species", "long"))
        yield found


def run(service: RequestLogger, scenario: Callable[[TestClient], Awaitable[None]]) -> None:
    async def go() -> None:
        async with TestClient(TestServer(service.app())) as client:
            answer = await client.post("/", headers=BATCH, data=json.dumps(LOGGED))
            assert answer.status == 200, await answer.text()
            await scenario(client)

    asyncio.run(go())


def stored(store: SqlStore) -> list[tuple[str, int, object]]:
    frame = store.labels("iris", *WINDOW).sort_values(["request_id", "row"])
    return list(zip(frame["request_id"], frame["row"], frame["label"], strict=True))


def test_json_labels_are_written_and_answered_with_the_cli_report(store: SqlStore) -> None:
    service = RequestLogger(store, linger=0.0)
    body = {
        "labels": [{"request_id": "r1", "row": 0, "label": 1}, {"request_id": "r1", "row": 1, "label": 0}]
    }

    async def scenario(client: TestClient) -> None:
        answer = await client.post("/labels/iris", json=body)
        assert answer.status == 200, await answer.text()
        assert await answer.json() == {"model": "iris", "file": "POST /labels/iris", "labels": 2, "requests": 1,
                                       "matched": 1, "unknown": 0, "unknown_ids": [], "replaced": 0}  # fmt: skip

    run(service, scenario)
    assert stored(store) == [("r1", 0, 1), ("r1", 1, 0)]
    assert (service.counters.labels, service.counters.unknown_labels) == (2, 0)


def test_labels_for_unknown_request_ids_are_kept_and_named_in_the_answer(store: SqlStore) -> None:
    service = RequestLogger(store, linger=0.0)
    csv = "request_id,row,label\nr1,1,1\nghost-1,0,1\nghost-2,0,0\nr1,1,0\n"

    async def scenario(client: TestClient) -> None:
        answer = await client.post("/labels/iris", data=csv, headers={"Content-Type": "text/csv"})
        assert answer.status == 200, await answer.text()
        report = await answer.json()
        assert (report["labels"], report["matched"], report["unknown"], report["replaced"]) == (3, 1, 2, 1)
        assert report["unknown_ids"] == ["ghost-1", "ghost-2"]
        assert "2 request id(s) are not in iris's request log: ghost-1, ghost-2" in report["warning"]
        assert stored(store) == [("r1", 1, 0)]  # the last of a repeated (request id, row) counts
        # kept, not dropped: a ghost's label joins its request once that is logged (e.g. from a spool)
        late = [
            structured(kind, event_id=f"g{kind}", request_id="ghost-1") for kind in ("request", "response")
        ]
        assert (await client.post("/", headers=BATCH, data=json.dumps(late))).status == 200

    run(service, scenario)
    assert stored(store) == [("ghost-1", 0, 1), ("r1", 1, 0)]
    assert service.counters.unknown_labels == 2


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        ("{nope", "application/json", r"body: not JSON .*\(fix: send \{\"labels\""),
        ('[{"request_id": "r1", "label": 1}]', "application/json", r"body: must be an object with only 'labels'"),
        ('{"labels": []}', "application/json", r"labels: must be a non-empty list"),
        ('{"labels": [{"label": 1}]}', "application/json", r"labels\[0\]\.request_id: missing \(fix: the answer's"),
        ('{"labels": [{"request_id": "r1", "label": 1}, {"request_id": "r1", "row": -1, "label": 1}]}',
         "application/json", r"labels\[1\]\.row: -1 is not a whole number >= 0 \(fix"),
        ('{"labels": [{"request_id": "r1", "label": [1, 2]}]}', "application/json",
         r"labels\[0\]\.label: \[1, 2\] is not one value \(fix"),
        ('{"labels": [{"request_id": "r1", "label": 1, "lable": 2}]}', "application/json",
         r"labels\[0\]: unknown field\(s\) lable \(fix: only request_id, row, label\)"),
        ("request_id,labels\nr1,1\n", "text/csv", r"body:1: label: missing column\(s\).*did you mean 'labels'"),
        ("request_id,label\nr1,\n", "text/csv", r"body:2: label: missing \(fix"),
    ],
    ids=["not-json", "not-object", "empty", "no-id", "bad-row", "list-label", "unknown-field", "csv-column",
         "csv-empty-label"],
)  # fmt: skip
def test_malformed_labels_are_400_naming_item_field_and_fix_and_nothing_is_written(
    store: SqlStore, data: str, content_type: str, expected: str
) -> None:
    service = RequestLogger(store, linger=0.0)

    async def scenario(client: TestClient) -> None:
        answer = await client.post("/labels/iris", data=data, headers={"Content-Type": content_type})
        assert answer.status == 400
        assert re.search(expected, (await answer.json())["error"]), await answer.text()

    run(service, scenario)
    assert stored(store) == [] and service.counters.labels == 0


def test_labels_for_a_model_never_logged_are_404_and_other_types_415(store: SqlStore) -> None:
    service = RequestLogger(store, linger=0.0)
    body = {"labels": [{"request_id": "r1", "label": 1}]}

    async def scenario(client: TestClient) -> None:
        answer = await client.post("/labels/irsi", json=body)
        assert answer.status == 404
        assert "no request of model 'irsi' was ever logged" in (await answer.json())["error"]
        answer = await client.post("/labels/iris", data="r1 1", headers={"Content-Type": "text/plain"})
        assert answer.status == 415 and "text/csv" in (await answer.json())["error"]
        service.store_up = False  # the store went away: nothing is taken, the sender resends
        answer = await client.post("/labels/iris", json=body)
        assert answer.status == 503 and answer.headers["Retry-After"] == "1"

    run(service, scenario)
    assert stored(store) == []


def test_a_gateway_feedback_event_is_stored_as_labels_of_its_request(store: SqlStore) -> None:
    service = RequestLogger(store, linger=0.0)
    route = Route.from_config("models", "iris", {"backends": {"champion": {"url": "http://m:1", "version": "3"}},
                                                 "weights": {"champion": 100}})  # fmt: skip
    truth = {
        "response": {"meta": {"puid": "r1"}},
        "truth": {"data": {"tensor": {"shape": [2, 1], "values": [0, 1]}}},
    }
    event = encode(feedback_event(route, parse_feedback({}, json.dumps(truth).encode()), 1_740_000_000.0))

    async def scenario(client: TestClient) -> None:
        answer = await client.post("/", headers=event.headers, data=event.body)  # binary mode, as sent alone
        assert answer.status == 200, await answer.text()

    run(service, scenario)
    assert stored(store) == [("r1", 0, 0), ("r1", 1, 1)]
    assert (service.counters.labels, service.counters.unknown_labels) == (2, 0)
