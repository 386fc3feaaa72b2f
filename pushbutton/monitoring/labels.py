"""Late labels (layer 3): the ground truth that arrives after the answer, joined to the request log by
request id (and the row within the request).

Three ways in, one store call (``MonitoringStore.write_labels``): Seldon's feedback API through the
gateway (``pushbutton.serving.feedback``; the logger stores the feedback events it gets), the logger's
``POST /labels/{model}`` (a body read by ``labels_from_body``: JSON or CSV, checked like a file), and a
file read here for ``pushbutton labels MODEL FILE``:

* CSV (``.csv``, ``.txt``) or Parquet (``.parquet``, ``.pq``) with the columns ``request_id`` (the
  ``meta.puid`` of the answer, also in its ``Seldon-Puid`` header), ``label`` and optionally ``row``
  (the row's position in a multi-row request; 0 when left out). Other columns are ignored.
* Every problem is reported as ``file:line: column: problem (fix: …)`` before anything is written: a
  missing column, an empty request id, a missing label, a row that is not a whole number ≥ 0.
* A request id the log does not hold (yet) is kept and reported — never dropped silently: the label
  joins its request as soon as the request is logged (e.g. still in the gateway's spool).
"""

from __future__ import annotations

import difflib
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton.errors import PushbuttonError
from pushbutton.monitoring.records import Label

if TYPE_CHECKING:
    import pandas as pd

    from pushbutton.monitoring.store.base import MonitoringStore

REQUEST_ID, ROW, LABEL = "request_id", "row", "label"
CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
SHOWN = 10  # unknown request ids named in a message; the rest are counted


JSON_EXAMPLE = '{"labels": [{"request_id": "<the answer\'s puid>", "row": 0, "label": 1}]}'
ITEM_EXAMPLE = '{"request_id": "<the answer\'s puid>", "row": 0, "label": 1}'


class LabelFileError(PushbuttonError):
    """A labels file (or body) that cannot be used as it is; nothing of it was written."""


class UnknownModelError(LabelFileError):
    """Labels for a model the store never logged a request of; nothing was written."""


@dataclass(frozen=True)
class LabelReport:
    """What ``write_labels`` did: every label written, and the request ids the log does not hold."""

    model: str
    file: str
    labels: int
    requests: int
    matched: int
    unknown: tuple[str, ...] = ()
    replaced: int = 0  # rows of the file that repeated an earlier (request id, row): the last one counts
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "file": self.file,
            "labels": self.labels,
            "requests": self.requests,
            "matched": self.matched,
            "unknown": len(self.unknown),
            "unknown_ids": list(self.unknown),
            "replaced": self.replaced,
        }

    def describe(self) -> str:
        text = (
            f"{self.model}: {self.labels} label(s) for {self.requests} request(s) from {self.file}; "
            f"{self.matched} request(s) found in the request log"
        )
        if self.replaced:
            text += f"; {self.replaced} repeated (request id, row) pair(s): the last one in the file counts"
        return text

    def unknown_message(self) -> str:
        """One line naming the unknown ids ('' when every id is known)."""
        if not self.unknown:
            return ""
        shown = ", ".join(self.unknown[:SHOWN]) + (f" … and {len(self.unknown) - SHOWN} more" if len(
            self.unknown) > SHOWN else "")  # fmt: skip
        return (
            f"{len(self.unknown)} request id(s) are not in {self.model}'s request log: {shown}. Their labels "
            "are kept and join those requests once they are logged (fix: check the ids are the answers' "
            "meta.puid of this model, or wait for the gateway's spool to reach the logger)"
        )


def read_labels(path: str | Path) -> tuple[list[Label], int]:
    """The labels of a CSV or Parquet file, and how many rows repeated an earlier (request id, row).

    Raises ``LabelFileError`` naming file, line, column and fix for every problem (up to ten)."""
    path = Path(path)
    frame, first_line = _read(path)
    return _from_frame(frame, first_line, str(path))


def _from_frame(frame: pd.DataFrame, first_line: int, path: str) -> tuple[list[Label], int]:
    """The labels of a frame read from ``path`` (named in messages) whose first row is ``first_line``."""
    columns = [str(c) for c in frame.columns]
    missing = [name for name in (REQUEST_ID, LABEL) if name not in columns]
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, columns, n=1, cutoff=0.5)
            hints.append(f"did you mean '{close[0]}' for '{name}'?" if close else f"add a '{name}' column")
        raise LabelFileError(
            f"{path}:1: {', '.join(missing)}: missing column(s); found {', '.join(columns) or 'no columns'} "
            f"(fix: {'; '.join(hints)}; the file needs request_id, label and optionally row)"
        )
    if frame.empty:
        raise LabelFileError(
            f"{path}:{first_line}: no rows under the header (fix: add request_id,label rows)"
        )
    problems: list[str] = []
    labels: dict[tuple[str, int], Label] = {}
    replaced = 0
    ids, values = frame[REQUEST_ID].tolist(), frame[LABEL].tolist()
    rows = frame[ROW].tolist() if ROW in columns else [0] * len(frame)
    for index, (request_id, value, row) in enumerate(zip(ids, values, rows, strict=True)):
        line = f"{path}:{first_line + index}"
        text = "" if _missing(request_id) else str(request_id).strip()
        if not text:
            problems.append(
                f"{line}: request_id: empty (fix: the answer's meta.puid, e.g. from its Seldon-Puid header)"
            )
        if _missing(value):
            problems.append(f"{line}: label: missing (fix: write the true label, or remove the line)")
        position = _row(row)
        if position is None:
            problems.append(f"{line}: row: {_shown(row)} is not a whole number >= 0 (fix: the row's position in "
                            "its request, 0 for single-row requests, or leave the column out)")  # fmt: skip
        if len(problems) >= 10:
            break
        if text and position is not None and not _missing(value):
            key = (text, position)
            replaced += key in labels
            labels[key] = Label(request_id=text, label=_plain(value), row=position)
    if problems:
        more = " (first 10 problems shown)" if len(problems) >= 10 else ""
        raise LabelFileError("\n".join(problems) + more)
    return list(labels.values()), replaced


def write_labels(
    store: MonitoringStore, model: str, path: str | Path, *, now: datetime | None = None
) -> LabelReport:
    """Read ``path`` and write its labels for ``model``: all of them, reporting unknown request ids."""
    check_model(store, model)
    labels, replaced = read_labels(path)
    return store_labels(store, model, labels, str(path), replaced=replaced, now=now)


def check_model(store: MonitoringStore, model: str) -> None:
    """``UnknownModelError`` unless the store has ever logged a request of ``model``."""
    if store.schema(model) is None and model not in store.models():
        raise UnknownModelError(
            f"no request of model '{model}' was ever logged, so no label can join one (fix: check the model "
            f"name; known models: {', '.join(store.models()) or 'none yet'})"
        )


def store_labels(
    store: MonitoringStore,
    model: str,
    labels: list[Label],
    source: str,
    *,
    replaced: int = 0,
    now: datetime | None = None,
) -> LabelReport:
    """Write checked labels (one store call, as every way in does) and report what joined."""
    outcome = store.write_labels(model, labels, now=now)
    requests = len({label.request_id for label in labels})
    return LabelReport(model, source, outcome.written, requests, outcome.matched,
                       tuple(sorted(outcome.unknown)), replaced)  # fmt: skip


def labels_from_body(body: bytes, content_type: str) -> tuple[list[Label], int]:
    """The labels of the logger's ``POST /labels/{model}`` body, and how many repeated an earlier
    (request id, row): JSON ``{"labels": [{"request_id", "row"?, "label"}, ...]}`` or ``text/csv``
    with the columns of a labels file. ``LabelFileError`` names item (or line), field and fix."""
    import pandas as pd

    if "csv" in content_type:
        try:
            frame = pd.read_csv(io.BytesIO(body), dtype={REQUEST_ID: str}, skip_blank_lines=False)
        except pd.errors.EmptyDataError:
            raise LabelFileError(
                "body:1: the CSV is empty (fix: a header request_id,label then rows)"
            ) from None
        except (ValueError, pd.errors.ParserError) as exc:
            raise LabelFileError(
                f"body: cannot be read as CSV: {exc} (fix: request_id,row,label rows)"
            ) from exc
        return _from_frame(frame, 2, "body")
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise LabelFileError(f"body: not JSON ({exc}) (fix: send {JSON_EXAMPLE}, or text/csv)") from None
    if not isinstance(message, dict) or set(message) != {"labels"}:
        got = sorted(message) if isinstance(message, dict) else type(message).__name__
        raise LabelFileError(
            f"body: must be an object with only 'labels', got {got} (fix: send {JSON_EXAMPLE})"
        )
    items = message["labels"]
    if not isinstance(items, list) or not items:
        raise LabelFileError(f"labels: must be a non-empty list of labels (fix: send {JSON_EXAMPLE})")
    return labels_from_records(items)


def labels_from_records(records: Iterable[Any]) -> tuple[list[Label], int]:
    """Labels from JSON objects ``{"request_id", "label", "row"?}`` and how many repeated an earlier
    (request id, row) (the last counts); ``LabelFileError`` names every problem (up to ten)."""
    problems: list[str] = []
    labels: dict[tuple[str, int], Label] = {}
    replaced = 0
    for index, item in enumerate(records):
        where = f"labels[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object, got {item!r} (fix: {ITEM_EXAMPLE})")
            continue
        unknown = sorted(set(item) - {REQUEST_ID, ROW, LABEL})
        if unknown:
            problems.append(
                f"{where}: unknown field(s) {', '.join(unknown)} (fix: only request_id, row, label)"
            )
        request_id, value, row = item.get(REQUEST_ID), item.get(LABEL), _row(item.get(ROW, 0))
        if not isinstance(request_id, str) or not request_id.strip():
            problems.append(f"{where}.request_id: {'missing' if request_id is None else repr(request_id)} "
                            "(fix: the answer's meta.puid as a string, e.g. from its Seldon-Puid header)")  # fmt: skip
        if value is None or isinstance(value, dict | list):
            what = "missing" if value is None else f"{value!r} is not one value"
            problems.append(f"{where}.label: {what} (fix: the true label: a string, number or boolean)")
        if row is None:
            problems.append(f"{where}.row: {item.get(ROW)!r} is not a whole number >= 0 (fix: the row's "
                            "position in its request, 0 for single-row requests, or leave it out)")  # fmt: skip
        if len(problems) >= 10:
            break
        if not problems:
            key = (request_id.strip(), row)
            replaced += key in labels
            labels[key] = Label(key[0], value, row)
    if problems:
        more = " (first 10 problems shown)" if len(problems) >= 10 else ""
        raise LabelFileError("\n".join(problems) + more)
    return list(labels.values()), replaced


def _read(path: Path) -> tuple[pd.DataFrame, int]:
    """The file as a frame (text columns kept as text) and the line number of its first data row."""
    import pandas as pd

    if not path.is_file():
        raise LabelFileError(f"{path}: no such file (fix: pass a CSV or Parquet file of request_id,label)")
    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            return pd.read_parquet(path), 1  # parquet has no lines: "line" N is the Nth row
        if suffix in CSV_SUFFIXES:
            # request ids stay text; labels are parsed (numbers stay numbers, the store types them)
            return pd.read_csv(path, dtype={REQUEST_ID: str}, skip_blank_lines=False), 2
    except pd.errors.EmptyDataError:
        raise LabelFileError(
            f"{path}:1: the file is empty (fix: a header request_id,label then rows)"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise LabelFileError(f"{path}: cannot be read as {suffix[1:]}: {exc} (fix: a valid file)") from exc
    raise LabelFileError(
        f"{path}: unknown file type '{suffix or '(none)'}' (fix: a .csv or .parquet file of request_id,label)"
    )


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _row(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number >= 0 and number.is_integer() else None


def _shown(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars -> Python
    return item() if callable(item) else value
