"""MLflow registry webhook signatures (Standard Webhooks style, as MLflow 3 sends them).

MLflow signs ``"{delivery_id}.{timestamp}.{body}"`` with HMAC-SHA256 and sends
``X-MLflow-Signature: v1,<base64>``, ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from pushbutton.registry import MLFLOW_RUN

SIGNATURE = "X-MLflow-Signature"
DELIVERY_ID = "X-MLflow-Delivery-Id"
TIMESTAMP = "X-MLflow-Timestamp"
MAX_AGE_SECONDS = 300
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() also takes "١٢", "+1_0", 400 digits


class WebhookRejected(Exception):
    """The request is not a genuine, fresh MLflow delivery; the reason is safe to log (no secret)."""


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
    """Check signature and freshness; return the delivery id. Raise ``WebhookRejected`` otherwise."""
    lower = {k.lower(): v for k, v in headers.items()}
    signature = lower.get(SIGNATURE.lower())
    delivery_id = lower.get(DELIVERY_ID.lower())
    timestamp = lower.get(TIMESTAMP.lower())
    if not signature:
        raise WebhookRejected(f"missing {SIGNATURE} header")
    if not delivery_id or not timestamp:
        raise WebhookRejected(f"missing {DELIVERY_ID} or {TIMESTAMP} header")
    for name, value in ((SIGNATURE, signature), (DELIVERY_ID, delivery_id)):
        if not value.isascii():  # compare_digest raises TypeError, encode() on lone surrogates
            raise WebhookRejected(f"{name} is not ASCII (MLflow sends a base64 signature and a UUID)")
    if not UNIX_SECONDS.fullmatch(timestamp):
        raise WebhookRejected(f"{TIMESTAMP} is not a unix timestamp (whole seconds, up to 12 digits)")
    age = abs((now if now is not None else time.time()) - int(timestamp))
    if not age <= MAX_AGE_SECONDS:  # written so a NaN age is rejected too
        raise WebhookRejected(
            f"timestamp is {age:.0f}s away from now (limit {MAX_AGE_SECONDS}s): replay or clock skew"
        )
    expected = sign(secret, delivery_id, timestamp, body)
    offered = [s.strip() for s in signature.split(" ") if s.strip()]  # Standard Webhooks allows several
    if not any(hmac.compare_digest(expected, s) for s in offered):
        raise WebhookRejected("signature does not match (wrong secret or altered body)")
    return delivery_id


def created_version(body: bytes) -> tuple[str, str, str] | None:
    """(model, version, MLflow run id or "") of a ``model_version.created`` delivery; None for any
    other event. MLflow 3 sends ``data.run_id`` only when the client did (registering a logged model
    ``models:/m-...`` it is null), so the run id pushbutton tags every version with comes next."""
    import json

    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected("body is not JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookRejected("body is not a JSON object")
    if (payload.get("entity"), payload.get("action")) != ("model_version", "created"):
        return None
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    name, version = data.get("name"), data.get("version")
    if not name or not str(version or "").isdigit():
        raise WebhookRejected("model_version.created payload lacks data.name or a numeric data.version")
    tags = data.get("tags") if isinstance(data.get("tags"), dict) else {}
    return str(name), str(version), str(data.get("run_id") or tags.get(MLFLOW_RUN) or "")


def cicd_run_id(version: str, mlflow_run_id: str | None = "") -> str:
    """One automatic CI/CD run per registered version: redeliveries and CLI triggers collapse into it.

    The start of the MLflow run id that produced the version keeps the id unique when a registered
    model is deleted and recreated (MLflow numbers versions from 1 again): the new version 1 gets its
    own run instead of being taken for the old one, whose recorded actions it would skip."""
    suffix = "".join(c for c in mlflow_run_id or "" if c.isalnum())[:8]
    return f"registered__v{version}" + (f"__{suffix}" if suffix else "")


AUTOMATIC_RUN = re.compile(r"^registered__v(?P<version>[0-9]+)(?:__[A-Za-z0-9]{1,8})?$")


def run_version(run_id: str, conf: Mapping[str, object] | None = None) -> str | None:
    """The version a CI/CD run releases: its conf's number, else its automatic run id's (``cicd_run_id``);
    None when neither tells (e.g. a run of 'latest' before ``build`` resolved it)."""
    requested = str((conf or {}).get("version") or "")
    if requested.isdigit():
        return requested
    found = AUTOMATIC_RUN.match(run_id)
    return found["version"] if found else None
