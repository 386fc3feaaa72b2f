"""The small exception hierarchy every layer raises.

Transport errors are wrapped (``raise NotFound(...) from exc``) so callers handle one family.
``SpecError``, ``ModelCodeError``, ``RequirementsError`` and ``GateFailed`` are configuration/decision
errors: Airflow operators turn them into ``AirflowFailException`` (no retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class PushbuttonError(Exception):
    """Base class of every error pushbutton raises on purpose."""


class ConfigError(PushbuttonError):
    """A ``PUSHBUTTON_*`` setting has a value of the wrong type or range."""


class NotFound(PushbuttonError):
    """A model, version, alias, deployment or file that was asked for does not exist."""


class AlreadyExists(PushbuttonError):
    """Creating something that exists and may not be replaced."""


class Conflict(PushbuttonError):
    """The request contradicts current state (e.g. promoting a version that failed its tests)."""


class LockBusy(PushbuttonError):
    """Another promotion of the model held its lock for longer than the wait; trying again may work."""


class LeaseHeld(LockBusy):
    """Another promotion's step holds the model's lease while it waits for Seldon (``HistoryStore.lock``)."""


class StackError(PushbuttonError):
    """A platform process could not be started, reached or stopped."""


class ServingError(PushbuttonError):
    """Building, starting or routing to a serving environment failed."""


class RequirementsError(ServingError):
    """A serving environment that no retry can build from these requirements: a package that does not
    exist, a pin no release matches, requirements that contradict each other, a package that does not
    build, a line that is not a requirement. (An unreachable or failing package index is a plain
    ``ServingError``: trying again may work.)

    The first line of the message is ``[where: ]problem (fix: …)``; the installer's output follows."""

    def __init__(
        self, problem: str, fix: str = "", packages: tuple[str, ...] = (), output: str = "", where: str = ""
    ):
        self.problem, self.fix, self.output, self.where = problem, fix, output, where
        self.packages = tuple(packages)  # the offending packages' canonical names, where known
        text = f"{where}: {problem}" if where else problem
        text += f" (fix: {fix})" if fix else ""
        super().__init__(text + (f"\nInstaller output (tail):\n{output}" if output else ""))

    def located(self, where: str) -> RequirementsError:
        """The same error, naming where the offending requirement is written (``file:line``)."""
        return RequirementsError(self.problem, self.fix, self.packages, self.output, where)


class ModelCodeError(PushbuttonError):
    """The model's own code failed: its train entry point raised or returned no estimator."""


class GateFailed(PushbuttonError):
    """A model version failed one or more checks of its quality gate."""

    def __init__(self, failures: list[str], report: Any = None):
        self.failures = list(failures)
        self.report = report  # the full GateReport, when the caller has one
        super().__init__("quality gate failed:\n" + "\n".join(f"  - {f}" for f in self.failures))


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a model spec: where it is, what is wrong, how to fix it."""

    file: str
    field: str
    message: str
    fix: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message} (fix: {self.fix})"


class SpecError(PushbuttonError):
    """A model spec (or the model directory it describes) is invalid."""

    def __init__(self, issues: list[SpecIssue]):
        if not issues:
            raise ValueError("SpecError needs at least one issue")
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    @property
    def file(self) -> str:
        return self.issues[0].file
