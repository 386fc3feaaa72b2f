"""Per-model logging options: ``logging:`` in model.yaml, carried into the gateway route, and what
the gateway does with them (sampling by request id, removing excluded features, request ids)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from pushbutton.config import REPO_ROOT
from pushbutton.serving.local import route_config
from pushbutton.serving.requestlog import Redactor, request_id, sampled, with_puid
from pushbutton.serving.routes import LoggingOptions, Route
from pushbutton.serving.spec import Release, champion_only, with_candidate
from pushbutton.spec import load_spec
from pushbutton.spec.model import LoggingSpec

IRIS = REPO_ROOT / "models" / "iris"
URLS = {"champion": "http://h:1", "candidate": "http://h:2"}


def spec_with(tmp_path: Path, logging_yaml: str) -> object:
    text = (IRIS / "model.yaml").read_text()
    (tmp_path / "model.yaml").write_text(text.rstrip("\n") + "\n" + logging_yaml)
    return load_spec(tmp_path)


def test_defaults_log_everything_for_30_days() -> None:
    assert LoggingSpec() == LoggingSpec(enabled=True, sample_rate=1.0, exclude=[], retention_days=30)
    assert load_spec(IRIS).logging == LoggingSpec()


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"sample_rate": 1.5}, "1.5 is not a share of requests; write a number from 0 to 1"),
        ({"sample_rate": -0.1}, "-0.1 is not a share of requests"),
        ({"sample_rate": True}, "true is a boolean, not a number"),
        ({"retention_days": 0}, "0 is not a number of days to keep raw request logs; use 1 to 3650"),
        ({"exclude": ["a", "a"]}, "'a' is listed twice (also item 0); list each input once"),
        ({"retention": 30}, "Extra inputs are not permitted"),
    ],
)
def test_bad_options_say_what_to_write(values: dict, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        LoggingSpec(**values)
    assert words in str(caught.value)


def test_the_route_carries_each_versions_logging_options(tmp_path: Path) -> None:
    candidate = spec_with(
        tmp_path, "logging:\n  sample_rate: 0.25\n  exclude: [petal_width_cm]\n  retention_days: 7\n"
    )
    champion = load_spec(IRIS)
    spec = with_candidate(candidate, Release("2", "m2", "e", "c2"), Release("1", "m1", "e", "c1"), champion)
    backends = route_config(spec, URLS)["backends"]
    assert "logging" not in backends["champion"]  # all defaults: the route stays as it was before
    assert backends["candidate"]["logging"] == {
        "sample_rate": 0.25,
        "exclude": ["petal_width_cm"],
        "features": [f.name for f in candidate.schema_.inputs],  # to find the column in unnamed rows
    }
    route = Route.from_config("models", "iris", route_config(spec, URLS))
    assert route.backends["candidate"].logging == LoggingOptions(
        True, 0.25, ("petal_width_cm",), tuple(f.name for f in candidate.schema_.inputs)
    )
    off = spec_with(tmp_path, "logging:\n  enabled: false\n")
    config = route_config(champion_only(off, Release("3", "m3", "e", "c3")), URLS)
    assert config["backends"]["champion"]["logging"] == {"enabled": False}


@pytest.mark.parametrize(
    ("logging", "words"),
    [
        ({"sample_rate": 2}, "logging.sample_rate must be a number from 0 to 1"),
        ({"enabled": "yes"}, "logging.enabled must be true or false"),
        ({"exclude": "ssn"}, "logging.exclude must be a list of feature names"),
        ({"exclude": ["ssn"], "features": ["age"]}, "not in logging.features ['age']"),
        ({"level": "all"}, "logging has unknown fields ['level']"),
    ],
)
def test_route_logging_options_are_validated(logging: dict, words: str) -> None:
    config = {"backends": {"champion": {"url": "http://h:1", "version": "1", "logging": logging}},
              "weights": {"champion": 100}}  # fmt: skip
    with pytest.raises(ValueError, match="backend 'champion' ") as caught:
        Route.from_config("models", "iris", config)
    assert words in str(caught.value)


def test_sampling_is_deterministic_by_request_id() -> None:
    ids = [f"req-{i}" for i in range(10_000)]
    chosen = [i for i in ids if sampled(i, 0.1)]
    assert 900 < len(chosen) < 1100
    assert chosen == [i for i in ids if sampled(i, 0.1)]  # the same answer every time, in every process
    assert set(chosen) <= {i for i in ids if sampled(i, 0.5)}  # a higher rate keeps what a lower one kept
    assert all(sampled(i, 1.0) for i in ids[:50]) and not any(sampled(i, 0.0) for i in ids[:50])


def test_request_ids_come_from_the_client_or_are_made() -> None:
    assert request_id({"Seldon-Puid": "abc"}, b"{}") == "abc"
    assert request_id({}, b'{"meta": {"puid": "in-body"}, "data": {}}') == "in-body"
    assert request_id({"Seldon-Puid": "hdr"}, b'{"meta": {"puid": "in-body"}}') == "hdr"
    made = request_id({}, b'{"data": {}}')
    assert len(made) == 36 and made != request_id({}, b'{"data": {}}')
    assert len(request_id({"Seldon-Puid": "bad id with spaces"}, b"{}")) == 36
    assert len(request_id({}, b'{"meta": {"puid": 42}}')) == 36


def test_the_answer_carries_meta_puid() -> None:
    assert json.loads(with_puid(b'{"data": {"ndarray": [1]}}', "application/json", "p1")) == {
        "data": {"ndarray": [1]}, "meta": {"puid": "p1"},
    }  # fmt: skip
    tagged = with_puid(b'{"data": 1, "meta": {"tags": {"x": 1}}}', "application/json", "p2")
    assert json.loads(tagged)["meta"] == {"tags": {"x": 1}, "puid": "p2"}
    same = b'{"meta": {"puid": "p3"}}'
    assert with_puid(same, "application/json", "p3") is same  # already there: bytes untouched
    assert with_puid(b"[1, 2]", "application/json", "p") == b"[1, 2]"  # not an object: left alone
    assert with_puid(b"oops", "text/plain", "p") == b"oops"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"data": {"names": ["a", "ssn", "c"], "ndarray": [[1, 9, 3]]}}, {"names": ["a", "c"], "ndarray": [[1, 3]]}),
        ({"data": {"ndarray": [[1, 9, 3]]}}, {"names": ["a", "c"], "ndarray": [[1, 3]]}),
        ({"data": {"ndarray": [1, 9, 3]}}, {"names": ["a", "c"], "ndarray": [1, 3]}),
        ({"data": {"tensor": {"shape": [2, 3], "values": [1, 9, 3, 4, 9, 6]}}},
         {"names": ["a", "c"], "tensor": {"shape": [2, 2], "values": [1, 3, 4, 6]}}),
        ({"data": {"ndarray": [{"a": 1, "ssn": 9}]}}, {"ndarray": [{"a": 1}]}),
    ],
)  # fmt: skip
def test_excluded_features_are_removed_from_every_request_shape(message: dict, expected: dict) -> None:
    redact = Redactor(("ssn",), ("a", "ssn", "c"))
    assert json.loads(redact(json.dumps(message).encode()))["data"] == expected
    assert redact.withheld == 0


def test_json_data_loses_the_excluded_keys_and_unreadable_bodies_are_withheld() -> None:
    redact = Redactor(("ssn",), ("a", "ssn"))
    assert json.loads(redact(b'{"jsonData": {"a": 1, "ssn": 9}}')) == {"jsonData": {"a": 1}}
    untouched = b'{"data": {"names": ["a", "c"], "ndarray": [[1, 3]]}}'
    assert redact(untouched) is untouched  # nothing to remove: the bytes as they came
    for body in (b"not json", b'{"strData": "ssn=9"}', b'{"data": {"ndarray": [[1, 9, 3]]}}', b"[1]"):
        out = redact(body)
        assert b"9" not in out and "withheld" in json.loads(out)["meta"]["pushbutton"]
    assert redact.withheld == 4
