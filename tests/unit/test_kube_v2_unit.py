"""What the seldon-v2 runtime decides without a server: readiness from Seldon v2's conditions, the
Connection's extra and its errors, the hook choosing the runtime, predictions sent as Open Inference
Protocol requests."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pushbutton.errors import SpecError
from pushbutton.kube.runtime_v2 import SeldonV2Runtime, readiness, seldon_v2_config


def status(*conditions: tuple[str, str, str], observed: int | None = None) -> dict[str, Any]:
    conds = [{"type": t, "status": s, **({"reason": r} if r else {})} for t, s, r in conditions]
    return {"status": {"conditions": conds, **({"observedGeneration": observed} if observed else {})}}


def test_readiness_follows_the_ready_condition_and_failure_reasons() -> None:
    assert readiness({})[0] == "pending"
    assert (
        readiness(status(("ModelReady", "False", "ModelProgressing"), ("Ready", "False", "")))[0] == "pending"
    )
    ready = status(("ModelReady", "True", ""), ("Ready", "True", ""), observed=2)
    assert readiness(ready, generation=2)[0] == "Available"
    assert readiness(ready, generation=3) == ("pending", "Seldon has not seen generation 3 yet (observed 2)")
    failed = readiness(
        status(("ModelReady", "False", "ScheduleFailed"), ("Ready", "False", "ScheduleFailed"))
    )
    assert failed == ("Failed", "ModelReady=False ScheduleFailed; Ready=False ScheduleFailed")


GOOD = {"runtime": "seldon-v2", "storage_template": "s3://mlflow/models/{model}/{version}"}


def test_connection_extra_defaults_and_errors() -> None:
    config = seldon_v2_config(GOOD, "connection pushbutton_seldon")
    assert (config.kubernetes_conn_id, config.apply_timeout_seconds) == ("kubernetes_default", 600.0)
    with pytest.raises(SpecError) as missing:
        seldon_v2_config({"runtime": "seldon-v2", "image_registry": "x"}, "connection pushbutton_seldon")
    text = str(missing.value)
    assert (
        "connection pushbutton_seldon: extra.storage_template: Field required (fix: set extra.storage_template"
        in text
    )
    assert "extra.image_registry: Extra inputs are not permitted (fix: remove extra.image_registry)" in text
    with pytest.raises(SpecError, match=r"must be a storage URI naming the version"):
        seldon_v2_config(GOOD | {"storage_template": "s3://mlflow/models/{model}/latest"}, "c")


def test_hook_builds_the_v2_runtime_through_the_kubernetes_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from operators.hooks import SeldonHook

    seen: list[str | None] = []
    monkeypatch.setattr(KubernetesHook, "get_conn", lambda self: seen.append(self.conn_id))
    extra = GOOD | {"kubernetes_conn_id": "prod_cluster", "apply_timeout_seconds": 120}
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON",
                       json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8000, "extra": extra}))  # fmt: skip
    runtime = SeldonHook().get_conn()
    assert isinstance(runtime, SeldonV2Runtime)
    assert (seen, runtime.timeout, runtime.tester is not None) == (["prod_cluster"], 120, True)


def test_predict_sends_an_open_inference_request_to_the_champion() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"outputs": [{"name": "predict", "data": [1]}]})

    runtime = SeldonV2Runtime(
        None, inference_url="http://mesh:80/", http=httpx.Client(transport=httpx.MockTransport(answer))
    )
    labels = {"pushbutton.io/version": "2", "pushbutton.io/role": "champion"}
    runtime.current = lambda ns, name: {("Model", "iris-v2"): {"metadata": {"labels": labels}}}  # type: ignore[method-assign]
    result = runtime.predict(
        "models", "iris", {"data": {"names": ["a", "b"], "ndarray": [[1.0, 2.0], [3.0, 4.0]]}}
    )
    assert (result["predictor"], result["version"]) == ("champion", "2")
    [request] = sent
    assert (str(request.url), request.headers["seldon-model"]) == (
        "http://mesh/v2/models/iris-v2/infer",
        "iris-v2",
    )
    assert json.loads(request.content) == {
        "inputs": [{"name": "predict", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}]
    }
