"""The request logger's HTTP behaviour: pairing across deliveries, batches, 400/422/503 answers,
counters, and typed storage from the model's spec."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pushbutton.monitoring import records as R
from pushbutton.monitoring.logger import RequestLogger, spec_schemas
from pushbutton.monitoring.store import StoreError, StoreUnavailable
from pushbutton.monitoring.store.sql import SqlStore
from tests.unit.test_events import REQUEST, RESPONSE, seldon_headers, structured

WINDOW = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
BATCH = {"Content-Type": R.BATCH_CONTENT_TYPE}


def run(service: RequestLogger, scenario: Callable[[TestClient], Awaitable[None]]) -> None:
    async def go() -> None:
        async with TestClient(TestServer(service.app())) as client:
            await scenario(client)

    asyncio.run(go())


@pytest.fixture
def store(tmp_path: Path):
    with SqlStore(f"sqlite:///{tmp_path / 'monitoring.db'}") as found:
        found.ensure_model("iris", [("a", "double"), ("b", "double")], ("species", "long"))
        yield found


def test_binary_halves_in_separate_deliveries_pair_and_are_stored(store: SqlStore):
    service = RequestLogger(store, linger=0.0)

    async def scenario(client: TestClient) -> None:
        request = client.post("/", headers=seldon_headers("request", event_id="e1"), data=json.dumps(REQUEST))
        response = client.post(
            "/", headers=seldon_headers("response", event_id="e2"), data=json.dumps(RESPONSE)
        )
        answers = await asyncio.gather(request, response)
        assert [a.status for a in answers] == [200, 200]
        status = await (await client.get("/status")).json()
        assert status["received"] == 2 and status["rejected"] == 0 and status["store_up"]

    run(service, scenario)
    (stored,) = store.records("iris", *WINDOW)
    assert stored["complete"] and stored["version"] == "3" and stored["predictor"] == "champion"
    frame = store.rows("iris", *WINDOW).sort_values("row")
    assert frame["a"].tolist() == [1.0, 3.0] and frame["prediction"].tolist() == [0, 1]
    assert frame["proba_1"].tolist() == [0.1, 0.8]


def test_batch_duplicates_and_a_replay_are_stored_once(store: SqlStore):
    service = RequestLogger(store, linger=0.0)
    events = [structured("request", event_id="e1"), structured("response", event_id="e2")]

    async def scenario(client: TestClient) -> None:
        for _ in range(2):  # the second time: a replay from the emitter's spool
            answer = await client.post("/", headers=BATCH, data=json.dumps(events + events[:1]))
            assert answer.status == 200, await answer.text()
        status = await (await client.get("/status")).json()
        assert (status["received"], status["paired"], status["duplicates"]) == (6, 1, 4)

    run(service, scenario)
    assert store.counters("iris").records == 1
    assert len(store.rows("iris", *WINDOW)) == 2


def test_malformed_delivery_is_400_naming_the_problem(store: SqlStore):
    service = RequestLogger(store, linger=0.0)
    bad = [structured("request", event_id="e1"), {**structured("response", event_id="e2"), "type": "x.y"}]

    async def scenario(client: TestClient) -> None:
        answer = await client.post("/", headers=BATCH, data=json.dumps(bad))
        assert answer.status == 400
        assert "event 1: type 'x.y' is not a request-logger event" in (await answer.json())["error"]
        assert (await (await client.get("/status")).json())["rejected"] == 1

    run(service, scenario)
    assert store.counters("iris").records == 0  # a refused batch keeps nothing


class FlakyStore(SqlStore):
    """A real store whose writes fail while ``down`` is set (the database went away)."""

    down = False

    def write_records(self, records):
        if self.down:
            raise StoreUnavailable("cannot write: database is locked")
        return super().write_records(records)

    def ping(self) -> None:
        if self.down:
            raise StoreUnavailable("cannot reach the store")


def test_store_down_answers_503_and_the_retry_after_it_returns_is_stored(tmp_path: Path):
    store = FlakyStore(f"sqlite:///{tmp_path / 'm.db'}")
    store.ensure_model("iris", [("a", "double"), ("b", "double")], ("species", "long"))
    service = RequestLogger(store, linger=0.0, probe_interval=0.01)
    events = json.dumps([structured("request", event_id="e1"), structured("response", event_id="e2")])

    async def scenario(client: TestClient) -> None:
        store.down = True
        first = await client.post("/", headers=BATCH, data=events)
        assert first.status == 503 and first.headers["Retry-After"] == "1"
        assert "database is locked" in (await first.json())["error"]
        assert (await client.get("/health")).status == 503
        assert (await client.post("/", headers=BATCH, data=events)).status == 503  # refused at once
        store.down = False
        for _ in range(500):  # the prober sees the store back
            if (await (await client.get("/status")).json())["store_up"]:
                break
            await asyncio.sleep(0.01)
        again = await client.post("/", headers=BATCH, data=events)
        assert again.status == 200  # the same events: new again, not duplicates of the failed write
        assert (await client.get("/health")).status == 200

    run(service, scenario)
    (stored,) = store.records("iris", *WINDOW)
    assert stored["complete"]
    store.close()


class PickyStore(SqlStore):
    """Refuses (for good) any batch holding request ``poison``."""

    def write_records(self, records):
        if any(r.request_id == "poison" for r in records):
            raise StoreError("value too long for column")
        return super().write_records(records)


def test_events_the_store_refuses_for_good_are_422_and_the_rest_is_kept(tmp_path: Path):
    store = PickyStore(f"sqlite:///{tmp_path / 'm.db'}")
    service = RequestLogger(store, linger=0.05)
    good = [structured("request", event_id="e1"), structured("response", event_id="e2")]
    poison = [structured("request", event_id="e3", request_id="poison")]

    async def scenario(client: TestClient) -> None:
        answers = await asyncio.gather(
            client.post("/", headers=BATCH, data=json.dumps(good)),
            client.post("/", headers=BATCH, data=json.dumps(poison)),
        )
        assert answers[0].status == 200
        assert answers[1].status == 422
        assert "request poison: value too long" in (await answers[1].json())["error"]
        # the emitter resends it alone: refused again (not taken for a duplicate and acknowledged)
        assert (await client.post("/", headers=BATCH, data=json.dumps(poison))).status == 422

    run(service, scenario)
    assert [r["request_id"] for r in store.records("iris", *WINDOW)] == ["r1"]
    assert service.counters.failed == 2
    store.close()


def test_a_half_alone_is_stored_at_once_and_completed_when_its_partner_comes(store: SqlStore):
    service = RequestLogger(store, linger=0.0, pair_timeout=60.0)

    async def scenario(client: TestClient) -> None:
        first = await client.post("/", headers=BATCH, data=json.dumps([structured("request", event_id="e1")]))
        assert first.status == 200  # acknowledged only once stored
        (alone,) = store.records("iris", *WINDOW)
        assert not alone["complete"]
        second = await client.post(
            "/", headers=BATCH, data=json.dumps([structured("response", event_id="e2")])
        )
        assert second.status == 200

    run(service, scenario)
    (merged,) = store.records("iris", *WINDOW)
    assert merged["complete"] and merged["latency_ms"] == pytest.approx(250.0)


def test_feedback_events_become_labels_and_unknown_ids_are_counted(store: SqlStore):
    service = RequestLogger(store, linger=0.0)
    feedback = {**structured("request", event_id="f1", data={"truth": {"data": {"ndarray": [1, 0]}}})}
    feedback["type"] = R.CE_FEEDBACK
    stray = {**feedback, "id": "f2", "requestid": "never-logged"}
    pair = [structured("request", event_id="e1"), structured("response", event_id="e2")]

    async def scenario(client: TestClient) -> None:
        assert (await client.post("/", headers=BATCH, data=json.dumps(pair))).status == 200
        assert (await client.post("/", headers=BATCH, data=json.dumps([feedback, stray]))).status == 200

    run(service, scenario)
    assert (service.counters.labels, service.counters.unknown_labels) == (4, 1)
    labels = store.labels("iris", *WINDOW).sort_values("row")
    assert labels["label"].tolist() == [1, 0]


def test_a_model_without_a_stored_schema_gets_one_from_its_spec(tmp_path: Path):
    model_dir = tmp_path / "models" / "flowers"
    model_dir.mkdir(parents=True)
    spec = Path(__file__).parents[2] / "models" / "iris" / "model.yaml"
    (model_dir / "model.yaml").write_text(spec.read_text().replace("name: iris", "name: flowers", 1))
    store = SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    service = RequestLogger(store, linger=0.0, schemas=spec_schemas(tmp_path / "models"))
    request = structured("request", event_id="e1", inferenceservicename="flowers")
    request["data"] = {"data": {"names": ["petal_length_cm", "sepal_width_cm"], "ndarray": [[1.4, 3.5]]}}
    response = structured(
        "response", event_id="e2", inferenceservicename="flowers", data={"data": {"ndarray": [0]}}
    )

    async def scenario(client: TestClient) -> None:
        assert (await client.post("/", headers=BATCH, data=json.dumps([request, response]))).status == 200

    run(service, scenario)
    schema = store.schema("flowers")
    assert schema is not None and schema.feature_names[:2] == ["sepal_length_cm", "sepal_width_cm"]
    assert schema.prediction.type == "long"
    row = store.rows("flowers", *WINDOW).iloc[0]
    assert row["petal_length_cm"] == 1.4 and row["sepal_width_cm"] == 3.5 and row["prediction"] == 0
    store.close()
