"""`pushbutton indicators MODEL`: the latest results as a table, flags highlighted, the latest report;
and the latest flags in `pushbutton status MODEL`'s monitoring part."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pushbutton.cli import main as cli
from pushbutton.config import Settings
from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.store import open_store
from pushbutton.monitoring.table import RED, latest_flags, render_table, reports_root

END = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def result(indicator: str, version: str, end: datetime, **kw) -> IndicatorResult:
    fields = dict(indicator_id=indicator, indicator_type="drift" if indicator == "feature_drift" else "error_rate",
                  model="shop", version=version, predictor="champion", window_start=end - timedelta(minutes=30),
                  window_end=end, status="ok", value=0.0, threshold=0.5, flagged=False, sample_size=120,
                  message="within threshold")  # fmt: skip
    return IndicatorResult(**(fields | kw))


@pytest.fixture
def shop(platform_home: Settings) -> Settings:
    """Two windows of results of ``shop`` v1 and v2 and two drift reports."""
    platform_home.home.mkdir(parents=True, exist_ok=True)
    earlier = END - timedelta(minutes=30)
    with open_store(cfg=platform_home) as store:
        store.write_indicators([
            result("feature_drift", "1", earlier),
            result("errors", "1", earlier),
            result("feature_drift", "1", END, value=0.75, flagged=True, message="drift: 3 of 4 features"),
            result("errors", "1", END, status="empty", value=None, threshold=None, flagged=None,
                   sample_size=0, message="no traffic in this window"),
            result("feature_drift", "2", END, predictor="candidate"),
        ])  # fmt: skip
    reports = reports_root(platform_home) / "shop"
    reports.mkdir(parents=True)
    for stamp in ("20261130T093000Z", "20261130T100000Z"):
        (reports / f"{stamp}.html").write_text("<html></html>")
    return platform_home


def test_the_latest_results_as_a_table_with_flags_and_the_report(shop: Settings, capsys) -> None:
    assert cli(["indicators", "shop"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["WINDOW", "END", "PREDICTOR", "VERSION", "INDICATOR", "TYPE", "STATUS", "VALUE",
                                "THRESHOLD", "VERDICT", "ROWS", "MESSAGE"]  # fmt: skip
    body = [line for line in lines[1:4]]
    assert len(body) == 3 and all("2026-11-30 10:00" in line for line in body)  # the latest window only
    flagged = next(line for line in body if "feature_drift" in line and " 1 " in line)
    assert "FLAGGED" in flagged and "0.75" in flagged and "drift: 3 of 4 features" in flagged
    empty = next(line for line in body if "errors" in line)
    assert " empty " in empty and "FLAGGED" not in empty
    assert "1 flagged of 3 results" in out
    assert f"latest drift report: {reports_root(shop) / 'shop' / '20261130T100000Z.html'}" in out
    assert RED not in out  # not a terminal: no colour codes


def test_version_and_last_narrow_and_widen_the_table(shop: Settings, capsys) -> None:
    assert cli(["indicators", "shop", "--version", "1", "--last", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if " champion " in line]
    assert len(rows) == 4 and sum("09:30" in line for line in rows) == 2
    assert cli(["indicators", "shop", "--version", "2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["predictor"]) for r in found["results"]] == [("2", "candidate")]
    assert found["report"].endswith("20261130T100000Z.html")


def test_no_results_yet_says_how_to_get_them(shop: Settings, capsys) -> None:
    assert cli(["indicators", "nobody"]) == 1
    assert "no indicator results for nobody yet (fix: trigger nobody__monitor" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["indicators", "shop", "--last", "0"])
    assert "'0' is not a whole number of windows >= 1" in capsys.readouterr().err


def test_flags_are_red_on_a_terminal() -> None:
    table = render_table([result("feature_drift", "1", END, flagged=True, value=0.9)], color=True)
    assert table.splitlines()[1].startswith(RED)


def test_status_shows_the_latest_flags(shop: Settings) -> None:
    with open_store(cfg=shop) as store:
        found = latest_flags(store, shop, "shop")
    assert found["indicators"] == 3
    assert found["flagged"] == [
        "feature_drift (champion v1, window to 2026-11-30T10:00:00+00:00): drift: 3 of 4 features"
    ]
    assert found["no_verdict"] == [
        "errors (champion v1, window to 2026-11-30T10:00:00+00:00): no traffic in this window [empty]"
    ]
    assert Path(found["report"]).name == "20261130T100000Z.html"
