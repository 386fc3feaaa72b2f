"""The gateway's side of request logging: request ids, the per-model logging options, and the events
handed to the emitter (``pushbutton.monitoring.emitter``).

* **Request id** (Seldon's ``puid``): the client's ``Seldon-Puid`` header, else its body's
  ``meta.puid``, else a new UUID. It goes to every backend (``Seldon-Puid`` header), comes back in the
  response's ``Seldon-Puid`` header (as seldon-core's executor answers) and in the body's
  ``meta.puid``, and is the ``Ce-Requestid`` of the logged events — the id a label is sent with later.
  A client id that is not 1 to 128 visible ASCII characters is replaced by a new one.
* **Sampling** is a deterministic function of the request id (``sampled``): both halves of a request,
  and its copies to every predictor with the same rate, are logged or skipped together.
* **Excluded features** are removed from the request body before the event leaves the gateway's
  memory (on the emitter's thread, before the spool or the logger sees it): from ``data.names`` and
  every ``data.ndarray`` row or ``data.tensor``, from dict rows and ``jsonData``. A body whose columns
  cannot be told apart (no names and a width other than the model's inputs, ``strData``, not JSON) is
  withheld entirely (replaced by ``{"meta": {"pushbutton": "withheld: …"}}``) and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from pushbutton.monitoring import records as R
from pushbutton.monitoring.emitter import Emitter
from pushbutton.monitoring.wire import Event
from pushbutton.serving.routes import Backend, LoggingOptions, Route

log = logging.getLogger("pushbutton.gateway")

PUID_HEADER = "Seldon-Puid"  # seldon-core's payload.SeldonPUIDHeader: request and response
_PUID = re.compile(r"^[\x21-\x7e]{1,128}$")


def request_id(headers: Mapping[str, str], body: bytes) -> str:
    """The client's puid (header, else ``meta.puid`` in the body) if it is usable, else a new one."""
    puid = headers.get(PUID_HEADER, "")
    if not puid and b'"puid"' in body:
        try:
            meta = json.loads(body).get("meta")
            puid = meta.get("puid") if isinstance(meta, dict) else ""
        except (ValueError, AttributeError):
            puid = ""
    if isinstance(puid, str) and valid_puid(puid):
        return puid
    return str(uuid.uuid4())


def valid_puid(puid: str) -> bool:
    """Whether ``puid`` can be a request id: 1 to 128 visible ASCII characters."""
    return _PUID.match(puid) is not None


def with_puid(body: bytes, content_type: str, puid: str) -> bytes:
    """The response body with ``meta.puid`` set (unchanged if it is not a JSON object or has it)."""
    if "json" not in content_type or not body.lstrip().startswith(b"{"):
        return body
    try:
        message = json.loads(body)
    except ValueError:
        return body
    meta = message.get("meta")
    if isinstance(meta, dict) and meta.get("puid") == puid:
        return body
    message["meta"] = {**meta, "puid": puid} if isinstance(meta, dict) else {"puid": puid}
    return json.dumps(message).encode()


def sampled(puid: str, rate: float) -> bool:
    """Whether a request is logged at ``rate``: the same answer for the same id, everywhere."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(puid.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


class Redactor:
    """Removes the excluded features from a Seldon request body (see the module docstring)."""

    def __init__(self, exclude: tuple[str, ...], features: tuple[str, ...]):
        self.exclude = frozenset(exclude)
        self.features = features
        self.withheld = 0  # bodies replaced whole: their columns could not be told apart

    def __call__(self, body: bytes) -> bytes:
        try:
            message = json.loads(body)
            if not isinstance(message, dict):
                raise _Withhold("the body is not a JSON object")
            if not self._redact(message):
                return body
            return json.dumps(message).encode()
        except Exception as exc:  # whatever it is, the excluded values must not go out
            self.withheld += 1
            reason = exc if isinstance(exc, _Withhold) else "the body is not a Seldon message"
            return json.dumps({"meta": {"pushbutton": f"withheld: {reason}; excluded features"}}).encode()

    def _redact(self, message: dict[str, Any]) -> bool:
        """Remove excluded features in place; whether anything changed."""
        changed = False
        if "jsonData" in message:
            changed |= self._drop_keys(message["jsonData"])
        for key in ("strData", "binData"):
            if key in message:
                raise _Withhold(f"{key} has no columns to remove excluded features from")
        data = message.get("data")
        if data is None:
            return changed
        if not isinstance(data, dict):
            raise _Withhold("data is not an object")
        given = data.get("names")
        names = list(given) if isinstance(given, list) and given else list(self.features)
        if "ndarray" in data:
            rows = data["ndarray"]
            if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
                return self._drop_keys(rows) or changed
            flat = isinstance(rows, list) and not any(isinstance(v, list | dict) for v in rows)
            table = [rows] if flat else rows
            if not isinstance(table, list) or not all(isinstance(r, list) for r in table):
                raise _Withhold("data.ndarray is not a list of rows")
            keep = self._keep(names, {len(r) for r in table}, given)
            if keep is None:
                return changed
            kept = [[r[i] for i in keep] for r in table]
            data["ndarray"] = kept[0] if flat else kept
        elif "tensor" in data:
            tensor = data["tensor"]
            shape, values = (
                (tensor.get("shape"), tensor.get("values")) if isinstance(tensor, dict) else (0, 0)
            )
            if not isinstance(shape, list) or not isinstance(values, list) or len(shape) not in (1, 2):
                raise _Withhold("data.tensor is not a 1- or 2-dimensional shape with values")
            width = shape[-1]
            if not isinstance(width, int) or width <= 0 or len(values) % width:
                raise _Withhold("data.tensor values do not fill its shape")
            keep = self._keep(names, {width}, given)
            if keep is None:
                return changed
            rows = [values[i : i + width] for i in range(0, len(values), width)]
            tensor["values"] = [row[i] for row in rows for i in keep]
            tensor["shape"] = [*shape[:-1], len(keep)]
        else:
            return changed
        data["names"] = [names[i] for i in keep]
        return True

    def _keep(self, names: list[str], widths: set[int], given: Any) -> list[int] | None:
        """Indexes of the columns to keep; None if no excluded column is there."""
        if len(widths) != 1 or next(iter(widths)) != len(names):
            what = "data.names" if given else "the model's inputs"
            raise _Withhold(f"rows do not have one value per name of {what}")
        keep = [i for i, name in enumerate(names) if name not in self.exclude]
        return None if len(keep) == len(names) else keep

    def _drop_keys(self, value: Any) -> bool:
        rows = value if isinstance(value, list) else [value]
        changed = False
        for row in rows:
            if isinstance(row, dict):
                for name in self.exclude & row.keys():
                    del row[name]
                    changed = True
        return changed


class _Withhold(Exception):
    pass


class RequestLog:
    """Builds the events of each exchange and hands them to the emitter (None: logging is off)."""

    def __init__(self, emitter: Emitter | None):
        self.emitter = emitter
        self.sampled_out = 0  # exchanges a sample_rate below 1 skipped
        self.disabled = 0  # exchanges of backends with logging.enabled false
        self.errors = 0  # exchanges that could not be handed over (a bug; the request was answered)
        self.feedback_sent = 0  # feedbacks (late labels, ``feedback.py``) handed to the emitter
        self.feedback_refused = 0  # feedbacks answered 4xx/5xx (malformed, no request id, logging off)
        self._redactors: dict[tuple[tuple[str, ...], tuple[str, ...]], Redactor] = {}

    def redactor(self, options: LoggingOptions) -> Redactor | None:
        if not options.exclude:
            return None
        key = (options.exclude, options.features)
        found = self._redactors.get(key)
        if found is None:
            found = self._redactors[key] = Redactor(*key)
        return found

    def exchange(
        self,
        route: Route,
        backend: Backend,
        puid: str,
        started: float,
        answered: float,
        request: tuple[bytes, str],
        response: tuple[int, bytes, str],
        *,
        shadow: bool = False,
    ) -> None:
        """Log one request to one predictor and its answer (``started``/``answered``: epoch seconds;
        ``request``: body, content type; ``response``: status, body, content type). Never raises,
        never waits."""
        if self.emitter is None:
            return
        try:
            options = backend.logging
            if not options.enabled:
                self.disabled += 1
                return
            if not sampled(puid, options.sample_rate):
                self.sampled_out += 1
                return
            status, answer, answer_type = response
            common = {
                "request_id": puid,
                "deployment": route.deployment,
                "namespace": route.namespace,
                "endpoint": backend.role,
                "role": "shadow" if shadow else backend.role,
                "version": backend.version,
                "model_id": f"{route.deployment}-v{backend.version}" if backend.version else route.deployment,
                "source": backend.url,
            }
            self.emitter.emit(
                (
                    Event(R.CE_REQUEST, time=started, body=request[0], content_type=request[1],
                          transform=self.redactor(options), **common),
                    Event(R.CE_RESPONSE, time=answered, body=answer, content_type=answer_type, status=status,
                          latency_ms=max(0.0, (answered - started) * 1000.0), **common),
                )
            )  # fmt: skip
        except Exception:  # logging never fails a request
            self.errors += 1
            log.exception("could not log a request to %s (%s)", route.key, backend.role)

    def feedback(self, event: Event) -> bool:
        """Hand a feedback event (``feedback.py``) to the emitter; False (counted) if it was not taken."""
        if self.emitter is not None and self.emitter.emit((event,)):
            self.feedback_sent += 1
            return True
        self.feedback_refused += 1
        return False

    def status(self) -> dict[str, Any]:
        base = self.emitter.status() if self.emitter is not None else {"enabled": False}
        withheld = sum(r.withheld for r in list(self._redactors.values()))
        return {**base, "sampled_out": self.sampled_out, "disabled": self.disabled,
                "withheld": withheld, "errors": self.errors, "feedback_sent": self.feedback_sent,
                "feedback_refused": self.feedback_refused}  # fmt: skip
