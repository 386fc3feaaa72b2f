"""Mappings, settings, templates and ILM policies as the Elasticsearch stand-in (``es_fake``) checks them.

A STAND-IN, not Elasticsearch: it enforces the rules pushbutton relies on, with Elasticsearch's error
types and messages where it knows them, so that a malformed definition or document fails the test
instead of passing silently. It does not model analysis, scoring, shards or most settings.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from datetime import UTC, datetime
from typing import Any

import pandas as pd


class EsError(Exception):
    """An error answer: HTTP ``status`` with Elasticsearch's error ``type`` and ``reason``."""

    def __init__(self, status: int, type_: str, reason: str):
        super().__init__(f"{status} {type_}: {reason}")
        self.status, self.type, self.reason = status, type_, reason

    def body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


def bad(reason: str, type_: str = "illegal_argument_exception", status: int = 400) -> EsError:
    return EsError(status, type_, reason)


COMMON = {"type", "index", "doc_values", "store", "meta", "fields", "copy_to"}
NUMERIC = {
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
}
INTEGRAL = {"long", "integer", "short", "byte", "unsigned_long"}
DATES = {"date", "date_nanos"}
PARAMS: dict[str, set[str]] = {
    "keyword": {"ignore_above", "null_value", "normalizer", "eager_global_ordinals", "split_queries_on_whitespace",
                "index_options", "norms", "similarity", "script", "on_script_error", "time_series_dimension"},
    "text": {"analyzer", "search_analyzer", "search_quote_analyzer", "fielddata", "norms", "index_options",
             "position_increment_gap", "term_vector", "similarity", "eager_global_ordinals", "index_phrases"},
    "match_only_text": set(),
    "boolean": {"null_value", "script", "on_script_error", "ignore_malformed"},
    "date": {"format", "locale", "ignore_malformed", "null_value", "script", "on_script_error"},
    "date_nanos": {"format", "locale", "ignore_malformed", "null_value", "script", "on_script_error"},
    "object": {"properties", "dynamic", "enabled", "subobjects"},
    "nested": {"properties", "dynamic", "include_in_parent", "include_in_root"},
    "flattened": {"depth_limit", "ignore_above", "null_value", "eager_global_ordinals", "index_options",
                  "similarity", "split_queries_on_whitespace", "time_series_dimensions"},
    **{t: {"coerce", "ignore_malformed", "null_value", "script", "on_script_error", "time_series_metric",
           "time_series_dimension"} | ({"scaling_factor"} if t == "scaled_float" else set()) for t in NUMERIC},
}  # fmt: skip
ROOT_KEYS = {"properties", "dynamic", "dynamic_templates", "_source", "_meta", "date_detection", "numeric_detection",
             "dynamic_date_formats", "_routing", "runtime", "subobjects", "_data_stream_timestamp"}  # fmt: skip
DYNAMIC = {True, False, "true", "false", "strict", "runtime"}
TEMPLATE_KEYS = {"settings", "mappings", "aliases", "lifecycle", "data_stream_options"}
SETTINGS = {"index.mode", "index.lifecycle.name", "index.lifecycle.rollover_alias", "index.number_of_shards",
            "index.number_of_replicas", "index.refresh_interval", "index.hidden", "index.default_pipeline",
            "index.final_pipeline", "index.codec", "index.max_result_window", "index.mapping.total_fields.limit",
            "index.sort.field", "index.sort.order", "index.routing_path", "index.auto_expand_replicas",
            "index.priority", "index.max_inner_result_window"}  # fmt: skip
INDEX_MODES = {"standard", "logsdb", "time_series", "lookup"}
PHASES = ["hot", "warm", "cold", "frozen", "delete"]
PHASE_ACTIONS = {
    "hot": {"rollover", "set_priority", "unfollow", "readonly", "shrink", "forcemerge", "searchable_snapshot",
            "downsample"},
    "warm": {"set_priority", "unfollow", "readonly", "allocate", "migrate", "shrink", "forcemerge", "downsample"},
    "cold": {"set_priority", "unfollow", "readonly", "allocate", "migrate", "searchable_snapshot", "downsample"},
    "frozen": {"unfollow", "searchable_snapshot"},
    "delete": {"wait_for_snapshot", "delete"},
}  # fmt: skip
ROLLOVER = {"max_age", "max_docs", "max_size", "max_primary_shard_size", "max_primary_shard_docs", "min_age",
            "min_docs", "min_size", "min_primary_shard_size", "min_primary_shard_docs"}  # fmt: skip
TIME_VALUE = re.compile(r"^-?\d+(d|h|m|s|ms|micros|nanos)$")
INDEX_NAME_BAD = re.compile(r'[\\/*?"<>| ,#:]')


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return {(k if k.startswith("index.") else "index." + k): v for k, v in out.items()}


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    flat = flat_settings(settings)
    for key, value in flat.items():
        if key not in SETTINGS:
            raise bad(f"unknown setting [{key}] please check that any required plugins are installed, or check the "
                      "breaking changes documentation for removed settings", "settings_exception")  # fmt: skip
        if key == "index.mode" and value not in INDEX_MODES:
            raise bad(f"[index.mode] must be one of {sorted(INDEX_MODES)}, got [{value}]")
    return flat


def check_field(path: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        raise bad(f"Expected map for property [fields] on field [{path}] but got a {type(spec).__name__}",
                  "mapper_parsing_exception")  # fmt: skip
    kind = spec.get("type", "object")
    if kind not in PARAMS:
        raise bad(f"No handler for type [{kind}] declared on field [{path}]", "mapper_parsing_exception")
    for key in spec:
        if key not in COMMON | PARAMS[kind]:
            raise bad(
                f"unknown parameter [{key}] on mapper [{path}] of type [{kind}]", "mapper_parsing_exception"
            )
    if "dynamic" in spec and spec["dynamic"] not in DYNAMIC:
        raise bad(
            f"Could not convert [dynamic] to boolean or strict: [{spec['dynamic']}]",
            "mapper_parsing_exception",
        )
    if "subobjects" in spec and spec["subobjects"] not in (True, False, "true", "false", "auto"):
        raise bad(f"Failed to parse value [{spec['subobjects']}] as only [true] or [false] are allowed.",
                  "mapper_parsing_exception")  # fmt: skip
    for name, child in spec.get("properties", {}).items():
        if not name or name.strip(".") != name:
            raise bad(
                f"field name cannot be empty or start/end with a dot: [{name}]", "mapper_parsing_exception"
            )
        check_field(f"{path}.{name}" if path else name, child)


def check_mappings(mappings: dict[str, Any]) -> None:
    for key in mappings:
        if key not in ROOT_KEYS:
            raise bad(f"Root mapping definition has unsupported parameters:  [{key} : {mappings[key]}]",
                      "mapper_parsing_exception")  # fmt: skip
    if "dynamic" in mappings and mappings["dynamic"] not in DYNAMIC:
        raise bad(
            f"Could not convert [dynamic] to boolean or strict: [{mappings['dynamic']}]",
            "mapper_parsing_exception",
        )
    for name, child in mappings.get("properties", {}).items():
        check_field(name, child)
    for entry in mappings.get("dynamic_templates", []):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise bad(
                "a dynamic template must be an object with one named template", "mapper_parsing_exception"
            )
        ((name, body),) = entry.items()
        allowed = {"match", "unmatch", "path_match", "path_unmatch", "match_mapping_type", "unmatch_mapping_type",
                   "match_pattern", "mapping", "runtime"}  # fmt: skip
        unknown = set(body) - allowed
        if unknown or ("mapping" not in body and "runtime" not in body):
            raise bad(f"Illegal dynamic template parameter: [{sorted(unknown) or 'mapping missing'}]",
                      "mapper_parsing_exception")  # fmt: skip
        check_field(f"<dynamic template {name}>", body.get("mapping", {"type": "keyword"}))


def check_template_body(template: dict[str, Any], where: str) -> None:
    if not isinstance(template, dict):
        raise bad(f"[{where}] template must be an object", "x_content_parse_exception")
    for key in template:
        if key not in TEMPLATE_KEYS:
            raise bad(f"[template] unknown field [{key}]", "x_content_parse_exception")
    check_settings(template.get("settings", {}))
    check_mappings(template.get("mappings", {}))


def check_policy(name: str, body: dict[str, Any]) -> None:
    if set(body) != {"policy"}:
        raise bad(f"[put_lifecycle_request] unknown field {sorted(set(body) - {'policy'})} or [policy] missing",
                  "x_content_parse_exception")  # fmt: skip
    policy = body["policy"]
    for key in policy:
        if key not in ("phases", "_meta", "deprecated"):
            raise bad(f"[lifecycle_policy] unknown field [{key}]", "x_content_parse_exception")
    if "phases" not in policy:
        raise bad("Required [phases]", "x_content_parse_exception")
    for phase, spec in policy["phases"].items():
        if phase not in PHASE_ACTIONS:
            raise bad(f"Lifecycle does not support phase [{phase}]")
        if "min_age" in spec and not TIME_VALUE.match(str(spec["min_age"])):
            raise bad(f"failed to parse setting [min_age] with value [{spec['min_age']}] as a time value",
                      "parse_exception")  # fmt: skip
        for action, params in spec.get("actions", {}).items():
            if action not in PHASE_ACTIONS[phase]:
                raise bad(f"invalid action [{action}] defined in phase [{phase}]")
            if action == "rollover":
                unknown = set(params) - ROLLOVER
                if unknown:
                    raise bad(f"[rollover] unknown field {sorted(unknown)}", "x_content_parse_exception")
                if not any(k.startswith("max_") for k in params):
                    raise bad(
                        "At least one max_* rollover condition must be set.",
                        "action_request_validation_exception",
                    )


def simple_match(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def patterns_overlap(a: list[str], b: list[str]) -> bool:
    """Whether some index name could match a pattern of both lists (Elasticsearch checks this exactly;
    this approximation tests each pattern against the other's wildcard-free form and their prefixes)."""
    for x in a:
        for y in b:
            if simple_match(x, y.replace("*", "x")) or simple_match(y, x.replace("*", "x")):
                return True
            px, py = x.split("*", 1)[0], y.split("*", 1)[0]
            if "*" in x and "*" in y and (px.startswith(py) or py.startswith(px)):
                return True
    return False


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        elif key == "dynamic_templates" and isinstance(out.get(key), list):
            names = {next(iter(t)) for t in value}
            out[key] = [t for t in out[key] if next(iter(t)) not in names] + copy.deepcopy(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_index_name(name: str) -> None:
    if name != name.lower() or INDEX_NAME_BAD.search(name) or name[:1] in "-_+" or name in (".", ".."):
        raise bad(f"Invalid index name [{name}], must be lowercase and not contain \\, /, *, ?, \", <, >, |, space, "
                  "comma, #, :", "invalid_index_name_exception")  # fmt: skip


# --- documents -----------------------------------------------------------------------------------


def parse_time(value: Any, kind: str, path: str = "") -> int:
    """A date as epoch nanoseconds (ISO 8601 text, or epoch milliseconds as a number)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            nanos = int(value * 1_000_000)
        else:
            stamp = pd.Timestamp(str(value))
            nanos = (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp).value
    except (ValueError, TypeError):
        raise bad(
            f"failed to parse date field [{value}] with format [strict_date_optional_time]"
            f"{f' on field [{path}]' if path else ''}",
            "document_parsing_exception",
        ) from None
    if kind == "date_nanos" and nanos < 0:
        raise bad(f"date[{value}] is before the epoch in 1970 and cannot be stored in nanosecond resolution",
                  "document_parsing_exception")  # fmt: skip
    return nanos


def format_time(nanos: int, kind: str) -> str:
    seconds, rest = divmod(nanos, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{rest:09d}Z" if kind == "date_nanos" else f"{base}.{rest // 1_000_000:03d}Z"


def coerce(value: Any, kind: str, path: str, doc_id: str) -> Any:
    """``value`` as a field of type ``kind`` indexes it; a value that does not fit raises."""

    def fail() -> EsError:
        preview = str(value)[:64]
        return bad(f"failed to parse field [{path}] of type [{kind}] in document with id '{doc_id}'. Preview of "
                   f"field's value: '{preview}'", "document_parsing_exception")  # fmt: skip

    if kind in INTEGRAL or kind in NUMERIC:
        if isinstance(value, bool | dict | list):
            raise fail()
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise fail() from None
        if kind in INTEGRAL:
            if kind == "integer" and not -(2**31) <= number < 2**31:
                raise fail()
            return int(number)  # coerce truncates fractions
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if value in ("true", "false", ""):
            return value == "true"
        raise fail()
    if kind in DATES:
        return parse_time(value, kind, path)
    if kind in ("keyword", "text", "match_only_text"):
        if isinstance(value, dict):
            raise fail()
        return str(value).lower() if isinstance(value, bool) else str(value)
    return value


def field_types(mappings: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every leaf field of a mapping by its full path (object properties flattened with dots)."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in mappings.get("properties", {}).items():
        path = f"{prefix}{name}"
        if spec.get("type", "object") in ("object", "nested"):
            out[path] = spec
            out.update(field_types(spec, path + "."))
        else:
            out[path] = spec
    return out


def _guess(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "long"}
    if isinstance(value, float):
        return {"type": "float"}
    if isinstance(value, dict):
        return {"type": "object", "properties": {}}
    return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}


def _dynamic_template(mappings: dict[str, Any], path: str, name: str) -> dict[str, Any] | None:
    for entry in mappings.get("dynamic_templates", []):
        ((_, body),) = entry.items()
        if "path_match" in body and not simple_match(body["path_match"], path):
            continue
        if "match" in body and not simple_match(body["match"], name):
            continue
        if "mapping" in body:
            return copy.deepcopy(body["mapping"])
    return None


def index_document(mappings: dict[str, Any], source: dict[str, Any], doc_id: str) -> None:
    """Check ``source`` against ``mappings`` (adding dynamic fields to it) the way indexing would."""

    def walk(obj: dict[str, Any], spec: dict[str, Any], prefix: str, dynamic: Any) -> None:
        dynamic = spec.get("dynamic", dynamic)
        subobjects = spec.get("subobjects", True) not in (False, "false")
        props = spec.setdefault("properties", {})
        for key, value in obj.items():
            if not key or key.strip(".") != key:
                raise bad(
                    f"field name cannot be empty or start/end with a dot: [{prefix}{key}]",
                    "document_parsing_exception",
                )
            if "." in key and subobjects and key not in props:
                head, rest = key.split(".", 1)
                walk({head: {rest: value}}, spec, prefix, dynamic)
                continue
            path = prefix + key
            field = props.get(key)
            if field is None:
                if str(dynamic).lower() == "strict":
                    raise bad(f"[{path}] is not allowed: mapping set to strict, dynamic introduction of [{key}] within "
                              f"[{prefix.rstrip('.') or '_doc'}] is not allowed", "strict_dynamic_mapping_exception")  # fmt: skip
                if str(dynamic).lower() != "true" or value is None:
                    continue
                field = _dynamic_template(root, path, key) or _guess(value if not isinstance(value, list) else
                                                                      (value[0] if value else ""))  # fmt: skip
                props[key] = field
            kind = field.get("type", "object")
            for item in value if isinstance(value, list) else [value]:
                if item is None:
                    continue
                if kind in ("object", "nested"):
                    if not isinstance(item, dict):
                        raise bad(f"object mapping for [{path}] tried to parse field [{key}] as object, but found a "
                                  "concrete value", "document_parsing_exception")  # fmt: skip
                    if field.get("enabled", True) not in (False, "false"):
                        walk(item, field, path + ".", dynamic)
                elif kind != "flattened":
                    coerce(item, kind, path, doc_id)

    root = mappings
    walk(source, mappings, "", mappings.get("dynamic", True))
