"""The emitter's append-only spool on disk: encoded events (one JSON line each) that could not reach
the logger yet, read back in the order they were written.

Layout of the spool directory (``<home>/gateway/spool`` for the gateway):

* ``<seq>.spool`` — segment files, numbered in write order; only the newest one is appended to, and
  it is closed (fsync'd) and a new one started once it passes ``segment_bytes``;
* ``cursor.json`` — ``{"segment": seq, "offset": bytes}``: where the next replay starts. It moves
  only after the logger acknowledged the lines before it; a segment is deleted once the cursor has
  left it.

Durability policy: every append is written with one ``write`` to the segment (opened ``O_APPEND``),
so another process or a crash after it sees whole lines; ``fsync`` runs at most every
``fsync_interval`` seconds (default 1 s; 0 fsyncs every append), on every segment roll and on
``close``. A power failure loses at most the last ``fsync_interval`` of spooled events; a crash of
the process loses nothing already appended. The cursor is replaced atomically but not fsync'd: after
a power failure it may point earlier than it did, and the logger, idempotent by event id, ignores
the events replayed twice. On open, a torn last line (a crash in the middle of a write) is cut off
and lines of segments written before the open are checked as JSON when they are read; a line that
is not is skipped and counted (``corrupt``).

The quota (``max_bytes``, all segments together) is checked before each line: lines that would pass
it are not written, and ``append`` says how many were, so the caller counts the rest as dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".spool"
CURSOR = "cursor.json"


@dataclass(frozen=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True)
class Batch:
    """Lines read from the spool, where the reading stopped, and how many corrupt lines it skipped."""

    lines: list[bytes]
    end: Position
    skipped: int = 0


class Spool:
    """Segments under ``directory``; one thread uses it at a time (the emitter's worker)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int = 1024**3,
        segment_bytes: int = 16 * 1024**2,
        fsync_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval = fsync_interval
        self.clock = clock
        self.corrupt = 0  # lines skipped on replay because they were not JSON (a crash mid-write)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._sizes: dict[int, int] = {}  # segment -> bytes on disk
        self._recovered: set[int] = set()  # segments written before this open: lines are checked
        self._fd: int | None = None  # the segment being appended to
        self._write_seq = 0
        self._dirty = False
        self._synced_at = clock()
        self.cursor = Position(0, 0)
        self.pending = 0  # lines after the cursor
        self._recover()

    # recovery ----------------------------------------------------------------------------------

    def _recover(self) -> None:
        for path in self.dir.glob(f"*{SUFFIX}"):
            with contextlib.suppress(ValueError):
                self._sizes[int(path.stem)] = path.stat().st_size
        self.cursor = self._read_cursor()
        for seq in [s for s in self._sizes if s < self.cursor.segment]:
            self._delete(seq)
        if self._sizes:
            self._cut_torn_tail(max(self._sizes))
            if self.cursor.segment not in self._sizes:
                self.cursor = Position(min(self._sizes), 0)
        # never append to a segment an earlier process wrote: its lines are checked when read
        self._write_seq = max(max(self._sizes, default=-1) + 1, self.cursor.segment)
        self._recovered = set(self._sizes)
        self.pending = sum(self._count_lines(seq) for seq in sorted(self._sizes))

    def _read_cursor(self) -> Position:
        try:
            data = json.loads((self.dir / CURSOR).read_text())
            return Position(int(data["segment"]), int(data["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return Position(0, 0)

    def _cut_torn_tail(self, seq: int) -> None:
        """Cut a last line a crash left without its newline (it was never acknowledged to anyone)."""
        path = self._path(seq)
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with path.open("rb+") as handle:
                handle.truncate(keep)
            self._sizes[seq] = keep

    def _count_lines(self, seq: int) -> int:
        start = self.cursor.offset if seq == self.cursor.segment else 0
        count = 0
        with self._path(seq).open("rb") as handle:
            handle.seek(start)
            while chunk := handle.read(1024 * 1024):
                count += chunk.count(b"\n")
        return count

    # writing -----------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def empty(self) -> bool:
        return self.pending == 0

    def append(self, lines: Sequence[bytes]) -> int:
        """Append whole lines (each ending in ``\\n``) within the quota; return how many were written.

        Raises ``OSError`` when the disk refuses the write (then nothing of it stays in the spool)."""
        room = self.max_bytes - self.bytes
        take, size = 0, 0
        for line in lines:
            if size + len(line) > room:
                break
            take, size = take + 1, size + len(line)
        if take == 0:
            return 0
        fd = self._writer()
        before = self._sizes[self._write_seq]
        data = b"".join(lines[:take])
        try:
            _write(fd, data)
        except OSError:
            os.ftruncate(fd, before)
            raise
        self._sizes[self._write_seq] = before + len(data)
        self.pending += take
        self._dirty = True
        if self.fsync_interval <= 0 or self.clock() - self._synced_at >= self.fsync_interval:
            self.sync()
        if self._sizes[self._write_seq] >= self.segment_bytes:
            self._roll()
        return take

    def _writer(self) -> int:
        if self._fd is None:
            new = self._write_seq not in self._sizes
            self._fd = os.open(self._path(self._write_seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._sizes.setdefault(self._write_seq, 0)
            if new:
                self._sync_dir()
        return self._fd

    def _roll(self) -> None:
        self.sync()
        self._close_writer()
        self._write_seq += 1

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
        self._dirty = False
        self._synced_at = self.clock()

    def sync_if_due(self) -> None:
        if self._dirty and self.clock() - self._synced_at >= self.fsync_interval:
            self.sync()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close_writer(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.sync()
        self._close_writer()

    # reading -----------------------------------------------------------------------------------

    def read(self, max_lines: int, max_bytes: int | None = None) -> Batch:
        """Up to ``max_lines`` lines (and ``max_bytes``, but at least one line) from the cursor, within
        one segment, and the position after them."""
        position = self.cursor
        while position.segment not in self._sizes or position.offset >= self._sizes[position.segment]:
            later = [s for s in self._sizes if s > position.segment]
            if not later:
                return Batch([], position)
            position = Position(min(later), 0)
        lines: list[bytes] = []
        skipped = 0
        with self._path(position.segment).open("rb") as handle:
            handle.seek(position.offset)
            offset, end = position.offset, self._sizes[position.segment]
            size = 0
            while (
                len(lines) < max_lines
                and offset < end
                and (max_bytes is None or size < max_bytes or not lines)
            ):
                line = handle.readline()
                if not line.endswith(b"\n"):
                    break  # cannot happen: appends are whole lines and torn tails are cut on open
                offset += len(line)
                if position.segment in self._recovered and not _is_json(line):
                    skipped += 1
                    continue
                lines.append(line)
                size += len(line)
        return Batch(lines, Position(position.segment, offset), skipped)

    def ack(self, batch: Batch) -> None:
        """The logger has ``batch``'s lines: move the cursor past them (and the corrupt ones skipped)."""
        position = batch.end
        self.corrupt += batch.skipped
        self.pending = max(0, self.pending - len(batch.lines) - batch.skipped)
        for seq in [s for s in self._sizes if s < position.segment]:
            self._delete(seq)
        self.cursor = position
        if self.pending == 0 and position.offset >= self._sizes.get(position.segment, 0):
            # everything is delivered: drop the last segment too, the next append starts a new one
            if position.segment == self._write_seq:
                self._close_writer()
                self._write_seq += 1
            self._delete(position.segment)
            self.cursor = Position(self._write_seq, 0)
        self._write_cursor()

    def _write_cursor(self) -> None:
        tmp = self.dir / f".{CURSOR}.tmp"
        tmp.write_text(json.dumps({"segment": self.cursor.segment, "offset": self.cursor.offset}))
        tmp.replace(self.dir / CURSOR)

    def _delete(self, seq: int) -> None:
        if seq == self._write_seq:
            self._close_writer()
        with contextlib.suppress(FileNotFoundError):
            self._path(seq).unlink()
        self._sizes.pop(seq, None)
        self._recovered.discard(seq)

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}{SUFFIX}"


def _write(fd: int, data: bytes) -> None:
    """One ``write`` of whole lines; a short write (a full disk) is an error, undone by the caller."""
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(f"short write to the spool ({written} of {len(data)} bytes)")


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
