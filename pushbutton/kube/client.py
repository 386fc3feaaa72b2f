"""SeldonDeployments through the Kubernetes API: the calls, and their errors as pushbutton's exceptions.

Every API error is raised ``from`` the transport error as one of the core's exceptions: 404 →
``NotFound``, 409 → ``AlreadyExists``, 422 → ``SpecError`` (one issue per cause the API server gave,
its message verbatim), anything else (5xx, 401/403, an unreachable server) → ``ServingError``.
Patches are JSON merge patches (RFC 7386, ``application/merge-patch+json``, what
``patch_namespaced_custom_object`` sends for a dict) computed by ``merge_diff``, so keys the new
document no longer has are removed and lists (``predictors``) are replaced whole.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pushbutton.errors import AlreadyExists, NotFound, ServingError, SpecError, SpecIssue

if TYPE_CHECKING:
    from pydantic import BaseModel

GROUP = "machinelearning.seldon.io"
VERSION = "v1"
PLURAL = "seldondeployments"
KIND = "SeldonDeployment"

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")


def connection_extra(model: type[M], extra: Mapping[str, Any], where: str, fixes: Mapping[str, str]) -> M:
    """A Seldon Connection's ``extra`` validated as ``model`` (pydantic, ``extra="forbid"``); a
    ``SpecError`` naming each bad field with its fix (``fixes`` by field, else a generic one)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(dict(extra))
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            fix = fixes.get(field, f"remove extra.{field}" if err["type"] == "extra_forbidden" else
                            f"correct extra.{field} (see the README's Kubernetes runtime section)")  # fmt: skip
            issues.append(SpecIssue(where, f"extra.{field}", err["msg"].removeprefix("Value error, "), fix))
        raise SpecError(issues) from exc


def merge_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``old`` into ``new`` (empty when they are equal)."""
    old = old or {}
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = merge_diff(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = _no_nulls(value)
    return patch


def _no_nulls(value: Any) -> Any:
    """A merge patch cannot set a null inside a new object; drop such keys (Kubernetes does too)."""
    if isinstance(value, Mapping):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    return value


def _server_status(exc: Any) -> dict[str, Any]:
    """The ``Status`` object the API server answered with ({} when the body is not one)."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    with contextlib.suppress(TypeError, ValueError):
        parsed = json.loads(body) if isinstance(body, str) else None
        if isinstance(parsed, dict):
            return parsed
    return {}


def api_error(exc: Exception, what: str, action: str, crd: str = f"{PLURAL}.{GROUP}") -> Exception:
    """The core exception for a failed API call ``action`` on ``what`` (e.g. ``SeldonDeployment ns/name``);
    ``crd`` (``plural.group``) names the custom resource in hints."""
    status = getattr(exc, "status", None)
    if not isinstance(status, int) or status == 0:  # urllib3/aiohttp: no answer at all
        return ServingError(
            f"cannot {action} {what}: the Kubernetes API server did not answer ({exc}); check the "
            "Kubernetes connection (kubeconfig or in-cluster) and that the API server is reachable"
        )
    answer = _server_status(exc)
    message = str(answer.get("message") or getattr(exc, "reason", "") or "").strip()
    if status == 404:
        hint = (
            f"; is Seldon Core {'v1' if crd.endswith(GROUP) else 'v2'} installed (CRD {crd}) and does the "
            "namespace exist?"
            if action == "create"
            else ""
        )
        return NotFound(f"{what} not found ({message or 'HTTP 404'}) while trying to {action} it{hint}")
    if status == 409:
        return AlreadyExists(
            f"cannot {action} {what}: {message or 'it already exists (HTTP 409)'}; another apply raced this "
            "one — run the step again (it re-reads the deployment and patches it)"
        )
    if status == 422:
        causes = (answer.get("details") or {}).get("causes") or []
        fix = (
            f"the API server (CRD schema or Seldon's admission webhook) rejected the rendered "
            f"{what.split(' ')[0]}: correct the named field in model.yaml, or report a renderer bug"
        )
        issues = [
            SpecIssue(what, str(c.get("field") or ""), str(c.get("message") or message), fix)
            for c in causes
            if isinstance(c, Mapping)
        ]
        return SpecError(issues or [SpecIssue(what, "", message or "HTTP 422 Unprocessable Entity", fix)])
    hint = (
        "check the credentials and RBAC of the Kubernetes connection (verbs get/list/create/patch/delete "
        f"on {crd})"
        if status in (401, 403)
        else "the API server failed; trying again may work"
    )
    return ServingError(f"cannot {action} {what}: HTTP {status} {message}; {hint}")


class CustomObjects:
    """``CustomObjectsApi`` for one namespaced custom resource, errors mapped."""

    group, version, plural, kind = GROUP, VERSION, PLURAL, KIND

    def __init__(
        self, api_client: Any, *, group: str = "", version: str = "", plural: str = "", kind: str = ""
    ):
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.group, self.version = group or self.group, version or self.version
        self.plural, self.kind = plural or self.plural, kind or self.kind

    @property
    def crd(self) -> str:
        return f"{self.plural}.{self.group}"

    def what(self, namespace: str, name: str) -> str:
        return f"{self.kind} {namespace}/{name}"

    def _call(self, action: str, namespace: str, name: str, call: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return call()
        except (ApiException, HTTPError, OSError) as exc:
            raise api_error(exc, self.what(namespace, name), action, self.crd) from exc

    def _args(self, namespace: str) -> tuple[str, str, str, str]:
        return self.group, self.version, namespace, self.plural

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self._call(
                "read",
                namespace,
                name,
                lambda: self.api.get_namespaced_custom_object(*self._args(namespace), name),
            )
        except NotFound:
            return None

    def list(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The objects carrying all ``labels`` (also checked here: not every server filters)."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        found = self._call(
            "list",
            namespace,
            selector,
            lambda: self.api.list_namespaced_custom_object(*self._args(namespace), label_selector=selector),
        )
        items = found.get("items") or [] if isinstance(found, Mapping) else []
        return [
            item
            for item in items
            if all(((item.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        ]

    def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return self._call(
            "create",
            namespace,
            name,
            lambda: self.api.create_namespaced_custom_object(*self._args(namespace), dict(body)),
        )

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(
            "patch",
            namespace,
            name,
            lambda: self.api.patch_namespaced_custom_object(*self._args(namespace), name, dict(patch)),
        )

    def delete(self, namespace: str, name: str) -> bool:
        """Delete it; False when it was not there."""
        try:
            self._call(
                "delete",
                namespace,
                name,
                lambda: self.api.delete_namespaced_custom_object(*self._args(namespace), name),
            )
        except NotFound:
            return False
        return True


class SeldonDeployments(CustomObjects):
    """``seldondeployments.machinelearning.seldon.io/v1``."""
