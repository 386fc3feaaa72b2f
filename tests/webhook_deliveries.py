"""MLflow-style webhook deliveries for tests: a ``model_version.created`` body and signed headers."""

from __future__ import annotations

import json
import time

from pushbutton.webhook import DELIVERY_ID, SIGNATURE, TIMESTAMP, sign


def created_body(name: str, version: str) -> bytes:
    return json.dumps(
        {"entity": "model_version", "action": "created", "data": {"name": name, "version": version}}
    ).encode()


def signed_headers(secret: str, body: bytes, delivery: str = "d-1", ts: int | None = None) -> dict[str, str]:
    """The headers MLflow sends: HMAC signature, delivery id, timestamp (now unless ``ts``)."""
    stamp = str(ts if ts is not None else int(time.time()))
    return {
        SIGNATURE: sign(secret, delivery, stamp, body),
        DELIVERY_ID: delivery,
        TIMESTAMP: stamp,
        "Content-Type": "application/json",
    }
