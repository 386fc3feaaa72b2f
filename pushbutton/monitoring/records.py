"""What the request log holds: Seldon's request-logger CloudEvents (names and types) and ``InferenceRecord``.

Seldon Core v1's executor (``executor/logger/worker.go``) sends one CloudEvent (spec 1.0, **binary
mode** over HTTP) per request and one per response of every logged graph node::

    POST <logger.url>
    Ce-Specversion: 1.0
    Ce-Id: <a fresh uuid per event>            # request and response have different ids
    Ce-Type: io.seldon.serving.inference.request | io.seldon.serving.inference.response
    Ce-Source: <the executor's URL>
    Ce-Time: <RFC 3339 time the event was made>
    Ce-Requestid: <the request's puid>         # the same on both halves: pairs them
    Ce-Modelid: <graph node name>
    Ce-Inferenceservicename: <SeldonDeployment name>
    Ce-Namespace: <namespace>
    Ce-Endpoint: <predictor name>
    Ce-Protocol: seldon
    Content-Type: application/json
    <body: the Seldon message as the node received (request) or answered (response) it>

HTTP header names are case-insensitive (Go canonicalises them to ``Ce-Requestid``; Seldon's own
Python logger reads ``Ce-Type``/``Ce-id``/``CE-Time``); the logger matches them case-insensitively.
Feedback (``io.seldon.serving.feedback``) carries ``{"request", "response", "truth"}``: a late label.

For high rates the logger also takes the **batched** form of the CloudEvents HTTP binding
(``Content-Type: application/cloudevents-batch+json``): a JSON array of structured events, each an
object with the attributes above as lowercase keys (``id``, ``type``, ``requestid``, …) and the body
in ``data`` (or base64 in ``data_base64``). A single structured event
(``application/cloudevents+json``) is accepted too.

**pushbutton's extensions** (CloudEvents extension attributes are lowercase alphanumeric; in binary
mode they travel as ``Ce-<Name>`` headers, e.g. ``Ce-Pushbuttonversion``): the gateway's emitter adds

* ``pushbuttonversion`` — the model version that answered (``X-Pushbutton-Version``);
* ``pushbuttonrole`` — the predictor role (``champion``, ``candidate``; ``shadow`` for shadow copies);
* ``pushbuttonlatencyms`` — on responses: milliseconds the backend took (else the difference of the
  two halves' ``time`` is used);
* ``pushbuttonstatus`` — on responses: the HTTP status the gateway answered (else 200, or the
  ``status.code`` of a Seldon ``FAILURE`` body).

**SeldonDeployment (Kubernetes, issue 16)**: Seldon's executor knows nothing of pushbutton versions,
so without the extensions the record is mapped from Seldon's own attributes: the deployment (=
pushbutton model) is ``inferenceservicename``; the predictor role is ``endpoint`` (the rendered
SeldonDeployment names its predictors after the roles, ``champion``/``candidate``); the version is
taken from the graph node name ``modelid`` when it ends in ``-v<N>`` (the renderer names the node
``<model>-v<N>``; see ``version_from_model_id``), else from an ``endpoint`` of the form
``<role>-v<N>``, else it is empty (stored, counted as ``unversioned``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SPEC_VERSION = "1.0"

# Ce-Type values (Seldon's executor/logger/worker.go)
CE_REQUEST = "io.seldon.serving.inference.request"
CE_RESPONSE = "io.seldon.serving.inference.response"
CE_FEEDBACK = "io.seldon.serving.feedback"
# KServe/KFServing send the same payload logger events under these types
KFSERVING_TYPES = {
    "org.kubeflow.serving.inference.request": CE_REQUEST,
    "org.kubeflow.serving.inference.response": CE_RESPONSE,
    "org.kubeflow.serving.feedback": CE_FEEDBACK,
}
CE_TYPES = (CE_REQUEST, CE_RESPONSE, CE_FEEDBACK)

# content types
JSON_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

# CloudEvents attribute names (structured/batch mode keys; binary mode: "Ce-" + name, any case)
ATTR_SPECVERSION = "specversion"
ATTR_ID = "id"
ATTR_TYPE = "type"
ATTR_SOURCE = "source"
ATTR_TIME = "time"
ATTR_DATACONTENTTYPE = "datacontenttype"
# Seldon's extensions (worker.go: "cloud events extension attributes have to be lowercase alphanumeric")
ATTR_REQUEST_ID = "requestid"
ATTR_MODEL_ID = "modelid"
ATTR_SERVICE = "inferenceservicename"
ATTR_NAMESPACE = "namespace"
ATTR_ENDPOINT = "endpoint"
ATTR_PROTOCOL = "protocol"
# pushbutton's extensions (see the module docstring)
ATTR_VERSION = "pushbuttonversion"
ATTR_ROLE = "pushbuttonrole"
ATTR_LATENCY_MS = "pushbuttonlatencyms"
ATTR_STATUS = "pushbuttonstatus"

REQUIRED_ATTRIBUTES = (ATTR_ID, ATTR_TYPE, ATTR_REQUEST_ID)


def ce_header(attribute: str) -> str:
    """The binary-mode HTTP header of a CloudEvents attribute as Seldon spells it: ``Ce-Requestid``."""
    return "Ce-" + attribute.capitalize()


# the binary-mode headers, as Seldon's executor sends them
HEADER_ID = ce_header(ATTR_ID)  # Ce-Id
HEADER_TYPE = ce_header(ATTR_TYPE)  # Ce-Type
HEADER_SOURCE = ce_header(ATTR_SOURCE)
HEADER_TIME = ce_header(ATTR_TIME)
HEADER_SPECVERSION = ce_header(ATTR_SPECVERSION)
HEADER_REQUEST_ID = ce_header(ATTR_REQUEST_ID)  # Ce-Requestid
HEADER_MODEL_ID = ce_header(ATTR_MODEL_ID)  # Ce-Modelid
HEADER_SERVICE = ce_header(ATTR_SERVICE)  # Ce-Inferenceservicename
HEADER_NAMESPACE = ce_header(ATTR_NAMESPACE)  # Ce-Namespace
HEADER_ENDPOINT = ce_header(ATTR_ENDPOINT)  # Ce-Endpoint
HEADER_VERSION = ce_header(ATTR_VERSION)  # Ce-Pushbuttonversion
HEADER_ROLE = ce_header(ATTR_ROLE)  # Ce-Pushbuttonrole
HEADER_LATENCY_MS = ce_header(ATTR_LATENCY_MS)
HEADER_STATUS = ce_header(ATTR_STATUS)

_VERSION_SUFFIX = re.compile(r"-v(\d+)$")


def version_from_model_id(model_id: str, endpoint: str = "") -> str:
    """A SeldonDeployment's version: ``iris-v3`` (graph node) or ``champion-v3`` (predictor) → ``"3"``."""
    for name in (model_id, endpoint):
        match = _VERSION_SUFFIX.search(name or "")
        if match:
            return match.group(1)
    return ""


NODE_SEPARATOR = ":"  # the predictor of a graph node's record: ``<role>:<node>`` (never a role's character)


def node_predictor(role: str, node: str) -> str:
    """The predictor (``pushbuttonrole``) of a graph node's events below the entry: ``champion:linear``.
    The local runtime's orchestrator logs them (``serving/graph_log.py``); stores keep such records in
    the request log only, never as feature rows, so indicators read the graph's entry alone."""
    return f"{role}{NODE_SEPARATOR}{node}"


def is_node_predictor(predictor: str) -> bool:
    """Whether a record's predictor is a graph node's (``node_predictor``), not the entry's role."""
    return NODE_SEPARATOR in (predictor or "")


def role_from_endpoint(endpoint: str) -> str:
    """A SeldonDeployment predictor name → the role: ``champion-v3`` → ``champion``."""
    return _VERSION_SUFFIX.sub("", endpoint or "")


@dataclass(slots=True)
class InferenceRecord:
    """One request paired with its response (or one half alone, ``complete`` False).

    ``inputs`` are the request's rows (``None``: no request half arrived), in the order of ``names``
    (the request's ``data.names``; empty when the request named no columns: the model's schema order
    applies). ``predictions`` hold one value per row (``None``: no response half); ``classes`` and
    ``probabilities`` the class probabilities the model returned in ``meta.tags`` (one row per input
    row, one column per class). ``request_body``/``response_body`` are the raw JSON texts as received
    (minus features the model's logging config excludes).
    """

    request_id: str
    model: str  # the deployment (= pushbutton model): Ce-Inferenceservicename
    predictor: str  # role: champion | candidate | shadow (or the Seldon predictor name)
    version: str = ""
    namespace: str = ""
    model_id: str = ""  # Ce-Modelid: the graph node
    request_event_id: str | None = None
    response_event_id: str | None = None
    request_time: datetime | None = None
    response_time: datetime | None = None
    latency_ms: float | None = None
    status: int | None = None  # HTTP status of the answer; None without a response half
    names: tuple[str, ...] = ()
    inputs: list[list[Any]] | None = None
    predictions: list[Any] | None = None
    classes: tuple[str, ...] = ()
    probabilities: list[list[float]] | None = None
    request_body: str | None = None
    response_body: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other event attributes worth keeping

    @property
    def complete(self) -> bool:
        return self.request_event_id is not None and self.response_event_id is not None

    @property
    def time(self) -> datetime:
        """When the request was made (the response's time for a response alone)."""
        when = self.request_time or self.response_time
        if when is None:
            raise ValueError(f"record {self.request_id} has neither a request nor a response time")
        return when

    @property
    def row_count(self) -> int:
        if self.inputs is not None:
            return len(self.inputs)
        return len(self.predictions) if self.predictions is not None else 0

    @property
    def error(self) -> bool:
        return self.status is not None and self.status >= 400


@dataclass(frozen=True, slots=True)
class Label:
    """A late label (ground truth) for one row of one logged request."""

    request_id: str
    label: Any
    row: int = 0
