"""The request-log emitter: Seldon's CloudEvents as the logger's own parser reads them, and nothing lost
while the logger is away (memory queue, spool on disk, replay in order, idempotent by event id).

The worker is driven by hand (``pump``) with a fake clock; the fake logger parses every delivery with
``pushbutton.monitoring.events.parse_http``, so the wire format is checked against the receiving side.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest

from pushbutton.monitoring import records as R
from pushbutton.monitoring.emitter import Emitter, LoggerUnavailable
from pushbutton.monitoring.events import EventError, parse_http
from pushbutton.monitoring.spool import Spool
from pushbutton.monitoring.wire import Event, batch_body, encode

REQUEST = json.dumps({"data": {"names": ["a", "b"], "ndarray": [[1.0, 2.0]]}}).encode()
RESPONSE = json.dumps({"data": {"names": [], "ndarray": [0]}, "meta": {"puid": "p"}}).encode()


def exchange(puid: str, *, body: bytes = REQUEST, answer: bytes = RESPONSE) -> list[Event]:
    common = dict(
        request_id=puid, deployment="iris", namespace="models", endpoint="candidate", role="shadow",
        version="7", model_id="iris-v7", source="http://127.0.0.1:9001",
    )  # fmt: skip
    return [
        Event(R.CE_REQUEST, time=1_700_000_000.25, body=body, **common),
        Event(R.CE_RESPONSE, time=1_700_000_000.5, body=answer, status=200, latency_ms=250.0, **common),
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLogger:
    """Answers like the logger: parses each delivery (400 if malformed), keeps events by id."""

    def __init__(self) -> None:
        self.up = True
        self.answer = 200  # while up: the status it answers (e.g. 503: its store is down)
        self.refuse: set[str] = set()  # request ids it answers 400 for (a batch: all-or-nothing)
        self.deliveries: list[tuple[str, int]] = []  # (content type, events)
        self.received: list[str] = []  # event ids in arrival order (duplicates kept)
        self.halves: dict[str, object] = {}

    def __call__(self, body: bytes, headers: dict[str, str]) -> int:
        if not self.up:
            raise LoggerUnavailable("ConnectError: connection refused")
        try:
            halves = parse_http(headers, body)
        except EventError:
            return 400
        if any(h.request_id in self.refuse for h in halves):
            return 400
        if self.answer != 200:
            return self.answer
        self.deliveries.append((headers["Content-Type"], len(halves)))
        for half in halves:
            self.received.append(half.event_id)
            self.halves[half.event_id] = half
        return 200

    def request_ids(self) -> list[str]:
        """Request ids in arrival order, one per stored request half."""
        return [h.request_id for e, h in self.halves.items() if h.kind == "request"]


def make(
    tmp_path: Path, logger: FakeLogger, clock: Clock | None = None, max_bytes: int = 1024**3, **kw: object
) -> Emitter:
    clock = clock or Clock()
    spool = Spool(tmp_path / "spool", clock=clock, max_bytes=max_bytes)
    return Emitter(logger, spool, url="http://logger", linger=0, clock=clock, **kw)


def test_one_event_goes_in_seldons_binary_mode() -> None:
    event = exchange("req-1")[1]
    encoded = encode(event, "ev-1")
    assert encoded.headers == {
        "Ce-Specversion": "1.0",
        "Ce-Id": "ev-1",
        "Ce-Type": "io.seldon.serving.inference.response",
        "Ce-Source": "http://127.0.0.1:9001",
        "Ce-Time": "2023-11-14T22:13:20.500000Z",
        "Ce-Requestid": "req-1",
        "Ce-Modelid": "iris-v7",
        "Ce-Inferenceservicename": "iris",
        "Ce-Namespace": "models",
        "Ce-Endpoint": "candidate",
        "Ce-Protocol": "seldon",
        "Ce-Pushbuttonversion": "7",
        "Ce-Pushbuttonrole": "shadow",
        "Ce-Pushbuttonstatus": "200",
        "Ce-Pushbuttonlatencyms": "250.000",
        "Content-Type": "application/json",
    }
    assert encoded.body == RESPONSE  # the body as answered
    (half,) = parse_http(encoded.headers, encoded.body)
    assert (half.kind, half.event_id, half.request_id, half.model, half.predictor, half.version) == (
        "response", "ev-1", "req-1", "iris", "shadow", "7",
    )  # fmt: skip
    assert (half.status, half.latency_ms, half.body) == (200, 250.0, json.loads(RESPONSE))


def test_several_events_go_as_one_batch_the_logger_reads() -> None:
    pretty = json.dumps(json.loads(REQUEST), indent=2).encode()  # newlines inside the body
    events = exchange("req-2", body=pretty) + exchange("req-3", body=b"not json at all")
    lines = [encode(e).line for e in events]
    assert all(line.count(b"\n") == 1 and line.endswith(b"\n") for line in lines)
    halves = parse_http({"Content-Type": R.BATCH_CONTENT_TYPE}, batch_body(lines))
    assert [(h.kind, h.request_id) for h in halves] == [
        ("request", "req-2"), ("response", "req-2"), ("request", "req-3"), ("response", "req-3"),
    ]  # fmt: skip
    assert halves[0].body == json.loads(REQUEST)  # the same message, whatever its whitespace
    # a body the logger could not parse (a client's garbage) still makes an event it accepts
    assert halves[2].body == {"strData": "not json at all"}
    assert len({h.event_id for h in halves}) == 4


def test_a_single_exchange_is_binary_and_many_are_batched(tmp_path: Path) -> None:
    logger = FakeLogger()
    emitter = make(tmp_path, logger, batch_size=100)
    emitter.emit(exchange("a")[:1])
    emitter.pump()
    for i in range(10):
        emitter.emit(exchange(f"b{i}"))
    emitter.pump()
    assert logger.deliveries == [("application/json", 1), (R.BATCH_CONTENT_TYPE, 20)]
    assert emitter.status()["sent"] == 21 and emitter.status()["spooled"] == 0


def test_a_logger_outage_spools_and_replays_everything_in_order_once(tmp_path: Path) -> None:
    logger, clock = FakeLogger(), Clock()
    emitter = make(tmp_path, logger, clock, batch_size=7)
    emitter.emit(exchange("before"))
    emitter.pump()
    logger.up = False
    order = ["before"]
    for i in range(40):
        assert emitter.emit(exchange(f"down-{i}")) is True  # the request path never sees the outage
        order.append(f"down-{i}")
        emitter.pump()
    status = emitter.status()
    assert status["logger_up"] is False and status["spooled"] == 80 and status["spool_pending"] == 80
    assert "connection refused" in status["last_error"]
    logger.up = True
    emitter.emit(exchange("after-1"))  # arrives while the spool is not empty: goes behind it
    order.append("after-1")
    emitter.pump()  # the retry is not due yet: spooled, nothing sent
    assert logger.request_ids() == ["before"]
    clock.now += 0.25  # the retry is due: the spool first, then what came since
    emitter.emit(exchange("after-2"))
    order.append("after-2")
    while emitter.status()["spool_pending"] or emitter.status()["in_memory"]:
        emitter.pump()
    emitter.emit(exchange("after-3"))
    order.append("after-3")
    emitter.pump()
    assert logger.request_ids() == order  # in order, none lost
    assert not [i for i, n in Counter(logger.received).items() if n > 1]  # none twice
    status = emitter.status()
    assert (status["replayed"], status["spool_pending"], status["dropped_total"]) == (84, 0, 0)
    assert status["sent"] == 4 and status["logger_up"] is True  # "before" and "after-3" went directly
    assert not list((tmp_path / "spool").glob("*.spool"))  # delivered segments are deleted


@pytest.mark.parametrize("answer", [503, 500, 429, 408])
def test_a_logger_whose_store_is_down_is_retried_not_dropped(tmp_path: Path, answer: int) -> None:
    logger, clock = FakeLogger(), Clock()
    emitter = make(tmp_path, logger, clock)
    logger.answer = answer
    emitter.emit(exchange("x"))
    emitter.pump()
    assert emitter.status()["spool_pending"] == 2 and emitter.status()["dropped_total"] == 0
    logger.answer = 200
    clock.now += 1
    emitter.pump()
    assert logger.request_ids() == ["x"] and emitter.status()["replayed"] == 2


def test_a_replay_whose_answer_was_lost_resends_the_same_event_ids(tmp_path: Path) -> None:
    logger, clock = FakeLogger(), Clock()
    emitter = make(tmp_path, logger, clock)
    logger.up = False
    emitter.emit(exchange("x"))
    emitter.pump()
    stored = FakeLogger()

    def stores_then_drops_the_connection(body: bytes, headers: dict[str, str]) -> int:
        stored(body, headers)
        raise LoggerUnavailable("RemoteProtocolError: connection reset before the answer")

    emitter.transport = stores_then_drops_the_connection
    clock.now += 1
    emitter.pump()
    emitter.transport = stored
    clock.now += 10
    emitter.pump()
    assert len(stored.received) == 4 and len(set(stored.received)) == 2  # each id twice: the logger dedups
    assert emitter.status()["replayed"] == 2 and emitter.spool.empty


def test_a_restarted_emitter_replays_what_the_last_one_spooled(tmp_path: Path) -> None:
    logger = FakeLogger()
    logger.up = False
    first = make(tmp_path, logger)
    for i in range(5):
        first.emit(exchange(f"r{i}"))
    first.pump()
    first.emit(exchange("in-memory-at-stop"))
    first.close()  # a clean stop: what is in memory goes to the spool too
    spooled_ids = [json.loads(line)["id"] for f in sorted((tmp_path / "spool").glob("*.spool"))
                   for line in f.read_bytes().splitlines()]  # fmt: skip
    assert len(spooled_ids) == 12
    logger.up = True
    second = make(tmp_path, logger)
    assert second.status()["spool_pending"] == 12
    second.pump()
    assert logger.received == spooled_ids  # the same events, ids fixed before they were spooled
    second.close()
    third = make(tmp_path, logger)
    third.pump()
    assert logger.received == spooled_ids and third.status()["spool_pending"] == 0  # acked: never again


def test_drops_are_counted_by_reason(tmp_path: Path) -> None:
    logger = FakeLogger()
    emitter = make(tmp_path, logger, max_event_bytes=1000, max_queue_events=4, max_bytes=3000)
    assert emitter.emit(exchange("big", body=b'{"data": "' + b"x" * 2000 + b'"}')) is False
    assert emitter.emit(exchange("q1")) and emitter.emit(exchange("q2"))
    assert emitter.emit(exchange("q3")) is False  # the memory queue holds 4 events
    logger.up = False
    emitter.pump()
    for i in range(20):
        emitter.emit(exchange(f"s{i}"))
        emitter.pump()
    dropped = emitter.status()["dropped"]
    assert dropped["oversize"] == 2 and dropped["queue_full"] == 2
    assert dropped["spool_full"] > 0  # the spool's 3000 bytes hold a few exchanges, not 22
    assert emitter.status()["spool_bytes"] <= 3000
    assert emitter.status()["spooled"] + dropped["spool_full"] == 44
    assert emitter.status()["dropped_total"] == sum(dropped.values())


def test_an_event_the_logger_refuses_is_dropped_alone(tmp_path: Path) -> None:
    logger = FakeLogger()
    logger.refuse.add("bad")
    emitter = make(tmp_path, logger)
    for puid in ("ok-1", "bad", "ok-2"):
        emitter.emit(exchange(puid))
    emitter.pump()
    assert logger.request_ids() == ["ok-1", "ok-2"]
    status = emitter.status()
    assert status["dropped"]["rejected"] == 2 and status["sent"] == 4
    assert "refused an event with 400" in status["last_error"]


def test_a_spool_the_disk_refuses_is_counted(tmp_path: Path) -> None:
    class FullDisk(Spool):
        def append(self, lines: object) -> int:
            raise OSError(28, "No space left on device")

    logger = FakeLogger()
    logger.up = False
    emitter = Emitter(logger, FullDisk(tmp_path / "spool"), linger=0)
    emitter.emit(exchange("x"))
    emitter.pump()
    assert emitter.status()["dropped"]["spool_error"] == 2


def test_emit_never_waits_for_a_stuck_logger(tmp_path: Path) -> None:
    release, entered = threading.Event(), threading.Event()

    def stuck(body: bytes, headers: dict[str, str]) -> int:
        entered.set()
        release.wait(30)
        return 200

    emitter = Emitter(stuck, Spool(tmp_path / "spool"), linger=0)
    emitter.start()
    try:
        emitter.emit(exchange("first"))
        assert entered.wait(10)  # the worker is inside the logger call
        accepted = [emitter.emit(exchange(str(uuid.uuid4()))) for _ in range(100)]
        assert all(accepted) and emitter.status()["in_memory"] == 200
    finally:
        release.set()
        emitter.close()
    assert emitter.status()["in_memory"] == 0  # sent, or spooled at close
