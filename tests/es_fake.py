"""A STAND-IN for Elasticsearch 9's REST API, for tests: NOT Elasticsearch, and never presented as it.

No Elasticsearch server can run on the test machine, so the Elasticsearch monitoring store is tested at
the HTTP level against this stand-in (tests using it are marked ``standin``). It speaks the part of
the REST API that elasticsearch-py 9 and pushbutton use, and it is strict on purpose:

* it answers ``X-Elastic-Product: Elasticsearch`` (the client refuses a server without it), accepts
  ``application/vnd.elasticsearch+json; compatible-with=9`` (and ``=8``, and plain JSON; other media
  types are a 400), and refuses unknown URL parameters;
* it **validates request bodies** (``es_fake_mapping``/``es_fake_search``): the bulk NDJSON shape
  (terminating newline, one action per line, known metadata, a source after create/index, and — a
  pushbutton rule — an ``_id`` on every create), ILM policies, component and index templates (known
  keys, existing component templates, no two templates with overlapping patterns at one priority,
  ``@timestamp`` typed as a date in data stream templates; a built-in ``logs`` template on
  ``logs-*-*`` at priority 100 as in Elasticsearch 9), mappings and settings, documents against their
  mapping, queries, sorts and aggregations — a malformed request is an error answer that fails the test;
* it keeps Elasticsearch's data stream rules: only ``create`` into a data stream, ``index`` into a
  backing index only with ``if_seq_no``/``if_primary_term``, ``_id`` unique per backing index (a
  rollover starts a new one), a 409 for a duplicate create, ``require_data_stream``;
* writes are searchable only after a refresh (``refresh=true|wait_for`` or ``_refresh``); ``get``
  and ``mget`` are real-time;
* faults can be injected: ``fail`` (whole requests answered 429/503/…), ``reject_items`` (bulk items
  refused with 429), ``outage`` (the port stops listening, open connections are cut), ``forbid``
  (a 403 for one route).

It does not model shards, replicas, scoring, analysis, ILM execution, or Elasticsearch's estimators
(its percentiles and cardinality are exact).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import itertools
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests import es_fake_mapping as M
from tests import es_fake_search as S
from tests.es_fake_mapping import EsError, bad

VERSION = "9.1.0"
MEDIA = re.compile(r"^application/(?:(json|x-ndjson)|vnd\.elasticsearch\+(json|x-ndjson)\s*;\s*compatible-with=(\d+))"
                   r"\s*(?:;.*)?$")  # fmt: skip
COMMON_PARAMS = {"pretty", "human", "error_trace", "filter_path", "master_timeout", "timeout"}
BUILTIN_TEMPLATES = {
    "logs": {"index_patterns": ["logs-*-*"], "data_stream": {}, "priority": 100, "composed_of": [],
             "template": {"settings": {"index.mode": "logsdb"}, "mappings": {"properties": {"@timestamp": {"type": "date"}}}},
             "_meta": {"managed": True, "description": "built-in (stand-in copy)"}},
}  # fmt: skip


@dataclass
class Doc:
    id: str
    source: dict[str, Any]  # real-time (get, mget)
    searchable: dict[str, Any] | None  # what search sees (None: not refreshed yet)
    seq_no: int
    order: int
    primary_term: int = 1
    version: int = 1


@dataclass
class Index:
    name: str
    mappings: dict[str, Any]
    settings: dict[str, Any]
    data_stream: str | None = None
    docs: dict[str, Doc] = field(default_factory=dict)
    seq: itertools.count = field(default_factory=itertools.count)


@dataclass
class Stream:
    name: str
    template: str
    indices: list[str]


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: Any  # parsed JSON, or the list of NDJSON lines (parsed) for _bulk


ROUTES: list[tuple[str, set[str], re.Pattern[str], set[str]]] = [
    (name, set(methods.split()), re.compile(pattern), params)
    for name, methods, pattern, params in [
        ("info", "GET HEAD", r"^/$", set()),
        ("policy", "PUT GET", r"^/_ilm/policy/(?P<name>[^/]+)$", set()),
        ("component", "PUT POST GET", r"^/_component_template/(?P<name>[^/]+)$", {"create", "cause"}),
        ("template", "PUT POST GET", r"^/_index_template/(?P<name>[^/]+)$", {"create", "cause"}),
        ("get_streams", "GET", r"^/_data_stream(?:/(?P<name>[^/]+))?$", {"expand_wildcards"}),
        ("bulk", "PUT POST", r"^(?:/(?P<target>[^/_][^/]*))?/_bulk$",
         {"refresh", "require_data_stream", "require_alias", "pipeline", "routing", "wait_for_active_shards"}),
        ("search", "GET POST", r"^(?:/(?P<target>[^/]+))?/_search$",
         {"ignore_unavailable", "allow_no_indices", "expand_wildcards", "typed_keys", "rest_total_hits_as_int"}),
        ("count", "GET POST", r"^(?:/(?P<target>[^/]+))?/_count$", {"ignore_unavailable", "allow_no_indices"}),
        ("open_pit", "POST", r"^/(?P<target>[^/]+)/_pit$", {"keep_alive", "ignore_unavailable", "expand_wildcards"}),
        ("close_pit", "DELETE", r"^/_pit$", set()),
        ("delete_by_query", "POST", r"^/(?P<target>[^/]+)/_delete_by_query$",
         {"refresh", "conflicts", "ignore_unavailable", "allow_no_indices", "wait_for_completion", "slices"}),
        ("mget", "GET POST", r"^(?:/(?P<target>[^/_][^/]*))?/_mget$", {"realtime", "refresh", "_source"}),
        ("refresh", "GET POST", r"^(?:/(?P<target>[^/]+))?/_refresh$", {"ignore_unavailable", "allow_no_indices"}),
        ("put_mapping", "PUT POST", r"^/(?P<target>[^/]+)/_mapping$", {"ignore_unavailable", "allow_no_indices"}),
        ("get_mapping", "GET", r"^/(?P<target>[^/]+)/_mapping$", set()),
        ("put_settings", "PUT", r"^/(?P<target>[^/]+)/_settings$", {"ignore_unavailable", "allow_no_indices"}),
        ("rollover", "POST", r"^/(?P<target>[^/]+)/_rollover$", set()),
        ("write_doc", "PUT POST", r"^/(?P<index>[^/_][^/]*)/(?P<op>_doc|_create)/(?P<id>[^/]+)$",
         {"op_type", "if_seq_no", "if_primary_term", "refresh", "require_data_stream", "routing"}),
        ("get_doc", "GET HEAD", r"^/(?P<index>[^/_][^/]*)/_doc/(?P<id>[^/]+)$", {"realtime", "_source", "refresh"}),
        ("create_index", "PUT", r"^/(?P<index>[^/_][^/]*)$", {"wait_for_active_shards"}),
        ("index_exists", "HEAD", r"^/(?P<index>[^/_][^/]*)$", {"ignore_unavailable", "allow_no_indices"}),
    ]
]  # fmt: skip


class EsStandIn:
    """The stand-in server (see the module docstring). ``url`` once ``start``-ed; a context manager."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        api_keys: set[str] | None = None,
        strict_ids: bool = True,
        product_header: bool = True,
    ):
        """``users``/``api_keys``: require authentication; ``strict_ids``: refuse a create without _id;
        ``product_header=False``: leave out X-Elastic-Product (to see the client refuse the server)."""
        self.users, self.api_keys, self.strict_ids = users or {}, api_keys or set(), strict_ids
        self.product_header = product_header
        self.lock = threading.RLock()
        self.policies: dict[str, dict[str, Any]] = {}
        self.components: dict[str, dict[str, Any]] = {}
        self.templates: dict[str, dict[str, Any]] = copy.deepcopy(BUILTIN_TEMPLATES)
        self.indices: dict[str, Index] = {}
        self.streams: dict[str, Stream] = {}
        self.pits: dict[str, list[S.Hit]] = {}
        self.requests: list[Request] = []
        self._failures: list[tuple[int, int, str | None]] = []  # status, times left, route
        self._item_rejections: list[list[int]] = []  # [status, requests left, items per request]
        self._forbidden: set[str] = set()
        self._order = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0
        self.down = False

    # --- lifecycle and faults --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EsStandIn:
        standin = self

        class Handler(_Handler):
            server_standin = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="es-standin", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for sock in list(self._connections):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> EsStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The stand-in is unreachable inside the block (refused connections), back after it."""
        self.down = True
        self.stop()
        try:
            yield
        finally:
            self.down = False
            self.start()

    def fail(self, status: int, *, times: int = 1, route: str | None = None) -> None:
        """Answer the next ``times`` requests (of ``route``, e.g. ``"bulk"``) with ``status``."""
        self._failures.append((status, times, route))

    def reject_items(self, status: int = 429, *, times: int = 1, items: int = 10**9) -> None:
        """In the next ``times`` bulk requests, refuse the first ``items`` operations with ``status``."""
        self._item_rejections.append([status, times, items])

    def forbid(self, route: str) -> None:
        self._forbidden.add(route)

    # --- helpers for assertions ------------------------------------------------------------------

    def calls(self, route: str) -> list[Request]:
        return [r for r in self.requests if _route_of(r) == route]

    def documents(self, target: str) -> list[dict[str, Any]]:
        """The real-time sources of ``target`` (an index or data stream)."""
        with self.lock:
            return [d.source for i in self._concrete(target) for d in self.indices[i].docs.values()]

    def mapping(self, target: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.indices[self._concrete(target)[-1]].mappings)

    def settings(self, target: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.indices[self._concrete(target)[-1]].settings)

    def rollover(self, stream: str) -> str:
        with self.lock:
            return self._roll(stream)["new_index"]

    # --- dispatch --------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        compat = self._check_media(headers, raw)
        out_type = "application/vnd.elasticsearch+json;compatible-with=9" if compat else "application/json"
        extra = {"Content-Type": out_type}
        if self.product_header:
            extra["X-Elastic-Product"] = "Elasticsearch"
        try:
            self._authenticate(headers)
            parts = urlsplit(target)
            path, params = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
            route, groups, allowed = self._route(method, path)
            unknown = set(params) - allowed - COMMON_PARAMS
            if unknown:
                raise bad(f"request [{path}] contains unrecognized parameter: [{sorted(unknown)[0]}]")
            body = self._parse(route, raw)
            with self.lock:
                self.requests.append(Request(method, path, params, body))
                if route in self._forbidden:
                    raise EsError(403, "security_exception", f"action [{route}] is unauthorized for user [pushbutton] "
                                  "with effective roles [pushbutton_writer]")  # fmt: skip
                self._inject(route)
                status, answer = getattr(self, "_" + route)(method, params, body, **groups)
            return status, extra, answer
        except EsError as exc:
            if exc.status == 401:
                extra["WWW-Authenticate"] = 'Basic realm="security", ApiKey'
            return exc.status, extra, exc.body()

    def _check_media(self, headers: dict[str, str], raw: bytes) -> bool:
        compat = False
        for name in ("accept", "content-type"):
            value = headers.get(name)
            if value is None or (name == "accept" and value == "*/*"):
                continue
            match = MEDIA.match(value)
            if not match or (match.group(3) and match.group(3) not in ("8", "9")):
                raise _MediaError(value)
            compat = compat or bool(match.group(3))
        if raw and "content-type" not in headers:
            raise _MediaError("<missing Content-Type>")
        return compat

    def _authenticate(self, headers: dict[str, str]) -> None:
        if not self.users and not self.api_keys:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except ValueError:
            decoded = ""
        user, _, password = decoded.partition(":")
        if scheme == "Basic" and user in self.users and self.users[user] == password:
            return
        if scheme == "ApiKey" and (token in self.api_keys or decoded in self.api_keys):
            return
        raise EsError(401, "security_exception", "unable to authenticate user for REST request [/]")

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str], set[str]]:
        for name, methods, pattern, params in ROUTES:
            match = pattern.match(path)
            if match and method in methods:
                return name, {k: unquote(v) for k, v in match.groupdict().items() if v is not None}, params
        raise bad(f"the stand-in does not implement {method} {path} (it is not Elasticsearch; extend tests/es_fake.py)",
                  "standin_unsupported_request")  # fmt: skip

    def _parse(self, route: str, raw: bytes) -> Any:
        if not raw:
            return None
        text = raw.decode()
        if route != "bulk":
            return _loads(text)
        if not text.endswith("\n"):
            raise bad("The bulk request must be terminated by a newline [\\n]")
        return [_loads(line) for line in text.split("\n")[:-1]]

    def _inject(self, route: str) -> None:
        for i, (status, times, only) in enumerate(self._failures):
            if only is None or only == route:
                self._failures[i] = (status, times - 1, only)
                if times - 1 <= 0:
                    del self._failures[i]
                kinds = {429: "es_rejected_execution_exception", 503: "unavailable_shards_exception"}
                raise EsError(
                    status, kinds.get(status, "stand_in_injected_failure"), f"injected {status} (stand-in)"
                )

    # --- ILM, templates, data streams ------------------------------------------------------------

    def _info(self, method: str, params: dict, body: Any) -> tuple[int, Any]:
        return 200, {"name": "standin", "cluster_name": "pushbutton-standin", "cluster_uuid": "standin",
                     "version": {"number": VERSION, "build_flavor": "default", "lucene_version": "10.2.2",
                                 "minimum_wire_compatibility_version": "8.19.0",
                                 "minimum_index_compatibility_version": "8.0.0"},
                     "tagline": "You Know, for Search (a test stand-in, not Elasticsearch)"}  # fmt: skip

    def _policy(self, method: str, params: dict, body: Any, name: str) -> tuple[int, Any]:
        if method == "GET":
            if name not in self.policies:
                raise EsError(404, "resource_not_found_exception", f"Lifecycle policy not found: {name}")
            return 200, {name: {"version": 1, "policy": self.policies[name]}}
        M.check_policy(name, body or {})
        self.policies[name] = body["policy"]
        return 200, {"acknowledged": True}

    def _component(self, method: str, params: dict, body: Any, name: str) -> tuple[int, Any]:
        if method == "GET":
            if name not in self.components:
                raise EsError(
                    404, "resource_not_found_exception", f"component template matching [{name}] not found"
                )
            return 200, {"component_templates": [{"name": name, "component_template": self.components[name]}]}
        body = body or {}
        unknown = set(body) - {"template", "version", "_meta", "deprecated"}
        if unknown or "template" not in body:
            raise bad(f"[component_template] unknown field {sorted(unknown)} or required [template] missing",
                      "x_content_parse_exception")  # fmt: skip
        M.check_template_body(body["template"], name)
        self.components[name] = body
        return 200, {"acknowledged": True}

    def _template(self, method: str, params: dict, body: Any, name: str) -> tuple[int, Any]:
        if method == "GET":
            if name not in self.templates:
                raise EsError(
                    404, "resource_not_found_exception", f"index template matching [{name}] not found"
                )
            return 200, {"index_templates": [{"name": name, "index_template": self.templates[name]}]}
        body = body or {}
        allowed = {"index_patterns", "composed_of", "template", "priority", "version", "_meta", "data_stream",
                   "allow_auto_create", "ignore_missing_component_templates", "deprecated"}  # fmt: skip
        unknown = set(body) - allowed
        if unknown:
            raise bad(f"[index_template] unknown field [{sorted(unknown)[0]}]", "x_content_parse_exception")
        patterns = body.get("index_patterns")
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise bad("index patterns are missing", "action_request_validation_exception")
        missing = [c for c in body.get("composed_of", []) if c not in self.components
                   and c not in body.get("ignore_missing_component_templates", [])]  # fmt: skip
        if missing:
            raise bad(f"index template [{name}] specifies component templates {missing} that do not exist",
                      "invalid_index_template_exception")  # fmt: skip
        priority = body.get("priority", 0)
        if not isinstance(priority, int) or priority < 0:
            raise bad("index template priority requires a value greater than or equal to 0")
        for other, existing in self.templates.items():
            if (
                other != name
                and existing.get("priority", 0) == priority
                and patterns_overlap(existing, patterns)
            ):
                raise bad(f"index template [{name}] has index patterns {patterns} matching patterns from existing "
                          f"templates [{other}] with patterns ({other} => {existing['index_patterns']}) that have the "
                          f"same priority [{priority}], multiple index templates may not match during index creation, "
                          "please use a different priority")  # fmt: skip
        if "template" in body:
            M.check_template_body(body["template"], name)
        if "data_stream" in body:
            if set(body["data_stream"]) - {"hidden", "allow_custom_routing"}:
                raise bad("[data_stream] unknown field", "x_content_parse_exception")
            stamp = (
                self._compose({**body, "index_patterns": patterns})[0].get("properties", {}).get("@timestamp")
            )
            if stamp is not None and stamp.get("type") not in M.DATES:
                raise bad(f"data stream timestamp field [@timestamp] is of type [{stamp.get('type')}], but [date,"
                          "date_nanos] is expected")  # fmt: skip
        self.templates[name] = {**body, "index_patterns": patterns}
        return 200, {"acknowledged": True}

    def _compose(self, template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(mappings, flat settings) of an index made from ``template``."""
        mappings: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        for part in [
            self.components[c]["template"] for c in template.get("composed_of", []) if c in self.components
        ] + [template.get("template", {})]:
            mappings = M.deep_merge(mappings, part.get("mappings", {}))
            settings.update(M.flat_settings(part.get("settings", {})))
        if template.get("data_stream") is not None:
            mappings.setdefault("properties", {}).setdefault("@timestamp", {"type": "date"})
        return mappings, settings

    def _matching_template(self, name: str) -> tuple[str, dict[str, Any]] | None:
        found = [(t.get("priority", 0), n, t) for n, t in self.templates.items()
                 if any(M.simple_match(p, name) for p in t["index_patterns"])]  # fmt: skip
        if not found:
            return None
        _, best, template = max(found, key=lambda x: x[0])
        return best, template

    def _make_index(self, name: str, template: dict[str, Any] | None, stream: str | None = None) -> Index:
        mappings, settings = self._compose(template) if template else ({}, {})
        index = Index(name, mappings, settings, stream)
        self.indices[name] = index
        return index

    def _create_stream(self, name: str) -> Stream:
        found = self._matching_template(name)
        if found is None or found[1].get("data_stream") is None:
            raise EsError(
                404, "index_not_found_exception", f"no matching index template found for data stream [{name}]"
            )
        M.check_index_name(name)
        stream = Stream(name, found[0], [])
        self.streams[name] = stream
        self._new_backing(stream, found[1])
        return stream

    def _new_backing(self, stream: Stream, template: dict[str, Any]) -> str:
        day = datetime.now(UTC).strftime("%Y.%m.%d")
        name = f".ds-{stream.name}-{day}-{len(stream.indices) + 1:06d}"
        self._make_index(name, template, stream.name)
        stream.indices.append(name)
        return name

    def _roll(self, stream_name: str) -> dict[str, Any]:
        stream = self.streams[stream_name]
        old = stream.indices[-1]
        template = self.templates[self._matching_template(stream_name)[0]]  # type: ignore[index]
        new = self._new_backing(stream, template)
        self.indices[new].mappings = M.deep_merge(self.indices[new].mappings, self.indices[old].mappings)
        return {"acknowledged": True, "shards_acknowledged": True, "old_index": old, "new_index": new,
                "rolled_over": True, "dry_run": False, "lazy": False, "conditions": {}}  # fmt: skip

    def _get_streams(self, method: str, params: dict, body: Any, name: str = "*") -> tuple[int, Any]:
        names = [n for n in self.streams if any(M.simple_match(p, n) for p in name.split(","))]
        if not names and "*" not in name:
            raise EsError(404, "index_not_found_exception", f"no such index [{name}]")
        out = []
        for n in sorted(names):
            stream = self.streams[n]
            policy = self.indices[stream.indices[-1]].settings.get("index.lifecycle.name")
            out.append({"name": n, "timestamp_field": {"name": "@timestamp"}, "generation": len(stream.indices),
                        "indices": [{"index_name": i, "index_uuid": i, "prefer_ilm": True, "ilm_policy": policy,
                                     "managed_by": "Index Lifecycle Management"} for i in stream.indices],
                        "status": "GREEN", "template": stream.template, "ilm_policy": policy, "hidden": False,
                        "system": False, "replicated": False, "allow_custom_routing": False})  # fmt: skip
        return 200, {"data_streams": out}

    # --- targets ---------------------------------------------------------------------------------

    def _concrete(self, target: str, *, ignore_unavailable: bool = False) -> list[str]:
        """The indices behind ``target`` (comma-separated names, data streams, wildcards)."""
        out: list[str] = []
        for part in target.split(","):
            if "*" in part:
                out += [i for s in self.streams.values() if M.simple_match(part, s.name) for i in s.indices]
                out += [
                    n for n, i in self.indices.items() if i.data_stream is None and M.simple_match(part, n)
                ]
            elif part in self.streams:
                out += self.streams[part].indices
            elif part in self.indices:
                out.append(part)
            elif not ignore_unavailable:
                raise EsError(404, "index_not_found_exception", f"no such index [{part}]")
        return list(dict.fromkeys(out))

    def _hits(self, indices: list[str]) -> list[S.Hit]:
        out = []
        for name in indices:
            index = self.indices[name]
            types = M.field_types(index.mappings)
            for doc in index.docs.values():
                if doc.searchable is not None:
                    out.append(
                        S.Hit(name, doc.id, doc.searchable, doc.order, doc.seq_no, doc.primary_term, types)
                    )
        return out

    def _refresh_indices(self, indices: list[str]) -> None:
        for name in indices:
            for doc in self.indices[name].docs.values():
                doc.searchable = doc.source

    def _refresh(self, method: str, params: dict, body: Any, target: str = "*") -> tuple[int, Any]:
        indices = self._concrete(
            target, ignore_unavailable=params.get("ignore_unavailable") == "true" or "*" in target
        )
        self._refresh_indices(indices)
        return 200, {"_shards": {"total": len(indices), "successful": len(indices), "failed": 0}}

    # --- writing ---------------------------------------------------------------------------------

    def _write(self, op: str, target: str, doc_id: str | None, source: dict[str, Any] | None, meta: dict[str, Any],
               require_data_stream: bool) -> tuple[str, dict[str, Any]]:  # fmt: skip
        """One create/index/delete; answers (concrete index, result) or raises EsError."""
        if not target.startswith(".ds-"):
            M.check_index_name(target)
        if target not in self.indices and target not in self.streams:
            if op == "delete":
                raise EsError(404, "index_not_found_exception", f"no such index [{target}]")
            found = self._matching_template(target)
            if found and found[1].get("data_stream") is not None:
                if op != "create":
                    raise bad("only write ops with an op_type of create are allowed in data streams")
                self._create_stream(target)
            elif require_data_stream:
                raise EsError(404, "index_not_found_exception", f"no such index [{target}] and [require_data_stream] "
                              f"request flag is [true] and [{target}] is not a data stream")  # fmt: skip
            else:
                self._make_index(target, found[1] if found else None)
        if target in self.streams:
            if op != "create":
                raise bad("only write ops with an op_type of create are allowed in data streams")
            concrete = self.streams[target].indices[-1]
        else:
            concrete = target
            index = self.indices[concrete]
            if require_data_stream and index.data_stream is None:
                raise bad(f"index request targeting [{target}] specifies [require_data_stream=true] but [{target}] is "
                          "not a data stream")  # fmt: skip
            if (
                index.data_stream is not None
                and op in ("create", "index")
                and (op == "create" or "if_seq_no" not in meta)
            ):
                raise bad(f"index request with op_type={op} and no if_primary_term and if_seq_no set targeting backing "
                          f"indices is disallowed, target corresponding data stream [{index.data_stream}] instead")  # fmt: skip
        index = self.indices[concrete]
        existing = index.docs.get(doc_id) if doc_id is not None else None
        if op == "delete":
            if existing is None:
                return concrete, {"result": "not_found", "status": 404, "_id": doc_id}
            del index.docs[doc_id]  # type: ignore[arg-type]
            return concrete, {"result": "deleted", "status": 200, "_id": doc_id, "_seq_no": next(index.seq)}
        if op == "create" and existing is not None:
            raise EsError(409, "version_conflict_engine_exception", f"[{doc_id}]: version conflict, document already "
                          f"exists (current version [{existing.version}])")  # fmt: skip
        wanted = (
            (int(meta["if_seq_no"]), int(meta.get("if_primary_term", -1))) if "if_seq_no" in meta else None
        )
        if wanted is not None and (existing is None or (existing.seq_no, existing.primary_term) != wanted):
            current = "document does not exist" if existing is None else (
                f"current document has seqNo [{existing.seq_no}] and primary term [{existing.primary_term}]")  # fmt: skip
            raise EsError(409, "version_conflict_engine_exception", f"[{doc_id}]: version conflict, required seqNo "
                          f"[{meta['if_seq_no']}], primary term [{meta.get('if_primary_term')}]. {current}")  # fmt: skip
        assert source is not None
        if index.data_stream is not None and not S.raw_values(source, "@timestamp"):
            raise bad("[1:2] failed to parse: data stream timestamp field [@timestamp] is missing",
                      "document_parsing_exception")  # fmt: skip
        doc_id = doc_id or f"auto{next(self._order)}"
        mappings = copy.deepcopy(index.mappings)
        M.index_document(mappings, source, doc_id)
        index.mappings = mappings
        version = existing.version + 1 if existing else 1
        searchable = existing.searchable if existing else None
        index.docs[doc_id] = Doc(doc_id, copy.deepcopy(source), searchable, next(index.seq), next(self._order),
                                 version=version)  # fmt: skip
        result = "updated" if existing else "created"
        return concrete, {"result": result, "status": 200 if existing else 201, "_id": doc_id, "_version": version,
                          "_seq_no": index.docs[doc_id].seq_no, "_primary_term": 1}  # fmt: skip

    def _bulk(self, method: str, params: dict, body: Any, target: str | None = None) -> tuple[int, Any]:
        lines = body or []
        ops: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        i = 0
        while i < len(lines):
            action = lines[i]
            if not isinstance(action, dict) or len(action) != 1:
                raise bad(f"Malformed action/metadata line [{i + 1}], expected START_OBJECT with one action")
            ((op, meta),) = action.items()
            if op not in ("create", "index", "update", "delete"):
                raise bad(f"Malformed action/metadata line [{i + 1}], expected field [create], [delete], [index] or "
                          f"[update] but found [{op}]")  # fmt: skip
            allowed = {"_index", "_id", "routing", "if_seq_no", "if_primary_term", "version", "version_type",
                       "pipeline", "require_alias", "require_data_stream", "dynamic_templates",
                       "list_executed_pipelines"} | ({"retry_on_conflict", "_source"} if op == "update" else set())  # fmt: skip
            unknown = set(meta) - allowed
            if unknown:
                raise bad(
                    f"Action/metadata line [{i + 1}] contains an unknown parameter [{sorted(unknown)[0]}]"
                )
            if op == "update":
                raise bad(
                    "the stand-in does not implement bulk update (it is not Elasticsearch)",
                    "standin_unsupported_request",
                )
            if op == "create" and self.strict_ids and not meta.get("_id"):
                raise bad(f"stand-in rule: the create at line [{i + 1}] has no _id (pushbutton derives every _id from "
                          "the record's key, so a replay is a 409, never a second document)", "standin_rule_violation")  # fmt: skip
            source = None
            if op != "delete":
                if i + 1 >= len(lines) or not isinstance(lines[i + 1], dict):
                    raise bad(
                        f"Malformed action/metadata line [{i + 1}]: a {op} needs a source object on the next line"
                    )
                source = lines[i + 1]
                i += 1
            ops.append((op, meta, source))
            i += 1
        if not ops:
            raise bad("Validation Failed: 1: no requests added;", "action_request_validation_exception")
        rejection = self._item_rejections[0] if self._item_rejections else None
        if rejection:
            rejection[1] -= 1
            if rejection[1] <= 0:
                self._item_rejections.pop(0)
        items, touched, errors = [], set(), False
        for n, (op, meta, source) in enumerate(ops):
            index_name = meta.get("_index", target)
            if rejection and n < rejection[2]:
                error = EsError(rejection[0], "es_rejected_execution_exception", "rejected execution of coordinating "
                                "operation [stand-in injected]")  # fmt: skip
                items.append({op: {"_index": index_name, "_id": meta.get("_id"), "status": error.status,
                                   "error": {"type": error.type, "reason": error.reason}}})  # fmt: skip
                errors = True
                continue
            try:
                if not index_name:
                    raise bad("index is missing", "action_request_validation_exception")
                require = (
                    str(meta.get("require_data_stream", params.get("require_data_stream", "false"))).lower()
                    == "true"
                )
                concrete, result = self._write(op, index_name, meta.get("_id"), source, meta, require)
                touched.add(concrete)
                items.append(
                    {
                        op: {
                            "_index": concrete,
                            **result,
                            "_shards": {"total": 1, "successful": 1, "failed": 0},
                        }
                    }
                )
            except EsError as exc:
                errors = True
                concrete = self.streams[index_name].indices[-1] if index_name in self.streams else index_name
                items.append({op: {"_index": concrete, "_id": meta.get("_id"), "status": exc.status,
                                   "error": {"type": exc.type, "reason": exc.reason, "index": concrete}}})  # fmt: skip
        if params.get("refresh") in ("", "true", "wait_for"):
            self._refresh_indices(sorted(touched))
        return 200, {"took": 1, "errors": errors, "items": items}

    def _write_doc(
        self, method: str, params: dict, body: Any, index: str, op: str, id: str
    ) -> tuple[int, Any]:
        kind = "create" if op == "_create" or params.get("op_type") == "create" else "index"
        meta = {k: params[k] for k in ("if_seq_no", "if_primary_term") if k in params}
        concrete, result = self._write(
            kind, index, id, body or {}, meta, params.get("require_data_stream") == "true"
        )
        if params.get("refresh") in ("", "true", "wait_for"):
            self._refresh_indices([concrete])
        status = result.pop("status")
        return status, {"_index": concrete, **result, "_shards": {"total": 1, "successful": 1, "failed": 0}}

    def _get_doc(self, method: str, params: dict, body: Any, index: str, id: str) -> tuple[int, Any]:
        if index in self.streams:
            raise bad(f"the stand-in does not serve GET by _id on data stream [{index}]; read a backing index "
                      "(_mget with its name) or search", "standin_unsupported_request")  # fmt: skip
        if index not in self.indices:
            raise EsError(404, "index_not_found_exception", f"no such index [{index}]")
        doc = self.indices[index].docs.get(id)
        if doc is None:
            return 404, {"_index": index, "_id": id, "found": False}
        return 200, {"_index": index, "_id": id, "_version": doc.version, "_seq_no": doc.seq_no,
                     "_primary_term": doc.primary_term, "found": True, "_source": copy.deepcopy(doc.source)}  # fmt: skip

    def _mget(self, method: str, params: dict, body: Any, target: str | None = None) -> tuple[int, Any]:
        body = body or {}
        wanted = body.get("docs") or [{"_index": target, "_id": i} for i in body.get("ids", [])]
        out = []
        for item in wanted:
            index, doc_id = item.get("_index", target), item.get("_id")
            if not index or doc_id is None:
                raise bad(
                    "Validation Failed: 1: index is missing for doc 0;", "action_request_validation_exception"
                )
            if index in self.streams:
                raise bad(f"the stand-in does not serve mget on data stream [{index}]; name a backing index",
                          "standin_unsupported_request")  # fmt: skip
            doc = self.indices[index].docs.get(doc_id) if index in self.indices else None
            if doc is None:
                out.append({"_index": index, "_id": doc_id, "found": False})
            else:
                out.append({"_index": index, "_id": doc_id, "_version": doc.version, "_seq_no": doc.seq_no,
                            "_primary_term": doc.primary_term, "found": True, "_source": copy.deepcopy(doc.source)})  # fmt: skip
        return 200, {"docs": out}

    def _create_index(self, method: str, params: dict, body: Any, index: str) -> tuple[int, Any]:
        M.check_index_name(index)
        if index in self.indices or index in self.streams:
            raise bad(f"index [{index}/standin] already exists", "resource_already_exists_exception")
        body = body or {}
        unknown = set(body) - {"settings", "mappings", "aliases"}
        if unknown:
            raise bad(f"unknown key [{sorted(unknown)[0]}] for create index", "parse_exception")
        found = self._matching_template(index)
        if found and found[1].get("data_stream") is not None:
            raise bad(f"cannot create index with name [{index}], because it matches with template [{found[0]}] that "
                      "creates data streams only, use create data stream api instead")  # fmt: skip
        M.check_template_body({k: v for k, v in body.items() if k != "aliases"}, index)
        created = self._make_index(index, found[1] if found else None)
        created.mappings = M.deep_merge(created.mappings, body.get("mappings", {}))
        created.settings.update(M.flat_settings(body.get("settings", {})))
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}

    def _index_exists(self, method: str, params: dict, body: Any, index: str) -> tuple[int, Any]:
        return (200 if index in self.indices or index in self.streams else 404), None

    def _put_mapping(self, method: str, params: dict, body: Any, target: str) -> tuple[int, Any]:
        indices = self._concrete(target, ignore_unavailable=params.get("ignore_unavailable") == "true")
        M.check_mappings(body or {})
        for name in indices:
            merged = M.deep_merge(self.indices[name].mappings, body or {})
            old, new = M.field_types(self.indices[name].mappings), M.field_types(merged)
            for path, spec in old.items():
                if spec.get("type", "object") != new[path].get("type", "object"):
                    raise bad(f"mapper [{path}] cannot be changed from type [{spec.get('type')}] to "
                              f"[{new[path].get('type')}]")  # fmt: skip
            self.indices[name].mappings = merged
        return 200, {"acknowledged": True}

    def _get_mapping(self, method: str, params: dict, body: Any, target: str) -> tuple[int, Any]:
        return 200, {name: {"mappings": self.indices[name].mappings} for name in self._concrete(target)}

    def _put_settings(self, method: str, params: dict, body: Any, target: str) -> tuple[int, Any]:
        indices = self._concrete(target, ignore_unavailable=params.get("ignore_unavailable") == "true")
        flat = M.check_settings((body or {}).get("settings", body or {}))
        for name in indices:
            self.indices[name].settings.update(flat)
        return 200, {"acknowledged": True}

    def _rollover(self, method: str, params: dict, body: Any, target: str) -> tuple[int, Any]:
        if target not in self.streams:
            raise EsError(404, "index_not_found_exception", f"no such index [{target}]")
        return 200, self._roll(target)

    # --- reading ---------------------------------------------------------------------------------

    def _search(self, method: str, params: dict, body: Any, target: str | None = None) -> tuple[int, Any]:
        body = dict(body or {})
        allowed = {"query", "size", "from", "sort", "search_after", "pit", "_source", "track_total_hits", "aggs",
                   "aggregations", "seq_no_primary_term", "version", "timeout"}  # fmt: skip
        known = allowed | {"collapse", "fields", "docvalue_fields", "stored_fields", "post_filter", "track_scores",
                           "min_score", "terminate_after", "explain", "highlight", "runtime_mappings", "indices_boost",
                           "profile", "rank", "knn", "retriever", "ext", "script_fields", "slice", "stats", "suggest"}  # fmt: skip
        for key in body:
            if key not in known:
                raise bad(f"Unknown key for a START_OBJECT in [{key}].", "parsing_exception")
            if key not in allowed:
                raise bad(
                    f"the stand-in does not implement [{key}] in a search", "standin_unsupported_request"
                )
        pit = body.get("pit")
        if pit is not None:
            if target:
                raise bad("[indices] cannot be used with point in time. Do not specify any index with point in time.",
                          "action_request_validation_exception")  # fmt: skip
            if pit.get("id") not in self.pits:
                raise EsError(
                    404,
                    "search_context_missing_exception",
                    f"No search context found for id [{pit.get('id')}]",
                )
            hits = self.pits[pit["id"]]
        else:
            ignore = params.get("ignore_unavailable") == "true"
            hits = self._hits(self._concrete(target or "*", ignore_unavailable=ignore or not target))
        size, start = int(body.get("size", 10)), int(body.get("from", 0))
        if start + size > 10_000:
            raise bad(f"Result window is too large, from + size must be less than or equal to: [10000] but was "
                      f"[{start + size}]. See the scroll api for a more efficient way to request large data sets.")  # fmt: skip
        matches = S.compile_query(body.get("query"))
        found = [h for h in hits if matches(h)]
        aggs = body.get("aggs", body.get("aggregations"))
        if aggs:
            S.check_aggs(aggs)
        spec = S.sort_spec(body["sort"]) if "sort" in body else []
        if pit is not None and not any(n == "_shard_doc" for n, _ in spec):
            spec.append(("_shard_doc", "asc"))  # the implicit tiebreaker of a point in time
        ranked = S.sort_hits(found, spec) if spec else [(h, []) for h in found]
        if "search_after" in body:
            after = body["search_after"]
            if len(after) != len(spec):
                raise bad(f"search_after has {len(after)} value(s) but sort has {len(spec)}.")
            ranked = [(h, v) for h, v in ranked if S.compare(v, after, spec) > 0]
        page = ranked[start : start + size]
        total_setting = body.get("track_total_hits", 10_000)
        out: dict[str, Any] = {"took": 1, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0,
                                                                          "failed": 0}}  # fmt: skip
        hits_out: dict[str, Any] = {"max_score": None, "hits": []}
        if total_setting is not False:
            cap = len(found) if total_setting is True else int(total_setting)
            hits_out["total"] = {
                "value": min(len(found), cap),
                "relation": "eq" if len(found) <= cap else "gte",
            }
        for hit, values in page:
            item = {"_index": hit.index, "_id": hit.id, "_score": None,
                    "_source": S.filter_source(hit.source, body.get("_source"))}  # fmt: skip
            if spec:
                item["sort"] = values
            if body.get("seq_no_primary_term"):
                item |= {"_seq_no": hit.seq_no, "_primary_term": hit.primary_term}
            hits_out["hits"].append(item)
        out["hits"] = hits_out
        if aggs:
            out["aggregations"] = S.run_aggs(aggs, found)
        if pit is not None:
            out["pit_id"] = pit["id"]
        return 200, out

    def _count(self, method: str, params: dict, body: Any, target: str | None = None) -> tuple[int, Any]:
        ignore = params.get("ignore_unavailable") == "true"
        hits = self._hits(self._concrete(target or "*", ignore_unavailable=ignore or not target))
        matches = S.compile_query((body or {}).get("query"))
        return 200, {
            "count": sum(1 for h in hits if matches(h)),
            "_shards": {"total": 1, "successful": 1, "failed": 0},
        }

    def _open_pit(self, method: str, params: dict, body: Any, target: str) -> tuple[int, Any]:
        if "keep_alive" not in params:
            raise bad(
                "Validation Failed: 1: [keep_alive] is not specified;", "action_request_validation_exception"
            )
        indices = self._concrete(target, ignore_unavailable=params.get("ignore_unavailable") == "true")
        pit_id = base64.b64encode(f"standin-pit-{next(self._order)}".encode()).decode()
        self.pits[pit_id] = self._hits(indices)
        return 200, {
            "id": pit_id,
            "_shards": {"total": len(indices), "successful": len(indices), "failed": 0},
        }

    def _close_pit(self, method: str, params: dict, body: Any) -> tuple[int, Any]:
        pit_id = (body or {}).get("id")
        if pit_id not in self.pits:
            return 404, {"succeeded": True, "num_freed": 0}
        del self.pits[pit_id]
        return 200, {"succeeded": True, "num_freed": 1}

    def _delete_by_query(self, method: str, params: dict, body: Any, target: str) -> tuple[int, Any]:
        if not body or "query" not in body:
            raise bad("Validation Failed: 1: query is missing;", "action_request_validation_exception")
        if set(body) - {"query", "max_docs", "slice"}:
            raise bad(
                f"Unknown key for a START_OBJECT in [{sorted(set(body) - {'query'})[0]}].",
                "parsing_exception",
            )
        if params.get("conflicts", "abort") not in ("abort", "proceed"):
            raise bad(f'conflicts may only be "proceed" or "abort" but was [{params["conflicts"]}]')
        indices = self._concrete(target, ignore_unavailable=params.get("ignore_unavailable") == "true")
        matches = S.compile_query(body["query"])
        deleted = 0
        for hit in self._hits(indices):
            if matches(hit):
                del self.indices[hit.index].docs[hit.id]
                deleted += 1
        if params.get("refresh") in ("", "true"):
            self._refresh_indices(indices)
        return 200, {"took": 1, "timed_out": False, "total": deleted, "deleted": deleted, "batches": 1,
                     "version_conflicts": 0, "noops": 0, "retries": {"bulk": 0, "search": 0}, "throttled_millis": 0,
                     "requests_per_second": -1.0, "throttled_until_millis": 0, "failures": []}  # fmt: skip


def patterns_overlap(template: dict[str, Any], patterns: list[str]) -> bool:
    return M.patterns_overlap(template["index_patterns"], patterns)


def _loads(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise bad(f"Non-standard token '{token}': enable JsonParser.Feature.ALLOW_NON_NUMERIC_NUMBERS to allow",
                  "x_content_parse_exception")  # fmt: skip

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise bad(
            f"Failed to parse content to map: {exc.msg} at line {exc.lineno}", "x_content_parse_exception"
        ) from None


def _route_of(request: Request) -> str | None:
    for name, methods, pattern, _ in ROUTES:
        if request.method in methods and pattern.match(request.path):
            return name
    return None


class _MediaError(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them
    server_standin: EsStandIn

    def setup(self) -> None:
        super().setup()
        self.server_standin._connections.add(self.connection)

    def finish(self) -> None:
        self.server_standin._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        standin = self.server_standin
        if standin.down:
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, extra, body = standin.handle(self.command, self.path, headers, raw)
        except _MediaError as exc:
            status, extra = 406, {"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"}
            body = bad(f"Invalid media-type value on headers [Accept, Content-Type]: {exc}", "media_type_header_exception",
                       406).body()  # fmt: skip
        data = b"" if body is None or self.command == "HEAD" else json.dumps(body).encode()
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve
