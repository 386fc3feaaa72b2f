"""The gateway's routing table: one ``Route`` per deployment, validated from the JSON the admin API
takes (``PUT /admin/deployments/{ns}/{deployment}``) and the state file stores.

A route names its backends by role (``champion``, ``candidate``), each with its URL, the version it
serves, its timeout and its request-logging options; ``weights`` split the answering traffic and
``shadows`` get a copy of every request. Example::

    {"backends": {"champion": {"url": "http://127.0.0.1:9001", "version": "1"},
                  "candidate": {"url": "http://127.0.0.1:9002", "version": "2", "timeout_seconds": 5,
                                "logging": {"sample_rate": 0.1, "exclude": ["ssn"],
                                            "features": ["age", "ssn", "income"]}}},
     "weights": {"champion": 90, "candidate": 10}, "shadows": []}
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREDICT_PATH = "/api/v1.0/predictions"
TIMEOUT_MAX = 3600.0


def external_path(namespace: str, deployment: str) -> str:
    return f"/seldon/{namespace}/{deployment}{PREDICT_PATH}"


@dataclass(frozen=True)
class LoggingOptions:
    """What the gateway sends to the request logger for one backend (its version's ``logging:``).

    ``features`` are the model's inputs in schema order: with ``exclude`` set, they say which values
    of a row sent without ``data.names`` are the excluded ones.
    """

    enabled: bool = True
    sample_rate: float = 1.0
    exclude: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    def config(self) -> dict[str, Any]:
        """The non-default options (a route without logging options logs every request in full)."""
        out: dict[str, Any] = {}
        if not self.enabled:
            out["enabled"] = False
        if self.sample_rate != 1.0:
            out["sample_rate"] = self.sample_rate
        if self.exclude:
            out["exclude"] = list(self.exclude)
            if self.features:
                out["features"] = list(self.features)
        return out

    @classmethod
    def from_config(cls, role: Any, value: Any) -> LoggingOptions:
        example = '{"enabled": true, "sample_rate": 0.5, "exclude": ["ssn"], "features": ["age", "ssn"]}'
        if value is None:
            return DEFAULT_LOGGING
        if not isinstance(value, Mapping):
            raise ValueError(f"backend '{role}' logging must be an object like {example}")
        unknown = set(value) - {"enabled", "sample_rate", "exclude", "features"}
        if unknown:
            raise ValueError(
                f"backend '{role}' logging has unknown fields {sorted(unknown)}; allowed: enabled, "
                "sample_rate, exclude, features"
            )
        enabled = value.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"backend '{role}' logging.enabled must be true or false, got {enabled!r}")
        rate = value.get("sample_rate", 1.0)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
            raise ValueError(
                f"backend '{role}' logging.sample_rate must be a number from 0 to 1 (the share of requests "
                f"logged), got {rate!r}"
            )
        exclude = _names(role, "exclude", value.get("exclude", ()))
        features = _names(role, "features", value.get("features", ()))
        if features and set(exclude) - set(features):
            raise ValueError(
                f"backend '{role}' logging.exclude names {sorted(set(exclude) - set(features))}, which are "
                f"not in logging.features {list(features)}; exclude only the model's inputs"
            )
        return cls(enabled, float(rate), exclude, features if exclude else ())


def _names(role: Any, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"backend '{role}' logging.{key} must be a list of feature names, got {value!r}")
    names = tuple(value)
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"backend '{role}' logging.{key} must hold non-empty strings, got {list(names)!r}")
    if len(set(names)) != len(names):
        raise ValueError(
            f"backend '{role}' logging.{key} lists a name twice: {list(names)!r}; list each once"
        )
    return names


DEFAULT_LOGGING = LoggingOptions()


@dataclass(frozen=True)
class Backend:
    role: str
    url: str
    version: str
    predict_url: str
    timeout: float | None = None  # seconds; None: the gateway's --request-timeout
    logging: LoggingOptions = field(default=DEFAULT_LOGGING)


@dataclass(frozen=True)
class Route:
    """One deployment's routing table (immutable; replaced whole on every change)."""

    namespace: str
    deployment: str
    backends: Mapping[str, Backend]
    weights: Mapping[str, int]
    shadows: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.deployment}"

    @property
    def live(self) -> tuple[str, ...]:
        """Roles that answer requests (weight > 0)."""
        return tuple(r for r, w in self.weights.items() if w > 0)

    def config(self) -> dict[str, Any]:
        """Canonical JSON form (what ``PUT`` takes and the state file stores)."""
        return {
            "backends": {r: _backend_config(b) for r, b in sorted(self.backends.items())},
            "weights": dict(sorted(self.weights.items())),
            "shadows": sorted(self.shadows),
        }

    @classmethod
    def from_config(cls, namespace: str, deployment: str, config: Mapping[str, Any]) -> Route:
        """Validate a route body; ``ValueError`` says what is wrong and how to write it."""
        example = (
            '{"backends": {"champion": {"url": "http://127.0.0.1:9001", "version": "1"}}, '
            '"weights": {"champion": 100}, "shadows": []}'
        )
        if not isinstance(config, Mapping):
            raise ValueError(f"route must be a JSON object like {example}")
        unknown = set(config) - {"backends", "weights", "shadows"}
        if unknown:
            raise ValueError(f"unknown route fields {sorted(unknown)}; allowed: backends, weights, shadows")
        raw_backends = config.get("backends")
        if not isinstance(raw_backends, Mapping) or not raw_backends:
            raise ValueError(f"'backends' must map role -> {{url, version}}, e.g. {example}")
        backends = {}
        for role, spec in raw_backends.items():
            if not isinstance(spec, Mapping) or not isinstance(spec.get("url"), str):
                raise ValueError(f"backend '{role}' needs a 'url' string and a 'version'")
            url = spec["url"].rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"backend '{role}' url '{url}' must start with http:// or https://")
            version = str(spec.get("version", ""))
            timeout = _route_timeout(role, spec.get("timeout_seconds"))
            logging = LoggingOptions.from_config(role, spec.get("logging"))
            backends[str(role)] = Backend(str(role), url, version, url + PREDICT_PATH, timeout, logging)
        weights = config.get("weights") or {}
        if not isinstance(weights, Mapping):
            raise ValueError(
                '\'weights\' must map role -> integer percent, e.g. {"champion": 90, "candidate": 10}'
            )
        clean: dict[str, int] = {}
        for role, weight in weights.items():
            if role not in backends:
                raise ValueError(f"weight for unknown backend '{role}'; backends are {sorted(backends)}")
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"weight of '{role}' must be an integer >= 0, got {weight!r}")
            clean[str(role)] = weight
        if sum(clean.values()) <= 0:
            raise ValueError("no backend has a weight > 0; at least one must answer requests")
        shadows = config.get("shadows") or []
        if isinstance(shadows, str) or not isinstance(shadows, Iterable):
            raise ValueError("'shadows' must be a list of backend roles")
        for role in shadows:
            if role not in backends:
                raise ValueError(f"shadow '{role}' is not a backend; backends are {sorted(backends)}")
            if clean.get(role, 0) > 0:
                raise ValueError(f"'{role}' both answers (weight {clean[role]}) and is a shadow; pick one")
        return cls(namespace, deployment, backends, clean, tuple(sorted(set(shadows))))


def _backend_config(backend: Backend) -> dict[str, Any]:
    config: dict[str, Any] = {"url": backend.url, "version": backend.version}
    if backend.timeout is not None:
        config["timeout_seconds"] = backend.timeout
    logging = backend.logging.config()
    if logging:
        config["logging"] = logging
    return config


def _route_timeout(role: Any, value: Any) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not 0 < value <= TIMEOUT_MAX:
        raise ValueError(
            f"backend '{role}' timeout_seconds must be a number of seconds above 0 and at most "
            f"{TIMEOUT_MAX:g}, got {value!r}"
        )
    return float(value)


def pick(weights: Mapping[str, int], rng: random.Random, healthy: Collection[str] | None = None) -> str:
    """Weighted random choice among answering roles that are healthy (all of them if none is)."""
    choices = [(r, w) for r, w in weights.items() if w > 0 and (healthy is None or r in healthy)]
    if not choices:
        choices = [(r, w) for r, w in weights.items() if w > 0]
    if len(choices) == 1:
        return choices[0][0]
    x = rng.random() * sum(w for _, w in choices)
    for role, weight in choices:
        x -= weight
        if x < 0:
            return role
    return choices[-1][0]
