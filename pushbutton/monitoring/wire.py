"""The CloudEvents the gateway's emitter sends, encoded both ways: binary mode (attributes as ``Ce-*``
headers, the body as is) for a single event, and one structured JSON line per event — what the spool
keeps and what ``application/cloudevents-batch+json`` arrays are made of. Attribute names and types
come from ``records`` (the logger's parser, ``events.parse_http``, reads both forms).

A body that is not a JSON object or array (a client's malformed request) travels as the Seldon
message ``{"strData": <its text>}``, so the logger still stores that request; raw newlines of a JSON
body (only ever whitespace) become spaces, so a structured event stays one line.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pushbutton.monitoring import records as R

log = logging.getLogger("pushbutton.emitter")

PROTOCOL = "seldon"
_NOT_A_MESSAGE = "strData"  # how a body that is not a JSON object or array travels (Seldon's string payload)


@dataclass(slots=True)
class Event:
    """One half of an exchange as the gateway saw it; ``transform`` (e.g. removing excluded features)
    runs on the worker thread before the event is spooled or sent."""

    type: str  # records.CE_REQUEST | records.CE_RESPONSE
    request_id: str
    deployment: str  # Ce-Inferenceservicename (= the pushbutton model)
    namespace: str
    endpoint: str  # Ce-Endpoint: the predictor (the route's role)
    role: str  # champion | candidate | shadow (a shadow copy)
    version: str
    model_id: str  # Ce-Modelid: the graph node, ``<model>-v<version>`` as the Kubernetes renderer names it
    source: str
    time: float  # seconds since the epoch
    body: bytes
    content_type: str = R.JSON_CONTENT_TYPE
    status: int | None = None  # responses: the HTTP status the caller got
    latency_ms: float | None = None  # responses: how long the predictor took, as the gateway timed it
    transform: Callable[[bytes], bytes] | None = None


@dataclass(frozen=True, slots=True)
class Encoded:
    """An event with its id: the binary-mode headers and body, and its structured JSON line."""

    headers: dict[str, str]
    body: bytes
    line: bytes


def encode(event: Event, event_id: str | None = None) -> Encoded:
    """Fix the event's id and encode it both ways (binary mode, and one structured line)."""
    body = event.body
    if event.transform is not None:
        try:
            body = event.transform(body)
        except Exception:  # never the raw body: it may hold what the transform was to remove
            log.exception("request-log transform failed; the body of %s is withheld", event.request_id)
            body = b'{"meta": {"pushbutton": "withheld: the logging transform failed"}}'
    content_type = event.content_type
    if not _is_message(body):
        body = json.dumps({_NOT_A_MESSAGE: body.decode("utf-8", errors="replace")}).encode()
        content_type = R.JSON_CONTENT_TYPE
    stamp = datetime.fromtimestamp(event.time, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    attrs = {
        R.ATTR_SPECVERSION: R.SPEC_VERSION,
        R.ATTR_ID: event_id or str(uuid.uuid4()),
        R.ATTR_TYPE: event.type,
        R.ATTR_SOURCE: event.source,
        R.ATTR_TIME: stamp,
        R.ATTR_REQUEST_ID: event.request_id,
        R.ATTR_MODEL_ID: event.model_id,
        R.ATTR_SERVICE: event.deployment,
        R.ATTR_NAMESPACE: event.namespace,
        R.ATTR_ENDPOINT: event.endpoint,
        R.ATTR_PROTOCOL: PROTOCOL,
        R.ATTR_VERSION: event.version,
        R.ATTR_ROLE: event.role,
    }
    if event.status is not None:
        attrs[R.ATTR_STATUS] = str(event.status)
    if event.latency_ms is not None:
        attrs[R.ATTR_LATENCY_MS] = f"{event.latency_ms:.3f}"
    headers = {R.ce_header(name): value for name, value in attrs.items()}
    headers["Content-Type"] = content_type
    attrs[R.ATTR_DATACONTENTTYPE] = content_type
    head = json.dumps(attrs, separators=(",", ":")).encode()[:-1]
    # raw newlines in valid JSON are only whitespace: the line stays one line, the value the same
    data = body.replace(b"\n", b" ").replace(b"\r", b" ")
    return Encoded(headers, body, head + b',"data":' + data + b"}\n")


def batch_body(lines: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(line.rstrip(b"\n") for line in lines) + b"]"


def _is_message(body: bytes) -> bool:
    """Whether ``body`` is a JSON object or array (a Seldon message); the logger takes nothing else."""
    head = body.lstrip()[:1]
    if head not in (b"{", b"["):
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True
