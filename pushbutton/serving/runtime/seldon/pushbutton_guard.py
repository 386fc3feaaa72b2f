"""Checks a request against the model's input schema before the model's predict class sees it.

Runs inside the serving environment (no pushbutton there): the microservice of a graph node that
receives the graph's request as it was sent starts ``pushbutton_guard.Guarded`` as its Seldon interface
with the parameters ``model_class`` (``module:Class`` from the model directory, the working directory),
``inputs`` (JSON ``[[name, type, nullable], ...]`` from ``model.yaml``), ``guard_method`` (the
seldon-core method that reads the request: ``predict`` for a MODEL, the default; ``transform_input``
for a TRANSFORMER; ``route`` for a ROUTER; ``transform_output`` for a childless OUTPUT_TRANSFORMER),
``model_uri`` (MODEL nodes only) and the node's own parameters. A request whose rows do not fit the
schema gets HTTP 400 (``MICROSERVICE_BAD_DATA``) naming the feature and the fix instead of the
class's own exception as a 500; so does a JSON payload seldon-core itself could not decode (``data``
that is not an object, ragged ``ndarray`` rows, a ``tensor`` whose ``values`` do not fill its
``shape``), which it would answer with a 500. Everything else (the other methods, ``tags``,
``metrics``, ``class_names``, ``feature_names``, ``load``, ...) is the class's own; a class with its own
``<guard_method>_raw`` gets raw requests unchecked, as with seldon-core alone.

Class probabilities (``guard_method`` ``predict`` with ``guard_probabilities`` true, the default: the
graph's answer is this MODEL's): a class that offers ``predict_proba(X, features_names=None)`` and no
``tags`` of its own answers, in ``meta.tags``, ``{"classes", "probabilities"}`` for the rows it just
predicted (as the built-in sklearn class does), so the request log keeps them beside the label for log
loss. Its classes come from ``classes()``, ``classes_`` or its ``model.classes_``; a failing
``predict_proba`` never fails the prediction (the tags are left out). A MODEL under a COMBINER
(``guard_probabilities`` false) adds none: the combiner merges its children's tags, so one member's
probabilities would pass for the ensemble's.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import math
import os
import sys
import threading

import numpy as np
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.user_model import SeldonNotImplementedError

log = logging.getLogger(__name__)
NUMERIC = {"double", "float", "long", "integer"}
EXAMPLE = '{"data": {"names": [...], "ndarray": [[...], ...]}}'
GUARDED_METHODS = ("predict", "transform_input", "route", "transform_output")
_OWN = ("_model", "_inputs", "_proba", "_last", "_method")


def _bad(message: str) -> SeldonMicroserviceException:
    return SeldonMicroserviceException(message, status_code=400, reason="MICROSERVICE_BAD_DATA")


def _problem(value: object, nullable: bool) -> str | None:
    """What is wrong with ``value`` for a numeric feature (None if nothing)."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None if nullable else "missing"
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, (int, float, np.number)):
        return None if math.isfinite(value) else "not finite"
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return "not a number"
        return _problem(number, nullable)
    return "not a number"


def _fix(problem: str) -> str:
    if problem == "missing":
        return "send a number, or declare the feature `nullable: true` in model.yaml schema.inputs"
    return "send a finite number" if problem == "not finite" else "send a number"


def _json_type(value: object) -> str:
    names = {type(None): "null", bool: "a boolean", str: "a string", list: "an array", dict: "an object"}
    return names.get(type(value), "a number")


def check_payload(request: object) -> None:
    """Raise a 400 ``SeldonMicroserviceException`` for a JSON ``data`` payload that seldon-core's own
    decoding would fail on with a 500; anything else is left to seldon-core (it answers 400 itself)."""
    if not isinstance(request, dict) or "data" not in request:
        return
    data = request["data"]
    if not isinstance(data, dict):
        raise _bad(f"data is {_json_type(data)}, not an object; send {EXAMPLE}")
    if "tensor" in data:
        tensor = data["tensor"]
        shape, values = (tensor.get("shape"), tensor.get("values")) if isinstance(tensor, dict) else (0, 0)
        if not isinstance(shape, list) or not isinstance(values, list):
            raise _bad(
                'data.tensor needs a list "shape" and a list "values", e.g. '
                '{"data": {"tensor": {"shape": [1, 4], "values": [5.1, 3.5, 1.4, 0.2]}}}'
            )
        try:
            np.empty(len(values), dtype=np.int8).reshape(shape)
        except (TypeError, ValueError) as exc:
            raise _bad(
                f"data.tensor has {len(values)} values, which do not fill shape {shape} ({exc}); send "
                "shape [rows, features] and rows * features values"
            ) from None
    elif isinstance(data.get("ndarray"), list):
        rows = data["ndarray"]
        try:
            np.asarray(rows)
        except ValueError:
            lists = [len(row) if isinstance(row, list) else None for row in rows]
            width = lists[0] if lists else None
            odd = next((i for i, n in enumerate(lists) if n != width), None)
            if odd is not None:

                def count(n: int | None) -> str:
                    return "a single value, not a list" if n is None else f"{n} value{'s' * (n != 1)}"

                raise _bad(
                    f"data.ndarray rows differ: row 0 has {count(width)}, row {odd} has {count(lists[odd])}; "
                    "send every row as a list with one value per feature"
                ) from None
            raise _bad(
                "data.ndarray holds lists where single values belong; send each row as a list of "
                "numbers or strings, one per feature"
            ) from None


def check_rows(X: object, names: list[str] | None, inputs: list[tuple]) -> None:
    """Raise a 400 ``SeldonMicroserviceException`` if ``X`` (with ``names``) does not fit ``inputs``
    (``(name, type)`` or ``(name, type, nullable)`` entries)."""
    if not inputs:
        return
    expected = [entry[0] for entry in inputs]
    if not isinstance(X, np.ndarray):
        raise _bad(
            f"this model takes rows of the features {expected}, not {type(X).__name__} data; "
            f"send them as data.ndarray or data.tensor, e.g. {EXAMPLE}"
        )
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
    if X.dtype.kind in "biu":
        return
    specs = {entry[0]: (entry[1], bool(entry[2]) if len(entry) > 2 else False) for entry in inputs}
    for column, name in enumerate(order):
        kind, nullable = specs[name]
        if kind not in NUMERIC:
            continue
        values = X[:, column]
        if X.dtype.kind == "f":  # the common case, vectorised: only non-finite values can be wrong
            suspicious = np.flatnonzero(~np.isfinite(values))
            values = values[suspicious] if len(suspicious) else ()
        else:
            suspicious = range(len(values))
        for row, value in zip(suspicious, values, strict=False):
            problem = _problem(value, nullable)
            if problem:
                shown = value.item() if isinstance(value, np.generic) else value  # nan, not np.float64(nan)
                raise _bad(
                    f"feature '{name}' ({kind}) in row {row} is {problem} ({shown!r}); {_fix(problem)}"
                )


class Guarded:
    """A graph entry node's class behind a schema check (Seldon python wrapper contract): the method
    ``guard_method`` checks its rows first; every other attribute is the class's own."""

    def __init__(
        self,
        model_uri: str | None = None,
        model_class: str = "",
        inputs: str = "[]",
        guard_method: str = "predict",
        guard_probabilities: bool = True,
        **parameters: object,
    ):
        if guard_method not in GUARDED_METHODS:
            raise ValueError(
                f"pushbutton_guard: guard_method '{guard_method}' is not one of {list(GUARDED_METHODS)}; "
                "re-render the deployment with this pushbutton version"
            )
        if not model_class:
            raise ValueError("pushbutton_guard: no model_class; pass the node's class as module:Class")
        module_name, _, class_name = model_class.replace(":", ".").rpartition(".")
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())  # the model directory, as seldon-core does for its interface
        cls = getattr(importlib.import_module(module_name), class_name)
        if model_uri is not None:  # a MODEL node's; other node types get none, as under Seldon
            parameters["model_uri"] = model_uri
        self._model = cls(**parameters)
        self._inputs = [tuple(entry) for entry in json.loads(inputs)]
        self._method = guard_method
        own_tags = callable(getattr(self._model, "tags", None))
        wants = guard_method == "predict" and guard_probabilities and not own_tags
        self._proba = getattr(self._model, "predict_proba", None) if wants else None
        self._last = threading.local()  # seldon-core calls predict, then tags, in one thread per request

    def _checked(self, method: str, X, features_names=None, **kwargs):
        check_rows(X, features_names, self._inputs)
        self._last.rows = (X, features_names) if callable(self._proba) else None
        own = getattr(self._model, method)
        try:  # the same call seldon-core makes when the class is its interface
            return own(X, features_names, **kwargs)
        except TypeError:
            if not kwargs:
                raise
            return own(X, features_names)

    def tags(self):
        """The class's own ``tags``, else the probabilities of the rows this thread just predicted."""
        if self._proba is None:
            own = getattr(self._model, "tags", None)
            return own() if callable(own) else {}
        rows, self._last.rows = getattr(self._last, "rows", None), None
        if rows is None:
            return {}
        try:
            probabilities = np.asarray(self._proba(*rows), dtype=float)
        except Exception as exc:  # an extra must never fail the prediction it comes with
            log.warning("no class probabilities for this request: %s: %s", type(exc).__name__, exc)
            return {}
        return {"classes": self._classes(probabilities.shape[-1]), "probabilities": probabilities.tolist()}

    def _classes(self, width: int) -> list:
        model = self._model
        found = (
            model.classes() if callable(getattr(model, "classes", None)) else getattr(model, "classes_", None)
        )
        if found is None:
            found = getattr(getattr(model, "model", None), "classes_", None)
        found = list(np.asarray(found).tolist()) if found is not None else []
        return found if len(found) == width else list(range(width))

    def _raw(self, request):
        """Check the payload's structure, then let seldon-core decode it and call the guarded method."""
        check_payload(request)
        raise SeldonNotImplementedError("pushbutton_guard: payload checked; seldon-core decodes it")

    def __getattr__(self, name: str):
        """The guarded method (checked, then the class's) and its ``_raw`` hook (the class's own, else the
        payload check); anything else is the class's, missing where the class lacks it (seldon-core asks
        ``hasattr`` to choose its default)."""
        if name.startswith("__") or name in _OWN:
            raise AttributeError(name)
        if name == self._method:
            getattr(self._model, name)  # AttributeError when the class lacks it, as without the guard
            return functools.partial(self._checked, name)
        if name == f"{self._method}_raw":
            own = getattr(self._model, name, None)
            return own if own is not None else self._raw
        return getattr(self._model, name)
