"""``custom``: a data scientist's own indicator, a plain function in the model directory.

Write it in ``<model dir>/indicators.py`` and declare it in ``model.yaml``::

    # indicators.py
    from indicators import indicator        # optional: a plain function works too

    @indicator(needs_reference=True)        # the runtime answers missing_reference for you
    def mean_petal_ratio(inputs, scale=1.0):
        ratio = inputs.current.petal_length_cm / inputs.current.petal_width_cm
        return {"value": float(ratio.mean() * scale), "details": {"rows": len(ratio)}}

    # model.yaml
    indicators:
      - id: petal_ratio
        type: custom
        params: {function: mean_petal_ratio, threshold: 4.0, args: {scale: 1.0}}

The function gets ``indicators.Inputs`` (``current``, ``reference``, ``previous``, ``labels``, ``other``:
pandas frames) plus ``args`` as keyword arguments, and returns a number (the value), a dict with
``value`` and optionally ``flagged``, ``threshold``, ``details``, ``message``, or a ``Verdict``. With a
``threshold`` in params, the value is flagged above it (``direction: below``: under it) unless the
function decides ``flagged`` itself. ``pushbutton validate`` checks that the function exists
(parsing the file, without running model code). When the function raises, only this indicator
fails: status ``error``, the traceback in ``details["traceback"]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import numbers
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from indicators.base import Indicator, Inputs, Verdict
from indicators.configs import CustomConfig

MODULE_FILE = "indicators.py"
MARK = "__pushbutton_indicator__"
RESULT_KEYS = frozenset({"value", "flagged", "threshold", "details", "message"})
F = TypeVar("F", bound=Callable[..., Any])


def indicator(function: F | None = None, *, needs_reference: bool = False) -> Any:
    """Mark a function of a model's ``indicators.py`` as an indicator: ``@indicator`` or
    ``@indicator(needs_reference=True)`` (no reference: status ``missing_reference`` without calling
    it). Optional — an unmarked ``def name(inputs)`` works the same."""

    def mark(fn: F) -> F:
        setattr(fn, MARK, {"needs_reference": needs_reference})
        return fn

    return mark(function) if function is not None else mark


_modules: dict[tuple[str, int, int], ModuleType] = {}
_lock = threading.Lock()


def load_module(model_dir: Path) -> ModuleType:
    """The model directory's ``indicators.py``, imported under a private name (every model has one,
    and ``indicators`` is this package); re-imported when the file changes."""
    path = (Path(model_dir) / MODULE_FILE).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; create it with the indicator function")
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _lock:
        if key in _modules:
            return _modules[key]
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(f"_pushbutton_indicators_{digest}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # so it can import its neighbours, as train.py does
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        _modules[key] = module
        return module


class CustomIndicator(Indicator):
    """A function of the model directory's ``indicators.py`` (``params.function``), called with the
    window's frames; its number or dict becomes the verdict, flagged against ``threshold``."""

    type_id = "custom"
    Config = CustomConfig

    @property
    def name(self) -> str:
        return f"custom indicator '{self.config.function}'"  # type: ignore[attr-defined]

    def evaluate(self, inputs: Inputs) -> Verdict:
        config: CustomConfig = self.config  # type: ignore[assignment]
        if inputs.model_dir is None:
            raise ValueError("no model directory given: a custom indicator lives in its indicators.py")
        function = getattr(load_module(inputs.model_dir), config.function, None)
        if not callable(function):
            raise LookupError(f"{MODULE_FILE} in {inputs.model_dir} has no function '{config.function}'")
        marks = getattr(function, MARK, {})
        reference_size = len(inputs.reference) if inputs.reference is not None else 0
        if marks.get("needs_reference") and not inputs.has_reference:
            return Verdict(
                "missing_reference",
                message=f"{config.function} needs a {inputs.reference_kind}; none was captured",
                sample_size=len(inputs.current),
            )
        short = self.too_few(len(inputs.current), reference_size=reference_size)
        if short:
            return short
        answer = function(inputs, **config.args)
        return self._verdict(answer, len(inputs.current), reference_size)

    def _verdict(self, answer: Any, rows: int, reference_size: int) -> Verdict:
        config: CustomConfig = self.config  # type: ignore[assignment]
        if isinstance(answer, Verdict):
            return answer
        fix = "return a number, or a dict with 'value' (and optionally flagged, threshold, details, message)"
        if isinstance(answer, dict):
            unknown = sorted(set(answer) - RESULT_KEYS)
            if unknown or "value" not in answer:
                problem = f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown else "no 'value'"
                raise TypeError(f"{config.function} returned a dict with {problem}; {fix}")
            found = dict(answer)
        elif isinstance(answer, numbers.Real) and not isinstance(answer, bool):
            found = {"value": answer}
        else:
            raise TypeError(f"{config.function} returned {type(answer).__name__}; {fix}")
        value = found["value"]
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise TypeError(f"{config.function} returned value {value!r}; a value is a finite number")
            value = float(value)
        threshold = found.get("threshold", config.threshold)
        flagged = found.get("flagged")
        if flagged is None and value is not None and threshold is not None:
            flagged = value > threshold if config.direction == "above" else value < threshold
        return Verdict(
            "ok",
            value=value,
            threshold=None if threshold is None else float(threshold),
            flagged=None if flagged is None else bool(flagged),
            details=dict(found.get("details") or {}),
            message=str(found.get("message") or ""),
            sample_size=rows,
            reference_size=reference_size,
        )
