"""The typed parameters of every built-in indicator (``params:`` of an ``indicators:`` entry).

Pydantic only — no numpy, pandas, scipy or alibi-detect — because ``pushbutton validate`` and the DAG
processor check every spec's params with these classes while parsing DAG files. Each indicator
class in this package points at its config as ``Indicator.Config``.

Validator messages follow the spec convention: ``[field: ]problem; fix`` (the text after the last
``"; "`` is the fix). ``params_problem`` turns a failed validation into one such line.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DriftMethod = Literal["ks", "cvm", "chi2", "tabular", "fet", "classifier"]
DRIFT_METHODS: tuple[str, ...] = ("ks", "cvm", "chi2", "tabular", "fet", "classifier")
NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
CATEGORICAL_TYPES = frozenset({"string", "boolean"})
LABEL_METRICS_HIGHER = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "r2", "ndcg")
LABEL_METRICS_LOWER = ("log_loss", "mse", "mae", "rmse")
CLASSIFICATION_LABEL_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "log_loss", "ndcg")
REGRESSION_LABEL_METRICS = ("mse", "mae", "rmse", "r2", "ndcg")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Scalar = str | int | float | bool


class IndicatorConfig(BaseModel):
    """Base of every indicator's config: unknown keys are rejected, values are frozen.

    ``FEATURE_FIELDS`` names the fields that hold feature names (a name or a list of names): the
    spec checks (``pushbutton.spec.checks``) verify each one is in ``schema.inputs``.
    """

    # strict: YAML already gives numbers, strings and booleans; true is not 1 and "5" is not 5
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    FEATURE_FIELDS: ClassVar[tuple[str, ...]] = ()

    min_rows: int = Field(30, description="fewer rows in the window: status 'insufficient'")

    @field_validator("min_rows")
    @classmethod
    def _min_rows(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"{value} rows can never be too few; write 1 or more, e.g. 30")
        return value

    def schema_problems(self, inputs: dict[str, str], task: str) -> list[tuple[str, str, str]]:
        """``(field, problem, fix)`` for every way these params contradict the model's schema
        (``inputs``: name → type, in order) or task; feature names are checked generically."""
        problems: list[tuple[str, str, str]] = []
        for name in self.FEATURE_FIELDS:
            value = getattr(self, name)
            names = [value] if isinstance(value, str) else list(value or [])
            for index, feature in enumerate(names):
                if feature not in inputs:
                    close = difflib.get_close_matches(feature, list(inputs), n=1)
                    hint = f"did you mean '{close[0]}'? " if close else ""
                    field = name if isinstance(value, str) else f"{name}.{index}"
                    problems.append(
                        (
                            field,
                            f"'{feature}' is not an input of this model",
                            f"{hint}use one of schema.inputs: {', '.join(inputs)}",
                        )
                    )
        return problems


def _p_value(value: float) -> float:
    if not (math.isfinite(value) and 0 < value < 1):
        raise ValueError(
            f"{value:g} is not a significance level; write a probability between 0 and 1, e.g. 0.05"
        )
    return value


def _non_negative(value: float | None, example: str) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{value:g} is not a threshold here; write 0 or a positive number, e.g. {example}")
    return value


def _share(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"{value:g} is not a share; write a fraction between 0 and 1, e.g. 0.05")
    return value


class DriftConfig(IndicatorConfig):
    FEATURE_FIELDS: ClassVar[tuple[str, ...]] = ("features", "categorical")

    method: DriftMethod = Field(
        "tabular",
        description="ks, cvm (numeric), chi2 (categorical), tabular (ks or chi2 by schema type), "
        "fet (boolean), classifier (one multivariate test)",
    )
    p_value: float = Field(0.05, description="significance level of each feature's test (q-value with fdr)")
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    features: list[str] | None = Field(None, description="inputs to test; default: every schema input")
    categorical: list[str] = Field(
        default_factory=list, description="numeric inputs to test as categories (chi2) with tabular"
    )
    drift_share: float = Field(
        0.0, description="flag when the share of drifted features exceeds this (0: any feature)"
    )
    backend: Literal["auto", "alibi", "scipy"] = Field(
        "auto", description="auto: alibi-detect when it is installed, else scipy"
    )
    max_rows: int | None = Field(
        200_000,
        description="rows sampled (seeded) from the window and from the reference before testing; null: all",
    )
    n_folds: int = Field(3, description="classifier: stratified folds (out-of-fold predictions)")
    max_classifier_rows: int = Field(
        10_000, description="classifier: rows sampled from each of reference and window"
    )
    seed: int = 0

    @field_validator("p_value")
    @classmethod
    def _p(cls, value: float) -> float:
        return _p_value(value)

    @field_validator("drift_share")
    @classmethod
    def _drift_share(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 <= value < 1):
            raise ValueError(
                f"{value:g} would never flag (a share of drifted features is at most 1); write a fraction "
                "from 0 (any drifted feature) up to below 1, e.g. 0.5"
            )
        return value

    @field_validator("n_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if not 2 <= value <= 10:
            raise ValueError(f"{value} folds; write 2 to 10 (each fold trains one classifier), e.g. 3")
        return value

    @field_validator("max_rows")
    @classmethod
    def _max_rows(cls, value: int | None) -> int | None:
        if value is not None and value < 1000:
            raise ValueError(f"{value} rows are too few to test on; write 1000 or more, or null for all rows")
        return value

    @field_validator("max_classifier_rows")
    @classmethod
    def _classifier_rows(cls, value: int) -> int:
        if not 100 <= value <= 1_000_000:
            raise ValueError(f"{value} rows; write 100 to 1000000 (training time grows with it), e.g. 10000")
        return value

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError(
                "an empty list tests nothing; leave features out to test every input, or name some"
            )
        if value is not None and len(set(value)) != len(value):
            twice = sorted({name for name in value if value.count(name) > 1})
            raise ValueError(f"{', '.join(twice)} listed twice; name each feature once")
        return value

    @model_validator(mode="after")
    def _categorical_only_with_tabular(self) -> DriftConfig:
        if self.categorical and self.method != "tabular":
            raise ValueError(
                f"categorical: method '{self.method}' tests every feature the same way, so 'categorical' "
                "has no effect; use method 'tabular', or remove categorical"
            )
        return self

    def schema_problems(self, inputs: dict[str, str], task: str) -> list[tuple[str, str, str]]:
        problems = super().schema_problems(inputs, task)
        if problems:
            return problems
        tested = self.features or list(inputs)
        field = "features" if self.features else "method"
        if self.method in ("ks", "cvm"):
            text = [name for name in tested if inputs[name] == "string"]
            if text:
                problems.append(
                    (
                        field,
                        f"method '{self.method}' compares numbers, but {', '.join(text)} is a string input",
                        "use method 'tabular' (chi2 for string and boolean inputs) or leave it out of features",
                    )
                )
        if self.method == "fet":
            other = [name for name in tested if inputs[name] != "boolean"]
            if other:
                problems.append(
                    (
                        field,
                        f"method 'fet' (Fisher's exact test) needs boolean inputs; {', '.join(other)} is not",
                        "use method 'tabular', or list only boolean inputs under features",
                    )
                )
        for index, name in enumerate(self.categorical):
            if inputs.get(name) in CATEGORICAL_TYPES:
                problems.append(
                    (
                        f"categorical.{index}",
                        f"'{name}' is a {inputs[name]} input, which tabular already tests as categories",
                        f"remove '{name}' from categorical",
                    )
                )
        return problems


class PredictionStabilityConfig(IndicatorConfig):
    max_shift: float = Field(
        0.5, description="flag when the mean prediction moves more than this many reference std"
    )
    max_psi: float | None = Field(
        None, description="also flag when the PSI over reference deciles exceeds this"
    )
    bins: int = Field(10, description="quantile bins of the reference predictions for PSI")

    @field_validator("max_shift")
    @classmethod
    def _shift(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"{value:g} is not a shift in standard deviations; write a positive number, e.g. 0.5"
            )
        return value

    @field_validator("max_psi")
    @classmethod
    def _psi(cls, value: float | None) -> float | None:
        return _non_negative(value, "0.2")

    @field_validator("bins")
    @classmethod
    def _bins(cls, value: int) -> int:
        if not 2 <= value <= 100:
            raise ValueError(f"{value} bins; write 2 to 100, e.g. 10")
        return value


class ClassFrequencyConfig(IndicatorConfig):
    max_psi: float = Field(0.2, description="flag when the PSI of class shares exceeds this")
    p_value: float | None = Field(None, description="also flag when the chi2 test's p-value is below this")
    epsilon: float = Field(1e-4, description="share used for a class absent on one side (PSI's log)")

    @field_validator("max_psi")
    @classmethod
    def _psi(cls, value: float) -> float:
        _non_negative(value, "0.2")
        return value

    @field_validator("p_value")
    @classmethod
    def _p(cls, value: float | None) -> float | None:
        return None if value is None else _p_value(value)

    @field_validator("epsilon")
    @classmethod
    def _epsilon(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 < value < 0.1):
            raise ValueError(f"{value:g} is not a small share; write a number between 0 and 0.1, e.g. 0.0001")
        return value


class SkewConfig(IndicatorConfig):
    min_rows: int = Field(10, description="fewer rows (or request pairs): status 'insufficient'")
    mode: Literal["auto", "paired", "distribution"] = Field(
        "auto",
        description="paired (shadow: the same requests, joined by request_id), distribution (canary); "
        "auto: paired when most request ids are shared",
    )
    threshold: float = Field(
        0.1,
        description="flag above: share of disagreeing answers (classification), mean absolute difference "
        "in std of the other predictor's answers (regression), or distribution distance",
    )

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float) -> float:
        _non_negative(value, "0.1")
        return value


class LabelMetricConfig(IndicatorConfig):
    FEATURE_FIELDS: ClassVar[tuple[str, ...]] = ()
    min_rows: int = Field(10, description="fewer labelled rows: status 'insufficient'")
    metric: str | None = Field(
        None, description="the headline value; default accuracy (classification) or rmse (regression)"
    )
    threshold: float | None = Field(
        None, description="flag when the metric is worse: below it (scores) or above it (errors)"
    )
    k: int | None = Field(None, description="nDCG@k: the top k of each group (default: all)")
    group: str | None = Field(
        None, description="nDCG: the column grouping ranked rows (an input, or request_id)"
    )

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        known = (*LABEL_METRICS_HIGHER, *LABEL_METRICS_LOWER)
        if value is not None and value not in known:
            close = difflib.get_close_matches(value, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"'{value}' is not a label metric; {hint}use one of {', '.join(known)}")
        return value

    @field_validator("k")
    @classmethod
    def _k(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"k {value} ranks nothing; write 1 or more, e.g. 10")
        return value

    @model_validator(mode="after")
    def _ndcg_needs_group(self) -> LabelMetricConfig:
        if self.metric == "ndcg" and not self.group:
            raise ValueError(
                "group: nDCG ranks rows within a group, but no group column is named; add group (an input such "
                "as query_id, or request_id when each request holds one ranked list)"
            )
        if self.k is not None and self.metric != "ndcg":
            raise ValueError(
                f"k: k is nDCG@k's cut-off, but metric is {self.metric!r}; remove k or use metric ndcg"
            )
        fraction = self.metric in LABEL_METRICS_HIGHER and self.metric != "r2"
        if fraction and self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(
                f"threshold: {self.threshold:g} is outside 0..1, and {self.metric} is a fraction; write e.g. 0.8"
            )
        if self.metric in LABEL_METRICS_LOWER and self.threshold is not None and self.threshold < 0:
            raise ValueError(f"threshold: {self.metric} is never negative; write 0 or more")
        return self

    def schema_problems(self, inputs: dict[str, str], task: str) -> list[tuple[str, str, str]]:
        problems: list[tuple[str, str, str]] = []
        allowed = CLASSIFICATION_LABEL_METRICS if task == "classification" else REGRESSION_LABEL_METRICS
        if self.metric is not None and self.metric not in allowed:
            problems.append(
                ("metric", f"'{self.metric}' is not a {task} metric", f"use one of {', '.join(allowed)}")
            )
        if self.group and self.group != "request_id" and self.group not in inputs:
            close = difflib.get_close_matches(self.group, list(inputs), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(
                (
                    "group",
                    f"'{self.group}' is not an input of this model",
                    f"{hint}use request_id or one of schema.inputs: {', '.join(inputs)}",
                )
            )
        return problems


class ErrorRateConfig(IndicatorConfig):
    min_rows: int = Field(20, description="fewer requests: status 'insufficient'")
    max_rate: float = Field(0.01, description="flag when the share of failed requests exceeds this")
    client_errors: bool = Field(False, description="count 4xx answers (bad requests) as errors too")

    @field_validator("max_rate")
    @classmethod
    def _rate(cls, value: float) -> float:
        _share(value)
        return value


class LatencyConfig(IndicatorConfig):
    min_rows: int = Field(20, description="fewer requests: status 'insufficient'")
    p50_ms: float | None = Field(None, description="median ceiling in milliseconds (default: none)")
    p99_ms: float = Field(1000.0, description="99th-percentile ceiling in milliseconds; the headline value")

    @field_validator("p50_ms", "p99_ms")
    @classmethod
    def _ceiling(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"{value:g} is not a latency ceiling in milliseconds; give a positive number, e.g. 500"
            )
        return value

    @model_validator(mode="after")
    def _ordered(self) -> LatencyConfig:
        if self.p50_ms is not None and self.p50_ms > self.p99_ms:
            raise ValueError(
                f"p50_ms: p50_ms {self.p50_ms:g} is above p99_ms {self.p99_ms:g}, but a median never exceeds "
                "the 99th percentile; lower p50_ms or raise p99_ms"
            )
        return self


class CustomConfig(IndicatorConfig):
    min_rows: int = Field(1, description="fewer rows in the window: status 'insufficient'")
    function: str = Field(description="a top-level function of the model directory's indicators.py")
    threshold: float | None = Field(None, description="flag when the returned value crosses it")
    direction: Literal["above", "below"] = Field("above", description="flag above or below the threshold")
    args: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="keyword arguments passed to the function"
    )

    @field_validator("function")
    @classmethod
    def _function(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(
                f"'{value}' is not a function name; write the name of a function in the model directory's "
                "indicators.py, e.g. 'share_of_outliers'"
            )
        return value

    @field_validator("args")
    @classmethod
    def _args(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [name for name in value if not _IDENTIFIER.match(name) or name == "inputs"]
        if bad:
            raise ValueError(
                f"'{bad[0]}' cannot be a keyword argument; use Python identifiers other than 'inputs'"
            )
        return value


# ---------------------------------------------------------------------------------------------------
# turning a failed validation into one spec line: "params.<field>: problem; fix"

_TYPES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true/false",
    "bool_parsing": "true/false",
    "dict_type": "a mapping ('key: value' lines)",
    "list_type": "a list",
}
_PREFIX = re.compile(r"^(?:Value error, )?([A-Za-z_][\w]*(?:\.[\w]+)*): ")


def params_problem(type_id: str, config: type[IndicatorConfig], params: Any) -> str | None:
    """``None`` when ``params`` is a valid ``config``; else one ``params.<field>: problem; fix`` line
    (the first problem, with how many more follow)."""
    try:
        config.model_validate(params)
    except ValidationError as exc:
        errors = exc.errors()
        line = _describe(type_id, config, errors[0])
        if len(errors) > 1:
            problem, _, fix = line.rpartition("; ")
            line = f"{problem} ({len(errors) - 1} more problem(s) in params after this one); {fix}"
        return line
    return None


def _describe(type_id: str, config: type[IndicatorConfig], error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    kind, value = error["type"], error.get("input")
    message = str(error["msg"]).removeprefix("Value error, ")
    prefixed = _PREFIX.match(message) if kind == "value_error" else None
    if prefixed:
        loc += prefixed.group(1).split(".")
        message = message[prefixed.end() :]
    field = ".".join(["params", *loc])
    shown = (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    if kind == "extra_forbidden":
        allowed = list(config.model_fields)
        close = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
        fix = f"did you mean '{close[0]}'?" if close else f"remove it; {type_id} accepts {', '.join(allowed)}"
        return f"{field}: unknown key '{loc[-1]}' for a {type_id} indicator; {fix}"
    if kind == "missing":
        return f"{field}: required key is missing; add '{loc[-1]}' under params"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        close = difflib.get_close_matches(str(value), re.findall(r"'([^']*)'", expected), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{field}: {shown} is not allowed; {hint}use {expected}"
    if kind in _TYPES:
        return f"{field}: {shown} is not {_TYPES[kind]}; write {_TYPES[kind]} here"
    if "; " not in message:
        message += "; correct the value"
    return f"{field}: {message[0].lower()}{message[1:]}" if kind != "value_error" else f"{field}: {message}"
