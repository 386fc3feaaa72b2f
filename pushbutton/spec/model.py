"""The ``model.yaml`` standard as pydantic models (``extra="forbid"`` everywhere).

Validator messages say how to fix the value (the text after the last ``"; "``); a message may start
with ``<field>: `` to name a field below the validated model. ``pushbutton.spec.loader`` adds file
and line.
File-system checks (paths exist, entry points defined) live in ``pushbutton.spec.checks``.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from pushbutton.alerting.policy import PromotionSpec
from pushbutton.alerting.rules import AlertRule

API_VERSION = "pushbutton/v1"
OBJECT_STORAGE = ("s3", "gs", "file")  # data sources read through Airflow's ObjectStoragePath
NAME_MAX = 40  # leaves room for suffixes such as "-candidate" within Kubernetes' 63-char labels
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_CRON_PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually"}

# computed from the labels the predict class returns (no probabilities), so no log loss
CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
REGRESSION_METRICS = ("rmse", "mae", "r2")
UNIT_INTERVAL_METRICS = {"accuracy", "f1_macro", "precision_macro", "recall_macro"}
LOWER_IS_BETTER = {"rmse", "mae"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _dns_name(value: str) -> str:
    if len(value) > NAME_MAX:
        raise ValueError(f"'{value}' is {len(value)} characters; use at most {NAME_MAX}")
    if not _NAME.match(value):
        suggestion = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "my-model"
        if not suggestion[0].isalpha():
            suggestion = f"model-{suggestion}"
        suggestion = suggestion[:NAME_MAX].rstrip("-")
        raise ValueError(
            f"'{value}' is not DNS-safe; use lowercase letters, digits and '-', starting with a letter "
            f"(e.g. '{suggestion}')"
        )
    return value


def _relative_path(value: str) -> str:
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"'{value}' is absolute; give a path relative to the model directory")
    if ".." in path.parts:
        raise ValueError(
            f"'{value}' leaves the model directory ('..'); keep files inside the model directory"
        )
    return str(path)


def _reference(value: str) -> str:
    if not _REF.match(value):
        raise ValueError(f"'{value}' is not 'module:attribute'; write e.g. 'train:train' or 'predict:Model'")
    return value


def _cron(value: str | None) -> str | None:
    if value is None or value in _CRON_PRESETS:
        return value
    from croniter import croniter  # Airflow's own cron parser, so the scheduler agrees with us

    fix = "use five fields 'min hour day month weekday' (e.g. '0 3 * * 1') or a preset such as '@daily'"
    fields = len(value.split())
    if fields != 5 and croniter.is_valid(value):  # croniter also reads a sixth field (seconds)
        raise ValueError(f"'{value}' has {fields} fields, not a five-field cron expression; {fix}")
    if not croniter.is_valid(value):
        raise ValueError(f"'{value}' is not a valid cron expression; {fix}")
    return value


DnsName = Annotated[str, AfterValidator(_dns_name)]
RelPath = Annotated[str, AfterValidator(_relative_path)]
Reference = Annotated[str, AfterValidator(_reference)]
Cron = Annotated[str | None, AfterValidator(_cron)]
Scalar = str | int | float | bool


class TrainSpec(_Strict):
    """How to train: ``entry_point`` is ``module:function`` inside the model directory."""

    entry_point: Reference
    params: dict[str, Scalar] = Field(default_factory=dict)


class DataSpec(_Strict):
    """Where training data comes from and how the holdout is cut (deterministic by seed)."""

    source: str
    target: str = Field(min_length=1)
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = Field(42, ge=0, lt=2**32)  # scikit-learn's random_state range
    # sql:<connection id>: the query, windowed by the run's data interval (:start, :end bound parameters)
    query: str | None = None
    conn_id: str | None = None  # s3://…: the Airflow Connection ObjectStoragePath reads it with
    min_rows: int = Field(20, ge=2, description="a retrain refuses fewer training rows")
    max_null_share: float = Field(0.5, ge=0.0, le=1.0, description="per input, in the training data")
    max_label_shift: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="largest change of a class's share vs the champion's reference (1: off)",
    )

    @model_validator(mode="after")
    def _remote(self) -> DataSpec:
        scheme = self.source.partition(":")[0]
        if scheme == "sql" and not (self.query or "").strip():
            raise ValueError(
                "query: a sql: source needs the query; write e.g. query: SELECT * FROM training WHERE ts >= :start "
                "AND ts < :end"
            )
        if scheme != "sql" and self.query:
            raise ValueError(f"query: only a sql: source takes a query, not '{self.source}'; remove it")
        if self.conn_id and scheme not in OBJECT_STORAGE:
            raise ValueError(
                f"conn_id: only an object storage source (s3://…) takes one, not '{self.source}'; remove it"
            )
        return self

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        scheme, _, rest = value.partition(":")
        if scheme == "sklearn":
            from pushbutton.data.catalog import SKLEARN_DATASETS

            if rest not in SKLEARN_DATASETS:
                close = difflib.get_close_matches(rest, SKLEARN_DATASETS, n=1)
                hint = f"did you mean 'sklearn:{close[0]}'? " if close else ""
                raise ValueError(
                    f"unknown scikit-learn dataset '{rest}'; {hint}use one of "
                    + ", ".join(f"sklearn:{name}" for name in sorted(SKLEARN_DATASETS))
                )
        elif scheme == "sql":
            if not re.match(r"^[A-Za-z0-9_.-]+$", rest):
                raise ValueError(
                    f"'{value}' names no Airflow Connection; write 'sql:<connection id>', e.g. sql:warehouse"
                )
        elif scheme in OBJECT_STORAGE:
            suffix = PurePosixPath(rest).suffix.lstrip(".")
            if not rest.startswith("//") or suffix not in ("csv", "parquet"):
                raise ValueError(
                    f"'{value}' is not a {scheme}:// CSV or Parquet object; write e.g. "
                    f"'{scheme}://bucket/train.parquet'"
                )
        elif scheme in ("csv", "parquet"):
            _relative_path(rest or ".")
            if not rest:
                raise ValueError(f"'{value}' has no file; write e.g. '{scheme}:data/train.{scheme}'")
        else:
            suffix = PurePosixPath(value).suffix.lstrip(".")
            if not rest and suffix in ("csv", "parquet"):
                raise ValueError(f"'{value}' has no scheme; write '{suffix}:{value}'")
            raise ValueError(
                f"'{value}' has an unknown scheme '{scheme}'; use 'sklearn:<dataset>', 'csv:<path>', "
                "'parquet:<path>' (a file inside the model directory), 'sql:<connection id>' or 's3://bucket/key'"
            )
        return value


FeatureType = Literal["double", "float", "long", "integer", "boolean", "string"]


class Feature(_Strict):
    name: str = Field(min_length=1, max_length=128)
    type: FeatureType = "double"
    nullable: bool = Field(
        False, description="requests may leave it missing (null/NaN); the model handles that"
    )


class SchemaSpec(_Strict):
    """Input columns the model accepts, in order, and the shape of what it returns.

    An input written as a bare name (``inputs: [age, income]``) is ``{name: age}``: a double that
    must not be missing (what ``pushbutton init --from-data`` writes for such columns).
    """

    inputs: list[Feature] = Field(min_length=1)
    output: Feature = Feature(name="prediction")

    @field_validator("inputs", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("inputs")
    @classmethod
    def _unique(cls, value: list[Feature]) -> list[Feature]:
        seen: dict[str, int] = {}
        for index, feature in enumerate(value):
            if feature.name in seen:
                raise ValueError(
                    f"{index}.name: input '{feature.name}' is listed twice (also item {seen[feature.name]}); "
                    "give each input a unique name"
                )
            seen[feature.name] = index
        return value


# The predict class serving a flavor's model when the spec names none: pushbutton's own, in the
# serving runtime (pushbutton/serving/runtime/seldon/pushbutton_sklearn.py), not in the model directory.
DEFAULT_PREDICT_CLASSES = {"sklearn": "pushbutton_sklearn:SklearnModel"}
BUILTIN_PREDICT_MODULES = frozenset(ref.partition(":")[0] for ref in DEFAULT_PREDICT_CLASSES.values())


class PredictSpec(_Strict):
    """The serving class: ``module:Class`` with ``predict(X, features_names=None)`` (seldon-core's
    python wrapper contract). Left out, the flavor's built-in class serves the logged model as it is
    (labels or values; class probabilities in the response's ``meta.tags``). With more than one
    flavor, ``ModelSpec`` must pick the default by ``flavor``; today sklearn is the only one."""

    class_: Reference = Field(DEFAULT_PREDICT_CLASSES["sklearn"], alias="class")

    @property
    def builtin(self) -> bool:
        """Whether the class ships with pushbutton's serving runtime rather than the model directory."""
        return self.class_.partition(":")[0] in BUILTIN_PREDICT_MODULES


class Threshold(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("threshold needs 'min' or 'max' (or both); write e.g. '{min: 0.8}'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min: min {self.min} is above max {self.max}; swap them or widen the range")
        return self


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read true as 1.0
        raise ValueError(f"{str(value).lower()} is a boolean, not a number; write a number here")
    return value


def _finite(value: float, what: str, example: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{value:g} is not {what}; give a positive number, e.g. {example}")
    return value


class LatencySpec(_Strict):
    """Latency ceilings (milliseconds) the test step holds the candidate's own microservice to.

    The test step times sequential single-row requests and ``batch_rows``-row requests over the
    holdout (p50/p99). The defaults are ceilings no healthy online model should reach: a model a
    request waits seconds for fails the gate unless its spec raises them.
    """

    p50_ms: float | None = Field(None, description="single-row median ceiling (default: none)")
    p99_ms: float = Field(1000.0, description="single-row 99th-percentile ceiling")
    batch_rows: int = Field(100, ge=1, le=10_000, description="rows per batch request")
    batch_p50_ms: float | None = Field(None, description="batch median ceiling (default: none)")
    batch_p99_ms: float = Field(5000.0, description="batch 99th-percentile ceiling")
    champion_slowdown: float | None = Field(
        2.0, description="the candidate's medians may be at most this many times the champion's; null: off"
    )
    champion_margin_ms: float = Field(
        50.0, description="a median at most this many ms above the champion's never fails"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        return _no_bool(value)

    @field_validator("p50_ms", "p99_ms", "batch_p50_ms", "batch_p99_ms")
    @classmethod
    def _ceiling(cls, value: float | None) -> float | None:
        return None if value is None else _finite(value, "a latency ceiling in milliseconds", "1000")

    @field_validator("champion_slowdown")
    @classmethod
    def _slowdown(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 1):
            raise ValueError(
                f"{value:g} is not a slowdown factor (how many times the champion's median latency the "
                "candidate's may reach); write a number above 1, e.g. 2, or null to turn the comparison off"
            )
        return value

    @field_validator("champion_margin_ms")
    @classmethod
    def _margin(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value:g} is not a margin in milliseconds; write 0 or more, e.g. 50")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> LatencySpec:
        for low, high in (("p50_ms", "p99_ms"), ("batch_p50_ms", "batch_p99_ms")):
            median, tail = getattr(self, low), getattr(self, high)
            if median is not None and median > tail:
                raise ValueError(
                    f"{low}: {low} {median:g} is above {high} {tail:g}, but a median never exceeds the "
                    f"99th percentile; lower {low} or raise {high}"
                )
        return self


class GateSpec(_Strict):
    """Quality gate: absolute thresholds plus the challenger-vs-champion tolerance."""

    metrics: dict[str, Threshold] = Field(default_factory=dict)
    champion_tolerance: float = Field(0.0, ge=0.0, le=1.0)
    golden: RelPath | None = None
    golden_tolerance: float = Field(1e-6, ge=0.0)
    latency: LatencySpec = LatencySpec()

    @field_validator("metrics", mode="before")
    @classmethod
    def _bare_numbers(cls, value: Any) -> Any:
        for metric, bound in value.items() if isinstance(value, dict) else ():
            if isinstance(bound, (int, float)) and not isinstance(bound, bool):
                raise ValueError(
                    f"{metric}: a bare number does not say whether it is a floor or a ceiling; "
                    f"write '{{min: {bound}}}' or '{{max: {bound}}}'"
                )
        return value


GraphNodeType = Literal["MODEL", "TRANSFORMER", "OUTPUT_TRANSFORMER", "COMBINER", "ROUTER"]
# the seldon-core python wrapper method each node type's class must define
NODE_METHODS: dict[str, str] = {
    "MODEL": "predict",
    "TRANSFORMER": "transform_input",
    "OUTPUT_TRANSFORMER": "transform_output",
    "COMBINER": "aggregate",
    "ROUTER": "route",
}
_METHOD_SIGNATURES = {
    "predict": "def predict(self, X, features_names=None)",
    "transform_input": "def transform_input(self, X, features_names=None)",
    "transform_output": "def transform_output(self, X, features_names=None)",
    "aggregate": "def aggregate(self, Xs, features_names=None)",
    "route": "def route(self, X, features_names=None)",
}


def method_signature(method: str) -> str:
    return _METHOD_SIGNATURES[method]


class GraphNode(_Strict):
    """A node of the inference graph (Seldon's ``graph``), run as Seldon's executor runs it.

    ``class`` is a ``module:Class`` in the model directory defining the node type's method
    (``NODE_METHODS``); a MODEL node without one is the predictor's ``predict.class``. ``parameters``
    are passed to the class's constructor (a MODEL node also gets ``model_uri``). ``children`` are
    nested nodes, so a graph is a tree: a node cannot be its own descendant.
    """

    name: DnsName = "model"
    type: GraphNodeType = "MODEL"
    class_: Reference | None = Field(None, alias="class")
    children: list[GraphNode] = Field(default_factory=list)
    parameters: dict[str, Scalar] = Field(default_factory=dict)
    requirements: RelPath | None = None

    @model_validator(mode="after")
    def _shape(self) -> GraphNode:
        kind, count = self.type, len(self.children)
        if kind != "MODEL" and not self.class_:
            method = NODE_METHODS[kind]
            raise ValueError(
                f"type: a {kind} node '{self.name}' names no class; add 'class: module:Class' naming a class "
                f"of the model directory with '{_METHOD_SIGNATURES[method]}'"
            )
        if kind in ("ROUTER", "COMBINER") and count < 2:
            what = "picks one of its children" if kind == "ROUTER" else "aggregates its children's answers"
            raise ValueError(
                f"children: {kind} '{self.name}' {what} but has {count} child{'ren' if count != 1 else ''}; "
                f"give it at least two children, or replace it by its child"
            )
        if kind not in ("ROUTER", "COMBINER") and count > 1:
            raise ValueError(
                f"children: {kind} '{self.name}' has {count} children, but only a COMBINER or ROUTER can "
                "use more than one answer (Seldon would return the first child's only); put a COMBINER or "
                "ROUTER over them"
            )
        return self

    def walk(self, path: str = "graph") -> list[tuple[str, GraphNode]]:
        """This node and its descendants with their paths under ``serving``, parents first."""
        found = [(path, self)]
        for index, child in enumerate(self.children):
            found += child.walk(f"{path}.children.{index}")
        return found


class Resources(_Strict):
    cpu: str = "500m"
    memory: str = "512Mi"

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str) -> str:
        if not re.match(r"^\d+(\.\d+)?m?$", value):
            raise ValueError(f"'{value}' is not a CPU quantity; write e.g. '500m' or '2'")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not re.match(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$", value):
            raise ValueError(f"'{value}' is not a memory quantity; write e.g. '512Mi' or '2Gi'")
        return value


TIMEOUT_SECONDS = 60.0  # the gateway's default: what a client waits at most for a model's answer
TIMEOUT_MAX_SECONDS = 600.0


class ServingSection(_Strict):
    namespace: DnsName = "models"
    replicas: int = Field(1, ge=1, le=50)
    graph: GraphNode = GraphNode()
    resources: Resources = Resources()
    timeout_seconds: float = Field(
        TIMEOUT_SECONDS, description="the gateway answers 504 when this version takes longer"
    )

    @model_validator(mode="after")
    def _unique_node_names(self) -> ServingSection:
        """Seldon matches graph nodes to containers (v1) and models (v2) by name."""
        seen: dict[str, str] = {}
        for path, node in self.graph.walk():
            if node.name in seen:
                raise ValueError(
                    f"{path}.name: graph node name '{node.name}' is also the name of serving.{seen[node.name]}; "
                    "give every graph node its own name"
                )
            seen[node.name] = path
        return self

    @field_validator("timeout_seconds", mode="before")
    @classmethod
    def _timeout_not_bool(cls, value: Any) -> Any:
        return _no_bool(value)

    @field_validator("timeout_seconds")
    @classmethod
    def _timeout(cls, value: float) -> float:
        _finite(value, "a timeout in seconds", "30")
        if value > TIMEOUT_MAX_SECONDS:
            raise ValueError(
                f"{value:g} s would hold a client (and the gateway's connection) for over "
                f"{TIMEOUT_MAX_SECONDS:g} s; use at most {TIMEOUT_MAX_SECONDS:g}, and score bigger batches "
                "offline rather than through the gateway"
            )
        return value


class TrafficSpec(_Strict):
    """How a release candidate meets traffic: a canary share, or a shadow copy of every request."""

    mode: Literal["canary", "shadow"] = "canary"
    candidate_percent: int = Field(10, ge=0, le=100)

    @model_validator(mode="after")
    def _sensible(self) -> TrafficSpec:
        if self.mode == "canary" and self.candidate_percent in (0, 100):
            raise ValueError(
                f"candidate_percent: canary with candidate_percent {self.candidate_percent} is not a "
                "canary; use 1..99, or mode 'shadow' to mirror traffic without serving candidate answers"
            )
        if self.mode == "shadow" and "candidate_percent" in self.model_fields_set:
            raise ValueError(
                f"candidate_percent: mode 'shadow' serves no candidate answers, so candidate_percent "
                f"{self.candidate_percent} would have no effect; remove candidate_percent, or use mode "
                "'canary' to serve that share"
            )
        return self


class Schedules(_Strict):
    retrain: Cron = None
    monitor: Cron = None


RETENTION_DAYS = 30
RETENTION_DAYS_MAX = 3650


class LoggingSpec(_Strict):
    """Request logging of the model's traffic through the gateway (the request log the monitor reads).

    Every request and response of every serving version is logged unless ``enabled`` is false;
    ``sample_rate`` logs that share of requests (chosen by request id, so both halves of a request
    and its copies to every version are logged together); ``exclude`` names inputs that never leave
    the gateway (e.g. personal data); raw logs older than ``retention_days`` are purged.
    """

    enabled: bool = True
    sample_rate: float = Field(1.0, description="share of requests logged, 0 to 1")
    exclude: list[str] = Field(default_factory=list, description="inputs never sent to the request log")
    retention_days: int = Field(RETENTION_DAYS, description="days raw request logs are kept")

    @field_validator("sample_rate", "retention_days", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        return _no_bool(value)

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, value: float) -> float:
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(
                f"{value:g} is not a share of requests; write a number from 0 to 1, e.g. 0.1 to log one "
                "request in ten or 1 to log all (enabled: false logs none)"
            )
        return value

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if not 1 <= value <= RETENTION_DAYS_MAX:
            raise ValueError(
                f"{value} is not a number of days to keep raw request logs; use 1 to {RETENTION_DAYS_MAX}, "
                f"e.g. {RETENTION_DAYS}"
            )
        return value

    @field_validator("exclude")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        for index, name in enumerate(value):
            if name in seen:
                raise ValueError(
                    f"{index}: '{name}' is listed twice (also item {seen[name]}); list each input once"
                )
            seen[name] = index
        return value


class IndicatorSpec(_Strict):
    """A model-quality indicator computed by the ``<model>__monitor`` DAG.

    ``type`` is a stable type id of ``indicators.registry`` (the one source of the list); ``params``
    are validated by that type's config (``indicators.configs``: pydantic only, so parsing stays
    cheap). Checks that need the schema or the model directory (feature names, a custom function in
    ``indicators.py``) are ``pushbutton.spec.checks``'.
    """

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    type: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from indicators.registry import TYPE_IDS

        if value not in TYPE_IDS:
            close = difflib.get_close_matches(value, TYPE_IDS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"'{value}' is not an indicator type; {hint}use one of {', '.join(TYPE_IDS)}")
        return value

    @model_validator(mode="after")
    def _params(self) -> IndicatorSpec:
        from indicators.registry import params_problem

        problem = params_problem(self.type, self.params)
        if problem:
            raise ValueError(problem)  # "params.<field>: problem; fix"
        return self


class ModelSpec(_Strict):
    """A whole ``model.yaml``."""

    api_version: Literal["pushbutton/v1"] = Field(alias="apiVersion")
    name: DnsName
    owner: str = Field(min_length=1, max_length=120)
    description: str = ""
    flavor: Literal["sklearn"]
    task: Literal["classification", "regression"]
    tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,50}$")]] = Field(default_factory=list)
    train: TrainSpec
    data: DataSpec
    schema_: SchemaSpec = Field(alias="schema")
    predict: PredictSpec = PredictSpec()  # left out: the flavor's built-in class
    requirements: RelPath | None = "requirements.txt"
    tests: RelPath | None = None
    gate: GateSpec = GateSpec()
    serving: ServingSection = ServingSection()
    traffic: TrafficSpec = TrafficSpec()
    schedules: Schedules = Schedules()
    logging: LoggingSpec = LoggingSpec()
    indicators: list[IndicatorSpec] = Field(default_factory=list)
    alerts: list[AlertRule] = Field(default_factory=list)
    promotion: PromotionSpec = PromotionSpec()

    @model_validator(mode="after")
    def _cross_field(self) -> ModelSpec:
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        for metric, threshold in self.gate.metrics.items():
            if metric not in allowed:
                raise ValueError(
                    f"gate.metrics.{metric}: '{metric}' is not a {self.task} metric; use one of "
                    f"{', '.join(allowed)}"
                )
            if metric in UNIT_INTERVAL_METRICS:
                for key, bound in (("min", threshold.min), ("max", threshold.max)):
                    if bound is not None and not 0.0 <= bound <= 1.0:
                        raise ValueError(
                            f"gate.metrics.{metric}.{key}: {bound} is outside 0..1; {metric} is a fraction, "
                            "write e.g. 0.9"
                        )
        self._check_alerts()
        if self.data.target in {f.name for f in self.schema_.inputs}:
            raise ValueError(
                f"data.target: '{self.data.target}' is also a model input; remove it from schema.inputs"
            )
        return self

    def _check_alerts(self) -> None:
        ids = [i.id for i in self.indicators]
        inputs = [f.name for f in self.schema_.inputs]
        names: dict[str, int] = {}
        for index, rule in enumerate(self.alerts):
            if rule.name in names:
                raise ValueError(
                    f"alerts.{index}.name: '{rule.name}' is also the name of alerts.{names[rule.name]}; "
                    "give each rule its own name (the history is kept by name)"
                )
            names[rule.name] = index
            if rule.indicator not in ids:
                close = difflib.get_close_matches(rule.indicator, ids, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                known = f"use one of {', '.join(ids)}" if ids else "declare it under indicators first"
                raise ValueError(
                    f"alerts.{index}.indicator: '{rule.indicator}' is not an indicator of this model; "
                    f"{hint}{known}"
                )
            if rule.feature is not None and rule.feature not in inputs:
                close = difflib.get_close_matches(rule.feature, inputs, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ValueError(
                    f"alerts.{index}.feature: '{rule.feature}' is not an input of this model; {hint}name one "
                    f"of schema.inputs ({', '.join(inputs)}), or drop feature to use the indicator's value"
                )

    @model_validator(mode="after")
    def _latency_within_timeout(self) -> ModelSpec:
        """A latency ceiling set above the serving timeout can never be reached: the gateway answers 504."""
        latency, timeout = self.gate.latency, self.serving.timeout_seconds
        for key in ("p50_ms", "p99_ms", "batch_p50_ms", "batch_p99_ms"):
            ceiling = getattr(latency, key)
            if key in latency.model_fields_set and ceiling is not None and ceiling > timeout * 1000:
                raise ValueError(
                    f"gate.latency.{key}: {ceiling:g} ms is above serving.timeout_seconds ({timeout:g} s), "
                    f"so the gateway answers such requests 504 before they finish; lower gate.latency.{key} "
                    "or raise serving.timeout_seconds"
                )
        return self

    @model_validator(mode="after")
    def _logging_excludes_inputs(self) -> ModelSpec:
        """``logging.exclude`` removes inputs from the logged requests: it can only name inputs."""
        inputs = [f.name for f in self.schema_.inputs]
        for index, name in enumerate(self.logging.exclude):
            if name not in inputs:
                close = difflib.get_close_matches(name, inputs, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ValueError(
                    f"logging.exclude.{index}: '{name}' is not an input of this model, so it is never in a "
                    f"logged request; {hint}name one of schema.inputs ({', '.join(inputs)})"
                )
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.schema_.inputs]

    @property
    def primary_metric(self) -> str:
        """The metric champion and challenger are compared on."""
        return "accuracy" if self.task == "classification" else "rmse"
