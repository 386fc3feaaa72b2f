"""The gateway's request-log emitter: Seldon Core's request-logger CloudEvents, sent asynchronously,
never lost.

What it sends (``wire.py``; as seldon-core's v1 executor, ``executor/logger/worker.go``):
one event per request and one per response, ``Ce-Type: io.seldon.serving.inference.request|response``,
a fresh ``Ce-Id`` per event, ``Ce-Requestid`` (the request's puid: the same on both halves and on
every predictor the request went to, shadows included), ``Ce-Modelid`` (``<model>-v<version>``, as
the Kubernetes renderer names the graph node), ``Ce-Inferenceservicename`` (the deployment),
``Ce-Namespace``, ``Ce-Endpoint`` (the predictor), ``Ce-Protocol: seldon``, ``Ce-Source`` (the
predictor's URL), ``Ce-Time`` and the body as sent/answered (a body that is not a JSON object or
array travels as the Seldon message ``{"strData": <its text>}``). pushbutton's extensions say what
Seldon's executor cannot: ``Ce-Pushbuttonversion``, ``Ce-Pushbuttonrole`` (champion, candidate;
``shadow`` for shadow copies) and, on responses, ``Ce-Pushbuttonstatus`` (the HTTP status the caller
got) and ``Ce-Pushbuttonlatencyms`` (as the gateway timed the predictor). A single event goes out in
binary mode (attributes as ``Ce-*`` headers, the body as is); when several are waiting they go as
one ``application/cloudevents-batch+json`` array of structured events (attributes as keys, the body
as ``data``) — the same events, far fewer requests at high rates.

Nothing lost: ``emit`` only appends to a bounded memory queue (it never blocks, never raises, never
waits on the logger). A worker thread sends from it; when the logger does not answer, answers 5xx,
429 or 408, everything from then on goes to the append-only spool on disk (``spool.py``: segment
files, fsync policy there) and is replayed from it, in order, as soon as the logger answers again —
new events keep going to the spool's end until it is empty, so the order holds. Event ids are fixed
when an event is encoded, before it is spooled or sent: the logger stores idempotently by ``Ce-Id``,
so a replay (or a batch resent after a lost answer) never duplicates. A clean stop (SIGTERM) spools
what is still in memory; a killed gateway (SIGKILL, a crash) loses what was in memory at that moment:
the events of the last ``linger`` (50 ms) and of a send in progress, never what was spooled.

What is dropped is counted by reason, never silent: ``oversize`` (a body over ``max_event_bytes``:
both halves of that exchange), ``queue_full`` (the memory queue over its bound while the worker is
behind), ``spool_full`` (the spool over its disk quota), ``spool_error`` (the disk refused the write),
``rejected`` (the logger answered 4xx for that one event: it can never be stored), ``corrupt`` (a
spool line a crash cut) and ``error`` (a bug: an event that could not be encoded, logged with its
traceback). The logger answers 2xx only once the events are stored and 5xx/503 while its store is
down (``logger.py``); a batch it refuses (4xx) is sent again event by event, so only the events it
refuses are dropped.

The counters are served by the gateway at ``GET /status`` (``{"logging": Emitter.status() + the
gateway's own}``), which ``pushbutton status`` shows; ``GatewayClient.status()`` reads them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from pushbutton.monitoring import records as R
from pushbutton.monitoring.spool import Spool
from pushbutton.monitoring.wire import Encoded, Event, batch_body, encode

log = logging.getLogger("pushbutton.emitter")

DROP_REASONS = ("oversize", "queue_full", "spool_full", "spool_error", "rejected", "corrupt", "error")
RETRY_STATUSES = {408, 429}  # and every 5xx: the logger (or its store) is not there right now


class LoggerUnavailable(Exception):
    """The logger could not be reached (refused, reset, timed out)."""


# POST ``body`` with ``headers`` to the logger; the HTTP status, or ``LoggerUnavailable``
Transport = Callable[[bytes, dict[str, str]], int]


class HttpTransport:
    """POSTs to the logger's URL with httpx (keep-alive), from the emitter's worker thread."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(2.0, timeout)))

    def __call__(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            return self._client.post(self.url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            raise LoggerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._client.close()


class Emitter:
    """Bounded memory queue → logger, or → spool → logger once it answers again."""

    def __init__(
        self,
        transport: Transport,
        spool: Spool | str | Path,
        *,
        url: str = "",
        max_event_bytes: int = 1024 * 1024,
        max_queue_events: int = 20_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        batch_size: int = 500,
        batch_bytes: int = 8 * 1024 * 1024,
        linger: float = 0.05,
        retry_initial: float = 0.25,
        retry_max: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.transport = transport
        self.spool = spool if isinstance(spool, Spool) else Spool(spool, clock=clock)
        self.url = url or getattr(transport, "url", "")
        self.max_event_bytes = max_event_bytes
        self.max_queue_events = max_queue_events
        self.max_queue_bytes = max_queue_bytes
        self.batch_size, self.batch_bytes = batch_size, batch_bytes  # one POST: at most this many/bytes
        self.linger = linger
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.clock = clock
        self.queued = self.sent = self.spooled = self.replayed = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.logger_up = True
        self.last_error = ""
        self._retry_at = 0.0
        self._backoff = retry_initial
        self._queue: deque[Event] = deque()
        self._queue_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # the request path ---------------------------------------------------------------------------

    def emit(self, events: Sequence[Event]) -> bool:
        """Queue the halves of one exchange together; False (and counted) if they were dropped."""
        try:
            size = sum(len(e.body) for e in events)
            if any(len(e.body) > self.max_event_bytes for e in events):
                with self._lock:
                    self.dropped["oversize"] += len(events)
                return False
            with self._lock:
                if (
                    len(self._queue) + len(events) > self.max_queue_events
                    or self._queue_bytes + size > self.max_queue_bytes
                ):
                    self.dropped["queue_full"] += len(events)
                    return False
                self._queue.extend(events)
                self._queue_bytes += size
                self.queued += len(events)
            self._wake.set()
            return True
        except Exception:  # logging never fails a request
            log.exception("could not queue %d request-log events", len(events))
            return False

    # the worker ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="request-log-emitter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            try:
                self.pump(self._idle_wait())
            except Exception:  # the worker must outlive any one bad pass
                log.exception("request-log emitter pass failed")
                time.sleep(0.1)

    def _idle_wait(self) -> float:
        if self.spool.empty:
            return 1.0
        return 0.0 if self.logger_up else max(0.0, self._retry_at - self.clock())

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker; what is still in memory goes to the spool (replayed on the next start)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("request-log emitter did not stop within %g s; %d events in memory are lost",
                          timeout, len(self._queue))  # fmt: skip
                return
        while self._queue:
            self._to_spool(self._encode(self._take()))
        self.spool.close()
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    def pump(self, wait: float = 0.0) -> None:
        """One pass: take what is queued (waiting up to ``wait`` for the first event), send or spool
        it, then replay from the spool if the logger is due another try."""
        if not self._queue and wait > 0:
            self._wake.wait(wait)
        self._wake.clear()
        if self._queue and self.linger > 0 and len(self._queue) < self.batch_size and not self._stopping:
            # let a batch gather: one POST (or one spool write) for many events at high rates
            time.sleep(self.linger)
        events = self._take()
        if events:
            encoded = self._encode(events)
            if self.spool.empty and (self.logger_up or self.clock() >= self._retry_at):
                encoded = encoded[self._deliver(encoded) :]
            if encoded:
                self._to_spool(encoded)
        if not self.spool.empty and (self.logger_up or self.clock() >= self._retry_at):
            self._replay()
        self.spool.sync_if_due()

    def _encode(self, events: Sequence[Event]) -> list[Encoded]:
        out = []
        for event in events:
            try:
                out.append(encode(event))
            except Exception:  # a bug: counted and logged, the other events go on
                self.dropped["error"] += 1
                log.exception("could not encode a request-log event of %s", event.request_id)
        return out

    def _take(self) -> list[Event]:
        events: list[Event] = []
        size = 0
        with self._lock:
            while self._queue and len(events) < self.batch_size:
                if events and size + len(self._queue[0].body) > self.batch_bytes:
                    break
                event = self._queue.popleft()
                events.append(event)
                size += len(event.body)
            self._queue_bytes -= size
        return events

    def _to_spool(self, encoded: Sequence[Encoded]) -> None:
        try:
            written = self.spool.append([e.line for e in encoded])
        except OSError as exc:
            self.dropped["spool_error"] += len(encoded)
            log.error(
                "cannot write %d request-log events to the spool %s: %s", len(encoded), self.spool.dir, exc
            )
            return
        self.spooled += written
        if written < len(encoded):
            self.dropped["spool_full"] += len(encoded) - written
            log.error("request-log spool %s is over its quota of %d bytes: %d events dropped",
                      self.spool.dir, self.spool.max_bytes, len(encoded) - written)  # fmt: skip

    def _replay(self) -> None:
        batch = self.spool.read(self.batch_size, self.batch_bytes)
        if not batch.lines:
            if batch.skipped:
                self.spool.ack(batch)
            return
        status = self._post_lines(batch.lines)
        if status is None:
            return
        if 200 <= status < 300:
            self.spool.ack(batch)
            self.replayed += len(batch.lines)
            return
        # the logger refuses this batch for good: find the events it refuses, keep the others
        for line in batch.lines:
            single = self._post_lines([line])
            if single is None:
                return  # gone again: the whole batch is replayed later (idempotent by event id)
            if 200 <= single < 300:
                self.replayed += 1
            else:
                self._reject(single, line)
        self.spool.ack(batch)

    def _deliver(self, encoded: Sequence[Encoded]) -> int:
        """Send directly; how many of ``encoded`` (from the start) are done with (stored or rejected).

        One event goes in binary mode, several as a batch; a batch the logger refuses (4xx) is sent
        again event by event, so only the events it refuses are dropped."""
        if len(encoded) > 1:
            status = self._post_lines([e.line for e in encoded])
            if status is None:
                return 0
            if 200 <= status < 300:
                self.sent += len(encoded)
                return len(encoded)
        done = 0
        for item in encoded:
            single = self._post(item.body, item.headers)
            if single is None:
                break
            if 200 <= single < 300:
                self.sent += 1
            else:
                self._reject(single, item.line)
            done += 1
        return done

    def _post_lines(self, lines: Sequence[bytes]) -> int | None:
        return self._post(batch_body(lines), {"Content-Type": R.BATCH_CONTENT_TYPE})

    def _post(self, body: bytes, headers: dict[str, str]) -> int | None:
        """The logger's final answer, or None when it is not there (then retried later)."""
        try:
            status = self.transport(body, headers)
        except LoggerUnavailable as exc:
            return self._down(str(exc))
        except Exception as exc:  # whatever went wrong, the events stay: spooled and retried
            log.exception("request-log transport failed")
            return self._down(f"{type(exc).__name__}: {exc}")
        if status >= 500 or status in RETRY_STATUSES:
            return self._down(f"logger answered {status}")
        if not self.logger_up:
            log.warning("request logger at %s answers again; replaying %d spooled events", self.url,
                        self.spool.pending)  # fmt: skip
        self.logger_up, self._backoff = True, self.retry_initial
        return status

    def _down(self, reason: str) -> None:
        if self.logger_up:
            log.warning(
                "request logger at %s is unavailable (%s); spooling to %s", self.url, reason, self.spool.dir
            )
        self.logger_up, self.last_error = False, reason
        self._retry_at = self.clock() + self._backoff
        self._backoff = min(self.retry_max, self._backoff * 2)
        return None

    def _reject(self, status: int, line: bytes) -> None:
        self.dropped["rejected"] += 1
        self.last_error = f"logger refused an event with {status}: {line[:200]!r}"
        log.error("request logger refused an event with HTTP %d; dropped: %s", status, line[:500])

    # what `pushbutton status` shows -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        dropped = {**self.dropped, "corrupt": self.dropped["corrupt"] + self.spool.corrupt}
        return {
            "enabled": True,
            "logger_url": self.url,
            "logger_up": self.logger_up,
            "queued": self.queued,
            "sent": self.sent,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            "in_memory": len(self._queue),
            "spool_pending": self.spool.pending,
            "spool_bytes": self.spool.bytes,
            "spool_max_bytes": self.spool.max_bytes,
            "spool_dir": str(self.spool.dir),
            "last_error": self.last_error,
        }
