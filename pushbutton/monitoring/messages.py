"""Seldon message bodies as rows: what a logged request sent and what its model answered.

Requests (``data.ndarray``/``data.tensor`` with ``data.names``, ``jsonData``, the TensorFlow protocol's
``instances``) become ``names`` plus one list of values per row; responses one prediction per row
(a row of several outputs is kept raw only), the class probabilities a model returns in ``meta.tags``
(``{"classes", "probabilities"}``, what pushbutton's sklearn class answers) and the status of a Seldon
``FAILURE`` body. A body that is valid JSON but not tabular (``strData``, ``binData``) gives no rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pushbutton.monitoring.records import Label

if TYPE_CHECKING:
    from pushbutton.monitoring.events import Half


class EventError(ValueError):
    """A malformed event: the message says which event, what is wrong and how to fix it (HTTP 400)."""


def request_rows(body: Any) -> tuple[tuple[str, ...], list[list[Any]]]:
    """``(names, rows)`` of a Seldon (or TensorFlow-protocol) request; ``((), [])`` if not tabular."""
    if not isinstance(body, dict):
        return (), []
    data = body.get("data")
    if isinstance(data, dict):
        names = tuple(map(str, data.get("names") or ()))
        return names, _as_rows(_values(data))
    json_data = body.get("jsonData")
    if json_data is not None:
        return _json_rows(json_data)
    instances = body.get("instances")
    if isinstance(instances, list):
        return _json_rows(instances)
    return (), []


def response_values(body: Any) -> tuple[list[Any] | None, tuple[str, ...], list[list[float]] | None, int]:
    """``(predictions, classes, probabilities, status)`` of a Seldon (or TensorFlow-protocol) response."""
    if not isinstance(body, dict):
        return None, (), None, 200
    status = 200
    failure = body.get("status")
    if isinstance(failure, dict) and str(failure.get("status", "")).upper() == "FAILURE":
        code = failure.get("code")
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
    predictions: list[Any] | None = None
    data = body.get("data")
    if isinstance(data, dict):
        predictions = _predictions(_values(data))
    elif isinstance(body.get("jsonData"), list):
        predictions = _predictions(body["jsonData"])
    elif isinstance(body.get("predictions"), list):
        predictions = _predictions(body["predictions"])
    classes: tuple[str, ...] = ()
    probabilities = None
    meta = body.get("meta")
    tags = meta.get("tags") if isinstance(meta, dict) else None
    if isinstance(tags, dict) and isinstance(tags.get("probabilities"), list):
        classes = tuple(str(c) for c in tags.get("classes") or ())
        probabilities = tags["probabilities"]
    return predictions, classes, probabilities, status


def _values(data: dict[str, Any]) -> Any:
    if "ndarray" in data:
        return data["ndarray"]
    tensor = data.get("tensor")
    if isinstance(tensor, dict):
        shape, values = tensor.get("shape") or [], tensor.get("values") or []
        if len(shape) == 2 and isinstance(values, list) and shape[0] * shape[1] == len(values):
            width = shape[1]
            return [values[i : i + width] for i in range(0, len(values), width)]
        if len(shape) == 1 and isinstance(values, list):
            return values
    return None


def _as_rows(values: Any) -> list[list[Any]]:
    if not isinstance(values, list) or not values:
        return []
    if all(isinstance(row, list) for row in values):
        return values
    if not any(isinstance(v, list | dict) for v in values):
        return [values]  # one row written as a flat list
    return []


def _json_rows(value: Any) -> tuple[tuple[str, ...], list[list[Any]]]:
    if isinstance(value, dict):
        names = tuple(str(k) for k in value)
        columns = list(value.values())
        if columns and all(isinstance(c, list) for c in columns):
            return names, [list(row) for row in zip(*columns, strict=False)]
        return names, [columns]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        names = tuple(dict.fromkeys(str(k) for row in value for k in row))
        return names, [[row.get(n) for n in names] for row in value]
    return (), _as_rows(value)


def _predictions(values: Any) -> list[Any] | None:
    if not isinstance(values, list):
        return None
    out: list[Any] = []
    for value in values:
        if isinstance(value, list):
            out.append(value[0] if len(value) == 1 else None)  # several outputs per row: kept raw only
        else:
            out.append(value)
    return out


def labels_of(half: Half) -> list[Label]:
    """A feedback event's ``truth`` as one label per row (Seldon's feedback message)."""
    body = half.body if isinstance(half.body, dict) else {}
    truth = body.get("truth")
    if not isinstance(truth, dict):
        raise EventError(
            f"feedback {half.event_id}: body needs a 'truth' Seldon message, e.g. "
            '{"truth": {"data": {"ndarray": [1]}}}'
        )
    truths = truth_values(truth)
    if not truths:
        raise EventError(f"feedback {half.event_id}: 'truth' holds no values (use data.ndarray: one per row)")
    return [Label(half.request_id, value, row) for row, value in enumerate(truths)]


def truth_values(truth: dict[str, Any]) -> list[Any] | None:
    """A feedback's ``truth`` message as one value per row (``data.ndarray``/``data.tensor``/``jsonData``;
    a row of several values becomes None), or None when it holds no list of values."""
    data = truth.get("data")
    return _predictions(_values(data) if isinstance(data, dict) else truth.get("jsonData"))
