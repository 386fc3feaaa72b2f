"""What both Kubernetes runtimes hand to the local runtime: the CI/CD test step's microservice.

The gate checks a version in a short-lived seldon-core microservice on the worker before anything is
applied to the cluster (the Seldon Connection's host/port: the local gateway), so ``warm``,
``endpoint``, ``release`` and ``close`` go to a ``LocalRuntime`` (``tester``) on every runtime.
"""

from __future__ import annotations

from typing import Any

from pushbutton.errors import ServingError
from pushbutton.serving.spec import Predictor


class LocalTester:
    """Mixin: the runtime's ``tester`` (a ``LocalRuntime`` or None) serves the test step's versions."""

    tester: Any = None
    runtime_name = "kubernetes"

    def _tester(self, what: str) -> Any:
        if self.tester is None:
            raise ServingError(
                f"the {self.runtime_name} runtime has no local test runtime to {what}; the test step checks a "
                "version in a microservice on the worker: run it where the local gateway runs (Seldon "
                "connection host/port)"
            )
        return self.tester

    def warm(self, namespace: str, predictor: Predictor) -> str:
        """The version's test microservice on this worker (the gate checks it before it is deployed)."""
        return self._tester("start a test microservice").warm(namespace, predictor)

    def endpoint(self, namespace: str, model: str, version: str) -> str | None:
        """A version's microservice reachable from this worker (None: the cluster's pods are not)."""
        return None if self.tester is None else self.tester.endpoint(namespace, model, version)

    def release(self, namespace: str, model: str, version: str) -> bool:
        return False if self.tester is None else self.tester.release(namespace, model, version)

    def close(self) -> None:
        if self.tester is not None:
            self.tester.close()
