"""The request logger: receives Seldon's request-logger CloudEvents, pairs them and writes the store.

``POST /`` takes one binary-mode event, a structured event or a batch (``events.parse_http``); the
gateway's emitter and a SeldonDeployment's ``logger.url`` both point here. A delivery is answered
only once it is safe:

* **200** once every event in it is written to the store (or was written before: a duplicate). The
  halves that arrived since the last write go to the store together (group commit: while one write
  runs, the next batch gathers, so batches grow with the load); a pair that arrived together is one
  complete record, a half whose partner has not arrived yet is written as an incomplete record at
  once and completed when its partner comes (the store merges them) — nothing acknowledged lives only
  in memory, so killing the logger loses nothing its senders do not resend;
* **400** for a malformed delivery (the message names the event, the attribute and the fix; a batch is
  refused whole, so the emitter resends it event by event and drops only the bad ones);
* **422** for events the store can never take (e.g. a value its schema refuses); the other events of
  the delivery are written, so the emitter's per-event resend keeps them and drops only those;
* **503** while the store is unavailable (the write failed, or a probe has not yet seen it back): the
  emitter spools and replays, and writes are idempotent, so a replay never duplicates.

``POST /labels/{model}`` writes late labels at once, through the store call ``pushbutton labels MODEL
FILE`` uses (``labels.py``): a JSON body ``{"labels": [{"request_id": "<the answer's puid>", "row": 0,
"label": 1}, ...]}`` (``row``: the row's position in its request, 0 when left out) or ``text/csv``
with the columns of a labels file (``request_id,row,label``). It answers **200** with the report the
CLI prints (``LabelReport.as_dict()``: ``labels`` written, ``requests``, ``matched``, ``unknown`` and
``unknown_ids`` — ids the log does not hold yet, kept and joined once they are logged — and a
``warning`` naming them), **400** naming the item or line, the field and the fix (nothing written),
**404** for a model with no logged request, **415** for another body type, **503** while the store
is down (resend later).

``GET /health`` answers 200 when the store answers (503 otherwise); ``GET /status`` the counters
(received, paired, incomplete, late, written, duplicates, rejected, store errors, labels …).

Records of a model the store has no schema for get one from the model's spec (``model.yaml`` under
``--models-dir``: ``schema.inputs`` as typed columns, ``schema.output``, ``logging.exclude``) before
they are written; a model without a spec is kept in the request table only (``untyped``).

``--workers N`` runs N logger processes on the port (``workers.py``): one process takes about 15-19k
records/s on one core; two took 28k on this 2-core machine (bench/ingest.py, BENCHMARKS.md).

Run: ``python -m pushbutton.monitoring.logger --host 127.0.0.1 --port 8002 --store sqlite:///…``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from pushbutton.monitoring.events import EventError, Half, Pairer, labels_of, parse_http
from pushbutton.monitoring.labels import (
    JSON_EXAMPLE,
    LabelFileError,
    UnknownModelError,
    check_model,
    labels_from_body,
    store_labels,
)
from pushbutton.monitoring.records import InferenceRecord, Label
from pushbutton.monitoring.store import MonitoringStore, StoreError, StoreUnavailable, open_store
from pushbutton.monitoring.workers import PUBLISH_SECONDS, STORE_DOWN, combine, gather, publish, supervise

log = logging.getLogger("pushbutton.logger")

MAX_BODY_BYTES = 64 * 1024 * 1024  # one batch of events
SCHEMA_RETRY = 60.0  # seconds before a model without a spec is looked up again
# a model's spec: (features, prediction feature, excluded feature names), or None without one
SchemaSource = Callable[[str], tuple[list[Any], Any, list[str]] | None]


def spec_schemas(models_dir: Path | None) -> SchemaSource:
    """Look a model's schema up in its ``model.yaml`` under ``models_dir`` (by its ``name:``)."""

    def lookup(model: str) -> tuple[list[Any], Any, list[str]] | None:
        if models_dir is None:
            return None
        from pushbutton.spec import declared_name, find_spec_dirs, load_spec
        from pushbutton.spec.loader import SPEC_FILE

        for model_dir in find_spec_dirs(models_dir):
            if declared_name(model_dir) == model:
                spec = load_spec(model_dir / SPEC_FILE)
                exclude = list(getattr(getattr(spec, "logging", None), "exclude", None) or ())
                return list(spec.schema_.inputs), spec.schema_.output, exclude
        return None

    return lookup


@dataclass
class Counters:
    received: int = 0  # events taken in (request, response and feedback halves)
    deliveries: int = 0  # HTTP posts
    written: int = 0  # records written (a half completed later counts again)
    rows: int = 0
    rejected: int = 0  # deliveries refused as malformed (400)
    failed: int = 0  # records the store refused for good (422)
    unavailable: int = 0  # deliveries answered 503
    store_errors: int = 0  # failed writes (transient or not)
    untyped: int = 0  # records of models without a schema (request table only)
    labels: int = 0
    unknown_labels: int = 0  # labels whose request id is not (yet) in the log


@dataclass
class _Delivery:
    halves: list[Half]
    labels: list[tuple[str, Label]]
    done: asyncio.Future


@dataclass
class _Window:
    deliveries: list[_Delivery] = field(default_factory=list)


class RequestLogger:
    """The service: pairing, group-committed writes, counters, and the aiohttp application."""

    def __init__(
        self,
        store: MonitoringStore,
        *,
        pair_timeout: float = 5.0,
        linger: float = 0.002,
        probe_interval: float = 1.0,
        schemas: SchemaSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_body_bytes: int = MAX_BODY_BYTES,
        shared: tuple[int, Path] | None = None,
    ):
        self.store = store
        self.shared = shared  # (this worker's number, the status dir) under ``--workers N``
        self.pairer = Pairer(pair_timeout, clock=clock)
        self.linger = linger
        self.probe_interval = probe_interval
        self.schemas = schemas or (lambda model: None)
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.counters = Counters()
        self.store_up = True
        self.last_error = ""
        self._window = _Window()
        self._wake = asyncio.Event()
        self._typed: set[str] = set()  # models the store has a schema for
        self._looked_up: dict[str, float] = {}  # model -> when its spec was last looked up
        self._tasks: list[asyncio.Task] = []

    # --- application ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post("/", self.receive)
        app.router.add_post("/labels/{model}", self.post_labels)
        app.router.add_get("/health", self.health)
        app.router.add_get("/status", self.status)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    async def _lifecycle(self, app: web.Application) -> Any:
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(self._writer()), asyncio.create_task(self._prober())]
        if self.shared is not None:
            self._tasks.append(asyncio.create_task(self._publisher()))
        yield
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # halves still waiting were written incomplete already; flush what arrived since the last write
        if self._window.deliveries or self.pairer.ready:
            with contextlib.suppress(Exception):
                await self._flush()
        await asyncio.to_thread(self.store.close)

    async def receive(self, request: web.Request) -> web.Response:
        self.counters.deliveries += 1
        body = await request.read()
        try:
            halves = parse_http(request.headers, body)
            labels = [(h.model, label) for h in halves if h.kind == "feedback" for label in labels_of(h)]
        except EventError as exc:
            self.counters.rejected += 1
            log.warning("refused a malformed delivery: %s", exc)
            return _json(400, {"error": str(exc)})
        self.counters.received += len(halves)
        if not self.store_up:
            self.counters.unavailable += 1
            return self._unavailable()
        for half in halves:
            if half.kind != "feedback":
                self.pairer.add(half)
        done = asyncio.get_running_loop().create_future()
        self._window.deliveries.append(_Delivery([h for h in halves if h.kind != "feedback"], labels, done))
        self._wake.set()
        status, answer = await done
        if status == 503:
            self.counters.unavailable += 1
            return self._unavailable()
        return _json(status, answer)

    async def post_labels(self, request: web.Request) -> web.Response:
        """Late labels over REST (see the module docstring): written before the answer."""
        model = request.match_info["model"]
        kind = request.content_type
        if not ("json" in kind or "csv" in kind or kind == "application/octet-stream"):  # the last: no type
            return _json(415, {"error": f"Content-Type {kind} is not taken (fix: application/json with "
                                        f"{JSON_EXAMPLE}, or text/csv of request_id,row,label)"})  # fmt: skip
        try:
            labels, replaced = labels_from_body(await request.read(), kind)
        except LabelFileError as exc:
            return _json(400, {"error": str(exc)})
        if not self.store_up:
            return self._unavailable()
        source = f"POST /labels/{model}"
        try:
            await asyncio.to_thread(check_model, self.store, model)
            report = await asyncio.to_thread(
                store_labels, self.store, model, labels, source, replaced=replaced
            )
        except UnknownModelError as exc:
            return _json(404, {"error": str(exc)})
        except StoreUnavailable as exc:
            self._down(str(exc))
            return self._unavailable()
        except StoreError as exc:
            self.counters.store_errors += 1
            return _json(500, {"error": f"the store refused the labels: {exc}"})
        self.counters.labels += report.labels
        self.counters.unknown_labels += len(report.unknown)
        answer = report.as_dict()
        if report.unknown:
            answer["warning"] = report.unknown_message()
        return _json(200, answer)

    def _unavailable(self) -> web.Response:
        response = _json(
            503,
            {
                "error": f"the monitoring store is unavailable ({self.last_error}); resend later (nothing was kept)"
            },
        )
        response.headers["Retry-After"] = "1"
        return response

    async def health(self, request: web.Request) -> web.Response:
        try:
            await asyncio.to_thread(self.store.ping)
        except StoreError as exc:
            return _json(503, {"status": "store unavailable", "error": str(exc)})
        return _json(200, {"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        """This process's counters; under ``--workers N`` the sum over all workers (``workers.py``)."""
        if self.shared is None:
            return _json(200, self.describe())
        index, status_dir = self.shared
        publish(status_dir, index, self.describe())
        parts = gather(status_dir)
        return _json(200, {**combine(parts), "workers": len(parts), "per_worker": parts})

    async def _publisher(self) -> None:
        assert self.shared is not None
        index, status_dir = self.shared
        while True:
            with contextlib.suppress(OSError):
                publish(status_dir, index, self.describe())
            await asyncio.sleep(PUBLISH_SECONDS)

    def describe(self) -> dict[str, Any]:
        pairing = asdict(self.pairer.counters)
        return {
            **asdict(self.counters),
            **{k: v for k, v in pairing.items() if k != "received"},
            "waiting": len(self.pairer.pending),
            "store": getattr(self.store, "url", ""),
            "store_up": self.store_up,
            "last_error": self.last_error,
        }

    # --- writing -------------------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(self.pairer.timeout / 4, 0.05))
            self._wake.clear()
            if self.linger:
                await asyncio.sleep(self.linger)
            await self._flush()

    async def _flush(self) -> None:
        window, self._window = self._window, _Window()
        records = self.pairer.expire() + self.pairer.take()
        if not window.deliveries and not records:
            return
        labels = [item for delivery in window.deliveries for item in delivery.labels]
        try:
            failed = await asyncio.to_thread(self._write, records, labels)
        except StoreUnavailable as exc:
            self._down(str(exc))
            self.pairer.rollback(h for d in window.deliveries for h in d.halves)
            for delivery in window.deliveries:
                _settle(delivery.done, (503, {}))
            return
        except Exception as exc:  # a bug or an unexpected store error: nothing acknowledged, senders retry
            self.counters.store_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("writing %d records failed", len(records))
            self.pairer.rollback(h for d in window.deliveries for h in d.halves)
            for delivery in window.deliveries:
                _settle(delivery.done, (500, {"error": f"the logger could not write: {self.last_error}"}))
            return
        if failed:  # a resend of those is refused again, not taken for a duplicate
            self.pairer.rollback(h for d in window.deliveries for h in d.halves if h.event_id in failed)
        for delivery in window.deliveries:
            refused = [failed[h.event_id] for h in delivery.halves if h.event_id in failed]
            if refused:
                _settle(delivery.done, (422, {"error": "; ".join(sorted(set(refused)))}))
            else:
                _settle(delivery.done, (200, {"accepted": len(delivery.halves) + len(delivery.labels)}))

    def _write(self, records: list[InferenceRecord], labels: list[tuple[str, Label]]) -> dict[str, str]:
        """Write (on a worker thread); the ids of events the store refused for good, with the reason."""
        self._ensure_schemas({r.model for r in records})
        failed: dict[str, str] = {}
        try:
            result = self.store.write_records(records)
            self.counters.rows += result.rows
            self.counters.untyped += result.untyped
            written = len(records)
        except StoreUnavailable:
            self.counters.store_errors += 1
            raise
        except StoreError as exc:  # find the records it refuses: write them one by one
            self.counters.store_errors += 1
            log.error("the store refused a batch (%s); writing its %d records one by one", exc, len(records))
            written = 0
            for record in records:
                try:
                    self.store.write_records([record])
                    written += 1
                except StoreUnavailable:
                    raise
                except StoreError as one:
                    self.counters.failed += 1
                    self.last_error = str(one)
                    for event_id in (record.request_event_id, record.response_event_id):
                        if event_id:
                            failed[event_id] = f"request {record.request_id}: {one}"
        self.counters.written += written
        by_model: dict[str, list[Label]] = {}
        for model, label in labels:
            by_model.setdefault(model, []).append(label)
        for model, items in by_model.items():
            outcome = self.store.write_labels(model, items)
            self.counters.labels += outcome.written
            self.counters.unknown_labels += len(outcome.unknown)
            if outcome.unknown:
                log.warning("labels for %d request ids not in the log of %s, e.g. %s", len(outcome.unknown),
                            model, outcome.unknown[0])  # fmt: skip
        return failed

    def _ensure_schemas(self, models: set[str]) -> None:
        """Give models the store has no schema for one from their spec (looked up again every minute)."""
        now = self.clock()
        for model in models - self._typed:
            seen = self._looked_up.get(model)
            if seen is not None and now - seen < SCHEMA_RETRY:
                continue
            self._looked_up[model] = now
            if self.store.schema(model) is None:
                try:
                    found = self.schemas(model)
                except Exception as exc:  # a broken spec: its records stay untyped until it is fixed
                    log.warning("no schema for %s from its spec (%s); its records stay untyped", model, exc)
                    continue
                if found is None:
                    log.warning(
                        "no spec names model %s; its records stay untyped (request table only)", model
                    )
                    continue
                features, output, exclude = found
                self.store.ensure_model(model, features, output, exclude)
                log.info("created the typed log of %s (%d features)", model, len(features))
            self._typed.add(model)

    def _down(self, reason: str) -> None:
        if self.store_up:
            log.error("monitoring store unavailable: %s; answering 503 until it is back", reason)
        self.store_up, self.last_error = False, reason

    async def _prober(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            if self.store_up:
                continue
            try:
                await asyncio.to_thread(self.store.ping)
            except StoreError as exc:
                self.last_error = str(exc)
                continue
            log.warning("monitoring store is back; taking events again")
            self.store_up = True


def _settle(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _json(status: int, data: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json")


# --- entry point --------------------------------------------------------------------------------


def logger_argv(
    host: str,
    port: int,
    store: str,
    models_dir: str | Path | None = None,
    python: str | None = None,
    *,
    workers: int = 1,
    status_dir: str | Path | None = None,
) -> list[str]:
    """The command line that runs the logger (for ``ProcessGroup.start``)."""
    argv = [python or sys.executable, "-m", "pushbutton.monitoring.logger", "--host", host, "--port", str(port),
            "--store", store, "--workers", str(workers)]  # fmt: skip
    if models_dir is not None:
        argv += ["--models-dir", str(models_dir)]
    if status_dir is not None:
        argv += ["--status-dir", str(status_dir)]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pushbutton.monitoring.logger", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", help="address to bind (default: PUSHBUTTON_HOST)")
    parser.add_argument("--port", type=int, help="port (default: PUSHBUTTON_LOGGER_PORT)")
    parser.add_argument(
        "--store", help="monitoring store URL (default: PUSHBUTTON_MONITORING_URL or <home>/monitoring.db)"
    )
    parser.add_argument(
        "--models-dir", type=Path, help="where model.yaml files are (default: PUSHBUTTON_MODELS_DIR)"
    )
    parser.add_argument(
        "--pair-timeout", type=float, default=5.0, help="seconds a half waits for its partner"
    )
    parser.add_argument("--linger", type=float, default=0.002, help="seconds a write waits for more events")
    parser.add_argument(
        "--workers",
        type=int,
        help="logger processes sharing the port (workers.py; default PUSHBUTTON_LOGGER_WORKERS, 1)",
    )
    parser.add_argument("--status-dir", type=Path, help="where workers share their counters (<home>/logger)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers {args.workers}: must be 1 or more (fix: e.g. --workers 2)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # a batch decodes into many short-lived containers: the default thresholds run the cyclic
    # collector every ~700 of them, which costs more than the parsing itself (bench/ingest.py)
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    from pushbutton.config import settings
    from pushbutton.errors import ConfigError

    try:
        cfg = settings()
        host, port = args.host or cfg.host, args.port or cfg.logger_port
        status_dir = args.status_dir or cfg.home / "logger"
        workers = args.workers or cfg.logger_workers
        if workers > 1 and args.worker is None:
            own = ["--host", host, "--port", str(port), "--store", args.store or cfg.monitoring,
                   "--models-dir", str(args.models_dir or cfg.models_dir), "--pair-timeout", str(args.pair_timeout),
                   "--linger", str(args.linger)]  # fmt: skip
            log.info("request logger on http://%s:%d: %d worker processes", host, port, workers)
            return supervise(own, workers, status_dir)
        store = open_store(args.store or cfg.monitoring)
        models_dir = args.models_dir or cfg.models_dir
        service = RequestLogger(
            store,
            pair_timeout=args.pair_timeout,
            linger=args.linger,
            schemas=spec_schemas(models_dir),
            shared=None if args.worker is None else (args.worker, status_dir),
        )
    except StoreUnavailable as exc:  # may come back: a supervisor retries this one (workers.py)
        print(f"error: {exc}", file=sys.stderr)
        return STORE_DOWN
    except (ConfigError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("request logger on http://%s:%d (store %s)", host, port, getattr(store, "url", "?"))
    web.run_app(service.app(), host=host, port=port, access_log=None, print=None,
                shutdown_timeout=5.0, backlog=1024, reuse_address=True,
                reuse_port=args.worker is not None)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
