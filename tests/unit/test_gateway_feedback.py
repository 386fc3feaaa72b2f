"""Seldon's feedback API on the gateway, in process: a late label for a request the gateway answered
becomes one ``io.seldon.serving.feedback`` CloudEvent (read back with the logger's own parser), tagged
like the request's events; a feedback that names no request, a bad ``truth``, an unknown deployment,
an oversized body or logging being off are answered with what to fix, and nothing is emitted."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pushbutton.monitoring import records as R
from pushbutton.monitoring.emitter import Emitter
from pushbutton.monitoring.events import labels_of, parse_http
from pushbutton.monitoring.records import Label
from pushbutton.monitoring.spool import Spool
from pushbutton.monitoring.wire import encode
from pushbutton.serving.feedback import FeedbackError, feedback_event, parse_feedback
from pushbutton.serving.gateway import Gateway
from pushbutton.serving.routes import Route
from tests.unit.test_gateway_logging import BODY, JSON, PATH, Backend, Logger, route, until

FEEDBACK = "/seldon/models/iris/api/v1.0/feedback"
TRUTH = {"data": {"ndarray": [[1]]}}


class Recorder(Logger):
    """The logger transport, keeping each POST's headers and body as the emitter sent them."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            self.posts.append((dict(headers), body))
        return super().__call__(body, headers)


def run(scenario: Any, tmp_path: Path, *, logging: bool = True, **gateway_kw: Any) -> None:
    """``scenario(client, gateway, logger, champion)``; ``logging`` False: a gateway without an emitter."""

    async def go() -> None:
        champion = await Backend(0).start()
        logger = Recorder()
        emitter = Emitter(logger, Spool(tmp_path / "spool"), linger=0.01) if logging else None
        gateway = Gateway(rng=random.Random(3), emitter=emitter, **gateway_kw)
        client = TestClient(TestServer(gateway.app()))
        await client.start_server()
        try:
            await scenario(client, gateway, logger, champion)
        finally:
            await client.close()
            await champion.server.close()

    asyncio.run(go())


async def predict(client: TestClient, logger: Recorder) -> str:
    """One prediction; its puid once both its events reached the logger."""
    resp = await client.post(PATH, data=BODY, headers=JSON)
    assert resp.status == 200
    puid = resp.headers["Seldon-Puid"]
    await until(lambda: len(logger.by_request().get(puid, [])) == 2)
    return puid


def feedbacks(logger: Recorder) -> list:
    with logger.lock:
        return [h for h in logger.halves if h.kind == "feedback"]


@pytest.mark.parametrize("champion_logging", [{}, {"logging": {"enabled": False}}], ids=["logged", "off"])
def test_feedback_with_the_returned_puid_is_one_event_tagged_like_the_request(
    tmp_path: Path, champion_logging: dict
) -> None:
    async def scenario(client, gateway, logger, champion) -> None:
        await route(client, champion, champion_extra=champion_logging)
        resp = await client.post(PATH, data=BODY, headers=JSON)
        puid = resp.headers["Seldon-Puid"]
        await until(lambda: len(logger.posts) == (0 if champion_logging else 1))
        predicted = json.loads(await resp.read())
        feedback = {"request": json.loads(BODY), "response": predicted, "truth": TRUTH, "reward": 1.0}
        resp = await client.post(FEEDBACK, json=feedback, headers={"Seldon-Puid": puid})
        assert resp.status == 200, await resp.text()
        assert resp.headers["Seldon-Puid"] == puid
        assert await resp.json() == {"data": {"names": [], "ndarray": []},
                                     "meta": {"puid": puid, "tags": {"labels": 1}}}  # fmt: skip
        await until(lambda: len(feedbacks(logger)) == 1)
        headers, body = logger.posts[-1]  # sent alone: binary mode, attributes as Seldon's headers
        assert {k: headers[k] for k in (R.HEADER_TYPE, R.HEADER_REQUEST_ID, R.HEADER_SERVICE, R.HEADER_NAMESPACE,
                                        R.HEADER_ENDPOINT, R.HEADER_MODEL_ID, R.HEADER_VERSION)} == {
            R.HEADER_TYPE: R.CE_FEEDBACK, R.HEADER_REQUEST_ID: puid, R.HEADER_SERVICE: "iris",
            R.HEADER_NAMESPACE: "models", R.HEADER_ENDPOINT: "champion", R.HEADER_MODEL_ID: "iris-v1",
            R.HEADER_VERSION: "1",
        }  # fmt: skip
        # the request's features are not sent again: they were logged (with logging.exclude) when served
        assert json.loads(body) == {"truth": TRUTH, "reward": 1.0}
        assert labels_of(feedbacks(logger)[0]) == [Label(puid, 1, 0)]
        status = (await (await client.get("/status")).json())["logging"]
        assert (status["feedback_sent"], status["feedback_refused"]) == (1, 0)

    run(scenario, tmp_path)


@pytest.mark.parametrize(
    ("headers", "message", "expected"),
    [
        ({"Seldon-Puid": "from-header"}, {"response": {"meta": {"puid": "from-response"}}}, "from-header"),
        ({}, {"response": {"meta": {"puid": "from-response"}}, "request": {"meta": {"puid": "x"}}},
         "from-response"),
        ({}, {"request": {"meta": {"puid": "from-request"}}, "response": {"meta": {}}}, "from-request"),
    ],
    ids=["header", "response.meta.puid", "request.meta.puid"],
)  # fmt: skip
def test_the_request_id_comes_from_the_header_else_the_response_else_the_request(
    tmp_path: Path, headers: dict, message: dict, expected: str
) -> None:
    async def scenario(client, gateway, logger, champion) -> None:
        await route(client, champion)
        resp = await client.post(FEEDBACK, json={**message, "truth": TRUTH}, headers=headers)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["meta"]["puid"] == expected
        await until(lambda: len(feedbacks(logger)) == 1)
        assert feedbacks(logger)[0].request_id == expected

    run(scenario, tmp_path)


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ({"truth": TRUTH, "response": {"meta": {}}}, {},
         r"no request id.*fix: send the puid the prediction returned.*Seldon-Puid header or in response\.meta"),
        ({"truth": TRUTH}, {"Seldon-Puid": "x" * 200}, r"Seldon-Puid header: 'x+' is not a request id \(fix"),
        ({"response": {"meta": {"puid": "p1"}}, "reward": 1.0}, {},
         r"truth: missing \(fix: the true label of each row.*a reward alone is not stored"),
        ({"truth": {"data": {"ndarray": []}}}, {"Seldon-Puid": "p1"}, r"truth: holds no values \(fix: one label"),
        ({"truth": {"data": {"ndarray": [[1, 0]]}}}, {"Seldon-Puid": "p1"},
         r"truth row 0: is null or holds several values \(fix: one label per row"),
        ("not json", {"Seldon-Puid": "p1"}, r"the body is not JSON .*fix: send Seldon's Feedback message"),
    ],
    ids=["no-id", "bad-id", "no-truth", "empty-truth", "row-of-two", "not-json"],
)  # fmt: skip
def test_a_feedback_that_cannot_become_a_label_is_400_and_nothing_is_emitted(
    tmp_path: Path, body: Any, headers: dict, expected: str
) -> None:
    async def scenario(client, gateway, logger, champion) -> None:
        await route(client, champion)
        data = body if isinstance(body, str) else json.dumps(body)
        resp = await client.post(FEEDBACK, data=data, headers={**JSON, **headers})
        assert resp.status == 400
        assert re.search(expected, (await resp.json())["error"]), await resp.text()
        assert gateway.request_log.status()["feedback_refused"] == 1
        assert gateway.emitter.queued == 0

    run(scenario, tmp_path)


def test_feedback_for_an_unknown_deployment_is_404_like_predictions(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion) -> None:
        await route(client, champion)
        resp = await client.post("/seldon/models/nope/api/v1.0/feedback", json={"truth": TRUTH},
                                 headers={"Seldon-Puid": "p1"})  # fmt: skip
        assert resp.status == 404
        answer = await resp.json()
        assert answer["error"] == "no deployment 'models/nope' on this gateway" and answer["known"] == [
            "models/iris"
        ]
        assert gateway.emitter.queued == 0

    run(scenario, tmp_path)


def test_an_oversized_feedback_is_413_before_it_is_read(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion) -> None:
        await route(client, champion)
        big = {"truth": {"data": {"ndarray": list(range(5000))}}}
        resp = await client.post(FEEDBACK, json=big, headers={"Seldon-Puid": "p1"})
        assert resp.status == 413
        assert "exceeds the gateway's limit of 4096 bytes" in (await resp.json())["error"]
        assert gateway.emitter.queued == 0

    run(scenario, tmp_path, max_request_bytes=4096)


def test_without_request_logging_feedback_is_503_since_the_label_would_be_lost(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion) -> None:
        await route(client, champion)
        resp = await client.post(FEEDBACK, json={"truth": TRUTH}, headers={"Seldon-Puid": "p1"})
        assert resp.status == 503
        error = (await resp.json())["error"]
        assert "request logging is off on this gateway" in error and "POST /labels/{model}" in error

    run(scenario, tmp_path, logging=False)


ROUTE = Route.from_config("models", "iris", {"backends": {"champion": {"url": "http://m:9001", "version": "4"}},
                                             "weights": {"champion": 100}})  # fmt: skip


@pytest.mark.parametrize(
    ("truth", "expected"),
    [
        ({"data": {"ndarray": [1, 0]}}, [1, 0]),
        ({"data": {"names": ["species"], "ndarray": [[1], [0]]}}, [1, 0]),
        ({"data": {"ndarray": ["setosa", "virginica"]}}, ["setosa", "virginica"]),
        ({"data": {"tensor": {"shape": [2], "values": [2.5, 3.5]}}}, [2.5, 3.5]),
        ({"data": {"tensor": {"shape": [2, 1], "values": [1, 0]}}}, [1, 0]),
        ({"jsonData": [1, 0]}, [1, 0]),
    ],
    ids=["ndarray", "ndarray-rows", "ndarray-strings", "tensor-1d", "tensor-2d", "jsonData"],
)
def test_truth_in_every_seldon_format_reaches_the_logger_as_one_label_per_row(
    truth: dict, expected: list
) -> None:
    feedback = parse_feedback({"Seldon-Puid": "p7"}, json.dumps({"truth": truth}).encode())
    encoded = encode(feedback_event(ROUTE, feedback, 1_740_000_000.0))
    (half,) = parse_http(encoded.headers, encoded.body)  # what the logger reads, binary mode
    assert (half.kind, half.model, half.predictor, half.version) == ("feedback", "iris", "champion", "4")
    assert labels_of(half) == [Label("p7", value, row) for row, value in enumerate(expected)]
    (batched,) = parse_http({"Content-Type": R.BATCH_CONTENT_TYPE}, b"[" + encoded.line.rstrip() + b"]")
    assert labels_of(batched) == labels_of(half)  # and as one event of a batch from the spool


def test_a_route_without_a_champion_tags_feedback_with_an_answering_backend() -> None:
    route_ = Route.from_config("models", "iris", {
        "backends": {"blue": {"url": "http://m:9001", "version": "2"}, "green": {"url": "http://m:9002", "version": "3"}},
        "weights": {"blue": 0, "green": 100}})  # fmt: skip
    event = feedback_event(route_, parse_feedback({"Seldon-Puid": "p"}, b'{"truth": {"jsonData": [1]}}'), 0.0)
    assert (event.endpoint, event.version, event.model_id) == ("green", "3", "iris-v3")
    with pytest.raises(FeedbackError, match="is not one value"):
        parse_feedback({"Seldon-Puid": "p"}, b'{"truth": {"jsonData": [{"a": 1}]}}')
