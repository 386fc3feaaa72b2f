"""The emitter's spool on disk: segments, the replay cursor, crash recovery and the fsync policy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pushbutton.monitoring import spool as spool_module
from pushbutton.monitoring.spool import Spool


def line(n: int) -> bytes:
    return json.dumps({"id": f"e{n}", "n": n}).encode() + b"\n"


def drain(spool: Spool, size: int = 3) -> list[int]:
    out = []
    while True:
        batch = spool.read(size)
        if not batch.lines and not batch.skipped:
            return out
        out += [json.loads(x)["n"] for x in batch.lines]
        spool.ack(batch)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_back_in_order_across_segments_which_go_once_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    assert spool.append([line(i) for i in range(10)]) == 10
    spool.append([line(i) for i in range(10, 20)])
    assert len(list(tmp_path.glob("*.spool"))) == 2  # rolled after the first append passed 100 bytes
    assert spool.pending == 20
    batch = spool.read(4)
    assert [json.loads(x)["n"] for x in batch.lines] == [0, 1, 2, 3]
    assert spool.read(4).lines == batch.lines  # not acked: read again from the same place
    spool.ack(batch)
    assert drain(spool) == list(range(4, 20))
    assert spool.empty and spool.bytes == 0 and not list(tmp_path.glob("*.spool"))


def test_the_cursor_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([line(i) for i in range(6)])
    spool.ack(spool.read(4))
    spool.close()
    again = Spool(tmp_path)
    assert again.pending == 2
    again.append([line(6)])  # a new process appends to a new segment, after the old ones
    assert drain(again) == [4, 5, 6]


def test_a_torn_last_line_is_cut_and_corrupt_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([line(0), b"{not json\n", line(2)])
    spool.close()
    (segment,) = tmp_path.glob("*.spool")
    with segment.open("ab") as handle:
        handle.write(b'{"id": "e3", "n"')  # the process died in the middle of a write
    again = Spool(tmp_path)
    assert segment.read_bytes().endswith(line(2))
    assert again.pending == 3
    assert drain(again) == [0, 2]
    assert again.corrupt == 1 and again.empty


def test_the_quota_keeps_what_fits_and_says_how_much(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=len(line(0)) * 3)
    assert spool.append([line(0), line(1)]) == 2
    assert spool.append([line(2), line(3)]) == 1
    assert spool.append([line(4)]) == 0
    assert spool.pending == 3 and spool.bytes <= spool.max_bytes


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path)
    spool.append([line(0)])

    def short_write(fd: int, data: bytes) -> None:  # the disk filled up after five bytes
        os.write(fd, data[:5])
        raise OSError("short write to the spool (5 bytes)")

    monkeypatch.setattr(spool_module, "_write", short_write)
    with pytest.raises(OSError, match="short write"):
        spool.append([line(1), line(2)])
    monkeypatch.undo()
    assert spool.pending == 1
    spool.append([line(3)])
    assert drain(spool) == [0, 3]  # the five bytes of the failed write were cut again


def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths fsync'd from now on (``dir`` for the spool directory)."""
    synced: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        synced.append("dir" if os.path.isdir(target) else Path(target).name)
        real(fd)

    monkeypatch.setattr(spool_module.os, "fsync", record)
    return synced


def test_fsync_every_append_with_interval_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = fsyncs(monkeypatch)
    spool = Spool(tmp_path, fsync_interval=0)
    for n in range(3):
        spool.append([line(n)])
    segment = next(tmp_path.glob("*.spool")).name
    assert synced == ["dir", segment, segment, segment]  # the new file's directory entry, then each append


def test_fsync_at_most_every_interval_and_at_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced, clock = fsyncs(monkeypatch), Clock()
    spool = Spool(tmp_path, fsync_interval=1.0, clock=clock)
    for n in range(3):
        spool.append([line(n)])
        clock.now += 0.2
    segment = next(tmp_path.glob("*.spool")).name
    assert synced == ["dir"]  # 0.6 s of appends: none is due yet
    clock.now += 0.5
    spool.sync_if_due()
    assert synced == ["dir", segment]
    spool.sync_if_due()  # nothing new since: nothing to do
    spool.append([line(3)])
    spool.close()
    assert synced == ["dir", segment, segment]
