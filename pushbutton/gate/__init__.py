"""The quality gate (pure decisions, no I/O): ``checks`` scores a candidate's answers (metrics against
thresholds, golden data, the logged signature, the champion comparison, and what is wrong with answers
that cannot be scored); ``latency`` holds its measured latency to ``gate.latency`` and to the
champion's; ``report`` gathers every ``check.Check`` into the report the Approve form shows. The test
step (``pushbutton.lifecycle.evaluate``) feeds it."""

from __future__ import annotations

from pushbutton.gate.check import Check
from pushbutton.gate.checks import (
    answers_problem,
    champion_check,
    comparison_blocker,
    compute_metrics,
    golden_check,
    signature_check,
    skipped_comparison,
    threshold_checks,
)
from pushbutton.gate.report import GateReport

__all__ = [
    "Check",
    "GateReport",
    "answers_problem",
    "champion_check",
    "comparison_blocker",
    "compute_metrics",
    "golden_check",
    "signature_check",
    "skipped_comparison",
    "threshold_checks",
]
