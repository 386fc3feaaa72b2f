"""HMAC verification of MLflow registry webhooks, cross-checked against MLflow's own signer.

Every check runs on an injected clock (``verify(..., now=NOW)``): deliveries are stamped relative to
NOW, so the ±300 s freshness edge is exact and nothing depends on the machine's time."""

from __future__ import annotations

import json

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from pushbutton.webhook import (
    DELIVERY_ID,
    MAX_AGE_SECONDS,
    SIGNATURE,
    TIMESTAMP,
    WebhookRejected,
    cicd_run_id,
    created_version,
    sign,
    verify,
)
from tests.webhook_deliveries import signed_headers

SECRET = "s3cret-for-tests"
BODY = json.dumps(
    {"entity": "model_version", "action": "created", "timestamp": "2026-11-22T00:00:00+00:00",
     "data": {"name": "iris", "version": "3", "source": "models:/m-1", "run_id": "r", "tags": {}}}
).encode()  # fmt: skip


NOW = 1_795_000_000  # the receiver's clock in every test (2026-11-18)


def headers(body: bytes = BODY, secret: str = SECRET, ts: int = NOW, delivery: str = "d-1") -> dict:
    return signed_headers(secret, body, delivery, ts)


def check(h: dict, body: bytes = BODY, now: float = NOW) -> str:
    return verify(SECRET, h, body, now=now)


def test_our_signature_equals_mlflows() -> None:
    assert sign(SECRET, "d-1", "1700000000", BODY) == _generate_hmac_signature(
        SECRET, "d-1", "1700000000", BODY.decode()
    )


def test_valid_delivery_is_accepted() -> None:
    assert check(headers()) == "d-1"


def test_header_names_are_case_insensitive() -> None:
    lowered = {k.lower(): v for k, v in headers().items()}
    assert check(lowered) == "d-1"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.pop(SIGNATURE), "missing X-MLflow-Signature"),
        (lambda h: h.pop(TIMESTAMP), "missing X-MLflow-Delivery-Id or X-MLflow-Timestamp"),
        (lambda h: h.update({SIGNATURE: "v1,AAAA"}), "signature does not match"),
        (lambda h: h.update({TIMESTAMP: "yesterday"}), "not a unix timestamp"),
    ],
)
def test_bad_headers_are_rejected(mutate, reason: str) -> None:
    h = headers()
    mutate(h)
    with pytest.raises(WebhookRejected, match=reason):
        check(h)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="signature does not match"):
        check(headers(secret="other"))


def test_altered_body_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="signature does not match"):
        check(headers(), BODY.replace(b'"3"', b'"4"'))


def test_stale_delivery_is_rejected_as_replay() -> None:
    with pytest.raises(WebhookRejected, match=r"timestamp is 3600s away from now .*replay or clock skew"):
        check(headers(ts=NOW - 3600))


@pytest.mark.parametrize("skew", [-MAX_AGE_SECONDS, -1, 0, 1, MAX_AGE_SECONDS])
def test_a_delivery_up_to_300s_old_or_ahead_is_fresh(skew: int) -> None:
    assert MAX_AGE_SECONDS == 300
    assert check(headers(ts=NOW + skew)) == "d-1"  # MLflow's clock may run a little ahead of ours


@pytest.mark.parametrize("skew", [-MAX_AGE_SECONDS - 1, MAX_AGE_SECONDS + 1, 86_400, 10**11])
def test_a_delivery_past_the_edge_or_from_the_future_is_refused(skew: int) -> None:
    with pytest.raises(WebhookRejected, match=rf"timestamp is {abs(skew)}s away from now \(limit 300s\)"):
        check(headers(ts=NOW + skew))


def test_freshness_is_judged_by_the_receivers_clock_when_it_arrives() -> None:
    """One signed delivery: fresh at NOW, refused once the receiver's clock passed the edge."""
    h = headers(ts=NOW)
    assert check(h, now=NOW + 300.0) == "d-1"
    with pytest.raises(WebhookRejected, match="301s away"):
        check(h, now=NOW + 300.6)
    with pytest.raises(WebhookRejected, match="301s away"):
        check(h, now=NOW - 301)


def test_created_version_is_parsed() -> None:
    assert created_version(BODY) == ("iris", "3", "r")


def test_without_a_run_id_the_training_run_comes_from_the_version_tags() -> None:
    """MLflow 3 sends run_id null when a logged model (models:/m-...) is registered."""
    data = {"name": "iris", "version": "3", "run_id": None, "tags": {"pushbutton.run_id": "abc123"}}
    body = json.dumps({"entity": "model_version", "action": "created", "data": data}).encode()
    assert created_version(body) == ("iris", "3", "abc123")
    data["tags"] = {}
    assert created_version(
        json.dumps({"entity": "model_version", "action": "created", "data": data}).encode()
    ) == ("iris", "3", "")


def test_other_events_are_ignored() -> None:
    other = json.dumps({"entity": "model_version_tag", "action": "set", "data": {}}).encode()
    assert created_version(other) is None


def test_malformed_created_payload_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match=r"lacks data\.name"):
        created_version(json.dumps({"entity": "model_version", "action": "created", "data": {}}).encode())
    with pytest.raises(WebhookRejected, match="not JSON"):
        created_version(b"<xml/>")


def test_one_run_id_per_version() -> None:
    assert cicd_run_id("3") == cicd_run_id("3") != cicd_run_id("4")
    run = "f3c2a9d81b7e4c0d9a6b5e4f3d2c1b0a"
    assert cicd_run_id("3", run) == cicd_run_id("3", run) == "registered__v3__f3c2a9d8"


def test_a_version_number_reused_after_the_model_was_recreated_gets_its_own_run() -> None:
    """MLflow numbers versions from 1 again for a deleted and recreated registered model."""
    old, new = "f3c2a9d81b7e4c0d9a6b5e4f3d2c1b0a", "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a"
    assert cicd_run_id("1", old) != cicd_run_id("1", new)


def test_a_version_without_an_mlflow_run_still_has_a_run_id() -> None:
    assert cicd_run_id("5", None) == cicd_run_id("5", "") == "registered__v5"
    assert cicd_run_id("5", "../x y") == "registered__v5__xy"  # only letters and digits reach Airflow


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        (SIGNATURE, "v1,é", "X-MLflow-Signature is not ASCII"),  # compare_digest raised TypeError
        (SIGNATURE, "", "missing X-MLflow-Signature"),
        (SIGNATURE, "   ", "signature does not match"),
        (DELIVERY_ID, "", "missing X-MLflow-Delivery-Id"),
        (DELIVERY_ID, "d-é", "X-MLflow-Delivery-Id is not ASCII"),
        (TIMESTAMP, "", "missing X-MLflow-Delivery-Id or X-MLflow-Timestamp"),
        (TIMESTAMP, "9" * 400, "not a unix timestamp"),  # float subtraction raised OverflowError
        (TIMESTAMP, "nan", "not a unix timestamp"),
        (TIMESTAMP, "inf", "not a unix timestamp"),
        (TIMESTAMP, "1e9", "not a unix timestamp"),
        (TIMESTAMP, "-5", "not a unix timestamp"),
        (TIMESTAMP, "\u0661\u0667" + "\u0660" * 8, "not a unix timestamp"),  # int() takes Arabic-Indic
        (TIMESTAMP, "1_700_000_000", "not a unix timestamp"),
    ],
)
def test_malformed_headers_are_rejected_not_crashes(header: str, value: str, reason: str) -> None:
    h = headers()
    h[header] = value
    with pytest.raises(WebhookRejected, match=reason):
        check(h)


def test_a_non_ascii_signature_next_to_the_valid_one_is_still_rejected() -> None:
    h = headers()
    h[SIGNATURE] = f"v1,é {h[SIGNATURE]}"
    with pytest.raises(WebhookRejected, match="not ASCII"):
        check(h)


@pytest.mark.parametrize("header", [SIGNATURE, DELIVERY_ID, TIMESTAMP])
@pytest.mark.parametrize(
    "value", ["\x00", "é" * 3, "\ud800", "9" * 5000, "-inf", "NaN", " 1 ", "v1,ü", "\n", "x" * 10_000]
)
def test_any_crafted_header_is_rejected_never_a_crash(header: str, value: str) -> None:
    """The signature covers the delivery id and the timestamp, so no crafted value may pass; and it
    must be refused as WebhookRejected (a 401): anything else (TypeError, OverflowError...) is a 500."""
    h = headers()
    h[header] = value
    with pytest.raises(WebhookRejected) as refused:
        check(h)
    assert str(refused.value)  # a reason for the log


@pytest.mark.parametrize(
    "body",
    [b"[]", b"1", b'"x"', b"\xff\xfe", b'{"entity": "model_version", "action": "created", "data": [1]}'],
)
def test_a_body_that_is_not_a_delivery_object_is_rejected(body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        created_version(body)
