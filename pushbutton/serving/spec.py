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

from pushbutton.spec.model import DnsName, ModelSpec, Reference, Resources

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
    env_key: str = Field("", description="serving environment hash (local) or image tag (Kubernetes)")
    traffic: int = Field(ge=0, le=100)
    shadow: bool = False
    replicas: int = Field(1, ge=1)
    resources: Resources = Resources()


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


def _predictor(
    model: ModelSpec,
    role: Role,
    version: str,
    model_uri: str,
    env_key: str,
    traffic: int,
    shadow: bool = False,
) -> Predictor:
    return Predictor(
        name=role,
        model=model.name,
        version=version,
        model_uri=model_uri,
        class_ref=model.predict.class_,
        env_key=env_key,
        traffic=traffic,
        shadow=shadow,
        replicas=model.serving.replicas,
        resources=model.serving.resources,
    )


@dataclass(frozen=True)
class Release:
    """A registered version ready to serve: where its model is and which environment runs it."""

    version: str
    model_uri: str
    env_key: str


def champion_only(model: ModelSpec, champion: Release) -> ServingSpec:
    """Steady state: the champion takes all traffic."""
    return ServingSpec(
        namespace=model.serving.namespace,
        deployment=model.name,
        predictors=[
            _predictor(model, "champion", champion.version, champion.model_uri, champion.env_key, 100)
        ],
    )


def with_candidate(model: ModelSpec, candidate: Release, champion: Release | None) -> ServingSpec:
    """A release: the candidate beside the champion per the spec's traffic policy.

    Without a champion (first release of a model) the candidate answers all requests.
    """
    if champion is None:
        only = _predictor(model, "candidate", candidate.version, candidate.model_uri, candidate.env_key, 100)
        return ServingSpec(namespace=model.serving.namespace, deployment=model.name, predictors=[only])
    shadow = model.traffic.mode == "shadow"
    share = 0 if shadow else model.traffic.candidate_percent
    return ServingSpec(
        namespace=model.serving.namespace,
        deployment=model.name,
        predictors=[
            _predictor(
                model, "champion", champion.version, champion.model_uri, champion.env_key, 100 - share
            ),
            _predictor(
                model, "candidate", candidate.version, candidate.model_uri, candidate.env_key, share, shadow
            ),
        ],
    )
