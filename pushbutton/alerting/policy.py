"""The promotion policy (``promotion:`` in ``model.yaml``) and its decision, with the evidence.

``manual`` (the default): a person answers the Approve form, as always. ``auto``: the candidate is
promoted once its canary has served at least ``min_requests`` requests over at least
``min_windows`` monitor windows with no alert rule firing on it, and it is not worse than the
champion on labelled data — on production labels when both have at least ``min_labels`` in the
same windows (worse: by more than the gate's ``champion_tolerance`` plus what sampling alone explains,
since canary and champion answer different requests), else the gate's champion comparison (which it
passed to be deployed) stands. When it
cannot promote (a rule fires on the canary, it is worse, or ``max_wait`` passed without enough
traffic), the decision goes to a person with the reason shown in the Approve form. Every decision
carries its evidence into the serving history.

``scope``: ``retrained`` (the default) lets the policy decide only for versions the platform retrained
itself (on schedule or on an alert); a version a person pushed goes to a person. ``all``: every version.

``rollback_window``: how long after an activation a ``critical`` quality rule with the ``rollback``
action may restore the previous champion on its own (see ``pushbutton.alerting.rollback``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pushbutton.alerting.rules import Duration

Verdict = Literal["promote", "wait", "hand_over"]
RETRAINED = ("alert", "scheduled", "asset_triggered")  # the lineage tag pushbutton.trigger of a retrain


def in_scope(spec: PromotionSpec, trigger: str | None) -> tuple[bool, str]:
    """Does the ``auto`` policy decide for a version trained by ``trigger`` (its ``pushbutton.trigger``)?
    With ``scope: retrained`` a version a person pushed or trained by hand goes to a person."""
    if spec.policy != "auto":
        return False, "promotion policy is manual: a person approves"
    if spec.scope == "retrained" and trigger not in RETRAINED:
        return False, (
            f"this version was not retrained by the platform (trigger: {trigger or 'push'}); the auto policy "
            "applies to retrained versions (promotion.scope: retrained): a person approves"
        )
    return True, ""


class PromotionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["manual", "auto"] = "manual"
    scope: Literal["retrained", "all"] = Field(
        "retrained",
        description="auto applies to versions the platform retrained (schedule, alert), or to all",
    )
    min_requests: int = Field(200, ge=1, description="requests the canary must serve before promotion")
    min_windows: int = Field(2, ge=1, description="monitor windows the canary must be judged in")
    min_labels: int = Field(50, ge=1, description="labels per side for a production comparison")
    max_wait: Duration = Field(timedelta(hours=2), description="then a person decides")
    rollback_window: Duration = Field(timedelta(hours=2), description="automatic rollback after activation")


@dataclass(frozen=True)
class Comparison:
    """Candidate vs champion on production labels over the same windows."""

    metric: str
    candidate: float
    champion: float
    candidate_labels: int
    champion_labels: int
    lower_is_better: bool = False


@dataclass(frozen=True)
class PolicyDecision:
    verdict: Verdict
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


PROPORTIONS = {"accuracy", "precision_macro", "recall_macro", "f1_macro"}  # shares of rows: a binomial error
Z_ONE_SIDED_95 = 1.645


def sampling_margin(c: Comparison) -> float:
    """How much of a difference two samples of ``c``'s sizes show by chance alone (one-sided 95%, normal
    approximation of two proportions): the canary and the champion answer *different* requests, so an
    identical model scores differently on them. Metrics that are not shares of rows get no margin."""
    if c.metric not in PROPORTIONS or min(c.candidate_labels, c.champion_labels) < 1:
        return 0.0
    variance = sum(max(p * (1 - p), 0.0) / n for p, n in ((c.candidate, c.candidate_labels),
                                                          (c.champion, c.champion_labels)))  # fmt: skip
    return Z_ONE_SIDED_95 * variance**0.5


def decide(
    spec: PromotionSpec,
    *,
    served: int,
    windows: int,
    firing: list[str],
    waited: timedelta,
    tolerance: float,
    comparison: Comparison | None = None,
) -> PolicyDecision:
    """The ``auto`` policy's verdict on a canary that has served ``served`` requests over ``windows``
    windows, with rules ``firing`` on it, ``waited`` since it was deployed."""
    evidence: dict[str, Any] = {
        "served": served, "windows": windows, "firing": list(firing), "waited_s": int(waited.total_seconds()),
        "min_requests": spec.min_requests, "min_windows": spec.min_windows,
    }  # fmt: skip
    if spec.policy != "auto":
        return PolicyDecision("hand_over", "promotion policy is manual: a person approves", evidence)
    if firing:
        return PolicyDecision(
            "hand_over", f"alert rule(s) firing on the canary: {', '.join(sorted(firing))}", evidence
        )
    if served < spec.min_requests or windows < spec.min_windows:
        short = f"the canary served {served}/{spec.min_requests} requests over {windows}/{spec.min_windows} windows"
        if waited >= spec.max_wait:
            return PolicyDecision("hand_over", f"{short} within max_wait ({spec.max_wait})", evidence)
        return PolicyDecision("wait", short, evidence)
    if (
        comparison is not None
        and min(comparison.candidate_labels, comparison.champion_labels) >= spec.min_labels
    ):
        c = comparison
        worse = c.candidate - c.champion if c.lower_is_better else c.champion - c.candidate
        noise = sampling_margin(c)
        evidence["comparison"] = {
            "metric": c.metric, "candidate": c.candidate, "champion": c.champion, "tolerance": tolerance,
            "noise_margin": round(noise, 4), "labels": [c.candidate_labels, c.champion_labels],
            "on": "production labels",
        }  # fmt: skip
        if worse > tolerance + noise:
            return PolicyDecision(
                "hand_over",
                f"the canary is worse than the champion on production labels: {c.metric} {c.candidate:.4g} vs "
                f"{c.champion:.4g} (tolerance {tolerance:g} + sampling margin {noise:.3g})",
                evidence,
            )
        on = f"{c.metric} {c.candidate:.4g} vs champion {c.champion:.4g} on production labels"
    else:
        labels = (comparison.candidate_labels, comparison.champion_labels) if comparison else (0, 0)
        evidence["comparison"] = {"on": "the gate's champion comparison", "labels": list(labels)}
        on = f"production labels too few ({min(labels)} < {spec.min_labels}): the gate's champion comparison stands"
    return PolicyDecision(
        "promote", f"served {served} requests over {windows} windows, no rule firing; {on}", evidence
    )


def gather(
    spec: Any, store: Any, version: str, since: datetime, now: datetime
) -> tuple[int, int, list[str], Comparison | None]:
    """From the monitoring store: the canary's requests since ``since``, the windows it was judged in,
    the rules firing on it, and the primary label metric of canary and champion in the newest window
    both have it (``None`` when the model declares no such indicator or there is none yet)."""
    served = sum(n for predictor, v, n in store.versions(spec.name, since, now)
                 if predictor == "candidate" and v == version)  # fmt: skip
    results = [r for r in store.indicators(spec.name, version=version, predictor="candidate", last=500)
               if r.window_end > since and r.status == "ok"]  # fmt: skip
    windows = len({r.window_end for r in results})
    firing = []
    for rule in spec.alerts:
        last = store.alerts(spec.name, rule=rule.name, version=version, predictor="candidate", limit=1)
        if last and last[0].state == "firing":
            firing.append(rule.name)
    metric = spec.primary_metric
    ids = [
        i.id for i in spec.indicators if i.type == "label_metric" and i.params.get("metric", metric) == metric
    ]
    comparison = None
    if ids:
        mine = {r.window_end: r for r in results if r.indicator_id == ids[0] and r.value is not None}
        theirs = {r.window_end: r for r in store.indicators(spec.name, predictor="champion", indicator_id=ids[0],
                                                              last=500) if r.status == "ok" and r.value is not None}  # fmt: skip
        both = sorted(set(mine) & set(theirs))
        if both:
            c, p = mine[both[-1]], theirs[both[-1]]
            comparison = Comparison(metric, float(c.value), float(p.value), c.sample_size, p.sample_size,
                                    lower_is_better=metric in ("rmse", "mae", "log_loss"))  # fmt: skip
    return served, windows, firing, comparison
