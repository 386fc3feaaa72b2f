"""``pushbutton init NAME --from-data PATH|sklearn:NAME``: a complete model directory written from a
data set: ``model.yaml`` with every input column and its type (nullable where values are missing),
the target, the data source, the task (inferred unless given), a gate that a useful model passes and
a constant answer does not; ``train.py`` (``model_templates/_from_data``) and ``requirements.txt``. No
``predict.py``: pushbutton's built-in class serves the logged model.

A CSV or parquet file is copied into the model directory (``data/<file name>``): ``data.source`` must
stay inside it, so that the registered code holds everything a retrain needs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pushbutton.errors import NotFound, PushbuttonError
from pushbutton.templates import TEMPLATES_DIR, new_model_target, write_model

if TYPE_CHECKING:
    import pandas as pd

FILES_DIR = TEMPLATES_DIR / "_from_data"
ESTIMATORS = {  # task -> (class imported by the written train.py, its construction)
    "classification": (
        "LogisticRegression",
        'LogisticRegression(C=float(params.get("C", 1.0)), max_iter=1000)',
    ),
    "regression": ("Ridge", 'Ridge(alpha=float(params.get("alpha", 1.0)))'),
}
MAX_CLASSES = 20  # a whole-number target with at most this many values is taken for labels
WIDTH = 100  # of the wrapped `inputs:` list
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}  # YAML 1.1 reads them as values


@dataclass(frozen=True)
class Input:
    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class Inferred:
    """What the data says about the model to write."""

    source: str  # data.source as written (a file: data/<name> inside the model directory)
    target: str
    task: str
    task_reason: str
    inputs: list[Input]
    metric: str
    bound: float
    bound_reason: str
    skipped: list[str] = field(default_factory=list)  # columns left out, with why
    data_file: Path | None = None  # the file to copy into the model directory


def init_from_data(
    name: str,
    data: str,
    parent: Path,
    *,
    target: str | None = None,
    task: str | None = None,
    owner: str | None = None,
    models_dir: Path | None = None,
) -> tuple[Path, Inferred]:
    """Write ``parent/name`` from ``data`` (``sklearn:<name>``, or a ``.csv``/``.parquet`` path);
    all or nothing. ``target`` is required for a file; ``task`` overrides the inferred one."""
    destination = new_model_target(name, parent, models_dir)
    inferred = infer(data, target=target, task=task)
    if owner is None:
        from pushbutton.training import pusher

        owner = pusher(Path(parent) if Path(parent).is_dir() else Path.cwd())

    def fill(staging: Path) -> None:
        if inferred.data_file is not None:
            (staging / "data").mkdir()
            shutil.copyfile(inferred.data_file, staging / inferred.source.partition(":")[2])
        (staging / "model.yaml").write_text(render_spec(name, owner, data, inferred), encoding="utf-8")
        template = (FILES_DIR / "train.py.tmpl").read_text(encoding="utf-8")
        estimator_class, estimator = ESTIMATORS[inferred.task]
        train = string.Template(template).substitute(
            name=name, estimator_class=estimator_class, estimator=estimator
        )
        (staging / "train.py").write_text(train, encoding="utf-8")
        import importlib.metadata

        pin = f"scikit-learn=={importlib.metadata.version('scikit-learn')}\n"
        (staging / "requirements.txt").write_text(pin, encoding="utf-8")

    return write_model(destination, fill), inferred


def infer(data: str, *, target: str | None = None, task: str | None = None) -> Inferred:
    """Read ``data`` whole and infer inputs, target, task and gate from it."""
    frame, source, data_file, target = _load(data, target)
    if target not in frame.columns:
        import difflib

        close = difflib.get_close_matches(target, [str(c) for c in frame.columns], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise NotFound(
            f"--target '{target}' is not a column of {data} (it has {', '.join(map(str, frame.columns))}); "
            f"{hint}pass --target with one of them"
        )
    labels = frame[target]
    if labels.isna().any():
        raise PushbuttonError(
            f"target column '{target}' of {data} has {int(labels.isna().sum())} missing values; no model "
            "learns from rows without a target: drop those rows first (or pick another --target)"
        )
    task, task_reason = _task(labels, task, data)
    inputs, skipped = _inputs(frame.drop(columns=[target]))
    if not inputs:
        raise PushbuttonError(f"{data} has no column besides '{target}' that can be an input; add some")
    metric, bound, bound_reason = _gate(labels, task)
    return Inferred(
        source, target, task, task_reason, inputs, metric, bound, bound_reason, skipped, data_file
    )


def _load(data: str, target: str | None) -> tuple[pd.DataFrame, str, Path | None, str]:
    """The whole data set, the ``data.source`` to write, the file to copy and the target column."""
    import pandas as pd

    scheme, _, rest = data.partition(":")
    if scheme == "sklearn":
        from pushbutton.data.catalog import SKLEARN_DATASETS, snake_case

        if rest not in SKLEARN_DATASETS:
            known = ", ".join(f"sklearn:{n}" for n in SKLEARN_DATASETS)
            raise NotFound(
                f"unknown scikit-learn data set '{rest}'; use one of {known}, or a CSV/parquet file"
            )
        import sklearn.datasets

        dataset = SKLEARN_DATASETS[rest]
        target = target or dataset.target
        if target in dataset.columns:
            raise PushbuttonError(
                f"--target '{target}' is a feature column of {data}; name the target something else "
                f"(default '{dataset.target}')"
            )
        frame = getattr(sklearn.datasets, dataset.loader)(as_frame=True).frame.rename(columns=snake_case)
        return frame.rename(columns={"target": target}), data, None, target
    path = Path(data)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("csv", "parquet"):
        raise PushbuttonError(
            f"--from-data {data}: not a .csv or .parquet file nor sklearn:<data set>; pass one of those"
        )
    if not path.is_file():
        raise NotFound(
            f"--from-data {data} does not exist; pass a CSV or parquet file (or sklearn:<data set>)"
        )
    if not target:
        raise PushbuttonError(f"--from-data {data}: say which column the model predicts with --target COLUMN")
    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise PushbuttonError(f"cannot read {data} as {kind}: {exc}; check the file") from exc
    if frame.empty:
        raise PushbuttonError(f"{data} has no rows; a model needs data to learn from")
    return frame, f"{kind}:data/{path.name}", path, target


def _task(labels: pd.Series, given: str | None, data: str) -> tuple[str, str]:
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    distinct = labels.nunique()
    whole = numeric and bool((labels % 1 == 0).all())
    if given:
        if given == "regression" and not numeric:
            raise PushbuttonError(
                f"--task regression needs a numeric target, but '{labels.name}' of {data} holds "
                f"{labels.iloc[0]!r}; use --task classification"
            )
        reason = "as --task says"
    elif not numeric:
        given, reason = "classification", f"the target holds {distinct} labels"
    elif whole and distinct <= MAX_CLASSES:
        given, reason = "classification", f"the target holds {distinct} whole numbers"
    else:
        kind = "whole numbers" if whole else "numbers"
        given, reason = "regression", f"the target holds {distinct} distinct {kind}"
    if given == "classification" and distinct < 2:
        raise PushbuttonError(
            f"target '{labels.name}' of {data} holds one class only; a classifier needs two"
        )
    return given, reason


def _inputs(frame: pd.DataFrame) -> tuple[list[Input], list[str]]:
    import pandas as pd

    inputs, skipped = [], []
    for name, column in frame.items():
        name = str(name)
        if name.startswith("Unnamed: "):
            skipped.append(f"'{name}' (a column without a header, e.g. a saved index)")
            continue
        if pd.api.types.is_bool_dtype(column):
            kind = "boolean"
        elif pd.api.types.is_integer_dtype(column):
            kind = "long"
        elif pd.api.types.is_float_dtype(column):
            kind = "double"
        elif pd.api.types.is_object_dtype(column) or isinstance(
            column.dtype, (pd.CategoricalDtype, pd.StringDtype)
        ):
            kind = "string"
        else:
            skipped.append(f"'{name}' ({column.dtype}: no input type holds it; convert it to numbers)")
            continue
        inputs.append(Input(name, kind, bool(column.isna().any())))
    return inputs, skipped


def _gate(labels: pd.Series, task: str) -> tuple[str, float, str]:
    """A floor a useful model clears and a constant answer does not."""
    if task == "regression":
        return "r2", 0.0, "always answering the mean scores 0"
    share = float(labels.value_counts(normalize=True).max())
    bound = min(math.ceil(share * 100) / 100, 0.99)
    return "accuracy", bound, f"always answering the most frequent class scores {share:.3f}"


def render_spec(name: str, owner: str, data: str, inferred: Inferred) -> str:
    """The ``model.yaml`` text: short (a bare name for a double input that is never missing)."""
    items = [_item(i) for i in inferred.inputs]
    bare = any(i.type == "double" and not i.nullable for i in inferred.inputs)
    task = "Classifies" if inferred.task == "classification" else "Predicts"
    lines = [
        f"# Written by `pushbutton init {name} --from-data {data}`. No predict class: pushbutton's",
        "# built-in one serves the logged model (labels or values; class probabilities in meta.tags).",
        "apiVersion: pushbutton/v1",
        f"name: {name}",
        f"owner: {_scalar(owner)}",
        f"description: {json.dumps(f'{task} {inferred.target} from {data}.')}",
        "flavor: sklearn",
        f"task: {inferred.task}  # {inferred.task_reason}",
        "train:",
        "  entry_point: train:train  # train(X, y, params) -> fitted estimator",
        "data:",
        f"  source: {_scalar(inferred.source, colon=True)}",
        f"  target: {_scalar(inferred.target)}",
        "schema:" + ("  # a bare name is a double input that is never missing" if bare else ""),
        *_wrapped("  inputs: [", items, "]"),
        "gate:",
        "  metrics:",
        f"    {inferred.metric}: {{min: {inferred.bound:g}}}  # {inferred.bound_reason}",
    ]
    return "\n".join(lines) + "\n"


def _item(feature: Input) -> str:
    if feature.type == "double" and not feature.nullable:
        return _scalar(feature.name, flow=True)
    extra = f", type: {feature.type}" if feature.type != "double" else ""
    extra += ", nullable: true" if feature.nullable else ""
    return f"{{name: {_scalar(feature.name, flow=True)}{extra}}}"


def _wrapped(opening: str, items: list[str], closing: str) -> list[str]:
    """``opening item, item, ...closing`` in lines of at most ``WIDTH`` characters (a longer item
    gets a line of its own)."""
    lines, current, empty = [], opening, True
    for index, item in enumerate(items):
        text = item + (", " if index + 1 < len(items) else closing)
        if not empty and len(current) + len(text.rstrip()) > WIDTH:
            lines.append(current.rstrip())
            current = "    "
        current, empty = current + text, False
    lines.append(current.rstrip())
    return lines


def _scalar(text: str, *, flow: bool = False, colon: bool = False) -> str:
    """``text`` as a YAML scalar: plain where YAML reads it back as the same string, else quoted."""
    plain = _PLAIN.match(text.replace(":", "_") if colon and not flow else text)
    if plain and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def describe(inferred: Inferred) -> str:
    """One line for the CLI: what was inferred, and what was left out."""
    kinds: dict[str, int] = {}
    for feature in inferred.inputs:
        kind = feature.type + (" nullable" if feature.nullable else "")
        kinds[kind] = kinds.get(kind, 0) + 1
    text = (
        f"{len(inferred.inputs)} inputs ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
        f"target '{inferred.target}', task {inferred.task} ({inferred.task_reason}; override with --task), "
        f"gate {inferred.metric} >= {inferred.bound:g}"
    )
    if inferred.skipped:
        text += "; left out: " + ", ".join(inferred.skipped)
    return text
