"""Parse Seldon's request-logger CloudEvents and pair request and response halves by request id.

``parse_http(headers, body)`` reads one HTTP delivery — binary mode (one event, attributes in
``Ce-*`` headers matched case-insensitively, the Seldon message as the body), a structured event
(``application/cloudevents+json``) or a batch (``application/cloudevents-batch+json``, a JSON array
of structured events) — into ``Half`` objects; anything malformed raises ``EventError`` whose message
names the event, the attribute and the fix (the logger answers it with 400; a batch is all-or-nothing,
so a sender never has to guess which of its events were kept).

``Pairer`` pairs halves by (deployment, predictor, graph node, request id): either half may come
first; a pair becomes a complete ``InferenceRecord``; a half still alone ``timeout`` seconds after it
arrived (an injected ``clock``) becomes an incomplete record, and its other half arriving later makes
a record of its own that the store merges into the first (``late``). Event ids already seen are
``duplicate`` (a bounded memory of recent ids; the store's idempotent writes cover the rest).

Seldon message bodies (``data.ndarray``/``data.tensor``/``jsonData``, and the TensorFlow protocol's
``instances``/``predictions``) become rows: ``names`` plus one list of values per row for requests;
one prediction per row plus ``meta.tags`` probabilities (``{"classes", "probabilities"}``, what
pushbutton's sklearn class answers) for responses. A body that is valid JSON but not tabular (``strData``,
``binData``) is kept raw with no rows, not rejected: it is still a request the model served.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from pushbutton.monitoring import records as R
from pushbutton.monitoring.messages import EventError, labels_of, request_rows, response_values
from pushbutton.monitoring.records import InferenceRecord

Kind = Literal["request", "response", "feedback"]
KINDS: dict[str, Kind] = {R.CE_REQUEST: "request", R.CE_RESPONSE: "response", R.CE_FEEDBACK: "feedback"}
KINDS.update({alias: KINDS[seldon] for alias, seldon in R.KFSERVING_TYPES.items()})
MAX_BATCH_EVENTS = 100_000
__all__ = [
    "EventError",
    "Half",
    "Pairer",
    "build_record",
    "labels_of",
    "parse_http",
    "request_rows",
    "response_values",
]


@dataclass(slots=True)
class Half:
    """One request, response or feedback event."""

    kind: Kind
    event_id: str
    request_id: str
    model: str
    predictor: str
    version: str
    namespace: str
    model_id: str
    time: datetime
    body: Any  # the parsed JSON body (None when it was not JSON)
    raw: str | None = None  # the body's text as received (binary mode)
    latency_ms: float | None = None
    status: int | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.predictor, self.model_id, self.request_id)

    def text(self) -> str | None:
        if self.raw is not None:
            return self.raw
        return None if self.body is None else msgspec.json.encode(self.body).decode()


# --- parsing ---------------------------------------------------------------------------------------


class _Structured(msgspec.Struct):
    """A structured event's attributes (lowercase, as the CloudEvents JSON format writes them) and its
    ``data`` as the raw JSON text: decoding a batch this way keeps each body's text without
    re-encoding it, several times faster than ``json`` (msgspec ships with the platform's Airflow)."""

    id: Any = None
    type: Any = None
    time: Any = None
    requestid: Any = None
    modelid: Any = None
    inferenceservicename: Any = None
    namespace: Any = None
    endpoint: Any = None
    pushbuttonversion: Any = None
    pushbuttonrole: Any = None
    pushbuttonlatencyms: Any = None
    pushbuttonstatus: Any = None
    datacontenttype: Any = None
    data_base64: Any = None
    data: msgspec.Raw = msgspec.Raw()

    def get(self, name: str) -> Any:
        return getattr(self, name, None)


_BATCH = msgspec.json.Decoder(list[_Structured])


def parse_http(
    headers: Mapping[str, str], body: bytes, *, now: Callable[[], datetime] | None = None
) -> list[Half]:
    """The events of one HTTP delivery (see the module docstring); ``EventError`` if malformed."""
    content_type = _header(headers, "content-type").split(";", 1)[0].strip().lower()
    arrival = (now or _utcnow)()
    if content_type == R.BATCH_CONTENT_TYPE:
        try:
            fast = _BATCH.decode(body)
        except msgspec.MsgspecError:  # not a list of objects, or not JSON: say exactly what is wrong
            fast = None
        if fast is not None:
            if len(fast) > MAX_BATCH_EVENTS:
                raise EventError(
                    f"batch of {len(fast)} events is over {MAX_BATCH_EVENTS}; send smaller batches"
                )
            return [_fast(event, f"event {index}", arrival) for index, event in enumerate(fast)]
        events = _json(body, "the batch body")
        if not isinstance(events, list):
            raise EventError(
                f"a {R.BATCH_CONTENT_TYPE} body must be a JSON array of events, got {type(events).__name__}"
            )
        return [_structured(event, f"event {index}", arrival) for index, event in enumerate(events)]
    if content_type == R.STRUCTURED_CONTENT_TYPE:
        return [_structured(_json(body, "the structured event"), "the event", arrival)]
    lowered = {name.lower(): value for name, value in headers.items()}
    if "ce-type" not in lowered and "ce-id" not in lowered:
        raise EventError(
            "no CloudEvent: a binary-mode event needs Ce-Id, Ce-Type and Ce-Requestid headers (or send "
            f"Content-Type: {R.BATCH_CONTENT_TYPE} with a JSON array of structured events)"
        )
    attributes = {name[3:]: value for name, value in lowered.items() if name.startswith("ce-")}
    attributes["datacontenttype"] = content_type
    text = body.decode("utf-8", errors="replace") if body else ""
    data = _json(body, "the event body") if body and _is_json(content_type) else None
    return [_half(attributes.get, data, text or None, "the event", arrival)]


def _fast(event: _Structured, where: str, arrival: datetime) -> Half:
    """One event of a batch: the common shape (string attributes, an object as ``data``) inline,
    anything else through the general path, which names what is wrong."""
    kind = KINDS.get(event.type)  # type: ignore[arg-type]
    raw = bytes(event.data)
    if (  # written out, not all(...) over generators: this runs for every event of a batch
        kind is not None
        and _text(event.id)
        and _text(event.requestid)
        and _text(event.inferenceservicename)
        and _text(event.modelid)
        and _text(event.time)
        and _optional_text(event.pushbuttonrole)
        and _optional_text(event.pushbuttonversion)
        and _optional_text(event.namespace)
        and _optional_text(event.endpoint)
        and event.data_base64 is None
        and raw[:1] == b"{"
    ):
        try:
            data = msgspec.json.decode(raw)
            parsed = datetime.fromisoformat(event.time)
            latency = _number(event.pushbuttonlatencyms, R.ATTR_LATENCY_MS, where, float)
            status = _number(event.pushbuttonstatus, R.ATTR_STATUS, where, int)
        except (msgspec.MsgspecError, ValueError):
            parsed = None  # the general path says what is wrong
        if parsed is not None and parsed.tzinfo is not None:
            model_id, endpoint = event.modelid.strip(), (event.endpoint or "").strip()
            return Half(
                kind=kind,
                event_id=event.id.strip(),
                request_id=event.requestid.strip(),
                model=event.inferenceservicename.strip(),
                predictor=(event.pushbuttonrole or "").strip() or R.role_from_endpoint(endpoint) or "default",
                version=(event.pushbuttonversion or "").strip()
                or R.version_from_model_id(model_id, endpoint),
                namespace=(event.namespace or "").strip(),
                model_id=model_id,
                time=parsed.astimezone(UTC),
                body=data,
                raw=raw.decode("utf-8", errors="replace"),
                latency_ms=latency,
                status=status,
            )
    return _general(event, raw, where, arrival)


def _text(value: Any) -> bool:
    return value.__class__ is str and bool(value)


def _optional_text(value: Any) -> bool:
    return value is None or value.__class__ is str


def _general(event: _Structured, raw: bytes, where: str, arrival: datetime) -> Half:
    if event.data_base64 is not None:
        return _structured({k: event.get(k) for k in event.__struct_fields__ if k != "data"}, where, arrival)
    if not raw or raw == b"null":
        return _half(event.get, None, None, where, arrival)
    data = _json(raw, f"{where}: data")
    if isinstance(data, str) and _is_json(str(event.datacontenttype or "application/json")):
        return _half(event.get, _json(data.encode(), f"{where}: data"), data, where, arrival)
    return _half(event.get, data, raw.decode("utf-8", errors="replace"), where, arrival)


def _structured(event: Any, where: str, arrival: datetime) -> Half:
    if not isinstance(event, dict):
        raise EventError(
            f"{where}: must be a JSON object of CloudEvent attributes, got {type(event).__name__}"
        )
    attributes = {str(k).lower(): v for k, v in event.items() if k not in ("data", "data_base64")}
    if event.get("data_base64") is not None:
        try:
            raw_bytes = base64.b64decode(event["data_base64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise EventError(f"{where}: data_base64 is not base64 ({exc})") from None
        data = _json(raw_bytes, f"{where}: data_base64") if raw_bytes else None
        return _half(attributes.get, data, raw_bytes.decode("utf-8", errors="replace"), where, arrival)
    data = event.get("data")
    if isinstance(data, str) and _is_json(str(attributes.get("datacontenttype", "application/json"))):
        return _half(attributes.get, _json(data.encode(), f"{where}: data"), data, where, arrival)
    return _half(attributes.get, data, None, where, arrival)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return (value if value.__class__ is str else str(value)).strip()


def _half(get: Callable[[str], Any], data: Any, raw: str | None, where: str, arrival: datetime) -> Half:
    event_id, ce_type, request_id = _text(get("id")), _text(get("type")), _text(get(R.ATTR_REQUEST_ID))
    if not (event_id and ce_type and request_id):
        missing = [
            n for n, v in (("id", event_id), ("type", ce_type), (R.ATTR_REQUEST_ID, request_id)) if not v
        ]
        listed = ", ".join(f"{name} ({R.ce_header(name)})" for name in missing)
        raise EventError(f"{where}: missing {listed}; Seldon's request logger sends them on every event")
    kind = KINDS.get(ce_type)
    if kind is None:
        raise EventError(
            f"{where}: type {ce_type!r} is not a request-logger event; use {R.CE_REQUEST}, {R.CE_RESPONSE} "
            f"or {R.CE_FEEDBACK}"
        )
    model_id = _text(get(R.ATTR_MODEL_ID))
    model = _text(get(R.ATTR_SERVICE)) or model_id
    if not model:
        raise EventError(
            f"{where}: missing inferenceservicename ({R.HEADER_SERVICE}): which deployment served it "
            "(Seldon sends the SeldonDeployment's name; older senders at least modelid)"
        )
    endpoint = _text(get(R.ATTR_ENDPOINT))
    predictor = _text(get(R.ATTR_ROLE)) or R.role_from_endpoint(endpoint) or "default"
    version = _text(get(R.ATTR_VERSION)) or R.version_from_model_id(model_id, endpoint)
    if data is not None and kind != "feedback" and not isinstance(data, dict | list):
        raise EventError(f"{where}: data must be a JSON object (a Seldon message), got {type(data).__name__}")
    when = _text(get("time"))
    return Half(
        kind=kind,
        event_id=event_id,
        request_id=request_id,
        model=model,
        predictor=predictor,
        version=version,
        namespace=_text(get(R.ATTR_NAMESPACE)),
        model_id=model_id,
        time=_time(when, where) if when else arrival,
        body=data,
        raw=raw,
        latency_ms=_number(get(R.ATTR_LATENCY_MS), R.ATTR_LATENCY_MS, where, float),
        status=_number(get(R.ATTR_STATUS), R.ATTR_STATUS, where, int),
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), "")
    return value


def _is_json(content_type: str) -> bool:
    return content_type in ("", "application/json", "text/json") or content_type.endswith("+json")


def _json(body: bytes | str, what: str) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.MsgspecError as exc:
        raise EventError(f"{what} is not valid JSON ({exc})") from None


def _time(value: str, where: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise EventError(
            f"{where}: time {value!r} is not an RFC 3339 time with an offset, e.g. 2025-01-31T12:00:00Z"
        )
    return when.astimezone(UTC)


def _number(value: Any, name: str, where: str, kind: type) -> Any:
    if value is None or value == "":
        return None
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not number >= 0:
        raise EventError(f"{where}: {name} ({R.ce_header(name)}) must be a number >= 0, got {value!r}")
    return number


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- pairing -------------------------------------------------------------------------------------


def build_record(request: Half | None, response: Half | None) -> InferenceRecord:
    """One record from a request and/or a response half of the same request."""
    first = request or response
    assert first is not None
    record = InferenceRecord(
        request_id=first.request_id,
        model=first.model,
        predictor=first.predictor,
        version=(request and request.version) or (response and response.version) or "",
        namespace=first.namespace,
        model_id=first.model_id,
    )
    if request is not None:
        record.request_event_id, record.request_time = request.event_id, request.time
        record.names, record.inputs = request_rows(request.body)
        record.request_body = request.text()
    if response is not None:
        record.response_event_id, record.response_time = response.event_id, response.time
        predictions, classes, probabilities, status = response_values(response.body)
        record.predictions, record.classes, record.probabilities = predictions, classes, probabilities
        record.status = response.status if response.status is not None else status
        record.response_body = response.text()
        if response.latency_ms is not None:
            record.latency_ms = response.latency_ms
        elif request is not None:
            record.latency_ms = max(0.0, (response.time - request.time).total_seconds() * 1000.0)
    return record


@dataclass(slots=True)
class Pending:
    half: Half
    since: float  # the pairer's clock when it arrived
    stored: bool = False  # handed out by ``take`` as an incomplete record already


@dataclass
class PairerCounters:
    received: int = 0
    paired: int = 0
    incomplete: int = 0  # halves still alone ``timeout`` seconds after they arrived
    late: int = 0  # halves whose partner had already given up waiting (the store merges them)
    duplicates: int = 0


class Pairer:
    """Pairs request and response halves (not thread-safe: one event loop owns it).

    ``add`` takes a half: ``paired`` (its partner was waiting: one complete record is ready),
    ``pending`` (it waits for its partner), ``late`` (its partner gave up waiting earlier: a record of
    this half alone is ready, the store merges it) or ``duplicate`` (an event id seen before, or a
    second request/response half for one request: ignored). ``take`` hands out the ready records and,
    with ``partials``, a record of each waiting half not handed out before — the logger writes those
    at once, so nothing it acknowledged lives only in memory (a partner arriving later is written
    again, complete, and the store merges the two). ``expire`` ends the wait of halves alone for
    ``timeout`` seconds (on the injected ``clock``): they count as ``incomplete``, and those never
    handed out are returned as incomplete records. ``rollback`` forgets halves whose write failed, so
    the sender's retry is taken as new rather than as a duplicate.
    """

    def __init__(
        self, timeout: float = 5.0, *, clock: Callable[[], float] = time.monotonic, memory: int = 200_000
    ):
        if timeout <= 0:
            raise ValueError(f"pairing timeout must be > 0 seconds, got {timeout}")
        self.timeout = timeout
        self.clock = clock
        self.memory = memory
        self.pending: OrderedDict[tuple[str, str, str, str], Pending] = OrderedDict()
        self.ready: list[InferenceRecord] = []
        self._seen: OrderedDict[str, None] = OrderedDict()  # recent event ids
        self._expired: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()  # keys that gave up
        self.counters = PairerCounters()

    def add(self, half: Half) -> Literal["pending", "paired", "late", "duplicate"]:
        self.counters.received += 1
        if half.event_id in self._seen:
            self.counters.duplicates += 1
            return "duplicate"
        key = half.key
        waiting = self.pending.get(key)
        if waiting is not None and waiting.half.kind == half.kind:  # a second request for one request id
            self.counters.duplicates += 1
            return "duplicate"
        self._remember(self._seen, half.event_id)
        if waiting is not None:
            del self.pending[key]
            self.counters.paired += 1
            request, response = (half, waiting.half) if half.kind == "request" else (waiting.half, half)
            self.ready.append(build_record(request, response))
            return "paired"
        if key in self._expired:
            self.counters.late += 1
            self.ready.append(_alone(half))
            return "late"
        self.pending[key] = Pending(half, self.clock())
        return "pending"

    def take(self, *, partials: bool = True) -> list[InferenceRecord]:
        out, self.ready = self.ready, []
        if partials:
            for entry in self.pending.values():
                if not entry.stored:
                    entry.stored = True
                    out.append(_alone(entry.half))
        return out

    def expire(self, *, everything: bool = False) -> list[InferenceRecord]:
        """End the wait of halves alone for ``timeout`` seconds (all with ``everything``)."""
        limit = self.clock() - self.timeout
        out = []
        while self.pending:
            key, entry = next(iter(self.pending.items()))
            if not everything and entry.since > limit:
                break  # ordered by arrival: the rest are younger
            del self.pending[key]
            self._remember(self._expired, key)
            self.counters.incomplete += 1
            if not entry.stored:
                out.append(_alone(entry.half))
        return out

    def rollback(self, halves: Iterable[Half]) -> None:
        """Forget ``halves`` (their write failed): a retry of them is new, not a duplicate."""
        for half in halves:
            self._seen.pop(half.event_id, None)
            entry = self.pending.get(half.key)
            if entry is not None and entry.half.event_id == half.event_id:
                del self.pending[half.key]

    def _remember(self, memory: OrderedDict, key: Any) -> None:
        memory[key] = None
        if len(memory) > self.memory:
            memory.popitem(last=False)


def _alone(half: Half) -> InferenceRecord:
    return build_record(half, None) if half.kind == "request" else build_record(None, half)
