"""The Kubernetes runtime for Seldon Core v2: a ServingSpec as ``Model``/``Pipeline``/``Experiment`` resources.

The same interface as ``KubernetesRuntime`` (seldon-v1) and the local runtime, so the lifecycle and the
CI/CD, promote and rollback DAGs run unchanged; the Seldon Connection (``extra.runtime: seldon-v2``)
chooses it. The documents come from ``pushbutton.kube.seldon_v2`` (one ``Model`` per version, named
``<deployment>-v<version>``, an ``Experiment`` ``<deployment>`` while a candidate serves beside the
champion; a version whose ``model.yaml`` in its code directory declares ``serving.graph`` gets a Model
per node and a ``Pipeline`` ``<deployment>-v<version>``, and the Experiment then splits Pipelines) and
are all checked against the CRD schemas before anything is sent.

``apply`` works in three steps, each waiting (bounded; injected clock and sleeper) for Seldon to report
the ``Ready`` condition ``True`` for the written generation:

1. the Models and Pipelines of every serving version are created or merge-patched;
2. the Experiment is created or patched (a canary: the champion's endpoint splits traffic; a shadow:
   ``mirror``), or deleted when only the champion serves — promotion, rollback and reject are that:
   the Experiment goes and the champion's endpoint answers alone again;
3. the resources of versions no longer served are deleted (only after the switch succeeded).

A condition ``False`` whose reason or message says ``Failed`` (``ModelFailed``, ``ScheduleFailed``,
``PipelineFailed``) or the wait running out undoes steps 1-2 (new objects deleted, patched ones and a
deleted Experiment put back) and raises ``RolloutFailed``/``ServingError``: the champion keeps serving.
An API error part-way undoes the same way and re-raises (404 → ``NotFound``, 409 → ``AlreadyExists``,
422 → ``SpecError``). Each document's hash is kept in an annotation, so applying the same spec again
writes nothing (``changed: False``). With ``deferral`` set (by a release operator) each step's wait is
handed over with ``RolloutPending`` instead (``pushbutton.kube.rollout``); the resumed apply writes
nothing already written and goes on with the next step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pushbutton.errors import NotFound, PushbuttonError, ServingError
from pushbutton.kube.client import CustomObjects, connection_extra
from pushbutton.kube.rollout import (
    Deferral,
    RolloutPending,
    merge_undo,
    run_undo,
    undo_carried,
    undo_step,
    wait_entry,
)
from pushbutton.kube.runtime import (
    AVAILABLE,
    FAILED,
    HASH_ANNOTATION,
    PENDING,
    NotAvailable,
    _apply_patch,
    _generation,
    _hash,
    _not_served,
    restore_object,
)
from pushbutton.kube.tester import LocalTester
from pushbutton.serving.spec import Predictor, ServingSpec

GROUP, VERSION = "mlops.seldon.io", "v1alpha1"
PLURALS = {"Model": "models", "Pipeline": "pipelines", "Experiment": "experiments"}
DEPLOYMENT_LABEL = "pushbutton.io/deployment"
STORAGE_TEMPLATE = "s3://mlflow/models/{model}/{version}"
Key = tuple[str, str]  # (kind, name)


class SeldonV2Config(BaseModel):
    """The Seldon Connection's extra for ``runtime: seldon-v2``."""

    model_config = ConfigDict(extra="forbid")

    runtime: Literal["seldon-v2"]
    namespace: str | None = None
    kubernetes_conn_id: str = Field("kubernetes_default", min_length=1)
    storage_template: str = Field(
        min_length=1,
        description="where MLServer loads a version from, e.g. s3://mlflow/models/{model}/{version}",
    )
    inference_url: str | None = None
    apply_timeout_seconds: float = Field(600.0, gt=0, le=3600)
    poll_seconds: float = Field(5.0, gt=0, le=300)

    @field_validator("storage_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            sample = value.format(model="m", version="1", env_key="k")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"'{value}' is not a template of {{model}}, {{version}}, {{env_key}} ({exc!r})"
            ) from None
        if "{version}" not in value or "://" not in sample:
            raise ValueError(f"'{value}' must be a storage URI naming the version, e.g. '{STORAGE_TEMPLATE}'")
        return value


FIXES = {
    "storage_template": f"set extra.storage_template to where the versions' artifacts are, e.g. '{STORAGE_TEMPLATE}'",
    "runtime": "set extra.runtime to 'seldon-v2' (or 'seldon-v1', 'local')",
}


def seldon_v2_config(extra: Mapping[str, Any], where: str) -> SeldonV2Config:
    """The connection's extra as ``SeldonV2Config``; ``SpecError`` naming each bad field and its fix."""
    return connection_extra(SeldonV2Config, extra, where, FIXES)


def readiness(obj: Mapping[str, Any], generation: int | None = None) -> tuple[str, str]:
    """(``Available`` | ``Failed`` | ``pending``, what Seldon says) of a v2 resource: ``Available`` when
    its ``Ready`` condition is ``True``; ``Failed`` when a condition is ``False`` for a reason or with a
    message naming a failure; a status for an older generation than ``generation`` is still pending."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if generation is not None and isinstance(observed, int) and observed < generation:
        return PENDING, f"Seldon has not seen generation {generation} yet (observed {observed})"
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    text = "; ".join(
        f"{c.get('type')}={c.get('status')}" + "".join(f" {c[k]}" for k in ("reason", "message") if c.get(k))
        for c in conditions
    )
    if any(c.get("type") == "Ready" and str(c.get("status")) == "True" for c in conditions):
        return AVAILABLE, text
    if any(
        str(c.get("status")) == "False" and "fail" in f"{c.get('reason')} {c.get('message')}".lower()
        for c in conditions
    ):
        return FAILED, text
    return PENDING, text or "no status yet"


def _key(obj: Mapping[str, Any]) -> Key:
    return str(obj.get("kind")), str((obj.get("metadata") or {}).get("name"))


class SeldonV2Runtime(LocalTester):
    """Serve ServingSpecs as Seldon Core v2 resources through a ``kubernetes.client.ApiClient``."""

    runtime_name = "seldon-v2"

    runtime = "seldon-v2"

    def __init__(
        self,
        api_client: Any,
        *,
        storage_template: str = STORAGE_TEMPLATE,
        inference_url: str | None = None,
        tester: Any = None,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        render: Callable[..., list[dict[str, Any]]] | None = None,
        validate: Callable[[list[dict[str, Any]]], None] | None = None,
        http: Any = None,
    ):
        self.resources = {
            kind: CustomObjects(api_client, group=GROUP, version=VERSION, plural=plural, kind=kind)
            for kind, plural in PLURALS.items()
        }
        self.storage_template, self.inference_url, self.tester = storage_template, inference_url, tester
        self.timeout, self.poll_interval, self.sleep, self.clock = timeout, poll_interval, sleep, clock
        self._render, self._validate, self._http = render, validate, http
        self.deferral: Deferral | None = None  # set by a deferring operator: RolloutPending, no polling

    @classmethod
    def from_config(cls, api_client: Any, config: SeldonV2Config, **kwargs: Any) -> SeldonV2Runtime:
        return cls(api_client, storage_template=config.storage_template, inference_url=config.inference_url,
                   timeout=config.apply_timeout_seconds, poll_interval=config.poll_seconds, **kwargs)  # fmt: skip

    # apply ------------------------------------------------------------------------------------

    def storage_uri(self, predictor: Predictor) -> str:
        return self.storage_template.format(model=predictor.model, version=predictor.version,
                                            env_key=predictor.env_key)  # fmt: skip

    def manifests(self, spec: ServingSpec) -> list[dict[str, Any]]:
        """The resources serving ``spec``, checked against the CRD schemas, with pushbutton's label and hash."""
        render, validate = self._render, self._validate
        if render is None:
            from pushbutton.kube.seldon_v2 import render_seldon_v2 as render
        if validate is None:
            from pushbutton.kube.schemas import validate_all as validate
        from pushbutton.kube.graph import version_graphs

        uris = {p.name: self.storage_uri(p) for p in spec.predictors}
        graphs = version_graphs(spec)  # each version's own model.yaml graph; none: single-model as before
        docs = render(spec, storage_uris=uris, **({"graphs": graphs} if graphs else {}))
        validate(docs)  # SpecError before anything reaches the cluster
        for doc in docs:
            meta = doc.setdefault("metadata", {})
            meta.setdefault("labels", {})[DEPLOYMENT_LABEL] = spec.deployment
            meta.setdefault("annotations", {})[HASH_ANNOTATION] = _hash(doc)
        return docs

    def current(self, namespace: str, deployment: str) -> dict[Key, dict[str, Any]]:
        """pushbutton's resources of ``deployment`` in the cluster, by (kind, name)."""
        found: dict[Key, dict[str, Any]] = {}
        for kind, api in self.resources.items():
            for obj in api.list(namespace, {DEPLOYMENT_LABEL: deployment}):
                found[kind, obj["metadata"]["name"]] = {"kind": kind, **obj}
        return found

    def apply(self, spec: ServingSpec) -> dict[str, Any]:
        """Make the resources serve ``spec``; idempotent. On failure the previous resources are restored."""
        started = self.clock()
        ns = spec.namespace
        desired = self.manifests(spec)
        current = self.current(ns, spec.deployment)
        actions: dict[Key, str] = {}
        undo: list[dict[str, Any]] = list(self.deferral.undo) if self.deferral else []
        deadline = started + self.timeout
        try:
            waits = [self._put(ns, d, current, actions, undo) for d in desired if d["kind"] != "Experiment"]
            self._wait_ready(ns, waits, deadline)
            waits = [self._put(ns, d, current, actions, undo) for d in desired if d["kind"] == "Experiment"]
            wanted = {_key(d) for d in desired}
            for key, obj in current.items():  # the champion answers alone again: the Experiment goes
                if key[0] == "Experiment" and key not in wanted:
                    api = self.resources["Experiment"]
                    api.delete(ns, key[1])
                    actions[key] = "deleted"
                    undo[:] = merge_undo(undo, [undo_step("Experiment", ns, key[1], obj)])
            self._wait_ready(ns, waits, deadline)
        except RolloutPending as pending:
            pending.undo = undo
            raise
        except NotAvailable as exc:
            raise _not_served(exc, undo_carried(self, undo)) from exc
        except PushbuttonError as exc:
            outcome = undo_carried(self, undo)
            if undo and outcome.startswith("could NOT"):
                raise ServingError(f"{exc}; {outcome}") from exc
            raise
        if self.deferral is not None:
            self.deferral.undo = []  # served: nothing of this rollout is left to undo (pruning is not undone)
        self._prune(ns, current, {_key(d) for d in desired}, actions)
        changed = any(a != "unchanged" for a in actions.values())
        return {
            "deployment": spec.key,
            "path": spec.external_path,
            "changed": changed,
            "action": "created" if not current else "patched" if changed else "unchanged",
            "resources": {f"{k}/{n}": a for (k, n), a in actions.items()},
            "state": AVAILABLE,
            "route": self._route(self.current(ns, spec.deployment), spec.deployment),
            "seconds": round(self.clock() - started, 2),
        }

    def _put(
        self,
        ns: str,
        doc: dict[str, Any],
        current: Mapping[Key, dict[str, Any]],
        actions: dict[Key, str],
        undo: list[dict[str, Any]],
    ) -> tuple[Key, int | None]:
        """Create or patch one document (noting how to undo it); the generation to wait for."""
        key = _key(doc)
        api, name = self.resources[key[0]], key[1]
        before = current.get(key)
        if before is None:
            created = api.create(ns, doc)
            actions[key] = "created"
            undo[:] = merge_undo(undo, [undo_step(key[0], ns, name, None)])
            return key, _generation(created)
        if (before["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) == doc["metadata"][
            "annotations"
        ][HASH_ANNOTATION]:
            actions[key] = "unchanged"
            return key, _generation(before)
        patched = api.patch(ns, name, _apply_patch(before, doc))
        actions[key] = "patched"
        undo[:] = merge_undo(undo, [undo_step(key[0], ns, name, before)])
        return key, _generation(patched)

    def _wait_ready(self, ns: str, waits: list[tuple[Key, int | None]], deadline: float) -> None:
        """Poll until every resource is Ready; ``NotAvailable`` on Failed, deletion or the deadline."""
        pending = list(waits)
        while pending:
            still, last = [], ""
            for key, generation in pending:
                api = self.resources[key[0]]
                what = api.what(ns, key[1])
                obj = api.get(ns, key[1])
                if obj is None:
                    raise NotAvailable(f"{what} was deleted while waiting for it to become Ready", "deleted")
                state, description = readiness(obj, generation)
                if state == FAILED:
                    raise NotAvailable(
                        f"{what} failed: Seldon reports: {description}", description, failed=True
                    )
                if state == PENDING:
                    still.append((key, generation))
                    last = f"{what}: {description}"
            pending = still
            if not pending:
                return
            if self.deferral is not None:  # the operator waits in a trigger, not here
                raise RolloutPending(
                    [wait_entry(k[0], ns, k[1], g) for k, g in pending],
                    undo=[],
                    deadline=self.deferral.deadline_from(self.timeout),
                    poll_interval=self.poll_interval,
                    description=last,
                )
            left = deadline - self.clock()
            if left <= 0:
                raise NotAvailable(
                    f"not Ready within {self.timeout:g} s (last status: {last}); check Seldon's events "
                    "(`kubectl describe model,pipeline,experiment`) or raise extra.apply_timeout_seconds",
                    last,
                )
            self.sleep(min(self.poll_interval, left))

    def undo(self, steps: list[dict[str, Any]]) -> str:
        """Put back what ``steps`` (``pushbutton.kube.rollout.undo_step``) wrote; what was done."""
        return run_undo(steps, lambda kind: self.resources[kind], restore_object)

    def _prune(self, ns: str, current: Mapping[Key, Any], wanted: set[Key], actions: dict[Key, str]) -> None:
        """Delete the resources of versions no longer served (Pipelines before their Models)."""
        for kind in ("Pipeline", "Model"):
            for key in [k for k in current if k[0] == kind and k not in wanted]:
                api = self.resources[kind]
                try:
                    api.delete(ns, key[1])
                except PushbuttonError as exc:
                    raise ServingError(
                        f"the new spec serves, but {api.what(ns, key[1])} of a version no longer served could "
                        f"not be removed ({exc}); run the step again to remove it"
                    ) from exc
                actions[key] = "deleted"

    # the rest of the runtime API --------------------------------------------------------------

    def _route(self, objects: Mapping[Key, Mapping[str, Any]], deployment: str) -> dict[str, Any]:
        """What the resources serve, in the local gateway route's config shape."""
        from pushbutton.kube.graph import ROLE_LABEL, VERSION_LABEL

        backends, roles = {}, {}
        for (kind, name), obj in objects.items():
            labels = (obj.get("metadata") or {}).get("labels") or {}
            version = str(labels.get(VERSION_LABEL, ""))
            if (
                kind in ("Model", "Pipeline")
                and name == f"{deployment}-v{version}"
                and labels.get(ROLE_LABEL)
            ):
                backends[labels[ROLE_LABEL]] = {"version": version}
                roles[name] = labels[ROLE_LABEL]
        experiment = objects.get(("Experiment", deployment))
        weights: dict[str, int] = {}
        shadows: list[str] = []
        if experiment is not None:
            body = experiment.get("spec") or {}
            weights = {roles[c["name"]]: int(c.get("weight") or 0) for c in body.get("candidates") or []
                       if c.get("name") in roles and int(c.get("weight") or 0) > 0}  # fmt: skip
            mirror = (body.get("mirror") or {}).get("name")
            shadows = [roles[mirror]] if mirror in roles else []
        elif len(backends) == 1:
            weights = {next(iter(backends)): 100}
        return {"backends": backends, "weights": weights, "shadows": shadows}

    def status(self, namespace: str, deployment: str) -> dict[str, Any]:
        """Readiness of every resource and what they serve; ``NotFound`` when there are none."""
        objects = self.current(namespace, deployment)
        if not objects:
            raise NotFound(
                f"Seldon v2 resources of {namespace}/{deployment} do not exist; deploy the model first "
                "(its CI/CD DAG or `pushbutton promote`)"
            )
        states = {f"{k}/{n}": readiness(obj) for (k, n), obj in objects.items()}
        values = {s for s, _ in states.values()}
        route = self._route(objects, deployment)
        return {
            "deployment": f"{namespace}/{deployment}",
            "runtime": self.runtime,
            "state": FAILED if FAILED in values else AVAILABLE if values == {AVAILABLE} else PENDING,
            "resources": {name: {"state": s, "description": d} for name, (s, d) in states.items()},
            "route": route,
            "backends": route["backends"],
        }

    def route(self, namespace: str, deployment: str) -> dict[str, Any] | None:
        objects = self.current(namespace, deployment)
        return self._route(objects, deployment) if objects else None

    def remove(self, namespace: str, deployment: str) -> dict[str, Any]:
        """Delete the deployment's Experiment, Pipelines and Models (in that order); idempotent."""
        objects = self.current(namespace, deployment)
        deleted = [self.resources[k].delete(namespace, n) for kind in ("Experiment", "Pipeline", "Model")
                   for (k, n) in objects if k == kind]  # fmt: skip
        return {"deployment": f"{namespace}/{deployment}", "deleted": any(deleted)}

    def predict(self, namespace: str, deployment: str, payload: Any) -> dict[str, Any]:
        """One prediction through Seldon's mesh (extra ``inference_url``), Open Inference Protocol: a
        Seldon v1 ``{"data": {"ndarray": rows}}`` payload is sent as one FP64 input tensor."""
        import httpx

        if not self.inference_url:
            raise ServingError(
                f"cannot send a prediction to {namespace}/{deployment}: the Seldon connection has no "
                "extra.inference_url (the seldon-mesh service's address); set it"
            )
        route = self.route(namespace, deployment) or {}
        backends = route.get("backends") or {}
        role = "champion" if "champion" in backends else next(iter(backends), None)
        if role is None:
            raise NotFound(f"no Seldon v2 resources serve {namespace}/{deployment}; deploy the model first")
        objects = self.current(namespace, deployment)
        name = f"{deployment}-v{backends[role]['version']}"
        header = f"{name}.pipeline" if ("Pipeline", name) in objects else name
        body = payload
        rows = (payload.get("data") or {}).get("ndarray") if isinstance(payload, Mapping) else None
        if isinstance(rows, list):
            width = len(rows[0]) if rows and isinstance(rows[0], list) else 1
            flat = [v for row in rows for v in (row if isinstance(row, list) else [row])]
            body = {
                "inputs": [{"name": "predict", "shape": [len(rows), width], "datatype": "FP64", "data": flat}]
            }
        url = f"{self.inference_url.rstrip('/')}/v2/models/{name}/infer"
        client = self._http or httpx.Client(timeout=60.0)
        try:
            resp = client.post(url, json=body, headers={"seldon-model": header})
        except httpx.HTTPError as exc:
            raise ServingError(f"prediction on {namespace}/{deployment} via {url} failed: {exc}") from exc
        finally:
            if self._http is None:
                client.close()
        if resp.status_code != 200:
            raise ServingError(
                f"prediction on {namespace}/{deployment} failed with HTTP {resp.status_code}: {resp.text[:500]}"
            )
        return {"predictor": role, "version": backends[role]["version"], "response": resp.json()}
