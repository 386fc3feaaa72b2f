"""Seldon request-logger CloudEvents: parsing (binary, structured, batch) and pairing by request id."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from pushbutton.monitoring import records as R
from pushbutton.monitoring.events import (
    EventError,
    Pairer,
    labels_of,
    parse_http,
    request_rows,
    response_values,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
REQUEST = {"data": {"names": ["a", "b"], "ndarray": [[1.0, 2.0], [3.0, 4.0]]}}
RESPONSE = {
    "data": {"names": [], "ndarray": [0, 1]},
    "meta": {"puid": "r1", "tags": {"classes": ["0", "1"], "probabilities": [[0.9, 0.1], [0.2, 0.8]]}},
}


def seldon_headers(
    kind: str, *, event_id: str, request_id: str = "r1", time: str = "2025-03-01T12:00:00Z"
) -> dict:
    """Exactly what seldon-core's executor sends (Go canonical header case), without our extensions."""
    return {
        "Ce-Specversion": "1.0",
        "Ce-Id": event_id,
        "Ce-Type": R.CE_REQUEST if kind == "request" else R.CE_RESPONSE,
        "Ce-Source": "http://iris-champion:8000/",
        "Ce-Time": time,
        "Ce-Requestid": request_id,
        "Ce-Modelid": "iris-v3",
        "Ce-Inferenceservicename": "iris",
        "Ce-Namespace": "models",
        "Ce-Endpoint": "champion",
        "Ce-Protocol": "seldon",
        "Content-Type": "application/json",
    }


def structured(
    kind: str, *, event_id: str, request_id: str = "r1", data: object = None, **extra: str
) -> dict:
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": R.CE_REQUEST if kind == "request" else R.CE_RESPONSE,
        "source": "pushbutton-gateway",
        "time": "2025-03-01T12:00:00.250Z" if kind == "response" else "2025-03-01T12:00:00Z",
        "requestid": request_id,
        "modelid": "iris-v3",
        "inferenceservicename": "iris",
        "namespace": "models",
        "endpoint": "champion",
        R.ATTR_VERSION: "3",
        R.ATTR_ROLE: "shadow",
        "datacontenttype": "application/json",
        "data": data if data is not None else (REQUEST if kind == "request" else RESPONSE),
        **extra,
    }


def test_binary_mode_as_seldon_sends_it_maps_deployment_predictor_and_version():
    (half,) = parse_http(seldon_headers("request", event_id="e1"), json.dumps(REQUEST).encode())
    assert (half.kind, half.event_id, half.request_id) == ("request", "e1", "r1")
    # a SeldonDeployment: no pushbutton extensions; the version comes from the graph node's name
    assert (half.model, half.predictor, half.version, half.model_id) == ("iris", "champion", "3", "iris-v3")
    assert half.time == T0
    assert half.raw == json.dumps(REQUEST)


def test_binary_header_names_match_in_any_case():
    lower = {k.lower(): v for k, v in seldon_headers("response", event_id="e2").items()}
    upper = {k.upper(): v for k, v in seldon_headers("response", event_id="e2").items()}
    for headers in (lower, upper):
        (half,) = parse_http(headers, json.dumps(RESPONSE).encode())
        assert (half.kind, half.request_id, half.model, half.version) == ("response", "r1", "iris", "3")


def test_batch_of_structured_events_and_our_extensions():
    events = [
        structured("request", event_id="e1"),
        structured("response", event_id="e2", **{R.ATTR_LATENCY_MS: "12.5", R.ATTR_STATUS: "200"}),
    ]
    halves = parse_http({"content-type": R.BATCH_CONTENT_TYPE}, json.dumps(events).encode())
    assert [h.kind for h in halves] == ["request", "response"]
    assert {h.predictor for h in halves} == {"shadow"}  # pushbuttonrole wins over the endpoint
    assert halves[1].latency_ms == 12.5 and halves[1].status == 200


def test_structured_event_with_base64_data():
    event = structured("request", event_id="e1")
    del event["data"]
    event["data_base64"] = base64.b64encode(json.dumps(REQUEST).encode()).decode()
    (half,) = parse_http({"Content-Type": R.STRUCTURED_CONTENT_TYPE}, json.dumps(event).encode())
    assert half.body == REQUEST


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Ce-Type": R.CE_REQUEST, "Ce-Id": "e1"}, b"{}", "missing requestid (Ce-Requestid)"),
        (
            {"Ce-Type": "com.example.other", "Ce-Id": "e1", "Ce-Requestid": "r"},
            b"{}",
            "not a request-logger event",
        ),
        (
            {"Ce-Type": R.CE_REQUEST, "Ce-Id": "e1", "Ce-Requestid": "r"},
            b"{}",
            "missing inferenceservicename",
        ),
        ({"Content-Type": "application/json"}, b"{}", "no CloudEvent"),
        ({**seldon_headers("request", event_id="e1")}, b"{not json", "the event body is not valid JSON"),
        ({**seldon_headers("request", event_id="e1"), "Ce-Time": "yesterday"}, b"{}", "time 'yesterday'"),
        (
            {**seldon_headers("request", event_id="e1"), "Ce-Time": "2025-03-01T12:00:00"},
            b"{}",
            "with an offset",
        ),
        (
            {**seldon_headers("response", event_id="e1"), "Ce-Pushbuttonstatus": "-1"},
            b"{}",
            "pushbuttonstatus",
        ),
        ({**seldon_headers("request", event_id="e1")}, b'"text"', "data must be a JSON object"),
    ],
)
def test_malformed_event_names_what_is_wrong(headers, body, expected):
    with pytest.raises(EventError) as caught:
        parse_http(headers, body)
    assert expected in str(caught.value)


def test_malformed_batch_names_the_bad_event():
    events = [
        structured("request", event_id="e1"),
        {**structured("response", event_id="e2"), "requestid": ""},
    ]
    with pytest.raises(EventError, match=r"^event 1: missing requestid"):
        parse_http({"Content-Type": R.BATCH_CONTENT_TYPE}, json.dumps(events).encode())
    with pytest.raises(EventError, match="must be a JSON array"):
        parse_http({"Content-Type": R.BATCH_CONTENT_TYPE}, b'{"id": "e1"}')


@pytest.mark.parametrize(
    ("body", "names", "rows"),
    [
        (
            {"data": {"names": ["a", "b"], "tensor": {"shape": [2, 2], "values": [1, 2, 3, 4]}}},
            ("a", "b"),
            [[1, 2], [3, 4]],
        ),
        ({"data": {"ndarray": [5, 6]}}, (), [[5, 6]]),
        ({"jsonData": {"a": [1, 2], "b": [3, 4]}}, ("a", "b"), [[1, 3], [2, 4]]),
        ({"jsonData": [{"a": 1, "b": 2}, {"b": 4, "a": 3}]}, ("a", "b"), [[1, 2], [3, 4]]),
        ({"instances": [[1, 2]]}, (), [[1, 2]]),
        ({"strData": "hello"}, (), []),
    ],
)
def test_request_bodies_become_rows(body, names, rows):
    assert request_rows(body) == (names, rows)


def test_response_failure_and_probabilities():
    assert response_values({"status": {"code": 503, "status": "FAILURE", "info": "x"}})[3] == 503
    assert response_values({"status": {"status": "FAILURE"}})[3] == 500
    predictions, classes, probabilities, status = response_values(RESPONSE)
    assert (predictions, classes, probabilities, status) == (
        [0, 1],
        ("0", "1"),
        [[0.9, 0.1], [0.2, 0.8]],
        200,
    )
    assert response_values({"data": {"ndarray": [[1.5], [2.5]]}})[0] == [1.5, 2.5]


def halves(*events: dict) -> list:
    return parse_http({"Content-Type": R.BATCH_CONTENT_TYPE}, json.dumps(list(events)).encode())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_response_first_then_request_pairs_into_one_complete_record():
    pairer = Pairer(5.0, clock=Clock())
    request, response = halves(structured("request", event_id="e1"), structured("response", event_id="e2"))
    assert pairer.add(response) == "pending"
    assert pairer.add(request) == "paired"
    (record,) = pairer.take()
    assert record.complete and record.request_id == "r1" and record.predictor == "shadow"
    assert record.names == ("a", "b") and record.inputs == [[1.0, 2.0], [3.0, 4.0]]
    assert record.predictions == [0, 1] and record.classes == ("0", "1")
    assert record.latency_ms == pytest.approx(250.0)  # from the two halves' times
    assert record.status == 200
    assert pairer.take() == [] and not pairer.pending


def test_missing_half_is_incomplete_after_the_timeout():
    clock = Clock()
    pairer = Pairer(5.0, clock=clock)
    (request,) = halves(structured("request", event_id="e1"))
    assert pairer.add(request) == "pending"
    clock.now = 4.999
    assert pairer.expire() == []
    clock.now = 5.0
    (record,) = pairer.expire()
    assert not record.complete and record.inputs == [[1.0, 2.0], [3.0, 4.0]] and record.predictions is None
    assert pairer.counters.incomplete == 1
    # the partner turning up afterwards is a record of its own, which the store merges
    (response,) = halves(structured("response", event_id="e2"))
    assert pairer.add(response) == "late"
    (late,) = pairer.take()
    assert late.response_event_id == "e2" and late.request_event_id is None


def test_take_hands_out_a_waiting_half_once_and_the_pair_later():
    pairer = Pairer(5.0, clock=Clock())
    request, response = halves(structured("request", event_id="e1"), structured("response", event_id="e2"))
    pairer.add(request)
    (partial,) = pairer.take()
    assert not partial.complete
    assert pairer.take() == []
    pairer.add(response)
    (whole,) = pairer.take()
    assert whole.complete
    assert pairer.expire(everything=True) == []  # already stored: nothing to hand out again


def test_duplicates_by_event_id_and_by_second_half_of_one_kind():
    pairer = Pairer(5.0, clock=Clock())
    first, again = halves(structured("request", event_id="e1"), structured("request", event_id="e1"))
    other = halves(structured("request", event_id="e9"))[0]  # same request id, another event id
    assert pairer.add(first) == "pending"
    assert pairer.add(again) == "duplicate"
    assert pairer.add(other) == "duplicate"
    assert pairer.counters.duplicates == 2


def test_rollback_makes_a_retry_new_again():
    pairer = Pairer(5.0, clock=Clock())
    (request,) = halves(structured("request", event_id="e1"))
    pairer.add(request)
    pairer.rollback([request])
    assert not pairer.pending
    assert pairer.add(request) == "pending"


def test_shadow_and_champion_halves_of_one_request_do_not_pair_with_each_other():
    pairer = Pairer(5.0, clock=Clock())
    champion = structured("request", event_id="e1")
    champion[R.ATTR_ROLE] = "champion"
    shadow_response = structured("response", event_id="e2")  # role: shadow
    assert pairer.add(halves(champion)[0]) == "pending"
    assert pairer.add(halves(shadow_response)[0]) == "pending"
    assert len(pairer.pending) == 2


def test_feedback_event_gives_one_label_per_row():
    event = structured("request", event_id="f1", data={"truth": {"data": {"ndarray": [[1], [0]]}}})
    event["type"] = R.CE_FEEDBACK
    (half,) = halves(event)
    assert [(x.request_id, x.row, x.label) for x in labels_of(half)] == [("r1", 0, 1), ("r1", 1, 0)]
    event["data"] = {"reward": 1}
    with pytest.raises(EventError, match="'truth'"):
        labels_of(halves(event)[0])
