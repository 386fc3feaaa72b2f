"""The serving spec: one object that describes what a deployment serves and how traffic splits.

The same object drives the local runtime (seldon-core microservices behind the local gateway) and
is what the Kubernetes renderers turn into a ``SeldonDeployment`` (v1: ``predictors`` with
``traffic``/``shadow``) or Seldon Core v2 ``Model`` + ``Experiment`` resources. Field names follow
Seldon's where they mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pushbutton.spec.model import (
    TIMEOUT_SECONDS,
    DnsName,
    Feature,
    LoggingSpec,
    ModelSpec,
    Reference,
    Resources,
)

Role = Literal["champion", "candidate"]


class Predictor(BaseModel):
    """One model version in a deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Role
    model: DnsName
    version: str = Field(pattern=r"^[0-9]+$")
    model_uri: str = Field(
        min_length=1, description="where the MLflow model lives (models:/, s3://, file path)"
    )
    class_ref: Reference = Field(description="predict class, module:Class (Seldon python wrapper)")
    inputs: tuple[Feature, ...] = Field(
        (), description="input schema the serving side checks requests against (empty: no check)"
    )
    code_uri: str = Field(
        "", description="model code directory (local runtime); Kubernetes bakes code into the image"
    )
    env_key: str = Field("", description="serving environment hash (local) or image tag (Kubernetes)")
    traffic: int = Field(ge=0, le=100)
    shadow: bool = False
    replicas: int = Field(1, ge=1)
    resources: Resources = Resources()
    timeout_seconds: float = Field(
        TIMEOUT_SECONDS, gt=0, description="the gateway answers 504 when this predictor takes longer"
    )
    logging: LoggingSpec = Field(
        LoggingSpec(), description="what of this predictor's traffic the request log gets (Seldon: logger)"
    )


class ServingSpec(BaseModel):
    """A deployment: ``namespace/deployment`` with a champion and, during a release, a candidate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: DnsName
    deployment: DnsName
    predictors: list[Predictor] = Field(min_length=1, max_length=2)

    @model_validator(mode="after")
    def _consistent(self) -> ServingSpec:
        names = [p.name for p in self.predictors]
        if len(set(names)) != len(names):
            raise ValueError(
                f"predictor names must be unique, got {names}; keep one champion and one candidate"
            )
        live = [p for p in self.predictors if not p.shadow]
        if not live:
            raise ValueError("every predictor is a shadow; at least one must answer requests")
        total = sum(p.traffic for p in live)
        if total != 100:
            raise ValueError(f"traffic of answering predictors sums to {total}; make it 100")
        for p in self.predictors:
            if p.shadow and p.traffic:
                raise ValueError(
                    f"shadow predictor '{p.name}' has traffic {p.traffic}; shadows take 0 (a copy)"
                )
            if p.model != self.deployment:
                raise ValueError(f"predictor '{p.name}' serves model '{p.model}', not '{self.deployment}'")
        return self

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.deployment}"

    def predictor(self, role: Role) -> Predictor | None:
        return next((p for p in self.predictors if p.name == role), None)

    @property
    def external_path(self) -> str:
        """Seldon's external prediction path for this deployment."""
        return f"/seldon/{self.namespace}/{self.deployment}/api/v1.0/predictions"


@dataclass(frozen=True)
class TrafficPlan:
    """What the gateway does with a request: pick one answering backend by weight, copy to shadows."""

    weights: dict[str, int]
    shadows: tuple[str, ...]


def traffic_plan(spec: ServingSpec) -> TrafficPlan:
    weights = {p.name: p.traffic for p in spec.predictors if not p.shadow and p.traffic > 0}
    shadows = tuple(p.name for p in spec.predictors if p.shadow)
    return TrafficPlan(weights=weights, shadows=shadows)


@dataclass(frozen=True)
class Release:
    """A registered version ready to serve: where its model and code are, which environment runs it."""

    version: str
    model_uri: str
    env_key: str
    code_uri: str = ""


def predictor(
    model: ModelSpec, role: Role, release: Release, traffic: int = 100, shadow: bool = False
) -> Predictor:
    """One version of ``model`` as a predictor of its deployment."""
    return Predictor(
        name=role,
        model=model.name,
        version=release.version,
        model_uri=release.model_uri,
        class_ref=model.predict.class_,
        inputs=tuple(model.schema_.inputs),
        code_uri=release.code_uri,
        env_key=release.env_key,
        traffic=traffic,
        shadow=shadow,
        replicas=model.serving.replicas,
        resources=model.serving.resources,
        timeout_seconds=model.serving.timeout_seconds,
        logging=model.logging,
    )


def _spec(model: ModelSpec, predictors: list[Predictor]) -> ServingSpec:
    return ServingSpec(namespace=model.serving.namespace, deployment=model.name, predictors=predictors)


def champion_only(model: ModelSpec, champion: Release) -> ServingSpec:
    """Steady state: the champion takes all traffic."""
    return _spec(model, [predictor(model, "champion", champion, 100)])


def with_candidate(
    model: ModelSpec,
    candidate: Release,
    champion: Release | None,
    champion_model: ModelSpec | None = None,
) -> ServingSpec:
    """A release: the candidate beside the champion per the candidate's traffic policy.

    ``champion_model`` is the champion version's own spec (its predict class and input schema may
    differ from the candidate's); default ``model``. Without a champion (first release of a model)
    the candidate answers all requests.
    """
    if champion is None:
        return _spec(model, [predictor(model, "candidate", candidate, 100)])
    shadow = model.traffic.mode == "shadow"
    share = 0 if shadow else model.traffic.candidate_percent
    return _spec(
        model,
        [
            predictor(champion_model or model, "champion", champion, 100 - share),
            predictor(model, "candidate", candidate, share, shadow),
        ],
    )
