"""The drift report: one self-contained HTML file per model and window (inline CSS and SVG; no script,
no CDN, no file beside it), readable in any browser or as an MLflow artifact.

What it shows, for each serving version and predictor of the window:

* every indicator result — status, value, threshold, verdict and message; flagged rows are marked;
* traffic — requests, rows, incomplete requests, error rate, latency p50/p99 (``aggregate``);
* per input feature, the reference (the version's training inputs) and the window overlaid — a
  histogram on shared bins for numbers, bars of the most frequent values for text and booleans — with
  each ``drift`` indicator's p-value, distance and verdict for that feature, and mean/std of both sides;
* the model's answers in the window against its answers on the holdout (class shares or a histogram).

Plots of windows above ``PLOT_ROWS`` rows are drawn from a seeded sample of that many rows.

``write_report`` stores it as ``<root>/<model>/<window end>.html`` (the runtime's root is
``<home>/monitoring/reports``; a re-run of the window replaces it), ``log_report`` as the MLflow
artifact ``monitoring/<window end>.html`` of each monitored version's run.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pushbutton.monitoring.runtime import ModelRun, Target
    from pushbutton.spec.model import ModelSpec

log = logging.getLogger(__name__)
PLOT_ROWS = 200_000
BINS = 24
TOP_CATEGORIES = 12
WIDTH, HEIGHT, PAD = 340, 150, 22
REFERENCE_COLOR, CURRENT_COLOR = "#4c78a8", "#f58518"
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:0 0 4px} .muted{color:#666} table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top} th{background:#f4f4f4}
tr.flagged td{background:#fde2e1} .flag{color:#b00020;font-weight:600} .ok{color:#2e7d32}
.status{font-weight:600} .grid{display:flex;flex-wrap:wrap;gap:14px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px;width:360px} .card.flagged{border-color:#b00020}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""


def render(run: ModelRun, spec: ModelSpec, frame: pd.DataFrame, *, generated: datetime) -> str:
    """The whole report as one HTML document."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(run.model)} drift report {_e(run.window.describe())}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(run.model)} — monitoring report</h1>",
        f"<p class='muted'>window {_e(run.window.describe())} · {run.rows} logged rows · task {_e(spec.task)} · "
        f"generated {_e(generated.isoformat(timespec='seconds'))}</p>",
        "<p class='legend'>reference<span style='background:" + REFERENCE_COLOR + "'></span> window"
        "<span style='background:" + CURRENT_COLOR + "'></span></p>",
        _results_table(run),
    ]
    if not run.targets:
        parts.append(
            "<p><b>Nothing served in this window and nothing is routed</b>: no indicator was computed.</p>"
        )
    for target in run.targets:
        parts.append(_target_section(run, spec, frame, target))
    parts.append("</body></html>")
    return "\n".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _e(value)
    return "—" if not np.isfinite(number) else f"{number:.4g}"


def _results_table(run: ModelRun) -> str:
    rows = ["<h2>Indicators</h2><table><tr><th>predictor</th><th>version</th><th>indicator</th><th>type</th>"
            "<th>status</th><th>value</th><th>threshold</th><th>verdict</th><th>rows</th><th>message</th></tr>"]  # fmt: skip
    for r in run.results:
        verdict = "—" if r.flagged is None else ("<span class='flag'>FLAGGED</span>" if r.flagged else
                                                 "<span class='ok'>ok</span>")  # fmt: skip
        rows.append(
            f"<tr class='{'flagged' if r.flagged else ''}'><td>{_e(r.predictor)}</td><td>{_e(r.version)}</td>"
            f"<td>{_e(r.indicator_id)}</td><td>{_e(r.indicator_type)}</td><td class='status'>{_e(r.status)}</td>"
            f"<td>{_num(r.value)}</td><td>{_num(r.threshold)}</td><td>{verdict}</td><td>{r.sample_size}</td>"
            f"<td>{_e(r.message)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _target_section(run: ModelRun, spec: ModelSpec, frame: pd.DataFrame, target: Target) -> str:
    current = frame[(frame["predictor"] == target.predictor) & (frame["version"] == target.version)]
    current = _plot_sample(current)
    lookup = run.references.get(target.version)
    reference = lookup.reference if lookup is not None else None
    out = [f"<h2>{_e(target.predictor)} v{_e(target.version)}</h2>", _traffic(run, target)]
    if reference is None:
        why = lookup.why if lookup is not None else "no indicator of this model needs one"
        out.append(f"<p><b>No training reference</b> for v{_e(target.version)}: {_e(why)}</p>")
    else:
        out.append(f"<p class='muted'>reference: {_e(reference.origin)} ({len(reference.inputs)} training rows, "
                   f"{len(reference.predictions)} holdout rows)</p>")  # fmt: skip
    drift = [r for r in run.results if r.indicator_type == "drift" and (r.predictor, r.version) ==
             (target.predictor, target.version)]  # fmt: skip
    cards = []
    excluded = set(spec.logging.exclude)
    for feature in spec.schema_.inputs:
        if feature.name in excluded:
            continue
        ref = (
            reference.inputs[feature.name]
            if reference is not None and feature.name in reference.inputs
            else None
        )
        cur = current[feature.name] if feature.name in current.columns else pd.Series(dtype=float)
        tests = [(r.indicator_id, r.details.get(feature.name)) for r in drift]
        flagged = any(isinstance(t, dict) and t.get("flagged") for _, t in tests)
        cards.append(_card(feature.name, feature.type, ref, cur, tests, flagged))
    ref_answers = (reference.predictions["prediction"] if reference is not None and "prediction" in
                   reference.predictions else None)  # fmt: skip
    answers = current["prediction"] if "prediction" in current.columns else pd.Series(dtype=float)
    kind = "string" if spec.task == "classification" else "double"
    cards.append(_card("prediction (model's answers)", kind, ref_answers, answers, [], False,
                       reference_name="holdout answers"))  # fmt: skip
    out.append("<div class='grid'>" + "".join(cards) + "</div>")
    return "\n".join(out)


def _traffic(run: ModelRun, target: Target) -> str:
    table = run.aggregates.requests if run.aggregates is not None else pd.DataFrame()
    match = table[(table["predictor"] == target.predictor) & (table["version"] == target.version)] if len(
        table) else table  # fmt: skip
    if not len(match):
        return (
            "<p><b>No traffic in this window</b>: indicators report <code>empty</code>, not “no drift”.</p>"
        )
    row = match.iloc[0]
    return (
        "<table><tr><th>requests</th><th>rows</th><th>incomplete</th><th>error rate</th><th>latency p50 ms</th>"
        f"<th>latency p99 ms</th></tr><tr><td>{_num(row['requests'])}</td><td>{_num(row['rows'])}</td>"
        f"<td>{_num(row['incomplete'])}</td><td>{_num(row['error_rate'])}</td><td>{_num(row['latency_p50_ms'])}</td>"
        f"<td>{_num(row['latency_p99_ms'])}</td></tr></table>"
    )


def _card(name: str, kind: str, ref: pd.Series | None, cur: pd.Series, tests: list[tuple[str, Any]],
          flagged: bool, reference_name: str = "training inputs") -> str:  # fmt: skip
    numeric = kind not in ("string", "boolean")
    ref_values = ref if ref is not None else pd.Series(dtype=float)
    svg = _histogram(ref_values, cur) if numeric else _bars(ref_values, cur)
    lines = [f"<h3>{_e(name)}</h3>", svg]
    for indicator_id, test in tests:
        if isinstance(test, dict):
            verdict = (
                "<span class='flag'>drifted</span>"
                if test.get("flagged")
                else "<span class='ok'>no drift</span>"
            )
            lines.append(f"<div>{_e(indicator_id)} ({_e(test.get('test', ''))}): p-value {_num(test.get('p_value'))}, "
                         f"distance {_num(test.get('distance'))} — {verdict}</div>")  # fmt: skip
    if numeric:
        r, c = _numbers(ref_values), _numbers(cur)
        lines.append(f"<div class='muted'>mean {_num(_stat(r, np.mean))} → {_num(_stat(c, np.mean))}, std "
                     f"{_num(_stat(r, np.std))} → {_num(_stat(c, np.std))} · {len(r)} {_e(reference_name)} vs "
                     f"{len(c)} window rows</div>")  # fmt: skip
    else:
        lines.append(
            f"<div class='muted'>{len(ref_values)} {_e(reference_name)} vs {len(cur)} window rows</div>"
        )
    return f"<div class='card{' flagged' if flagged else ''}'>" + "".join(lines) + "</div>"


def _stat(values: np.ndarray, how: Any) -> float | None:
    return float(how(values)) if len(values) else None


def _numbers(series: pd.Series) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values[np.isfinite(values)]


def _plot_sample(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if len(frame) <= PLOT_ROWS else frame.sample(n=PLOT_ROWS, random_state=0)


def _histogram(ref: pd.Series, cur: pd.Series) -> str:
    r, c = _numbers(ref), _numbers(cur)
    both = np.concatenate([r, c])
    if not len(both):
        return _empty_svg("no values on either side")
    lo, hi = (float(x) for x in np.percentile(both, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, BINS + 1)
    shares = [_shares(np.histogram(np.clip(x, lo, hi), bins=edges)[0]) for x in (r, c)]
    top = max(float(s.max()) for s in shares) or 1.0
    bar = (WIDTH - 2 * PAD) / BINS
    shapes = []
    for share, color in zip(shares, (REFERENCE_COLOR, CURRENT_COLOR), strict=True):
        for i, value in enumerate(share):
            if value <= 0:
                continue
            h = (HEIGHT - 2 * PAD) * value / top
            tip = f"{edges[i]:.4g} to {edges[i + 1]:.4g}: {value:.1%}"
            shapes.append(f"<rect x='{PAD + i * bar:.1f}' y='{HEIGHT - PAD - h:.1f}' width='{bar:.1f}' "
                          f"height='{h:.1f}' fill='{color}' fill-opacity='0.5'><title>{_e(tip)}</title></rect>")  # fmt: skip
    labels = (f"<text x='{PAD}' y='{HEIGHT - 6}' font-size='10'>{_e(f'{lo:.4g}')}</text>"
              f"<text x='{WIDTH - PAD}' y='{HEIGHT - 6}' font-size='10' text-anchor='end'>{_e(f'{hi:.4g}')}</text>")  # fmt: skip
    return _svg("".join(shapes) + _axis() + labels)


def _bars(ref: pd.Series, cur: pd.Series) -> str:
    counts = [s.astype(str).value_counts() for s in (ref.dropna(), cur.dropna())]
    totals = [max(int(c.sum()), 1) for c in counts]
    keys = list((counts[0] / totals[0]).add(counts[1] / totals[1], fill_value=0).sort_values(
        ascending=False).index[:TOP_CATEGORIES])  # fmt: skip
    if not keys:
        return _empty_svg("no values on either side")
    slot = (WIDTH - 2 * PAD) / len(keys)
    top = max(float(c.get(k, 0)) / t for c, t in zip(counts, totals, strict=True) for k in keys) or 1.0
    shapes = []
    for i, key in enumerate(keys):
        for side, (count, total, color) in enumerate(zip(counts, totals, (REFERENCE_COLOR, CURRENT_COLOR),
                                                         strict=True)):  # fmt: skip
            share = float(count.get(key, 0)) / total
            h = (HEIGHT - 2 * PAD) * share / top
            x = PAD + i * slot + side * slot * 0.45 + slot * 0.05
            shapes.append(f"<rect x='{x:.1f}' y='{HEIGHT - PAD - h:.1f}' width='{slot * 0.45:.1f}' height='{h:.1f}' "
                          f"fill='{color}'><title>{_e(key)}: {share:.1%}</title></rect>")  # fmt: skip
        shapes.append(f"<text x='{PAD + (i + 0.5) * slot:.1f}' y='{HEIGHT - 6}' font-size='10' "
                      f"text-anchor='middle'>{_e(key[:8])}</text>")  # fmt: skip
    return _svg("".join(shapes) + _axis())


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def _axis() -> str:
    y = HEIGHT - PAD
    return f"<line x1='{PAD}' y1='{y}' x2='{WIDTH - PAD}' y2='{y}' stroke='#999'/>"


def _svg(body: str) -> str:
    return f"<svg width='{WIDTH}' height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' role='img'>{body}</svg>"


def _empty_svg(text: str) -> str:
    return _svg(f"<text x='{WIDTH / 2}' y='{HEIGHT / 2}' text-anchor='middle' fill='#999'>{_e(text)}</text>")


# --- where reports are kept ----------------------------------------------------------------------


def write_report(run: ModelRun, spec: ModelSpec, frame: pd.DataFrame, root: Path, now: datetime) -> Path:
    """Render the drift report and store it at ``root/<model>/<window end>.html`` (a re-run replaces it)."""
    text = render(run, spec, frame, generated=now)
    path = Path(root) / spec.name / f"{run.window.stamp}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".html.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


REPORT_ARTIFACT_PATH = "monitoring"


def log_report(registry: Any, model: str, versions: Iterable[str], path: str | Path) -> list[str]:
    """Log the report file as the MLflow artifact ``monitoring/<file>`` of each version's run; the
    artifact URIs (a version the registry does not know, e.g. an unversioned record, is skipped)."""
    from mlflow import MlflowClient

    from pushbutton.errors import NotFound

    client = MlflowClient(registry.tracking_uri)
    logged = []
    for version in versions:
        try:
            run_id = registry.get(model, version).run_id
        except NotFound:
            log.warning("not logging the report to %s v%s: no such version in the registry", model, version)
            continue
        client.log_artifact(run_id, str(path), REPORT_ARTIFACT_PATH)
        logged.append(f"runs:/{run_id}/{REPORT_ARTIFACT_PATH}/{Path(path).name}")
    return logged
