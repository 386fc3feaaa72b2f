"""Training data that changes between runs: a ``sql:<connection>`` query windowed by the run's data
interval, or an ``s3://`` object — fetched by the retrain task (which holds the Connections) into a
Parquet file the training child reads, so the model's code never sees a secret. Then the checks every
retrain makes before it trains: enough rows, inputs not mostly missing, a target with more than one
class (classification) and no missing target, and (``check_balance``) class shares close to those of
the champion's reference — a clear failure, not a bad model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton.errors import PushbuttonError

if TYPE_CHECKING:
    import pandas as pd

    from pushbutton.spec.model import ModelSpec


class DataCheckFailed(PushbuttonError):
    """The fetched training data is empty, missing or unfit (rows, nulls, labels): nothing is trained."""


def is_remote(spec: ModelSpec) -> bool:
    from pushbutton.spec.model import OBJECT_STORAGE

    return spec.data.source.partition(":")[0] in ("sql", *OBJECT_STORAGE)


def fetch_sql(url: str, query: str, start: datetime | None, end: datetime | None, where: str) -> pd.DataFrame:
    """Run ``query`` through SQLAlchemy with ``:start``/``:end`` bound to the data window."""
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    params = {k: v for k, v in (("start", start), ("end", end)) if f":{k}" in query}
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(query), conn, params=params)
    except sa.exc.SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]
        raise DataCheckFailed(
            f"{where}: the query failed: {first} (fix: check data.query and the Connection)"
        ) from exc
    finally:
        engine.dispose()


def read_object(opened: Any, source: str) -> pd.DataFrame:
    """A CSV or Parquet object (an open binary file, e.g. ``ObjectStoragePath.open('rb')``)."""
    import pandas as pd

    with opened as handle:
        return pd.read_parquet(handle) if source.endswith(".parquet") else pd.read_csv(handle)


@dataclass(frozen=True)
class Fetched:
    path: Path  # the Parquet file the training child reads
    rows: int
    window: str


def check(spec: ModelSpec, frame: pd.DataFrame, where: str) -> None:
    """Refuse data a model should not be trained on, naming what is wrong and the fix."""
    missing = [c for c in (*spec.feature_names, spec.data.target) if c not in frame.columns]
    if missing:
        raise DataCheckFailed(
            f"{where}: columns {', '.join(missing)} are missing (it has {', '.join(map(str, frame.columns)) or 'none'}) "
            "(fix: select them in the query/file, named as in schema.inputs and data.target)"
        )
    if len(frame) < spec.data.min_rows:
        raise DataCheckFailed(
            f"{where}: {len(frame)} training row(s), fewer than data.min_rows ({spec.data.min_rows}) "
            "(fix: widen the data window, check the source, or lower data.min_rows)"
        )
    for name in spec.feature_names:
        share = float(frame[name].isna().mean())
        if share > spec.data.max_null_share:
            raise DataCheckFailed(
                f"{where}: input {name} is missing in {share:.0%} of the rows, above data.max_null_share "
                f"({spec.data.max_null_share:.0%}) (fix: repair the source, or raise data.max_null_share)"
            )
    target = frame[spec.data.target]
    if target.isna().any():
        raise DataCheckFailed(
            f"{where}: the target {spec.data.target} is missing in {int(target.isna().sum())} row(s) "
            "(fix: filter unlabelled rows out in the query)"
        )
    if spec.task == "classification" and target.nunique() < 2:
        raise DataCheckFailed(
            f"{where}: the target {spec.data.target} has a single class ({target.iloc[0]!r}): a classifier "
            "cannot learn from it (fix: widen the data window or check the labels)"
        )


def check_balance(
    spec: ModelSpec, frame: pd.DataFrame, reference_labels: pd.Series, of: str, where: str
) -> None:
    """Refuse classification data whose class shares moved more than ``data.max_label_shift`` from the
    reference's (``reference_labels``: the holdout labels of ``of``, e.g. "the reference of v3"): a
    class gone from the window, or one suddenly dominating, is a broken label feed or a wrong window
    far more often than a real change, and a model trained on it would pass a gate scored on the
    same data."""
    if spec.task != "classification" or spec.data.max_label_shift >= 1.0 or reference_labels.empty:
        return
    new = frame[spec.data.target].astype(str).value_counts(normalize=True)
    old = reference_labels.astype(str).value_counts(normalize=True)
    shifts = sorted(
        ((abs(float(new.get(c, 0.0)) - float(old.get(c, 0.0))), c) for c in set(new.index) | set(old.index)),
        reverse=True,
    )
    shift, worst = shifts[0]
    if shift > spec.data.max_label_shift:
        raise DataCheckFailed(
            f"{where}: class {worst!r} of {spec.data.target} is {float(new.get(worst, 0.0)):.0%} of the rows, "
            f"{float(old.get(worst, 0.0)):.0%} in {of}: a shift of {shift:.0%}, above data.max_label_shift "
            f"({spec.data.max_label_shift:.0%}) (fix: check the labels and the data window; if the change is "
            "real, raise data.max_label_shift, 1 turns the check off)"
        )


def save(frame: pd.DataFrame, directory: Path, window: str) -> Fetched:
    path = directory / "training.parquet"
    frame.to_parquet(path, index=False)
    return Fetched(path, len(frame), window)
