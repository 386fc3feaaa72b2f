"""Traffic plans and gateway routes derived from ServingSpecs (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pushbutton.config import REPO_ROOT
from pushbutton.serving.local import route_config
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
            "candidate": {"url": URLS["candidate"], "version": "2"},
            "champion": {"url": URLS["champion"], "version": "1"},
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
    assert route_config(spec, URLS)["backends"] == {"candidate": {"url": URLS["candidate"], "version": "1"}}


def test_activation_and_rollback_keep_versions_on_their_urls(iris):
    """Activating v2 makes it the champion: same version, so the same microservice URL is reused."""
    during = route_config(with_candidate(iris, V2, V1), URLS)
    after = route_config(champion_only(iris, V2), {"champion": URLS["candidate"]})
    assert after == {
        "backends": {"champion": {"url": during["backends"]["candidate"]["url"], "version": "2"}},
        "weights": {"champion": 100},
        "shadows": [],
    }


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
