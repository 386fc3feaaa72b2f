"""Seldon's feedback API on the gateway: a late label for a request the gateway served.

``POST /seldon/<namespace>/<deployment>/api/v1.0/feedback`` takes Seldon's ``Feedback`` message::

    {"request": <SeldonMessage>, "response": <SeldonMessage>, "truth": <SeldonMessage>, "reward": 1.0}

* **Request id**: the ``Seldon-Puid`` header, else ``response.meta.puid``, else ``request.meta.puid``
  — the id the prediction's answer carried (header and ``meta.puid``). Without one the answer is 400:
  a label that joins no request is of no use.
* **Labels**: ``truth`` holds one label per row of the request, as a Seldon message
  (``data.ndarray`` ``[1, 0]`` or ``[[1], [0]]``, ``data.tensor`` of shape ``[n]`` or ``[n, 1]``,
  ``jsonData`` a list); row ``i`` of ``truth`` labels row ``i`` of the request. A missing or empty
  ``truth``, or a row of several values, is answered 400 saying how to write it (``reward`` alone is
  not a label).
* **Where it goes**: one CloudEvent ``Ce-Type: io.seldon.serving.feedback`` with ``Ce-Requestid`` =
  the request id and the deployment's tags (``Ce-Inferenceservicename``, ``Ce-Namespace``, the
  champion's ``Ce-Endpoint``/``Ce-Modelid``/version: labels join by model and request id, whichever
  predictor answered), handed to the request-log emitter like the request events: the client never
  waits on the logger, and a logger that is away gets it from the spool later. The logger stores the
  labels (``MonitoringStore.write_labels``); ids it does not hold are kept and counted
  (``unknown_labels`` in its ``/status``). The event carries ``truth`` and ``reward`` only: the
  request and the response were logged when the request was served (the request with the model's
  ``logging.exclude`` applied), and their copies in the feedback must not bypass that.
* The feedback is sent whatever the route's sampling or ``logging.enabled`` say (a label is small and
  rare); with request logging off on the gateway (no logger) it is answered 503, since the label
  would be lost. An emitter queue that is full is answered 503 with ``Retry-After``.
* **Answer**: 200 with a Seldon message, as seldon-core's executor answers feedback:
  ``{"data": {"names": [], "ndarray": []}, "meta": {"puid": <id>, "tags": {"labels": <rows>}}}`` and
  the ``Seldon-Puid`` header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pushbutton.monitoring import records as R
from pushbutton.monitoring.messages import truth_values
from pushbutton.monitoring.wire import Event
from pushbutton.serving.requestlog import PUID_HEADER, RequestLog, valid_puid
from pushbutton.serving.routes import Backend, Route

FEEDBACK_PATH = "/api/v1.0/feedback"
EXAMPLE = '{"response": {"meta": {"puid": "<the answer\'s puid>"}}, "truth": {"data": {"ndarray": [1]}}}'


class FeedbackError(ValueError):
    """A feedback the gateway cannot turn into labels; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Feedback:
    """A checked feedback: its request id, how many rows it labels, and the body to log."""

    puid: str
    rows: int
    body: bytes

    def answer(self) -> dict[str, Any]:
        """What seldon-core's executor answers a feedback: a Seldon message (here with the id)."""
        return {
            "data": {"names": [], "ndarray": []},
            "meta": {"puid": self.puid, "tags": {"labels": self.rows}},
        }


def parse_feedback(headers: Mapping[str, str], body: bytes) -> Feedback:
    """Check a feedback body (see the module docstring); ``FeedbackError`` says what is wrong and the fix."""
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise FeedbackError(
            f"the body is not JSON ({exc}) (fix: send Seldon's Feedback message, e.g. {EXAMPLE})"
        ) from None
    if not isinstance(message, dict):
        raise FeedbackError(f"the body must be a JSON object (Seldon's Feedback message), e.g. {EXAMPLE}")
    puid = headers.get(PUID_HEADER, "")
    where = f"the {PUID_HEADER} header"
    if not puid:
        for part in ("response", "request"):
            meta = message.get(part, {}).get("meta") if isinstance(message.get(part), dict) else None
            puid = meta.get("puid", "") if isinstance(meta, dict) else ""
            if puid:
                where = f"{part}.meta.puid"
                break
    if not puid:
        raise FeedbackError(
            f"no request id: the feedback names no request (fix: send the puid the prediction returned — its "
            f"{PUID_HEADER} header or meta.puid — as the {PUID_HEADER} header or in response.meta.puid, "
            f"e.g. {EXAMPLE})"
        )
    if not isinstance(puid, str) or not valid_puid(puid):
        raise FeedbackError(
            f"{where}: {puid!r} is not a request id (fix: the puid the prediction returned, 1 to 128 visible "
            "ASCII characters)"
        )
    truth = message.get("truth")
    if not isinstance(truth, dict):
        given = "missing" if truth is None else f"a {type(truth).__name__}, not a Seldon message"
        raise FeedbackError(
            f"truth: {given} (fix: the true label of each row of the request as a Seldon message, e.g. "
            '"truth": {"data": {"ndarray": [1]}}; a reward alone is not stored as a label)'
        )
    values = truth_values(truth)
    if not values:
        raise FeedbackError(
            "truth: holds no values (fix: one label per row in data.ndarray, data.tensor or jsonData, e.g. "
            '{"data": {"ndarray": [1, 0]}})'
        )
    for row, value in enumerate(values):
        if value is None or isinstance(value, dict | list):
            what = "is null or holds several values" if value is None else "is not one value"
            raise FeedbackError(
                f"truth row {row}: {what} (fix: one label per row, e.g. "
                '{"data": {"ndarray": [[1], [0]]}} or {"data": {"ndarray": [1, 0]}})'
            )
    logged: dict[str, Any] = {"truth": truth}
    if "reward" in message:
        logged["reward"] = message["reward"]
    return Feedback(puid, len(values), json.dumps(logged).encode())


def tagged_backend(route: Route) -> Backend:
    """The backend whose tags a feedback event carries: the champion, else the first answering one."""
    if "champion" in route.backends:
        return route.backends["champion"]
    return route.backends[route.live[0] if route.live else next(iter(route.backends))]


def feedback_event(route: Route, feedback: Feedback, when: float) -> Event:
    """The ``io.seldon.serving.feedback`` CloudEvent of a checked feedback (tagged like request events)."""
    backend = tagged_backend(route)
    return Event(
        R.CE_FEEDBACK,
        request_id=feedback.puid,
        deployment=route.deployment,
        namespace=route.namespace,
        endpoint=backend.role,
        role=backend.role,
        version=backend.version,
        model_id=f"{route.deployment}-v{backend.version}" if backend.version else route.deployment,
        source=backend.url,
        time=when,
        body=feedback.body,
    )


def handle_feedback(
    request_log: RequestLog, route: Route, headers: Mapping[str, str], body: bytes, when: float
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Check a feedback and hand its event to the emitter: ``(status, JSON answer, headers)``."""
    emitter = request_log.emitter
    try:
        if emitter is None:
            raise FeedbackError(
                "request logging is off on this gateway (no --logger-url), so the label would be lost (fix: "
                "start the gateway with its logger — `pushbutton up` does — or send the labels to the logger's "
                "POST /labels/{model}, or with `pushbutton labels MODEL FILE`)",
                503,
            )
        feedback = parse_feedback(headers, body)
        if len(feedback.body) > emitter.max_event_bytes:
            raise FeedbackError(
                f"truth of {len(feedback.body)} bytes is over the request log's limit of {emitter.max_event_bytes} "
                "bytes per event (fix: POST these labels to the logger's /labels/{model}, which takes any "
                "number of rows, or raise the gateway's --log-max-event-bytes)",
                413,
            )
    except FeedbackError as exc:
        request_log.feedback_refused += 1
        return exc.status, {"error": str(exc)}, {}
    if not request_log.feedback(feedback_event(route, feedback, when)):
        return 503, {"error": "the request log's memory queue is full, so the label was not taken (fix: "
                     "send it again in a moment)"}, {"Retry-After": "1"}  # fmt: skip
    return 200, feedback.answer(), {PUID_HEADER: feedback.puid}
