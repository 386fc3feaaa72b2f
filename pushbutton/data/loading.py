"""Training data: load a spec's data source, typed as the spec declares, and cut the deterministic
holdout. pandas and scikit-learn are imported inside the functions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pushbutton.data.catalog import SKLEARN_DATASETS, snake_case
from pushbutton.errors import SpecError, SpecIssue

if TYPE_CHECKING:
    import pandas as pd

    from pushbutton.spec.model import ModelSpec


@dataclass(frozen=True)
class Split:
    """Features/target for training and for the holdout every gate and champion check uses."""

    x_train: pd.DataFrame
    y_train: pd.Series
    x_holdout: pd.DataFrame
    y_holdout: pd.Series
    fingerprint: str


def load_frame(spec: ModelSpec, model_dir: Path) -> pd.DataFrame:
    """The whole data set as one frame with the spec's input columns and target."""
    import pandas as pd

    scheme, _, rest = spec.data.source.partition(":")
    if scheme == "sklearn":
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, SKLEARN_DATASETS[rest].loader)(as_frame=True)
        frame = bunch.frame.rename(columns=snake_case).rename(columns={"target": spec.data.target})
    elif scheme == "csv":
        try:
            frame = pd.read_csv(model_dir / rest)
        except pd.errors.EmptyDataError:
            raise _data_issue(spec, model_dir, f"data file '{rest}' is empty (no header, no rows)") from None
    else:
        frame = pd.read_parquet(model_dir / rest)
    issues = _missing_columns(spec, model_dir, [str(c) for c in frame.columns])
    if issues:
        raise SpecError(issues)
    if frame.empty:
        raise _data_issue(spec, model_dir, f"data file '{rest}' has no rows (only a header)")
    return _typed(spec, model_dir, frame[[*spec.feature_names, spec.data.target]].copy())


# numpy dtypes of the numeric schema types (what MLflow's signature inference maps back to them)
_NUMERIC_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}


def _typed(spec: ModelSpec, model_dir: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric inputs cast to their ``schema.inputs`` type, so the logged signature matches the spec
    (a CSV column of whole numbers would otherwise be logged as ``long`` for a ``double`` input)."""
    import pandas as pd

    for index, feature in enumerate(spec.schema_.inputs):
        dtype = _NUMERIC_DTYPES.get(feature.type)
        column = frame[feature.name]
        if dtype is None or str(column.dtype) == dtype:
            continue
        problem = ""
        try:
            values = pd.to_numeric(column, errors="raise")
        except (ValueError, TypeError) as exc:
            problem = f"holds values that are not numbers ({exc})"
        else:
            if dtype.startswith("int") and values.isna().any():
                problem = "has missing values, which an integer input cannot hold"
            elif dtype.startswith("int") and (values % 1 != 0).any():
                problem = "has fractional values, which an integer input cannot hold"
            else:
                frame[feature.name] = values.astype(dtype)
        if problem:
            from pushbutton.spec.loader import compose, field_line

            file = model_dir / "model.yaml"
            field = f"schema.inputs.{index}.type"
            raise SpecError(
                [
                    SpecIssue(
                        str(file),
                        field,
                        f"column '{feature.name}' of '{spec.data.source}' {problem}, "
                        f"so it cannot be typed {feature.type}",
                        "fix the data, or declare the input's type as the data holds it (e.g. double)",
                        line=field_line(compose(file), field),
                    )
                ]
            )
    return frame


def _data_issue(spec: ModelSpec, model_dir: Path, problem: str, fix: str = "") -> SpecError:
    """A problem of the data ``data.source`` points at, reported on that field."""
    from pushbutton.spec.loader import compose, field_line

    file = model_dir / "model.yaml"
    fix = fix or "add rows of inputs and target under a header naming the columns"
    line = field_line(compose(file), "data.source")
    return SpecError([SpecIssue(str(file), "data.source", problem, fix, line=line)])


def _missing_columns(spec: ModelSpec, model_dir: Path, columns: list[str]) -> list[SpecIssue]:
    """One issue per input or target the data source lacks (as ``validate`` reports it)."""
    from pushbutton.data.checks import missing_columns

    return missing_columns(spec, str(model_dir / "model.yaml"), columns)


def split(spec: ModelSpec, model_dir: Path) -> Split:
    """Deterministic train/holdout split (same seed and data => same rows), with a data fingerprint."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    frame = load_frame(spec, model_dir)
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values.tobytes()).hexdigest()
    stratify = frame[spec.data.target] if spec.task == "classification" else None
    try:
        train, holdout = train_test_split(
            frame, test_size=spec.data.holdout_fraction, random_state=spec.data.seed, stratify=stratify
        )
    except ValueError as exc:  # too few rows for the holdout, or a class too rare to stratify
        raise _data_issue(
            spec,
            model_dir,
            f"cannot cut a {spec.data.holdout_fraction:g} holdout from '{spec.data.source}' "
            f"({len(frame)} rows): {exc}",
            "add rows (every class needs at least 2) or change data.holdout_fraction",
        ) from exc
    target = spec.data.target
    return Split(
        x_train=train[spec.feature_names],
        y_train=train[target],
        x_holdout=holdout[spec.feature_names],
        y_holdout=holdout[target],
        fingerprint=digest[:16],
    )
