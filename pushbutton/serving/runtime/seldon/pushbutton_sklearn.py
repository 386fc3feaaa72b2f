"""pushbutton's built-in predict class for the sklearn flavor: serves the logged MLflow model as it is.

A spec without ``predict:`` is served by ``pushbutton_sklearn:SklearnModel`` (seldon-core's python
wrapper contract). It runs inside the serving environment (no pushbutton there; this directory is on
the microservice's ``PYTHONPATH``) and needs only what serving a model needs: mlflow, numpy, pandas
and the model's own requirements.

* ``predict(X, features_names)`` answers what the estimator's ``predict`` answers: one label per row
  (classification) or one value per row (regression), as seldon-core's ``data`` of the response,
  exactly as a hand-written class that calls ``model.predict`` would.
* Columns are matched by name: ``features_names`` (seldon-core passes the request's ``data.names``)
  may list the inputs in any order; without names the values are taken in the order of
  ``schema.inputs`` (the order the model was trained and logged with). The input types come from the
  logged signature, so a request mixing text and numbers (which numpy turns into text) still reaches
  the model with numbers where the model was trained on numbers.
* A classifier with ``predict_proba`` also offers class probabilities: seldon-core asks every model
  for ``tags()`` after ``predict`` and merges them into the response's ``meta.tags``; this class
  answers ``{"classes": [...], "probabilities": [[...], ...]}`` (one row per request row, one column
  per class, in the order of ``classes``) for the rows of the request that thread just predicted.
  ``predict_proba(X, features_names)`` gives the same numbers directly. Probabilities are computed
  only when asked for, so the gate's checks pay nothing for them.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

log = logging.getLogger(__name__)

NUMERIC_DTYPES = {"double", "float", "long", "integer"}
# text that stands for a missing value: pandas.read_csv's markers (so a request reads like the training
# file did); numpy spells a NaN among text values 'nan'
MISSING = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
           "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")  # fmt: skip


class SklearnModel:
    """The logged scikit-learn model behind seldon-core's ``predict``/``tags`` contract."""

    def __init__(self, model_uri: str, **parameters: object):
        import mlflow.sklearn

        self.model_uri = model_uri
        self.model = mlflow.sklearn.load_model(model_uri)
        self.types = _signature_types(model_uri)  # {name: MLflow type}, in the logged order
        self.features = list(self.types) or [str(c) for c in getattr(self.model, "feature_names_in_", ())]
        self.has_probabilities = callable(getattr(self.model, "predict_proba", None))
        self._last = threading.local()  # seldon-core calls predict, then tags, in one thread per request

    def predict(self, X, features_names=None, **kwargs):
        """One label (classification) or value (regression) per row of ``X``."""
        frame = self.frame(X, features_names)
        self._last.frame = frame if self.has_probabilities else None
        return np.asarray(self.model.predict(frame))

    def predict_proba(self, X, features_names=None):
        """Class probabilities, one row per row of ``X`` and one column per class of ``classes()``."""
        if not self.has_probabilities:
            raise AttributeError(
                f"{type(self.model).__name__} has no predict_proba; it gives no probabilities"
            )
        return np.asarray(self.model.predict_proba(self.frame(X, features_names)))

    def classes(self) -> list:
        return np.asarray(getattr(self.model, "classes_", [])).tolist()

    def tags(self) -> dict:
        """seldon-core's hook for ``meta.tags``: the probabilities of the rows this thread last predicted."""
        frame = getattr(self._last, "frame", None)
        self._last.frame = None
        if frame is None:
            return {}
        try:
            probabilities = np.asarray(self.model.predict_proba(frame))
        except Exception as exc:  # an extra must never fail the prediction it comes with
            log.warning("no class probabilities for this request: %s: %s", type(exc).__name__, exc)
            return {}
        return {"classes": self.classes(), "probabilities": probabilities.tolist()}

    def frame(self, X, features_names=None):
        """``X`` as a DataFrame of the model's inputs, in its order and with its types."""
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            frame = X
        else:
            rows = np.asarray(X)
            if rows.ndim != 2:
                raise ValueError(
                    f"expected rows of the features {self.features}, got an array of shape {rows.shape}"
                )
            names = (
                [str(n) for n in features_names]
                if features_names is not None and len(features_names)
                else None
            )
            if names is None:
                if self.features and rows.shape[1] != len(self.features):
                    raise ValueError(
                        f"rows have {rows.shape[1]} values, the model takes {len(self.features)}: {self.features}"
                    )
                names = self.features or None
            frame = pd.DataFrame(rows, columns=names)
        if self.features:
            unknown = [str(c) for c in frame.columns if c not in self.features]
            missing = [c for c in self.features if c not in frame.columns]
            if unknown or missing:
                raise ValueError(
                    f"the request's feature names have unknown {unknown} and lack {missing}; the model "
                    f"takes {self.features} (in any order)"
                )
            frame = frame[self.features]
        return self._typed(frame)

    def _typed(self, frame):
        """Columns that came as text or objects (a request mixing text and numbers) cast to the logged
        signature's types; numbers stay as they are (scikit-learn converts them itself)."""
        import pandas as pd

        loose = [name for name in self.types if frame[name].dtype.kind in "OSU"]
        if not loose:
            return frame
        frame = frame.copy()
        for name in loose:
            kind, column = self.types[name], frame[name]
            gap = column.isna() | column.isin(MISSING)
            if kind in NUMERIC_DTYPES:
                values = pd.to_numeric(column.where(~gap, np.nan), errors="coerce")
                bad = values.isna() & ~gap
                if bad.any():
                    raise ValueError(
                        f"feature '{name}' ({kind}) got {column[bad].iloc[0]!r}, which is not a number"
                    )
                frame[name] = values
            elif kind == "boolean":
                frame[name] = [
                    None if missing else _boolean(name, v) for v, missing in zip(column, gap, strict=True)
                ]
            else:
                frame[name] = column.where(~gap, np.nan)  # a gap as pandas reads one from a file: NaN
        return frame


def _boolean(name: str, value) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0"):
        return False
    raise ValueError(f"feature '{name}' (boolean) got {value!r}, which is not true or false")


def _signature_types(model_uri: str) -> dict[str, str]:
    """``{input name: MLflow type}`` of the logged signature, in order; empty without a signature."""
    from mlflow.models import Model

    try:
        signature = Model.load(model_uri).signature
    except Exception as exc:  # a model logged without MLmodel metadata still serves by position
        log.warning("cannot read the signature of %s: %s", model_uri, exc)
        return {}
    if signature is None or signature.inputs is None:
        return {}
    types = {}
    for spec in signature.inputs.inputs:
        name = getattr(spec, "name", None)
        if name is None:  # a tensor signature: no columns to match by name
            return {}
        types[str(name)] = str(getattr(spec.type, "name", spec.type))
    return types
