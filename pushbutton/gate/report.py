"""The test step's report: every check, the metrics and latency of candidate and champion, as a dict
(the version's ``pushbutton.test_report`` tag) and as markdown (the Approve form)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pushbutton.gate.check import Check
from pushbutton.gate.latency import latency_markdown


@dataclass
class GateReport:
    model: str
    version: str
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    champion: dict[str, Any] | None = None  # version, and its metrics and latency where measured
    latency: dict[str, Any] | None = None  # the candidate's figures (Latency.summary) and the ceilings

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def markdown(self) -> str:
        lines = [
            f"### Test report: {self.model} v{self.version} — {'PASSED' if self.passed else 'FAILED'}",
            "",
            "| check | result | detail |",
            "|---|---|---|",
        ]
        lines += [f"| {c.name} | {_result(c)} | {c.detail} |" for c in self.checks]
        if self.metrics:
            lines += ["", "| metric | candidate | champion |", "|---|---|---|"]
            champ = (self.champion or {}).get("metrics", {})
            for name, value in sorted(self.metrics.items()):
                other = champ.get(name)
                lines.append(f"| {name} | {value:.4f} | {'' if other is None else f'{other:.4f}'} |")
        if self.latency:
            champion = self.champion or {}
            lines += latency_markdown(self.latency, champion.get("latency"), champion.get("version"))
        return "\n".join(lines)


def _result(check: Check) -> str:
    return "skipped" if check.skipped else "pass" if check.passed else "**FAIL**"
