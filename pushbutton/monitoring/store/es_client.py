"""elasticsearch-py calls with the store's error contract, retries and paging (``elasticsearch.py`` uses it).

* ``call`` — one API call; 429/502/503/504 answers and unreachable nodes are retried with exponential
  backoff, then ``StoreUnavailable``; 401/403/other refusals are ``StoreError`` (403 names the missing
  privilege as Elasticsearch reports it). ``missing_ok`` answers None for a missing index or data
  stream, ``exists_ok`` for one that exists already, ``conflict_ok`` for a 409.
* ``bulk`` — a bulk request in chunks; the per-item results in order. Items refused with 429 (or 503)
  are sent again (only those) with backoff; still refused after ``max_retries`` → ``StoreUnavailable``.
* ``create_merging`` — the request log's writes: ``create`` with an ``_id``; a 409 is a replay (nothing
  to do) or the other half of a stored document (merged and written back under optimistic concurrency).
* ``scan`` — every hit of a query through a point in time and ``search_after``; the PIT is closed.

The client is made with its own retries off (``max_retries=0``): retrying here keeps one backoff policy,
an injectable ``sleep`` for tests, and messages without credentials (``where`` is the redacted URL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import elasticsearch as es

from pushbutton.monitoring.store.base import StoreError, StoreUnavailable
from pushbutton.monitoring.store.es_connection import EsSettings

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset((429, 502, 503, 504))
Item = tuple[str, str, str, dict[str, Any]]  # (index or data stream, _id, document kind, document)
Merge = Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any]]
KEEP_ALIVE = "2m"  # a point in time lives this long between two pages
MISSING = ("index_not_found_exception", "resource_not_found_exception")


def _reason(exc: es.ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", exc.message)
    if isinstance(error, dict):
        cause = (error.get("root_cause") or [error])[0]
        return f"{cause.get('type', error.get('type', ''))}: {cause.get('reason', error.get('reason', ''))}"
    return str(error)


def _type(exc: es.ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    return str(error.get("type", "")) if isinstance(error, dict) else ""


class Client:
    def __init__(self, client: Any, settings: EsSettings, where: str, sleep: Callable[[float], None]):
        self.client = client
        self.settings = settings
        self.where = where
        self.sleep = sleep

    def close(self) -> None:
        self.client.close()

    def backoff(self, attempt: int) -> float:
        return min(self.settings.max_backoff_s, self.settings.backoff_s * 2**attempt)

    def call(
        self,
        what: str,
        method: str,
        *,
        missing_ok: bool = False,
        exists_ok: bool = False,
        conflict_ok: bool = False,
        **kwargs: Any,
    ) -> Any:
        target: Any = self.client
        for part in method.split("."):
            target = getattr(target, part)
        attempt = 0
        while True:
            try:
                response = target(**kwargs)
                return response.body if hasattr(response, "body") else response
            except es.UnsupportedProductError:
                raise StoreError(
                    f"cannot {what}: {self.where} is not Elasticsearch (no X-Elastic-Product header)"
                ) from None
            except es.ApiError as exc:
                status = exc.meta.status
                if status in RETRY_STATUS:
                    problem = f"Elasticsearch answered {status} ({_reason(exc)})"
                elif status == 404 and (method == "get" or (missing_ok and _type(exc) in MISSING)):
                    return None  # a document (get) or an index/data stream that does not exist
                elif (status == 400 and exists_ok and "already_exists" in _type(exc)) or (
                    status == 409 and conflict_ok
                ):
                    return None
                elif status == 401:
                    raise StoreError(f"cannot {what} in {self.where}: 401 {_reason(exc)} (fix: check the connection's "
                                     "login/password or api_key)") from None  # fmt: skip
                elif status == 403:
                    raise StoreError(f"cannot {what} in {self.where}: 403 {_reason(exc)} (fix: grant the privileges "
                                     "the README lists for the Elasticsearch store)") from None  # fmt: skip
                else:
                    raise StoreError(f"cannot {what} in {self.where}: {status} {_reason(exc)}") from None
            except (es.ConnectionError, es.ConnectionTimeout) as exc:
                problem = f"unreachable ({type(exc).__name__})"
            if attempt >= self.settings.max_retries:
                raise StoreUnavailable(
                    f"cannot {what} in {self.where}: {problem}, {attempt + 1} attempts"
                ) from None
            delay = self.backoff(attempt)
            log.warning("cannot %s in %s: %s; retrying in %.2fs", what, self.where, problem, delay)
            self.sleep(delay)
            attempt += 1

    def bulk(
        self, what: str, operations: list[tuple[dict[str, Any], dict[str, Any]]], **params: Any
    ) -> list[dict[str, Any]]:
        """The per-item results (``{"status": …, "_index": …, "error": …}``) of ``operations`` in order."""
        results: list[dict[str, Any] | None] = [None] * len(operations)
        pending = list(range(len(operations)))
        attempt = 0
        params = {k: v for k, v in params.items() if v is not None}
        while pending:
            again: list[int] = []
            size = self.settings.bulk_docs
            for start in range(0, len(pending), size):
                chunk = pending[start : start + size]
                body: list[dict[str, Any]] = []
                for i in chunk:
                    body.extend(operations[i])
                found = self.call(what, "bulk", operations=body, **params)
                items = found.get("items", [])
                if len(items) != len(chunk):
                    raise StoreError(
                        f"cannot {what} in {self.where}: {len(items)} results for {len(chunk)} operations"
                    )
                for i, item in zip(chunk, items, strict=True):
                    result = next(iter(item.values()))
                    if result.get("status") in RETRY_STATUS:
                        again.append(i)
                    results[i] = result
            if not again:
                break
            if attempt >= self.settings.max_retries:
                sample = results[again[0]] or {}
                raise StoreUnavailable(
                    f"cannot {what} in {self.where}: {len(again)} of {len(operations)} documents still refused with "
                    f"{sample.get('status')} ({sample.get('error', {}).get('type', '')}) after {attempt + 1} attempts; "
                    "nothing was dropped: the caller keeps them and retries"
                )
            delay = self.backoff(attempt)
            log.warning("%s: %d documents refused (%s); retrying them in %.2fs", what, len(again),
                        (results[again[0]] or {}).get("status"), delay)  # fmt: skip
            self.sleep(delay)
            attempt += 1
            pending = again
        return [r or {} for r in results]

    def raise_refused(self, refused: list[tuple[str, dict[str, Any]]]) -> None:
        """A ``StoreError`` naming the first of the ``(_id, item result)`` Elasticsearch refused for good."""
        if refused:
            key, result = refused[0]
            error = result.get("error", {})
            raise StoreError(
                f"{self.where} refused {len(refused)} document(s), e.g. {key} in {result.get('_index')}: "
                f"{result['status']} {error.get('type', '')}: {error.get('reason', error)}"
            )

    def create_merging(
        self, what: str, items: list[Item], merge: Merge, *, refresh: str | None = None
    ) -> None:
        """``create`` each ``(index, _id, kind, document)``; one that meets a stored document (409) is merged
        into it (``merge(kind, stored, new)``) and written back to its backing index under
        ``if_seq_no``/``if_primary_term`` — unless the merge changes nothing (a replay)."""
        operations = [({"create": {"_index": index, "_id": key}}, doc) for index, key, _, doc in items]
        results = self.bulk(f"{what} ({len(items)})", operations, refresh=refresh, require_data_stream=True)
        self.raise_refused(
            [(items[i][1], r) for i, r in enumerate(results) if r["status"] >= 300 and r["status"] != 409]
        )
        conflicts = [(item, r) for item, r in zip(items, results, strict=True) if r["status"] == 409]
        for _ in range(10):
            if not conflicts:
                return
            conflicts = self._merge(what, conflicts, merge, refresh)
        raise StoreUnavailable(
            f"cannot {what} in {self.where}: the documents keep changing while merging; retry later"
        )

    def _merge(
        self, what: str, conflicts: list[tuple[Item, dict[str, Any]]], merge: Merge, refresh: str | None
    ) -> list:
        """Merge new documents into the stored ones they met; answers those to try again (changed meanwhile)."""
        found = self.call(f"{what}: read stored documents", "mget",
                          docs=[{"_index": r["_index"], "_id": item[1]} for item, r in conflicts])["docs"]  # fmt: skip
        operations, pending, again = [], [], []
        for (item, result), stored in zip(conflicts, found, strict=True):
            _, key, kind, doc = item
            if not stored.get("found"):  # deleted meanwhile (a purge): create it afresh
                again.append(item)
                continue
            merged = merge(kind, stored["_source"], doc)
            if merged == stored["_source"]:
                continue  # a replay: nothing new
            guard = {"if_seq_no": stored["_seq_no"], "if_primary_term": stored["_primary_term"]}
            operations.append(({"index": {"_index": stored["_index"], "_id": key, **guard}}, merged))
            pending.append((item, result))
        if again:
            self.create_merging(what, again, merge, refresh=refresh)
        if not operations:
            return []
        results = self.bulk(f"{what}: merge {len(operations)} halves", operations, refresh=refresh)
        self.raise_refused([(p[0][1], r) for p, r in zip(pending, results, strict=True)
                            if r["status"] >= 300 and r["status"] != 409])  # fmt: skip
        return [p for p, r in zip(pending, results, strict=True) if r["status"] == 409]

    def search(self, what: str, index: str | list[str], **body: Any) -> dict[str, Any]:
        """A search; an index or data stream that does not exist (yet) answers no hits."""
        found = self.call(what, "search", index=index, ignore_unavailable=True, missing_ok=True, **body)
        return found or {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}

    def scan(
        self,
        what: str,
        index: str,
        query: dict[str, Any],
        source: Any,
        *,
        sort: list[Any] | None = None,
        limit: int | None = None,
        stop: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every hit (``limit``: more is a ``StoreError``; ``stop``: yield at most that many)."""
        opened = self.call(what, "open_point_in_time", index=index, keep_alive=KEEP_ALIVE, ignore_unavailable=True,
                           missing_ok=True)  # fmt: skip
        if not opened:
            return
        pit = opened["id"]
        page = self.settings.page_size if stop is None else max(1, min(self.settings.page_size, stop))
        after: list[Any] | None = None
        seen = 0
        try:
            while True:
                body: dict[str, Any] = {
                    "size": page,
                    "query": query,
                    "sort": sort or [{"_shard_doc": "asc"}],
                    "source": source,
                    "pit": {"id": pit, "keep_alive": KEEP_ALIVE},
                    "track_total_hits": False if after is not None or limit is None else limit + 1,
                }
                if after is not None:
                    body["search_after"] = after
                found = self.call(what, "search", **body)
                pit = found.get("pit_id", pit)
                total = found["hits"].get("total")
                if limit is not None and isinstance(total, dict) and total.get("value", 0) > limit:
                    raise StoreError(
                        f"cannot {what} in {self.where}: the window holds more than {limit:,} rows (fix: narrow the "
                        "window, aggregate it, or raise max_rows in the connection; each 10,000 rows costs one request)"
                    )
                hits = found["hits"]["hits"]
                for hit in hits:
                    yield hit
                    seen += 1
                    if stop is not None and seen >= stop:
                        return
                if len(hits) < page:
                    return
                after = hits[-1]["sort"]
        finally:
            try:
                self.client.close_point_in_time(id=pit)
            except (es.ApiError, es.TransportError) as exc:  # it expires by itself after KEEP_ALIVE
                log.info("could not close a point in time in %s: %s", self.where, type(exc).__name__)
