"""Traffic plans and gateway routes derived from ServingSpecs (no processes)."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from pushbutton.config import REPO_ROOT, Settings
from pushbutton.serving import local
from pushbutton.serving.local import LocalRuntime, route_config
from pushbutton.serving.microservice import service_name
from pushbutton.serving.spec import (
    Predictor,
    Release,
    ServingSpec,
    champion_only,
    traffic_plan,
    with_candidate,
)
from pushbutton.spec import load_model_dir
from pushbutton.spec.model import TrafficSpec

V1 = Release("1", "/releases/iris/1/model", "aaaa", "/releases/iris/1/code")
V2 = Release("2", "/releases/iris/2/model", "bbbb", "/releases/iris/2/code")
URLS = {"champion": "http://127.0.0.1:9001", "candidate": "http://127.0.0.1:9002"}


@pytest.fixture(scope="module")
def iris():
    return load_model_dir(Path(REPO_ROOT) / "models" / "iris")


def test_steady_state_sends_everything_to_the_champion(iris):
    spec = champion_only(iris, V1)
    assert traffic_plan(spec).weights == {"champion": 100}
    assert traffic_plan(spec).shadows == ()
    assert spec.external_path == "/seldon/models/iris/api/v1.0/predictions"


def test_canary_splits_by_the_spec_percent(iris):
    spec = with_candidate(iris, V2, V1)  # iris: canary, candidate_percent 10
    plan = traffic_plan(spec)
    assert plan.weights == {"champion": 90, "candidate": 10}
    assert plan.shadows == ()
    route = route_config(spec, URLS)
    assert route == {
        "backends": {
            "candidate": {"url": URLS["candidate"], "version": "2", "timeout_seconds": 60.0},
            "champion": {"url": URLS["champion"], "version": "1", "timeout_seconds": 60.0},
        },
        "weights": {"candidate": 10, "champion": 90},
        "shadows": [],
    }


def test_each_predictor_keeps_its_own_versions_class_and_schema(iris):
    renamed = iris.model_copy(
        update={
            "predict": iris.predict.model_copy(update={"class_": "predict:NewIris"}),
            "schema_": iris.schema_.model_copy(update={"inputs": iris.schema_.inputs[:3]}),
        }
    )
    spec = with_candidate(renamed, V2, V1, champion_model=iris)
    champion, candidate = spec.predictor("champion"), spec.predictor("candidate")
    assert (champion.class_ref, len(champion.inputs)) == (iris.predict.class_, 4)
    assert (candidate.class_ref, len(candidate.inputs)) == ("predict:NewIris", 3)
    assert [f.name for f in champion.inputs] == iris.feature_names


def test_shadow_candidate_gets_copies_not_traffic(iris):
    shadowed = iris.model_copy(update={"traffic": TrafficSpec(mode="shadow")})
    spec = with_candidate(shadowed, V2, V1)
    plan = traffic_plan(spec)
    assert plan.weights == {"champion": 100}
    assert plan.shadows == ("candidate",)
    route = route_config(spec, URLS)
    assert route["shadows"] == ["candidate"] and route["weights"] == {"champion": 100}
    assert route["backends"]["candidate"]["version"] == "2"


def test_first_release_serves_the_candidate_alone(iris):
    spec = with_candidate(iris, V1, None)
    assert [p.name for p in spec.predictors] == ["candidate"]
    assert traffic_plan(spec).weights == {"candidate": 100}
    assert route_config(spec, URLS)["backends"] == {
        "candidate": {"url": URLS["candidate"], "version": "1", "timeout_seconds": 60.0}
    }


class FakeServices:
    """Microservices by name (one per namespace, model and version) on made-up ports: no processes."""

    def __init__(self, meta_dir: Path):
        self.meta_dir, self.ports = meta_dir, itertools.count(9001)
        self.running: dict[str, SimpleNamespace] = {}
        self.stopped: list[str] = []

    def start(self, env: str, *, namespace: str, model: str, version: str, code_dir: str, class_ref: str,
              model_uri: str, **_: object) -> SimpleNamespace:  # fmt: skip
        build = (model_uri, class_ref, code_dir)
        svc = SimpleNamespace(
            name=service_name(namespace, model, version),
            url=f"http://127.0.0.1:{next(self.ports)}",
            namespace=namespace,
            model=model,
            serves=lambda *asked: asked == build,
        )
        self.running[svc.name] = svc
        return svc

    def get(self, name: str) -> SimpleNamespace | None:
        return self.running.get(name)

    def list(self, namespace: str, model: str, dead: bool = False) -> list[SimpleNamespace]:
        return [s for s in self.running.values() if (s.namespace, s.model) == (namespace, model)]

    def wait_healthy(self, svc: SimpleNamespace, timeout: float) -> None:
        pass

    def stop(self, name: str) -> bool:
        self.stopped.append(name)
        return self.running.pop(name, None) is not None


class FakeGateway:
    """Routes as the gateway keeps them; records which URLs it was asked to drain."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], dict] = {}
        self.drained: list[list[str]] = []

    def route(self, namespace: str, deployment: str) -> dict | None:
        config = self.routes.get((namespace, deployment))
        return None if config is None else {"config": config, "backends": config["backends"]}

    def put_route(self, namespace: str, deployment: str, **config: object) -> None:
        self.routes[(namespace, deployment)] = config

    def wait_drained(self, urls: list[str], timeout: float) -> None:
        self.drained.append(sorted(urls))


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalRuntime:
    monkeypatch.setattr(local, "load_env", lambda root, key: f"env {key}")
    result = LocalRuntime(Settings(home=tmp_path))
    result.services, result.gateway = FakeServices(tmp_path / "services"), FakeGateway()
    return result


def served(applied: dict) -> dict[str, tuple[str, str]]:
    return {role: (b["url"], b["version"]) for role, b in applied["route"]["backends"].items()}


def test_activation_and_rollback_keep_versions_on_their_urls(iris, runtime: LocalRuntime):
    """Activating v2 makes it the champion: same version, so the candidate's microservice and URL are
    reused and only v1's is stopped, after the gateway drained it; a rollback starts v1 again."""
    v1, v2 = service_name("models", "iris", "1"), service_name("models", "iris", "2")
    canary = runtime.apply(with_candidate(iris, V2, V1))
    assert sorted(canary["started"]) == [v1, v2]
    (champion_url, _), (candidate_url, _) = served(canary)["champion"], served(canary)["candidate"]

    activated = runtime.apply(champion_only(iris, V2))
    assert (activated["started"], activated["reused"], activated["stopped"]) == ([], [v2], [v1])
    assert served(activated) == {"champion": (candidate_url, "2")}  # the candidate's own microservice
    assert runtime.gateway.drained == [[champion_url]]

    rolled_back = runtime.apply(champion_only(iris, V1))
    assert (rolled_back["started"], rolled_back["stopped"]) == ([v1], [v2])
    assert served(rolled_back)["champion"][1] == "1"
    assert runtime.services.stopped == [v1, v2]


def predictor(**kw):
    base = dict(name="champion", model="iris", version="1", model_uri="m", class_ref="predict:IrisClassifier")
    return Predictor(**{**base, **kw})


@pytest.mark.parametrize(
    ("predictors", "words"),
    [
        ([predictor(traffic=90)], "sums to 90"),
        ([predictor(traffic=0, shadow=True)], "every predictor is a shadow"),
        (
            [predictor(traffic=100), predictor(name="candidate", version="2", traffic=10, shadow=True)],
            "shadows take 0",
        ),
        ([predictor(traffic=100, model="wine")], "not 'iris'"),
    ],
)
def test_inconsistent_specs_are_rejected(predictors, words):
    with pytest.raises(ValidationError, match=words):
        ServingSpec(namespace="models", deployment="iris", predictors=predictors)
