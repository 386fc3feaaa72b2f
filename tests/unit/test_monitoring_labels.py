"""Late labels from a file (`pushbutton labels MODEL FILE`): read, checked line by line, written through
the store; request ids the log does not hold are reported and kept, never dropped silently."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from pushbutton.cli import main as cli
from pushbutton.config import Settings
from pushbutton.monitoring.labels import LabelFileError, read_labels
from pushbutton.monitoring.records import Label
from pushbutton.monitoring.store import open_store
from tests.unit.test_monitoring_store import FEATURES, T0, record


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_csv_of_request_ids_rows_and_labels(tmp_path: Path) -> None:
    labels, replaced = read_labels(
        write(tmp_path / "l.csv", "request_id,row,label,note\nr1,0,1,x\nr1,1,0,\n007,0,2,\n")
    )
    assert labels == [Label("r1", 1, 0), Label("r1", 0, 1), Label("007", 2, 0)]  # '007' stays text
    assert replaced == 0


def test_row_defaults_to_0_and_a_repeated_pair_keeps_the_last(tmp_path: Path) -> None:
    labels, replaced = read_labels(
        write(tmp_path / "l.csv", "request_id,label\na,setosa\nb,virginica\na,versicolor\n")
    )
    assert labels == [Label("a", "versicolor", 0), Label("b", "virginica", 0)] and replaced == 1


def test_parquet_files_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": ["r1", "r2"], "label": [0.5, 1.5], "row": [0, 3]}).to_parquet(path)
    assert read_labels(path)[0] == [Label("r1", 0.5, 0), Label("r2", 1.5, 3)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id,labels\nr1,1\n", r"l.csv:1: request_id, label: missing column\(s\); found id, labels \(fix: "
                              r"add a 'request_id' column; did you mean 'labels' for 'label'\?"),
        ("request_id,label\nr1,1\n,0\n", r"l.csv:3: request_id: empty \(fix: the answer's meta.puid"),
        ("request_id,label\nr1,1\nr2,\n", r"l.csv:3: label: missing \(fix: write the true label"),
        ("request_id,row,label\nr1,-1,1\nr2,1.5,1\n", r"l.csv:2: row: -1 is not a whole number >= 0(.|\n)*"
                                                      r"l.csv:3: row: 1.5 is not a whole number"),
        ("request_id,label\n", r"l.csv:2: no rows under the header"),
        ("", r"l.csv:1: the file is empty"),
    ],
)  # fmt: skip
def test_bad_files_are_explained_by_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(LabelFileError, match=expected):
        read_labels(write(tmp_path / "l.csv", text))


def test_other_file_types_and_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match=r"unknown file type '.json' \(fix: a .csv or .parquet"):
        read_labels(write(tmp_path / "l.json", "[]"))
    with pytest.raises(LabelFileError, match="no such file"):
        read_labels(tmp_path / "absent.csv")


@pytest.fixture
def shop(platform_home: Settings) -> Settings:
    """The platform's monitoring store with two logged requests of model ``shop``."""
    platform_home.home.mkdir(parents=True, exist_ok=True)
    with open_store(cfg=platform_home) as store:
        store.ensure_model("shop", FEATURES, ("label", "long"))
        store.write_records([record("r1"), record("r2", T0 + timedelta(seconds=1))])
    return platform_home


def test_cli_writes_every_label_and_reports_unknown_ids(shop: Settings, tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "labels.csv", "request_id,row,label\nr1,0,1\nr1,1,0\nghost-1,0,1\nghost-2,0,0\n")
    assert cli(["labels", "shop", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"shop: 4 label(s) for 3 request(s) from {path}; 1 request(s) found in the request log" in out
    assert "warning: 2 request id(s) are not in shop's request log: ghost-1, ghost-2." in err
    assert "kept" in err
    with open_store(cfg=shop) as store:
        found = store.labels("shop", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
        assert sorted(zip(found["request_id"], found["row"], found["label"], strict=True)) == [
            ("r1", 0, 1),
            ("r1", 1, 0),
        ]
        assert store.counters("shop").labels == 4  # the unknown ids' labels are kept, not dropped
    assert cli(["labels", "shop", str(path), "--json"]) == 0
    assert '"unknown_ids": [\n    "ghost-1",\n    "ghost-2"\n  ]' in capsys.readouterr().out


def test_cli_refuses_a_model_that_never_logged_and_a_bad_file(shop: Settings, tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "labels.csv", "request_id,label\nr1,1\n")
    assert cli(["labels", "shpo", str(path)]) == 1
    assert "error: no request of model 'shpo' was ever logged" in capsys.readouterr().err
    bad = write(tmp_path / "bad.csv", "request_id,label\nr1,\n")
    assert cli(["labels", "shop", str(bad)]) == 1
    assert f"error: {bad}:2: label: missing" in capsys.readouterr().err
    with open_store(cfg=shop) as store:
        assert store.counters("shop").labels == 0  # nothing of a bad file is written
