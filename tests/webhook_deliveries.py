"""MLflow-style webhook deliveries for tests: a ``model_version.created`` body and signed headers."""

from __future__ import annotations

import json
import time

from pushbutton.webhook import DELIVERY_ID, SIGNATURE, TIMESTAMP, sign


def created_body(name: str, version: str, mlflow_run: str = "0a1b2c3d4e5f") -> bytes:
    """A ``model_version.created`` delivery as MLflow 3 sends it for a version pushbutton registered
    from a logged model: ``run_id`` null, the training run in the version's tags."""
    data = {
        "name": name, "version": version, "source": "models:/m-1", "run_id": None,
        "tags": {"pushbutton.run_id": mlflow_run}, "description": None,
    }  # fmt: skip
    return json.dumps({"entity": "model_version", "action": "created", "data": data}).encode()


def signed_headers(secret: str, body: bytes, delivery: str = "d-1", ts: int | None = None) -> dict[str, str]:
    """The headers MLflow sends: HMAC signature, delivery id, timestamp (now unless ``ts``)."""
    stamp = str(ts if ts is not None else int(time.time()))
    return {
        SIGNATURE: sign(secret, delivery, stamp, body),
        DELIVERY_ID: delivery,
        TIMESTAMP: stamp,
        "Content-Type": "application/json",
    }
