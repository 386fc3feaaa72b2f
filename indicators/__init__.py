"""Model-quality indicators (layer 4 of monitoring): drift, prediction stability, class frequency,
skew between predictors, label metrics, error rate, latency, and a data scientist's own functions.

One registry (``indicators.registry.REGISTRY``: stable type id → ``Indicator`` class), one verdict
shape (``Verdict``, stored as ``pushbutton.monitoring.results.IndicatorResult``), one input shape
(``Inputs``: pandas frames). Importing this package, ``indicators.configs`` or
``indicators.registry`` loads pydantic only — ``pushbutton.spec`` validates ``indicators:`` with them
at DAG-parse time; the indicator modules (numpy, pandas, scipy, alibi-detect) load on first use.
What each built-in computes: ``indicators/README.md``.

A model's own indicator (``<model dir>/indicators.py``) may mark its function with ``@indicator``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indicators.base import Indicator, Inputs, Verdict
    from indicators.custom import indicator
    from indicators.registry import REGISTRY, TYPE_IDS

# loaded on first use (PEP 562), so that validating a spec imports only configs and registry
_EXPORTS = {
    "Indicator": "indicators.base",
    "Inputs": "indicators.base",
    "Verdict": "indicators.base",
    "indicator": "indicators.custom",
    "REGISTRY": "indicators.registry",
    "TYPE_IDS": "indicators.registry",
}
__all__ = ["REGISTRY", "TYPE_IDS", "Indicator", "Inputs", "Verdict", "indicator"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'indicators' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
