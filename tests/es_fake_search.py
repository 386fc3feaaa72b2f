"""Queries, sorting, ``_source`` filtering and aggregations of the Elasticsearch stand-in (``es_fake``).

A STAND-IN, not Elasticsearch: it evaluates the query and aggregation types pushbutton sends, over the
stored documents, and refuses anything else (an unknown query, aggregation or parameter is a 400, as in
Elasticsearch) so a malformed body fails the test. Figures are exact (``percentiles`` interpolate
linearly like numpy; Elasticsearch's TDigest estimates them; ``cardinality`` counts exactly).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.es_fake_mapping import DATES, NUMERIC, bad, coerce, format_time, simple_match


@dataclass
class Hit:
    """A searchable document of one index, with the index's field types."""

    index: str
    id: str
    source: dict[str, Any]
    order: int  # _shard_doc
    seq_no: int
    primary_term: int
    types: dict[str, dict[str, Any]]


def raw_values(obj: Any, path: str) -> list[Any]:
    """The values at ``path`` (dotted), whether the source nests objects or uses dotted keys."""
    if isinstance(obj, list):
        return [v for item in obj for v in raw_values(item, path)]
    if not isinstance(obj, dict):
        return []
    out: list[Any] = []
    if path in obj:
        value = obj[path]
        out.extend(v for v in (value if isinstance(value, list) else [value]) if v is not None)
    parts = path.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        if head in obj:
            out.extend(raw_values(obj[head], ".".join(parts[i:])))
    return out


def field(
    hit: Hit, path: str, *, search: bool = False, aggregate: bool = False
) -> tuple[str | None, list[Any]]:
    """(type, typed values) of ``path`` in ``hit``; None type when the field is not mapped."""
    spec = hit.types.get(path)
    if spec is None:
        return None, []
    kind = spec.get("type", "object")
    if search and spec.get("index", True) is False and spec.get("doc_values", True) is False:
        raise bad(
            f"Cannot search on field [{path}] since it is not indexed nor has doc values.",
            "query_shard_exception",
        )
    if aggregate and (kind in ("text", "match_only_text") or spec.get("doc_values", True) is False):
        raise bad(f"Can't load fielddata on [{path}] because fielddata is unsupported on fields of type [{kind}]. "
                  "Use a field with doc values", "illegal_argument_exception")  # fmt: skip
    values = []
    for value in raw_values(hit.source, path):
        if kind == "keyword" and len(str(value)) > spec.get("ignore_above", math.inf):
            continue
        values.append(coerce(value, kind, path, hit.id))
    return kind, values


# --- queries -------------------------------------------------------------------------------------

QUERIES = {"match_all", "bool", "term", "terms", "range", "exists", "ids"}


def _one(query: Any) -> tuple[str, Any]:
    if not isinstance(query, dict) or len(query) != 1:
        raise bad(
            f"query malformed, must start with start_object and have one query type: {query}",
            "parsing_exception",
        )
    ((kind, body),) = query.items()
    if kind not in QUERIES:
        raise bad(f"unknown query [{kind}]", "parsing_exception")
    return kind, body


def _field_body(kind: str, body: dict[str, Any], extra: set[str]) -> tuple[str, Any]:
    fields = [k for k in body if k not in extra]
    if len(fields) != 1:
        raise bad(f"[{kind}] query doesn't support multiple fields, found {fields}", "parsing_exception")
    return fields[0], body[fields[0]]


def compile_query(query: dict[str, Any] | None) -> Callable[[Hit], bool]:
    """A predicate for ``query`` (validated now, so a bad query fails even on an empty index)."""
    if query is None:
        return lambda hit: True
    kind, body = _one(query)
    if kind == "match_all":
        return lambda hit: True
    if kind == "bool":
        unknown = set(body) - {"filter", "must", "must_not", "should", "minimum_should_match", "boost"}
        if unknown:
            raise bad(f"[bool] query does not support [{sorted(unknown)[0]}]", "parsing_exception")

        def many(name: str) -> list[Callable[[Hit], bool]]:
            clauses = body.get(name, [])
            return [compile_query(c) for c in (clauses if isinstance(clauses, list) else [clauses])]

        required, excluded, should = many("filter") + many("must"), many("must_not"), many("should")
        at_least = int(body.get("minimum_should_match", 1 if should and not required else 0))
        return lambda hit: (all(q(hit) for q in required) and not any(q(hit) for q in excluded)
                            and sum(q(hit) for q in should) >= at_least)  # fmt: skip
    if kind == "ids":
        ids = set(body.get("values", []))
        return lambda hit: hit.id in ids
    if kind == "exists":
        if set(body) - {"field", "boost"}:
            raise bad("[exists] unknown field", "parsing_exception")
        return lambda hit: bool(field(hit, body["field"])[1])
    if kind == "term":
        name, value = _field_body(kind, body, set())
        if isinstance(value, dict):
            if set(value) - {"value", "boost", "case_insensitive"}:
                raise bad(
                    f"[term] query does not support [{sorted(set(value) - {'value'})[0]}]",
                    "parsing_exception",
                )
            value = value["value"]
        return lambda hit: _matches(hit, name, [value])
    if kind == "terms":
        name, values = _field_body(kind, body, {"boost"})
        if not isinstance(values, list):
            raise bad("[terms] query requires an array of terms", "parsing_exception")
        if len(values) > 65536:
            raise bad(f"The number of terms [{len(values)}] used in the Terms Query request has exceeded the allowed "
                      "maximum of [65536].")  # fmt: skip
        return lambda hit: _matches(hit, name, values)
    name, bounds = _field_body(kind, body, set())
    unknown = set(bounds) - {"gte", "gt", "lte", "lt", "format", "time_zone", "boost", "relation"}
    if unknown:
        raise bad(f"[range] query does not support [{sorted(unknown)[0]}]", "parsing_exception")
    return lambda hit: _in_range(hit, name, bounds)


def _matches(hit: Hit, name: str, wanted: list[Any]) -> bool:
    kind, values = field(hit, name, search=True)
    if kind is None:
        return False
    targets = {coerce(w, kind, name, "<query>") for w in wanted}
    return any(v in targets for v in values)


def _in_range(hit: Hit, name: str, bounds: dict[str, Any]) -> bool:
    kind, values = field(hit, name, search=True)
    if kind is None:
        return False
    checks = {
        "gte": lambda v, b: v >= b,
        "gt": lambda v, b: v > b,
        "lte": lambda v, b: v <= b,
        "lt": lambda v, b: v < b,
    }
    limits = [(checks[op], coerce(b, kind, name, "<query>")) for op, b in bounds.items() if op in checks]
    return any(all(check(v, b) for check, b in limits) for v in values)


# --- sorting and _source -------------------------------------------------------------------------


def sort_spec(sort: Any) -> list[tuple[str, str]]:
    out = []
    for item in sort if isinstance(sort, list) else [sort]:
        if isinstance(item, str):
            out.append((item, "desc" if item == "_score" else "asc"))
        elif isinstance(item, dict) and len(item) == 1:
            ((name, how),) = item.items()
            order = how if isinstance(how, str) else how.get("order", "asc")
            if order not in ("asc", "desc"):
                raise bad(f"Unknown SortOrder [{order}]", "parsing_exception")
            out.append((name, order))
        else:
            raise bad(f"malformed sort: {item}", "parsing_exception")
    return out


def sort_values(hit: Hit, spec: list[tuple[str, str]]) -> list[Any]:
    out = []
    for name, order in spec:
        if name in ("_shard_doc", "_doc"):
            out.append(hit.order)
            continue
        kind, values = field(hit, name)
        if kind is None and name not in hit.types:
            raise bad(f"No mapping found for [{name}] in order to sort on", "query_shard_exception")
        out.append((min(values) if order == "asc" else max(values)) if values else None)
    return out


def compare(a: list[Any], b: list[Any], spec: list[tuple[str, str]]) -> int:
    for x, y, (_, order) in zip(a, b, spec, strict=True):
        if x == y:
            continue
        if x is None or y is None:  # missing values sort last either way
            return 1 if x is None else -1
        less = x < y
        return (-1 if less else 1) * (1 if order == "asc" else -1)
    return 0


def sort_hits(hits: list[Hit], spec: list[tuple[str, str]]) -> list[tuple[Hit, list[Any]]]:
    keyed = [(hit, sort_values(hit, spec)) for hit in hits]
    return sorted(keyed, key=functools.cmp_to_key(lambda a, b: compare(a[1], b[1], spec)))


def filter_source(source: dict[str, Any], spec: Any) -> dict[str, Any] | None:
    if spec is None or spec is True:
        return source
    if spec is False:
        return None
    if isinstance(spec, str):
        spec = [spec]
    includes = spec if isinstance(spec, list) else spec.get("includes", ["*"])
    excludes = [] if isinstance(spec, list) else spec.get("excludes", [])

    def keep(obj: dict[str, Any], prefix: str) -> dict[str, Any]:
        out = {}
        for key, value in obj.items():
            path = prefix + key
            if any(simple_match(p, path) or path.startswith(p + ".") for p in excludes):
                continue
            if any(simple_match(p, path) or path.startswith(p + ".") for p in includes):
                out[key] = value
            elif isinstance(value, dict) and any(p.startswith(path + ".") for p in includes):
                out[key] = keep(value, path + ".")
        return out

    return keep(source, "")


# --- aggregations --------------------------------------------------------------------------------

METRIC_PARAMS = {
    "extended_stats": {"field", "missing", "sigma", "format"},
    "stats": {"field", "missing", "format"},
    "min": {"field", "missing", "format"},
    "max": {"field", "missing", "format"},
    "sum": {"field", "missing", "format"},
    "avg": {"field", "missing", "format"},
    "value_count": {"field"},
    "cardinality": {"field", "precision_threshold", "missing"},
    "percentiles": {"field", "percents", "keyed", "tdigest", "missing", "format"},
    "top_hits": {"size", "from", "sort", "_source", "seq_no_primary_term", "version"},
}
BUCKET_PARAMS = {"terms": {"field", "size", "order", "min_doc_count", "missing", "shard_size", "execution_hint",
                           "collect_mode", "show_term_doc_count_error"}, "filter": None}  # fmt: skip


def check_aggs(aggs: dict[str, Any]) -> None:
    for name, body in aggs.items():
        if any(c in name for c in "[]>"):
            raise bad(f"Invalid aggregation name [{name}]. Aggregation names can contain any character except '[', "
                      "']', and '>'", "parsing_exception")  # fmt: skip
        kinds = [k for k in body if k not in ("aggs", "aggregations", "meta")]
        if len(kinds) != 1:
            raise bad(
                f"Expected [START_OBJECT] under [{name}] with one aggregation type, found {kinds}",
                "parsing_exception",
            )
        kind = kinds[0]
        params = body[kind]
        sub = body.get("aggs", body.get("aggregations"))
        if kind in METRIC_PARAMS:
            unknown = set(params) - METRIC_PARAMS[kind]
            if unknown:
                raise bad(f"[{kind}] unknown field [{sorted(unknown)[0]}]", "x_content_parse_exception")
            if sub:
                raise bad(
                    f"Aggregator [{name}] of type [{kind}] cannot accept sub-aggregations",
                    "aggregation_initialization_exception",
                )
            if kind == "percentiles" and any(not 0 <= float(p) <= 100 for p in params.get("percents", [])):
                raise bad("[percents] must be in the [0, 100] range")
            if kind == "top_hits" and params.get("from", 0) + params.get("size", 3) > 100:
                raise bad(f"Top hits result window is too large, the top hits aggregator [{name}]'s from + size must be "
                          "less than or equal to: [100] but was [{params.get('size')}].")  # fmt: skip
        elif kind == "terms":
            unknown = set(params) - BUCKET_PARAMS["terms"]
            if unknown:
                raise bad(f"[terms] unknown field [{sorted(unknown)[0]}]", "x_content_parse_exception")
            if int(params.get("size", 10)) <= 0:
                raise bad(f"[size] must be greater than 0. Found [{params['size']}] in [{name}]")
        elif kind == "filter":
            compile_query(params)
        else:
            raise bad(f"Unknown aggregation type [{kind}]", "parsing_exception")
        if kind in METRIC_PARAMS and kind != "top_hits" and "field" not in params:
            raise bad(
                "Required one of fields [field, script], but none were specified.",
                "illegal_argument_exception",
            )
        if sub:
            check_aggs(sub)


def _numbers(hits: list[Hit], name: str) -> tuple[str | None, list[float]]:
    kind = None
    out: list[float] = []
    for hit in hits:
        found, values = field(hit, name, aggregate=True)
        kind = kind or found
        out.extend(float(v) for v in values)
    return kind, out


def _metric(kind: str, params: dict[str, Any], hits: list[Hit]) -> dict[str, Any]:
    if kind == "top_hits":
        spec = sort_spec(params.get("sort", [{"_score": "desc"}]))
        ranked = sort_hits(hits, [s for s in spec if s[0] != "_score"])
        start, size = params.get("from", 0), params.get("size", 3)
        return {"hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": None, "hits": [
            {"_index": h.index, "_id": h.id, "_score": None, "_source": filter_source(h.source, params.get("_source")),
             "sort": values} for h, values in ranked[start : start + size]]}}  # fmt: skip
    name = params["field"]
    if kind in ("value_count", "cardinality"):
        values = [v for h in hits for v in field(h, name, aggregate=True)[1]]
        return {"value": len(values) if kind == "value_count" else len(set(values))}
    ftype, values = _numbers(hits, name)
    if ftype in DATES:
        values = [v / 1e6 for v in values]  # epoch milliseconds, as Elasticsearch reports dates
    if ftype not in NUMERIC | DATES | {"boolean", None}:
        raise bad(f"Field [{name}] of type [{ftype}] is not supported for aggregation [{kind}]")
    n = len(values)
    array = np.array(values, dtype=np.float64)
    if kind in ("min", "max"):
        value = (float(array.min()) if kind == "min" else float(array.max())) if n else None
        out: dict[str, Any] = {"value": value}
        if value is not None and ftype in DATES:
            nanos = [field(h, name)[1] for h in hits]
            flat = [v for vs in nanos for v in vs]
            out["value_as_string"] = format_time(min(flat) if kind == "min" else max(flat), ftype)
        return out
    if kind == "sum":
        return {"value": float(array.sum())}
    if kind == "avg":
        return {"value": float(array.mean()) if n else None}
    if kind == "percentiles":
        percents = params.get("percents", [1, 5, 25, 50, 75, 95, 99])
        return {"values": {str(float(p)): (float(np.percentile(array, p)) if n else None) for p in percents}}
    stats: dict[str, Any] = {"count": n, "min": float(array.min()) if n else None, "max": float(array.max()) if n else None,
                             "avg": float(array.mean()) if n else None, "sum": float(array.sum())}  # fmt: skip
    if kind == "stats":
        return stats
    population = float(array.var()) if n else None
    sampling: Any = (float(array.var(ddof=1)) if n > 1 else "NaN") if n else None
    return {**stats, "sum_of_squares": float((array**2).sum()) if n else None, "variance": population,
            "variance_population": population, "variance_sampling": sampling,
            "std_deviation": math.sqrt(population) if n else None,
            "std_deviation_population": math.sqrt(population) if n else None,
            "std_deviation_sampling": (math.sqrt(sampling) if n > 1 else "NaN") if n else None}  # fmt: skip


def _bucket_key(kind: str | None, value: Any) -> dict[str, Any]:
    if kind == "boolean":
        return {"key": 1 if value else 0, "key_as_string": "true" if value else "false"}
    if kind in DATES:
        return {"key": value // 1_000_000, "key_as_string": format_time(value, kind)}
    return {"key": value}


def run_aggs(aggs: dict[str, Any], hits: list[Hit]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, body in aggs.items():
        kind = next(k for k in body if k not in ("aggs", "aggregations", "meta"))
        params, sub = body[kind], body.get("aggs", body.get("aggregations", {}))
        if kind in METRIC_PARAMS:
            out[name] = _metric(kind, params, hits)
        elif kind == "filter":
            matched = [h for h in hits if compile_query(params)(h)]
            out[name] = {"doc_count": len(matched), **run_aggs(sub, matched)}
        else:
            out[name] = _terms(params, sub, hits)
    return out


def _terms(params: dict[str, Any], sub: dict[str, Any], hits: list[Hit]) -> dict[str, Any]:
    groups: dict[Any, list[Hit]] = {}
    ftype = None
    for hit in hits:
        found, values = field(hit, params["field"], aggregate=True)
        ftype = ftype or found
        if not values and "missing" in params:
            values = [params["missing"]]
        for value in set(values):
            groups.setdefault(value, []).append(hit)
    order = params.get("order", [{"_count": "desc"}, {"_key": "asc"}])
    order = [next(iter(o.items())) for o in (order if isinstance(order, list) else [order])]
    if not any(k == "_key" for k, _ in order):
        order.append(("_key", "asc"))
    keys = list(groups)
    for criterion, direction in reversed(order):
        if criterion not in ("_key", "_count"):
            raise bad(f"Invalid aggregation order path [{criterion}]", "aggregation_execution_exception")
        keys.sort(
            key=(lambda k: len(groups[k])) if criterion == "_count" else (lambda k: k),
            reverse=direction == "desc",
        )
    keys = [k for k in keys if len(groups[k]) >= params.get("min_doc_count", 1)]
    size = int(params.get("size", 10))
    buckets = [
        {**_bucket_key(ftype, k), "doc_count": len(groups[k]), **run_aggs(sub, groups[k])}
        for k in keys[:size]
    ]
    rest = sum(len(groups[k]) for k in keys[size:])
    return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": rest, "buckets": buckets}
