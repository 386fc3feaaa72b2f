"""Checks a request against the model's input schema before the model's predict class sees it.

Runs inside the serving environment (no pushbutton there): the microservice starts
``pushbutton_guard.Guarded`` as its Seldon interface with the parameters ``model_uri``,
``model_class`` (``module:Class`` from the model directory, the working directory) and ``inputs``
(JSON ``[[name, type], ...]`` from ``model.yaml``). A request whose rows do not fit the schema
gets HTTP 400 (``MICROSERVICE_BAD_DATA``) naming the feature and the fix instead of the model's
own exception as a 500. Everything else (``tags``, ``metrics``, ``class_names``, ``load``,
``predict_raw``, ...) is the model class's own.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import numpy as np
from seldon_core.flask_utils import SeldonMicroserviceException

NUMERIC = {"double", "float", "long", "integer"}
EXAMPLE = '{"data": {"names": [...], "ndarray": [[...], ...]}}'


def _bad(message: str) -> SeldonMicroserviceException:
    return SeldonMicroserviceException(message, status_code=400, reason="MICROSERVICE_BAD_DATA")


def _not_a_number(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, np.number, np.bool_)):
        return False  # None is a missing value: the model's own pipeline decides about it
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return True
        return False
    return True


def check_rows(X: object, names: list[str] | None, inputs: list[tuple[str, str]]) -> None:
    """Raise a 400 ``SeldonMicroserviceException`` if ``X`` (with ``names``) does not fit ``inputs``."""
    if not inputs or not isinstance(X, np.ndarray):
        return  # jsonData/strData/binData payloads are the model's own business
    expected = [name for name, _ in inputs]
    if X.ndim != 2:
        raise _bad(
            f"data has shape {list(X.shape)}, not one row per instance; send a 2-D array whose rows "
            f"hold the {len(expected)} features {expected}, e.g. {EXAMPLE}"
        )
    names = list(names or [])
    if names:
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise _bad(f"data.names lists {twice} more than once; name each feature once")
        unknown = [n for n in names if n not in expected]
        missing = [n for n in expected if n not in names]
        if unknown or missing:
            parts = [
                f"unknown feature(s) {unknown}" if unknown else "",
                f"missing {missing}" if missing else "",
            ]
            raise _bad(
                f"data.names has {' and '.join(p for p in parts if p)}; the model takes {expected} "
                "(model.yaml schema.inputs)"
            )
        if X.shape[1] != len(names):
            raise _bad(
                f"rows have {X.shape[1]} values but data.names has {len(names)}; send one value per name"
            )
        order = names
    else:
        if X.shape[1] != len(expected):
            raise _bad(
                f"rows have {X.shape[1]} values, the model takes {len(expected)}: {expected}; send the "
                "values in this order, or name them in data.names"
            )
        order = expected
    if X.dtype.kind in "biuf":
        return
    types = dict(inputs)
    for column, name in enumerate(order):
        if types[name] not in NUMERIC:
            continue
        for row, value in enumerate(X[:, column]):
            if _not_a_number(value):
                raise _bad(f"feature '{name}' ({types[name]}) in row {row} is {value!r}; send a number")


class Guarded:
    """The model's predict class behind a schema check (Seldon python wrapper contract)."""

    def __init__(self, model_uri: str, model_class: str, inputs: str = "[]", **parameters: object):
        module_name, _, class_name = model_class.replace(":", ".").rpartition(".")
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())  # the model directory, as seldon-core does for its interface
        cls = getattr(importlib.import_module(module_name), class_name)
        self._model = cls(model_uri=model_uri, **parameters)
        self._inputs = [(str(name), str(kind)) for name, kind in json.loads(inputs)]

    def predict(self, X, features_names=None, **kwargs):
        check_rows(X, features_names, self._inputs)
        try:  # the same call seldon-core makes when the class is its interface
            return self._model.predict(X, features_names, **kwargs)
        except TypeError:
            if not kwargs:
                raise
            return self._model.predict(X, features_names)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_model", "_inputs"):
            raise AttributeError(name)
        return getattr(self._model, name)
