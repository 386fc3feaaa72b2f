"""The bad-spec catalog (tests/unit/specs): every broken model directory gets a message naming the
file, the line (where the YAML has one), the field and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pushbutton.errors import SpecError, SpecIssue
from pushbutton.spec import discover, load_model_dir

SPECS = Path(__file__).parent / "specs"
GOOD = "good-minimal"
ROOTS = {"duplicate-model-names"}  # checked as a models root with discover()


@dataclass(frozen=True)
class Expect:
    """One expected issue: ``message`` and ``fix`` are substrings; ``file`` is relative to the case."""

    field: str
    line: int | None
    message: str
    fix: str
    file: str = "model.yaml"


E = Expect
CATALOG: dict[str, tuple[Expect, ...]] = {
    # the file itself
    "missing-model-yaml": (E("", None, "no model.yaml in", "create model.yaml"),),
    "yaml-syntax-error": (E("", 13, "not valid YAML: mapping values are not allowed", "indentation"),),
    "yaml-tab-indent": (E("", 9, "found character '\\t'", "indent with spaces, not tabs"),),
    "yaml-unclosed-quote": (E("", 4, "while scanning a quoted scalar (column 8)", "close the quote"),),
    "spec-not-a-mapping": (E("", 2, "the spec is a list, not a mapping", "write 'key: value' lines"),),
    "spec-empty": (E("", None, "the spec is empty", "starting with 'apiVersion: pushbutton/v1'"),),
    "not-utf8": (E("", 4, "not UTF-8 text (byte 0xe9)", "save the file as UTF-8"),),
    "yaml-alias-bomb": (
        E("", 2, "expands to more than 10000 values through YAML aliases", "write the values out"),
    ),
    # required fields, types, keys
    "missing-owner": (E("owner", 2, "required field is missing", "add 'owner' under the top level"),),
    "missing-data-target": (E("data.target", 11, "required field is missing", "add 'target' under data"),),
    "empty-value": (E("owner", 4, "has no value", "write a string after 'owner:'"),),
    "wrong-type-number": (E("data.holdout_fraction", 14, "'lots' is not a number", "write a number here"),),
    "wrong-type-section": (E("train", 8, "'train:train' is not a mapping", "write a mapping"),),
    "wrong-type-param-list": (
        E("train.params.C", 11, "[0.1, 1.0] is not a string, an integer, a number or true/false", "write a"),
    ),
    "yaml-bool-for-string": (E("name", 3, "no is not a string", 'quote it: "no"; YAML reads it as bool'),),
    "wrong-api-version": (E("apiVersion", 2, "'v1' is not allowed", "use 'pushbutton/v1'"),),
    "wrong-task": (E("task", 6, "'classifier' is not allowed", "did you mean 'classification'?"),),
    "unknown-key": (
        E("colour", 7, "unknown key 'colour'", "remove it; allowed keys here: apiVersion, name"),
    ),
    "misspelled-top-level-key": (
        E("onwer", 4, "unknown key 'onwer'", "did you mean 'owner'?"),
        E("owner", 2, "required field is missing", "add 'owner' under the top level"),
    ),
    "misspelled-nested-key": (
        E("train.entrypoint", 9, "unknown key 'entrypoint'", "did you mean 'entry_point'?"),
        E("train.entry_point", 8, "required field is missing", "add 'entry_point' under train"),
    ),
    "misspelled-threshold-key": (
        E("gate.metrics.accuracy.mn", 25, "unknown key 'mn'", "did you mean 'min'?"),
    ),
    "duplicate-keys": (E("name", 4, "key 'name' appears twice (first on line 3)", "merge the two entries"),),
    # values
    "bad-cron": (E("schedules.retrain", 24, "'every monday' is not a valid cron expression", "'0 3 * * 1'"),),
    "cron-six-fields": (
        E("schedules.retrain", 24, "'0 0 3 * * 1' has 6 fields, not a five-field cron", "use five fields"),
    ),
    "data-seed-negative": (
        E("data.seed", 14, "-1: input should be greater than or equal to 0", "use a value of at least 0"),
    ),
    "shadow-with-candidate-percent": (
        E(
            "traffic.candidate_percent",
            25,
            "mode 'shadow' serves no candidate answers, so candidate_percent 20 would have no effect",
            "remove candidate_percent, or use mode 'canary'",
        ),
    ),
    "name-uppercase": (E("name", 3, "'IrisModel' is not DNS-safe", "(e.g. 'irismodel')"),),
    "name-underscore": (E("name", 3, "'iris_model' is not DNS-safe", "(e.g. 'iris-model')"),),
    "name-too-long": (E("name", 3, "is 44 characters", "use at most 40"),),
    "name-starts-with-digit": (E("name", 3, "'3d-iris' is not DNS-safe", "(e.g. 'model-3d-iris')"),),
    "accuracy-above-one": (E("gate.metrics.accuracy.min", 25, "1.5 is outside 0..1", "write e.g. 0.9"),),
    "threshold-min-above-max": (E("gate.metrics.accuracy.min", 25, "min 0.9 is above max 0.5", "swap them"),),
    "threshold-without-bounds": (E("gate.metrics.accuracy", 25, "needs 'min' or 'max'", "'{min: 0.8}'"),),
    "threshold-as-number": (
        E("gate.metrics.accuracy", 25, "a bare number", "write '{min: 0.9}' or '{max: 0.9}'"),
    ),
    "metric-wrong-for-task": (
        E("gate.metrics.rmse", 25, "'rmse' is not a classification metric", "use one of accuracy, f1_macro"),
    ),
    "holdout-fraction-out-of-range": (
        E("data.holdout_fraction", 14, "1.5: input should be less than 1", "use a value below 1"),
    ),
    "data-sql-without-query": (
        E("data.query", 11, "a sql: source needs the query", "write e.g. query: SELECT"),
    ),
    "data-unknown-scheme": (
        E(
            "data.source",
            12,
            "unknown scheme 'ftp'",
            "use 'sklearn:<dataset>', 'csv:<path>', 'parquet:<path>' (a file inside the model directory), "
            "'sql:<connection id>' or 's3://bucket/key'",
        ),
    ),
    "data-unknown-sklearn-dataset": (
        E("data.source", 12, "unknown scikit-learn dataset 'irs'", "did you mean 'sklearn:iris'?"),
    ),
    "canary-zero-percent": (
        E(
            "traffic.candidate_percent",
            25,
            "candidate_percent 0 is not a canary",
            "use 1..99, or mode 'shadow'",
        ),
    ),
    "canary-full-percent": (
        E("traffic.candidate_percent", 25, "candidate_percent 100 is not a canary", "use 1..99"),
    ),
    "latency-ceiling-not-positive": (
        E("gate.latency.p99_ms", 25, "0 is not a latency ceiling in milliseconds", "give a positive number"),
    ),
    "latency-median-above-p99": (
        E("gate.latency.p50_ms", 25, "p50_ms 500 is above p99_ms 200", "lower p50_ms or raise p99_ms"),
    ),
    "latency-ceiling-above-timeout": (
        E(
            "gate.latency.p99_ms",
            25,
            "5000 ms is above serving.timeout_seconds (2 s), so the gateway answers such requests 504",
            "lower gate.latency.p99_ms or raise serving.timeout_seconds",
        ),
    ),
    "latency-misspelled-key": (E("gate.latency.p99", 25, "unknown key 'p99'", "did you mean 'p99_ms'?"),),
    "champion-slowdown-below-one": (
        E("gate.latency.champion_slowdown", 25, "0.8 is not a slowdown factor", "above 1, e.g. 2, or null"),
    ),
    "serving-timeout-zero": (
        E("serving.timeout_seconds", 24, "0 is not a timeout in seconds", "give a positive number, e.g. 30"),
    ),
    # request logging (logging:)
    "logging-sample-rate-above-one": (
        E("logging.sample_rate", 24, "1.5 is not a share of requests", "write a number from 0 to 1"),
    ),
    "logging-exclude-not-an-input": (
        E(
            "logging.exclude.1",
            24,
            "'customer_ssn' is not an input of this model",
            "name one of schema.inputs",
        ),
    ),
    "logging-retention-zero": (
        E(
            "logging.retention_days",
            24,
            "0 is not a number of days to keep raw request logs",
            "use 1 to 3650",
        ),
    ),
    # inference graphs (serving.graph): shape checked by the spec, node classes by parsing the directory
    "graph-transformer-node": (
        E("serving.graph.type", 26, "a TRANSFORMER node 'scaler' names no class", "def transform_input(self"),
    ),
    "graph-duplicate-node-names": (
        E("serving.graph.children.1.name", 30, "graph node name 'a' is also the name of", "its own name"),
    ),
    "graph-cycle-alias": (  # children are nested: a node can only be its own child through an alias
        E("", 2, "expands to more than 10000 values through YAML aliases", "write the values out"),
    ),
    "graph-router-one-child": (
        E("serving.graph.children", 28, "ROUTER 'pick' picks one of its children but has 1 child", "two"),
    ),
    "graph-combiner-one-child": (
        E("serving.graph.children", 28, "COMBINER 'vote' aggregates its children's answers but has 1", "two"),
    ),
    "graph-model-two-children": (
        E("serving.graph.children", 26, "MODEL 'a' has 2 children", "put a COMBINER or ROUTER over them"),
    ),
    "graph-node-class-missing": (
        E(
            "serving.graph.class",
            27,
            "'nodes.py' has no top-level class 'Mean'; it defines Average",
            "define",
        ),
    ),
    "graph-node-module-missing": (
        E("serving.graph.class", 27, "module 'prep' not found", "create prep.py in the model directory"),
    ),
    "graph-node-class-lacks-method": (
        E(
            "serving.graph.children.0.class",
            31,
            "class 'Scale' in nodes.py has no aggregate method",
            "add 'def aggregate(self, Xs, features_names=None)'",
        ),
    ),
    "graph-node-requirements-missing": (
        E("serving.graph.requirements", 28, "'prep-requirements.txt' does not exist", "create it"),
    ),
    "alert-unknown-indicator": (
        E("alerts.0.indicator", 27, "'feature_drfit' is not an indicator", "did you mean 'feature_drift'?"),
    ),
    "alert-unknown-feature": (
        E(
            "alerts.0.feature",
            27,
            "'petal_lenght' is not an input of this model",
            "did you mean 'petal_length_cm'?",
        ),
    ),
    "alert-cooldown-unparsable": (
        E("alerts.0.cooldown", 27, "'5 minutes' does not parse as a duration", "e.g. 30m, 2h or 1d"),
    ),
    "alert-old-op-form": (
        E("alerts.0.type", 27, "missing", "write e.g. 'type: threshold' with 'above: 0.5'"),
    ),
    "alert-rollback-not-critical": (
        E("alerts.0.actions", 27, "rollback is only taken on a critical rule", "set severity: critical"),
    ),
    "alert-unknown-type": (
        E("alerts.0.type", 27, "'treshold' is not a rule type", "use one of threshold, change"),
    ),
    "promotion-unknown-policy": (
        E("promotion.policy", 27, "'automatic' is not allowed", "did you mean 'auto'?"),
    ),
    # indicators (types and params from indicators.registry; features and custom functions checked)
    "indicator-unknown-type": (
        E(
            "indicators.0.type",
            24,
            "'drfit' is not an indicator type",
            "did you mean 'drift'? use one of drift,",
        ),
    ),
    "indicator-param-out-of-range": (
        E("indicators.0.params.p_value", 26, "1.5 is not a significance level", "between 0 and 1, e.g. 0.05"),
    ),
    "indicator-unknown-param": (
        E(
            "indicators.0.params.p_val",
            27,
            "unknown key 'p_val' for a drift indicator",
            "did you mean 'p_value'?",
        ),
    ),
    "indicator-unknown-feature": (
        E(
            "indicators.0.params.features.1",
            27,
            "'petal_lenght_cm' is not an input of this model",
            "did you mean 'petal_length_cm'?",
        ),
    ),
    "indicator-custom-missing-function": (
        E(
            "indicators.0.params.function",
            26,
            "indicators.py has no top-level function 'share_of_outliers'; it defines share_of_outlier",
            "define 'def share_of_outliers(inputs)",
        ),
    ),
    "indicator-custom-missing-file": (
        E(
            "indicators.0.params.function",
            26,
            "'indicators.py' does not exist",
            "create indicators.py in the",
        ),
    ),
    "target-among-inputs": (
        E("data.target", 13, "'species' is also a model input", "remove it from schema"),
    ),
    "duplicate-input-names": (
        E("schema.inputs.2.name", 19, "input 'sepal_length_cm' is listed twice (also item 0)", "unique name"),
    ),
    # paths
    "path-traversal-golden": (
        E("gate.golden", 24, "'../golden.csv' leaves the model directory", "keep files"),
    ),
    "path-traversal-tests": (E("tests", 20, "'../tests' leaves the model directory", "keep files inside"),),
    "path-traversal-requirements": (
        E("requirements", 20, "'../../requirements.txt' leaves the model directory", "keep files inside"),
    ),
    "path-traversal-data": (E("data.source", 12, "'../iris.csv' leaves the model directory", "keep files"),),
    "path-absolute": (E("gate.golden", 24, "'/etc/passwd' is absolute", "relative to the model directory"),),
    "symlink-escape": (
        E("gate.golden", 24, "'golden.csv' resolves outside the model directory (a symlink", "copy the file"),
    ),
    "missing-golden-file": (
        E("gate.golden", 24, "'golden.csv' does not exist", "create it or correct the path"),
    ),
    "missing-requirements-file": (
        E("requirements", 20, "'requirements-serving.txt' does not exist", "create it or correct the path"),
    ),
    "requirements-pip-option": (
        E("requirements", 2, "'-r base.txt' is a pip option", "list the packages", file="requirements.txt"),
        E("requirements", 4, "is not a valid requirement", "'package @ URL'", file="requirements.txt"),
    ),
    "missing-tests-dir": (E("tests", 20, "'tests' does not exist", "create it or correct the path"),),
    "missing-data-file": (E("data.source", 12, "'data/train.csv' does not exist", "create it"),),
    "golden-missing-columns": (
        E(
            "gate.golden",
            24,
            "lacks columns ['petal_length_cm', 'expected']",
            "sepal_length_cm,petal_length_cm",
        ),
    ),
    "golden-without-rows": (E("gate.golden", 24, "has a header but no rows", "add rows of inputs"),),
    "duplicate-model-names": (  # both directories: neither may be pushed while the other claims 'twin'
        E("name", 3, "model name 'twin' is also claimed by", "or remove the copy", file="first/model.yaml"),
        E("name", 3, "model name 'twin' is also claimed by", "or remove the copy", file="second/model.yaml"),
    ),
    # entry points
    "entry-point-not-a-reference": (
        E("train.entry_point", 9, "'train.py' is not 'module:attribute'", "write e.g. 'train:train'"),
    ),
    "entry-point-missing-module": (E("train.entry_point", 9, "module 'train' not found", "create train.py"),),
    "entry-point-missing-function": (
        E("train.entry_point", 9, "no top-level function 'train'; it defines fit", "define function 'train'"),
    ),
    "entry-point-syntax-error": (
        E("train.entry_point", 1, "syntax error: expected ':'", "fix the Python syntax", file="train.py"),
    ),
    "predict-class-without-predict": (
        E("predict.class", 21, "class 'Model' in predict.py has no predict method", "def predict(self, X"),
    ),
    "predict-class-is-a-function": (
        E("predict.class", 21, "'Model' in predict.py is a function, not a class", "make 'Model' a class"),
    ),
    "predict-builtin-unknown-class": (
        E("predict.class", 21, "'pushbutton_sklearn' is pushbutton's built-in serving", "leave predict out"),
    ),
    # the data source (read cheaply: sklearn's column table, a CSV file's first rows)
    "input-not-in-data": (
        E("schema.inputs.1.name", 18, "column 'petal_lenght_cm' is not in data source", "did you mean"),
    ),
    "target-not-in-data": (
        E("data.target", 13, "column 'specis' is not in data source 'csv:data/train.csv'", "'species'?"),
    ),
    "target-is-a-feature-column": (
        E("data.target", 13, "'sepal_width_cm' is a feature column of sklearn:iris", "e.g. 'species'"),
    ),
    "input-type-contradicts-data": (
        E("schema.inputs.1.type", 18, "not numbers ('red' on line 2)", "type: string, nullable"),
    ),
    "input-missing-values-not-nullable": (
        E("schema.inputs.1.type", 18, "missing values (line 4), but the input is", "add `nullable: true`"),
    ),
}


def _issues(case: str) -> list[SpecIssue]:
    case_dir = SPECS / case
    if case in ROOTS:
        return [issue for found in discover(case_dir) if found.error for issue in found.error.issues]
    with pytest.raises(SpecError) as caught:
        load_model_dir(case_dir)
    return caught.value.issues


@pytest.mark.parametrize("case", sorted(CATALOG))
def test_case_names_file_line_field_and_fix(case: str) -> None:
    issues = _issues(case)
    expected = CATALOG[case]
    assert len(issues) == len(expected), "\n".join(map(str, issues))
    for want in expected:
        same_field = [i for i in issues if i.field == want.field]  # several: told apart by line or file
        issue = next(
            (
                i
                for i in same_field
                if len(same_field) == 1 or (i.line == want.line and i.file == str(SPECS / case / want.file))
            ),
            None,
        )
        assert issue is not None, f"no issue on field {want.field!r}: {[str(i) for i in issues]}"
        file = str(SPECS / case / want.file)
        text = str(issue)
        assert issue.file == file
        assert issue.line == want.line, text
        assert want.message in issue.message, text
        assert want.fix in issue.fix, text
        where = f"{file}:{want.line}:" if want.line else f"{file}:"
        assert text.startswith(where), text
        assert f" {want.field}: " in text or not want.field, text
        assert text.endswith(f"(fix: {issue.fix})"), text


def test_every_case_directory_has_a_row() -> None:
    cases = {p.name for p in SPECS.iterdir() if p.is_dir()}
    assert cases - {GOOD} == set(CATALOG), "add a CATALOG row for each new case (and remove stale rows)"


def test_the_base_of_the_catalog_is_valid() -> None:
    assert load_model_dir(SPECS / GOOD).name == GOOD


def test_one_broken_spec_never_hides_the_others() -> None:
    results = discover(SPECS)
    valid = {found.model_dir.relative_to(SPECS).as_posix() for found in results if found.spec}
    assert valid == {GOOD}
    assert len(results) == sum(1 for _ in SPECS.rglob("model.yaml"))
    assert all(found.error.issues for found in results if not found.spec)
