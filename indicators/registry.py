"""The one table of indicator types: stable type id → config class and indicator class.

``TYPE_IDS`` and ``config_class`` are what ``pushbutton.spec`` validates ``indicators:`` with: they
import only pydantic (``indicators.configs``), so parsing DAG files stays cheap. ``REGISTRY`` maps each
type id to its ``Indicator`` class and imports an indicator's module (numpy, pandas, scipy) the first
time that type is looked up. A type id, once released, is never renamed: stored results carry it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from indicators import configs

if TYPE_CHECKING:
    from indicators.base import Indicator

# type id -> (its params, "module:Class")
_TABLE: dict[str, tuple[type[configs.IndicatorConfig], str]] = {
    "drift": (configs.DriftConfig, "indicators.drift:DriftIndicator"),
    "prediction_stability": (configs.PredictionStabilityConfig, "indicators.stability:PredictionStability"),
    "class_frequency": (configs.ClassFrequencyConfig, "indicators.frequency:ClassFrequency"),
    "skew": (configs.SkewConfig, "indicators.skew:Skew"),
    "label_metric": (configs.LabelMetricConfig, "indicators.label_metric:LabelMetric"),
    "error_rate": (configs.ErrorRateConfig, "indicators.operational:ErrorRate"),
    "latency": (configs.LatencyConfig, "indicators.operational:Latency"),
    "custom": (configs.CustomConfig, "indicators.custom:CustomIndicator"),
}
TYPE_IDS: tuple[str, ...] = tuple(_TABLE)


def config_class(type_id: str) -> type[configs.IndicatorConfig]:
    """The params model of ``type_id`` (``KeyError`` for an unknown type)."""
    return _TABLE[type_id][0]


def params_problem(type_id: str, params: Any) -> str | None:
    """``None`` when ``params`` suit ``type_id``; else ``params.<field>: problem; fix``."""
    return configs.params_problem(type_id, config_class(type_id), params)


class _Registry(Mapping[str, "type[Indicator]"]):
    """A read-only dict of type id → indicator class whose modules load on first lookup."""

    def __init__(self) -> None:
        self._loaded: dict[str, type[Indicator]] = {}

    def __getitem__(self, type_id: str) -> type[Indicator]:
        if type_id not in self._loaded:
            module, _, name = _TABLE[type_id][1].partition(":")
            self._loaded[type_id] = getattr(importlib.import_module(module), name)
        return self._loaded[type_id]

    def __iter__(self) -> Iterator[str]:
        return iter(_TABLE)

    def __len__(self) -> int:
        return len(_TABLE)

    def __repr__(self) -> str:
        return f"REGISTRY({', '.join(_TABLE)})"


REGISTRY: Mapping[str, type[Indicator]] = _Registry()


def create(type_id: str, params: Mapping[str, Any] | None = None) -> Indicator:
    """An indicator of ``type_id`` configured by ``params`` (``IndicatorConfigError`` on bad params)."""
    return REGISTRY[type_id](params)
