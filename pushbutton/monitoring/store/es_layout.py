"""What the Elasticsearch backend creates, loaded from ``deploy/elasticsearch/`` (one source of truth for
the code and for operators who apply the definitions by hand).

Each JSON file there is the body of one REST ``PUT`` named after the file::

    ilm/pushbutton-logs.json                      PUT _ilm/policy/pushbutton-logs
    component_templates/<name>.json               PUT _component_template/<name>
    index_templates/<name>.json                   PUT _index_template/<name>
    indices/<name>.json                           PUT <name>            (regular indices)

Names: per model (= deployment) two data streams, ``logs-pushbutton.requests-<model>`` (one document
per request) and ``logs-pushbutton.rows-<model>`` (one document per input row, the features typed
from the spec's ``schema.inputs`` by a per-model index template derived from
``index_templates/pushbutton-rows.json``); the regular indices ``pushbutton-indicators``,
``pushbutton-labels``, ``pushbutton-models`` (each model's schema) and ``pushbutton-alerts`` (the alert history).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from pushbutton.monitoring.store.base import (
    PREDICTION,
    PROBA_PREFIX,
    ROW_COLUMNS,
    Column,
    ModelSchema,
    StoreError,
)

DEFINITIONS = Path(__file__).resolve().parents[3] / "deploy" / "elasticsearch"
REQUESTS_PREFIX = "logs-pushbutton.requests-"
ROWS_PREFIX = "logs-pushbutton.rows-"
INDICATORS = "pushbutton-indicators"
LABELS = "pushbutton-labels"
ALERTS = "pushbutton-alerts"  # the alert history (pushbutton.alerting)
MODELS = "pushbutton-models"
POLICY = "pushbutton-logs"
MODEL_PRIORITY_STEP = 100  # a model's own template outranks the generic one by this much
# spec type -> Elasticsearch field type (float is kept as double: aggregations then match the SQL store)
ES_TYPES = {
    "double": {"type": "double"},
    "float": {"type": "double"},
    "long": {"type": "long"},
    "integer": {"type": "long"},
    "boolean": {"type": "boolean"},
    "string": {"type": "keyword", "ignore_above": 8191},  # longer values: kept in _source, not aggregated
}
_STREAM_SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_BAD_FIELD = re.compile(r"[*,\"\\]|^\.|\.$|\.\.|^_|^\s*$")
_BAD_CLASS = re.compile(r"[*,\"\\]|^\.|\.$|\.\.|^\s*$")
# a rows frame has these columns: no feature may take their names
RESERVED = frozenset((*ROW_COLUMNS, PREDICTION))


def stream_name(model: str) -> str:
    """The part of the data stream names that stands for ``model``: the name itself when Elasticsearch
    allows it (pushbutton's DNS-safe names always are), else a sanitised form with a hash suffix."""
    if _STREAM_SAFE.match(model):
        return model
    digest = hashlib.sha1(model.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", model.lower()).strip("-._")[:60]
    return f"{cleaned or 'model'}-{digest}"


def requests_stream(model: str) -> str:
    return REQUESTS_PREFIX + stream_name(model)


def rows_stream(model: str) -> str:
    return ROWS_PREFIX + stream_name(model)


def model_template_name(model: str) -> str:
    return "pushbutton-rows-" + stream_name(model)


def model_policy_name(model: str) -> str:
    return f"{POLICY}-{stream_name(model)}"


def check_feature_names(model: str, columns: tuple[Column, ...]) -> None:
    for column in columns:
        if column.name in RESERVED or column.name.startswith(PROBA_PREFIX):
            raise StoreError(
                f"{model}: feature {column.name!r} cannot be a column of the request log (reserved: "
                f"{', '.join(sorted(RESERVED))}, and names starting with {PROBA_PREFIX}); rename the input in "
                "schema.inputs"
            )
        if _BAD_FIELD.search(column.name):
            raise StoreError(
                f"{model}: feature {column.name!r} cannot be an Elasticsearch field name (no '*', ',', quotes "
                "or backslashes, no leading '_', no leading, trailing or doubled '.'); rename the input in "
                "schema.inputs"
            )
        if column.type not in ES_TYPES:
            raise StoreError(f"{model}: feature {column.name!r} has unknown type {column.type!r}")


@cache
def _load(relative: str, root: Path) -> dict[str, Any]:
    path = root / relative
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(
            f"{path}: the Elasticsearch definitions are missing (fix: run from a pushbutton source checkout, "
            "whose deploy/elasticsearch/ holds them, or pass definitions=<that folder>)"
        ) from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (fix: repair the file)") from None


class Layout:
    """The definitions of ``deploy/elasticsearch`` (or ``root``), and the per-model objects built from them."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else DEFINITIONS

    def load(self, relative: str) -> dict[str, Any]:
        return copy.deepcopy(_load(relative, self.root))

    def policy(self, days: float) -> dict[str, Any]:
        """The ILM policy body with its delete phase at ``days`` (fractions of a day as hours)."""
        if days <= 0:
            raise StoreError(f"retention_days must be > 0, got {days} (fix: use 1 to 3650)")
        body = self.load(f"ilm/{POLICY}.json")
        body["policy"]["phases"]["delete"]["min_age"] = (
            f"{int(days)}d" if float(days).is_integer() else f"{round(days * 24)}h"
        )
        return body

    def component_templates(self) -> dict[str, dict[str, Any]]:
        return {
            p.stem: self.load(f"component_templates/{p.name}") for p in self._files("component_templates")
        }

    def index_templates(self) -> dict[str, dict[str, Any]]:
        return {p.stem: self.load(f"index_templates/{p.name}") for p in self._files("index_templates")}

    def indices(self) -> dict[str, dict[str, Any]]:
        return {p.stem: self.load(f"indices/{p.name}") for p in self._files("indices")}

    def _files(self, folder: str) -> list[Path]:
        found = sorted((self.root / folder).glob("*.json"))
        if not found:
            _load(f"{folder}/missing.json", self.root)  # raises the clear error
        return found

    def model_template(self, schema: ModelSchema, policy: str | None = None) -> dict[str, Any]:
        """The index template of ``schema.model``'s rows stream: the generic rows template, narrowed to
        the model's stream, with its features and prediction typed."""
        body = self.load("index_templates/pushbutton-rows.json")
        body["index_patterns"] = [rows_stream(schema.model)]
        body["priority"] = int(body.get("priority", 0)) + MODEL_PRIORITY_STEP
        body["_meta"] = {"managed_by": "pushbutton", "model": schema.model}
        template: dict[str, Any] = {"mappings": {"properties": feature_mappings(schema)}}
        if policy:
            template["settings"] = {"index.lifecycle.name": policy}
        body["template"] = template
        return body

    def model_requests_template(self, model: str, policy: str) -> dict[str, Any]:
        """The requests stream's template of one model (only made to give it its own ILM policy)."""
        body = self.load("index_templates/pushbutton-requests.json")
        body["index_patterns"] = [requests_stream(model)]
        body["priority"] = int(body.get("priority", 0)) + MODEL_PRIORITY_STEP
        body["_meta"] = {"managed_by": "pushbutton", "model": model}
        body["template"] = {"settings": {"index.lifecycle.name": policy}}
        return body


def feature_mappings(schema: ModelSchema) -> dict[str, Any]:
    """``properties`` for the typed part of a rows document: ``features.<name>`` and ``prediction``."""
    return {
        "features": {"properties": {c.name: dict(ES_TYPES[c.type]) for c in schema.features}},
        PREDICTION: dict(ES_TYPES[schema.prediction.type]),
    }


def usable_class(label: str) -> bool:
    """Whether a class label can name a ``proba.<label>`` field (others get no probability column)."""
    return 0 < len(label) <= 255 and not _BAD_CLASS.search(label)
