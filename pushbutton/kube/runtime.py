"""The Kubernetes runtime: serve a ServingSpec as a Seldon Core v1 ``SeldonDeployment``.

The same interface as ``pushbutton.serving.local.LocalRuntime``, so the lifecycle (and the CI/CD,
promote and rollback DAGs) runs unchanged; the Seldon Connection chooses the runtime.

``apply`` renders the spec (``pushbutton.kube.seldon_v1``; a version whose ``model.yaml`` in its code
directory declares ``serving.graph`` is served as that graph, one container per node), checks it against
the CRD's schema before anything is sent, then creates the object or merge-patches it, and waits
(bounded; injected clock and sleeper) until Seldon's operator reports ``status.state == Available`` for
the new generation. When the operator reports ``Failed`` or the wait times out, the previous spec is put
back (a new object is deleted again) and ``ServingError`` names the deployment and the operator's
description: the champion keeps serving. The applied document's hash is kept in an annotation, so
applying the same spec again sends nothing (``changed: False``). With ``deferral`` set (by a release
operator) the wait is not done here: ``RolloutPending`` hands it over (``pushbutton.kube.rollout``).

Test microservices (the gate's ``warm``/``endpoint``/``release``) are not Kubernetes' business: they
run on the worker through a local runtime (``tester``), which needs the local gateway on that host.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pushbutton.errors import ServingError
from pushbutton.kube.build import ImageBuildConfig
from pushbutton.kube.client import KIND, SeldonDeployments, connection_extra, merge_diff
from pushbutton.kube.rollout import (
    Deferral,
    RolloutPending,
    merge_undo,
    run_undo,
    undo_carried,
    undo_step,
    wait_entry,
)
from pushbutton.kube.tester import LocalTester
from pushbutton.serving.spec import Predictor, ServingSpec

HASH_ANNOTATION = "pushbutton.io/applied-hash"
ROUTE_ANNOTATION = "pushbutton.io/route"
OWN_PREFIX = "pushbutton.io/"
AVAILABLE, FAILED, PENDING = "Available", "Failed", "pending"
DEFAULT_IMAGE = "{registry}/{model}:{version}"


def image_ref(template: str, registry: str, predictor: Predictor) -> str:
    """The model image of one predictor (what the image build pushed for that version)."""
    return template.format(
        registry=registry.rstrip("/"),
        model=predictor.model,
        version=predictor.version,
        env_key=predictor.env_key,
    )


class SeldonV1Config(BaseModel):
    """The Seldon Connection's extra for ``runtime: seldon-v1``."""

    model_config = ConfigDict(extra="forbid")

    runtime: Literal["seldon-v1"]
    namespace: str | None = None  # the platform's default serving namespace (model.yaml decides)
    kubernetes_conn_id: str = Field("kubernetes_default", min_length=1)
    image_registry: str = Field(
        min_length=1, description="where the model images are, e.g. registry.example/models"
    )
    image_template: str = DEFAULT_IMAGE
    logger_url: str | None = None
    ingress_url: str | None = None
    apply_timeout_seconds: float = Field(600.0, gt=0, le=3600)
    poll_seconds: float = Field(5.0, gt=0, le=300)
    # set: each CI/CD run builds its version's image with Kaniko (pushbutton.kube.build); unset: your CI does
    image_build: ImageBuildConfig | None = None

    @field_validator("image_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            sample = value.format(registry="r", model="m", version="1", env_key="k")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"'{value}' is not a template of {{registry}}, {{model}}, {{version}}, {{env_key}} ({exc!r})"
            ) from None
        if "{version}" not in value or sample.endswith(":latest") or ":" not in sample.rsplit("/", 1)[-1]:
            raise ValueError(
                f"'{value}' must end in a tag naming the version, e.g. '{DEFAULT_IMAGE}' (never latest)"
            )
        return value


FIXES = {
    "image_registry": "set extra.image_registry to the registry the model images are pushed to",
    "image_template": f"use e.g. '{DEFAULT_IMAGE}'",
    "runtime": "set extra.runtime to 'seldon-v1' (or 'local')",
    "image_build": "give extra.image_build as an object with context_uri (s3://<bucket>) and env_secret",
    "image_build.context_uri": "set it to the S3/MinIO location for build contexts, e.g. s3://builds",
    "image_build.env_secret": "name the Secret (in the build namespace) holding AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY for the build context's bucket",
    "image_build.s3_endpoint": "give the S3/MinIO API URL the build pod reaches, e.g. http://minio.minio:9000",
    "image_build.base_image": "pin it by an exact tag (e.g. python:3.11.11-slim-bookworm) or @sha256:<digest>",
    "image_build.kaniko_image": "pin it by an exact tag or @sha256:<digest>",
    "image_build.fetch_image": "pin it by an exact tag or @sha256:<digest>",
}


def seldon_v1_config(extra: Mapping[str, Any], where: str) -> SeldonV1Config:
    """The connection's extra as ``SeldonV1Config``; ``SpecError`` naming each bad field and its fix."""
    return connection_extra(SeldonV1Config, extra, where, FIXES)


def availability(obj: Mapping[str, Any], generation: int | None = None) -> tuple[str, str]:
    """(``Available`` | ``Failed`` | ``pending``, the operator's description) of a SeldonDeployment.

    A status the operator wrote for an older generation than ``generation`` is still pending."""
    status = obj.get("status") or {}
    state = str(status.get("state") or "")
    description = str(status.get("description") or "") or (f"state {state}" if state else "no status yet")
    observed = status.get("observedGeneration")
    if generation is not None and isinstance(observed, int) and observed < generation:
        return PENDING, f"the operator has not seen generation {generation} yet (observed {observed})"
    if state in (AVAILABLE, FAILED):
        return state, description
    return PENDING, description


def route_summary(spec: ServingSpec) -> dict[str, Any]:
    """What the deployment serves, in the local runtime's route shape (``status()['route']``)."""
    return {
        "backends": {
            p.name: {"version": p.version, "timeout_seconds": p.timeout_seconds} for p in spec.predictors
        },
        "weights": {p.name: p.traffic for p in spec.predictors if not p.shadow and p.traffic > 0},
        "shadows": [p.name for p in spec.predictors if p.shadow],
    }


def predictor_route(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A SeldonDeployment's predictors as a route config: ``backends`` (role → ``version``, from each
    predictor's ``pushbutton.io/version`` label; ``""`` when it has none, e.g. edited by hand),
    ``weights`` (traffic of the answering predictors; a lone one without ``traffic`` gets 100) and
    ``shadows``. Read from the object, not the annotation, so it shows what Seldon is asked to serve."""
    from pushbutton.kube.graph import VERSION_LABEL

    backends: dict[str, Any] = {}
    weights: dict[str, int] = {}
    shadows: list[str] = []
    predictors = [p for p in (obj.get("spec") or {}).get("predictors") or [] if p.get("name")]
    for p in predictors:
        name = str(p["name"])
        backends[name] = {"version": str((p.get("labels") or {}).get(VERSION_LABEL, ""))}
        if p.get("shadow"):
            shadows.append(name)
        elif int(p.get("traffic") or 0) > 0:
            weights[name] = int(p["traffic"])
    live = [str(p["name"]) for p in predictors if not p.get("shadow")]
    if not weights and len(live) == 1:  # Seldon sends everything to a lone predictor
        weights[live[0]] = 100
    return {"backends": backends, "weights": weights, "shadows": shadows}


def _hash(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != HASH_ANNOTATION}
    doc = {"spec": manifest.get("spec"), "labels": meta.get("labels"), "annotations": annotations}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _applied(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object ``apply`` writes (and a restore puts back)."""
    meta = obj.get("metadata") or {}
    return {
        "spec": obj.get("spec") or {},
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
    }


class NotAvailable(ServingError):
    """The operator reported ``Failed`` (``failed``), or the wait for ``Available`` ran out."""

    def __init__(self, message: str, description: str, failed: bool = False):
        self.description, self.failed = description, failed
        super().__init__(message)


class RolloutFailed(ServingError):
    """The Seldon operator reported ``Failed`` for the new spec (an image that does not pull, a
    container that crashes): the previous spec is back. Applying the same spec again fails the same
    way, so callers do not retry it (a timeout or an API outage stays a plain ``ServingError``)."""


class KubernetesRuntime(LocalTester):
    """Serve ServingSpecs as SeldonDeployments through a ``kubernetes.client.ApiClient``."""

    runtime_name = "seldon-v1"

    def __init__(
        self,
        api_client: Any,
        *,
        image_registry: str,
        image_template: str = DEFAULT_IMAGE,
        logger_url: str | None = None,
        ingress_url: str | None = None,
        tester: Any = None,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        render: Callable[..., dict[str, Any]] | None = None,
        validate: Callable[[Mapping[str, Any]], None] | None = None,
    ):
        self.deployments = SeldonDeployments(api_client)
        self.image_registry, self.image_template = image_registry, image_template
        self.logger_url, self.ingress_url, self.tester = logger_url, ingress_url, tester
        self.timeout, self.poll_interval = timeout, poll_interval
        self.sleep, self.clock = sleep, clock
        self._render, self._validate = render, validate
        self.deferral: Deferral | None = None  # set by a deferring operator: RolloutPending, no polling

    @classmethod
    def from_config(cls, api_client: Any, config: SeldonV1Config, **kwargs: Any) -> KubernetesRuntime:
        return cls(
            api_client,
            image_registry=config.image_registry,
            image_template=config.image_template,
            logger_url=config.logger_url,
            ingress_url=config.ingress_url,
            timeout=config.apply_timeout_seconds,
            poll_interval=config.poll_seconds,
            **kwargs,
        )

    # apply ------------------------------------------------------------------------------------

    def manifest(self, spec: ServingSpec) -> dict[str, Any]:
        """The SeldonDeployment for ``spec``, checked against the CRD schema, with pushbutton's annotations."""
        render, validate = self._render, self._validate
        if render is None:
            from pushbutton.kube.seldon_v1 import render_seldon_deployment as render
        if validate is None:
            from pushbutton.kube.schemas import validate_manifest as validate
        from pushbutton.kube.graph import version_graphs

        images = {p.name: image_ref(self.image_template, self.image_registry, p) for p in spec.predictors}
        graphs = version_graphs(spec)  # each version's own model.yaml graph; none: single-model as before
        extra = {"graphs": graphs} if graphs else {}
        doc = render(spec, images=images, logger_url=self.logger_url, **extra)
        validate(doc)  # SpecError before anything reaches the cluster
        annotations = doc.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[ROUTE_ANNOTATION] = json.dumps(route_summary(spec), sort_keys=True)
        annotations[HASH_ANNOTATION] = _hash(doc)
        return doc

    def apply(self, spec: ServingSpec) -> dict[str, Any]:
        """Make the deployment serve ``spec``; idempotent. On failure the previous spec is restored.

        With ``deferral`` set, ``RolloutPending`` instead of polling (``pushbutton.kube.rollout``)."""
        started = self.clock()
        ns, name = spec.namespace, spec.deployment
        desired = self.manifest(spec)
        current = self.deployments.get(ns, name)
        if current is None:
            written, action = self.deployments.create(ns, desired), "created"
            undo = [undo_step(KIND, ns, name, None)]
        elif current["metadata"].get("annotations", {}).get(HASH_ANNOTATION) == _hash(desired):
            written, action, undo = current, "unchanged", []  # waits at once when it serves already
        else:
            written, action = self.deployments.patch(ns, name, _apply_patch(current, desired)), "patched"
            undo = [undo_step(KIND, ns, name, current)]
        undo = merge_undo(self.deferral.undo if self.deferral else [], undo)
        try:
            obj = self.wait_available(ns, name, _generation(written))
        except RolloutPending as pending:
            pending.undo = undo
            raise
        except NotAvailable as exc:
            if not undo:  # nothing written by this step: nothing to put back
                raise
            raise _not_served(exc, undo_carried(self, undo)) from exc
        if self.deferral is not None:
            self.deferral.undo = []  # served: nothing of this rollout is left to undo
        return {
            "deployment": spec.key,
            "path": spec.external_path,
            "changed": action != "unchanged",
            "action": action,
            "state": (obj.get("status") or {}).get("state"),
            "generation": _generation(obj),
            "route": route_summary(spec),
            "seconds": round(self.clock() - started, 2),
        }

    def undo(self, steps: list[dict[str, Any]]) -> str:
        """Put back what ``steps`` (``pushbutton.kube.rollout.undo_step``) wrote; what was done."""
        return run_undo(steps, lambda kind: self.deployments, restore_object)

    def wait_available(self, namespace: str, name: str, generation: int | None = None) -> dict[str, Any]:
        """Poll until the operator reports ``Available`` (for ``generation``); ``NotAvailable`` on
        ``Failed``, on the object disappearing, or after ``timeout`` seconds."""
        what = self.deployments.what(namespace, name)
        deadline = self.clock() + self.timeout
        while True:
            obj = self.deployments.get(namespace, name)
            if obj is None:
                raise NotAvailable(f"{what} was deleted while waiting for it to become Available", "deleted")
            state, description = availability(obj, generation)
            if state == AVAILABLE:
                return obj
            if state == FAILED:
                raise NotAvailable(
                    f"{what} failed: the Seldon operator reports: {description}", description, failed=True
                )
            if self.deferral is not None:  # the operator waits in a trigger, not here
                raise RolloutPending(
                    [wait_entry(KIND, namespace, name, generation)],
                    undo=[],
                    deadline=self.deferral.deadline_from(self.timeout),
                    poll_interval=self.poll_interval,
                    description=description,
                )
            left = deadline - self.clock()
            if left <= 0:
                raise NotAvailable(
                    f"{what} did not become Available within {self.timeout:g} s (last status: {description}); "
                    "check the operator's events (`kubectl describe sdep`) or raise extra.apply_timeout_seconds",
                    description,
                )
            self.sleep(min(self.poll_interval, left))

    # the rest of the runtime API --------------------------------------------------------------

    def status(self, namespace: str, deployment: str) -> dict[str, Any]:
        """State and description the operator reports, and what the deployment serves.

        ``NotFound`` when the SeldonDeployment does not exist."""
        from pushbutton.errors import NotFound

        obj = self.deployments.get(namespace, deployment)
        what = self.deployments.what(namespace, deployment)
        if obj is None:
            raise NotFound(
                f"{what} does not exist; deploy the model first (its CI/CD DAG or `pushbutton promote`)"
            )
        status = obj.get("status") or {}
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        route = json.loads(annotations[ROUTE_ANNOTATION]) if ROUTE_ANNOTATION in annotations else None
        return {
            "deployment": f"{namespace}/{deployment}",
            "runtime": "seldon-v1",
            "path": f"/seldon/{namespace}/{deployment}/api/v1.0/predictions",
            "state": status.get("state"),
            "description": status.get("description"),
            "generation": _generation(obj),
            "observed_generation": status.get("observedGeneration"),
            "route": route,
            "backends": (route or {}).get("backends", {}),
        }

    def route(self, namespace: str, deployment: str) -> dict[str, Any] | None:
        """What the SeldonDeployment serves now, in the local gateway route's config shape (for
        monitoring's targets); None when it does not exist. ``ServingError`` when the API fails."""
        obj = self.deployments.get(namespace, deployment)
        return None if obj is None else predictor_route(obj)

    def remove(self, namespace: str, deployment: str) -> dict[str, Any]:
        """Delete the SeldonDeployment (Seldon removes its pods and services); idempotent."""
        deleted = self.deployments.delete(namespace, deployment)
        return {"deployment": f"{namespace}/{deployment}", "deleted": deleted}

    def predict(self, namespace: str, deployment: str, payload: Any) -> dict[str, Any]:
        """One prediction through the cluster's Seldon ingress (extra ``ingress_url``)."""
        import httpx

        if not self.ingress_url:
            raise ServingError(
                f"cannot send a prediction to {namespace}/{deployment}: the Seldon connection has no "
                "extra.ingress_url (the cluster's Istio/Ambassador address serving /seldon/...); set it"
            )
        url = f"{self.ingress_url.rstrip('/')}/seldon/{namespace}/{deployment}/api/v1.0/predictions"
        try:
            resp = httpx.post(url, json=payload, timeout=60.0)
        except httpx.HTTPError as exc:
            raise ServingError(f"prediction on {namespace}/{deployment} via {url} failed: {exc}") from exc
        if resp.status_code != 200:
            raise ServingError(
                f"prediction on {namespace}/{deployment} failed with HTTP {resp.status_code}: {resp.text[:500]}"
            )
        return {"predictor": None, "version": None, "response": resp.json()}


def restore_object(api: Any, namespace: str, name: str, previous: Mapping[str, Any]) -> None:
    """Put ``previous`` (the object as read before a change) back through ``api`` (a ``CustomObjects``):
    its spec, labels and annotations merge-patched back, or the object created again if it is gone."""
    now = api.get(namespace, name)
    if now is None:  # deleted meanwhile: bring the previous object back as it was
        body = {k: previous[k] for k in ("apiVersion", "kind", "spec") if k in previous}
        body["metadata"] = {k: v for k, v in previous["metadata"].items() if k in ("name", "namespace",
                                                                                  "labels", "annotations")}  # fmt: skip
        api.create(namespace, body)
        return
    before, after = _applied(now), _applied(previous)
    patch: dict[str, Any] = {"spec": merge_diff(before["spec"], after["spec"])}
    meta = {k: merge_diff(before[k], after[k]) for k in ("labels", "annotations")}
    patch["metadata"] = {k: v for k, v in meta.items() if v}
    api.patch(namespace, name, {k: v for k, v in patch.items() if v})


def _not_served(exc: NotAvailable, undo: str) -> ServingError:
    return (RolloutFailed if exc.failed else ServingError)(f"{exc}; {undo}")


def _generation(obj: Mapping[str, Any] | None) -> int | None:
    value = ((obj or {}).get("metadata") or {}).get("generation")
    return value if isinstance(value, int) else None


def _apply_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch taking ``current`` to ``desired``: the spec exactly (Seldon's defaults are
    re-applied by its webhook), labels and annotations set, pushbutton's own (``pushbutton.io/``)
    that ``desired`` lacks removed (others' keys left alone)."""
    before, after = _applied(current), _applied(desired)
    patch: dict[str, Any] = {}
    spec = merge_diff(before["spec"], after["spec"])
    if spec:
        patch["spec"] = spec
    meta = {  # pushbutton's own keys the new document no longer has go (e.g. candidate-version)
        key: {k: v for k, v in after[key].items() if before[key].get(k) != v}
        | {k: None for k in before[key] if k.startswith(OWN_PREFIX) and k not in after[key]}
        for key in ("labels", "annotations")
    }
    meta = {k: v for k, v in meta.items() if v}
    if meta:
        patch["metadata"] = meta
    return patch
