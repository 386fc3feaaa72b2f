"""The drift report: one self-contained HTML file with a plot per feature, p-values and verdicts."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from pushbutton.monitoring.reference import Lookup, Reference
from pushbutton.monitoring.runtime import Target, run_model
from tests.unit.test_monitoring_runtime import FEATURES, WINDOW, FakeStore, rows, spec

DRIFT = {"id": "feature_drift", "type": "drift", "params": {"method": "ks", "backend": "scipy"}}


class Tags(HTMLParser):
    """Every start tag and attribute, and whether each opened tag was closed."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "line"}

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def reference() -> Reference:
    rng = np.random.default_rng(7)
    inputs = pd.DataFrame({name: rng.normal(5.0, 1.0, 300) for name in FEATURES})
    predictions = inputs.assign(prediction=rng.integers(0, 3, 300), label=rng.integers(0, 3, 300))
    return Reference(inputs, predictions, {"origin": "training"})


def report_of(tmp_path: Path, frame: pd.DataFrame) -> tuple[str, object]:
    model = spec([DRIFT, {"id": "errors", "type": "error_rate"}])
    run = run_model(FakeStore({("iris", WINDOW.start): frame}), model, WINDOW, report_dir=tmp_path,
                    references=lambda v: Lookup(reference(), "mlflow"),
                    route={"backends": {"champion": {"version": "1"}, "candidate": {"version": "2"}}})  # fmt: skip
    assert run.report == tmp_path / "iris" / "20261130T100000Z.html"
    return run.report.read_text(encoding="utf-8"), run


def test_the_report_is_one_self_contained_file_with_a_plot_per_feature(tmp_path: Path) -> None:
    drifted = rows(n=300)
    drifted["petal_length_cm"] = drifted["petal_length_cm"] + 2.5  # 2.5 std
    html, run = report_of(tmp_path, drifted)
    parser = Tags()
    parser.feed(html)
    assert parser.open == [], f"unclosed tags: {parser.open}"
    # nothing outside the file: no script, stylesheet link, image, frame, URL or CSS import
    assert not {tag for tag, _ in parser.tags} & {"script", "link", "img", "iframe", "object", "embed"}
    assert not [a for _, attrs in parser.tags for a in attrs if a in ("src", "href")]
    assert not re.search(r"https?://|url\(|@import", html)
    # champion v1: a histogram per feature and one of the answers; candidate v2 had no traffic
    section = html.split("<h2>champion v1</h2>")[1].split("<h2>candidate v2</h2>")[0]
    assert section.count("<svg") == len(FEATURES) + 1
    for name in FEATURES:
        assert f"<h3>{name}</h3>" in section
    cards = {name: section.split(f"<h3>{name}</h3>")[1].split("<h3>")[0] for name in FEATURES}
    assert (
        "drifted" in cards["petal_length_cm"] and "flagged" in section.split("<h3>petal_length_cm")[0][-40:]
    )
    for name in ("sepal_length_cm", "sepal_width_cm", "petal_width_cm"):
        assert "no drift" in cards[name]
    p_value = run.results[0].details["petal_length_cm"]["p_value"]
    assert f"p-value {p_value:.4g}" in cards["petal_length_cm"] and p_value < 1e-6
    # the results table marks the flag; the empty candidate says so instead of "no drift"
    assert "FLAGGED" in html and "<tr class='flagged'>" in html
    assert "No traffic in this window" in html.split("<h2>candidate v2</h2>")[1]
    assert [t for t in run.targets] == [Target("champion", "1"), Target("candidate", "2")]


def test_text_is_escaped(tmp_path: Path) -> None:
    frame = rows(n=40)
    frame["predictor"] = "<b>champion</b>"
    html, _ = report_of(tmp_path, frame)
    assert "<b>champion</b>" not in html and "&lt;b&gt;champion&lt;/b&gt;" in html
