"""The in-process graph executor runs nodes in Seldon's executor order, over classes defined here."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pushbutton.serving.graph import GraphError, GraphExecutor, build_components
from pushbutton.spec.model import GraphNode

CALLS: list[str] = []


class Double:
    class_names = ["x2", "y2"]  # names its output, as seldon-core names every node's answer

    def transform_input(self, X, features_names=None):
        CALLS.append(f"double:{','.join(features_names)}")
        return np.asarray(X) * 2


class Fixed:
    """A MODEL answering constant class probabilities (its parameters say which)."""

    def __init__(self, model_uri: str, first: float = 0.5):
        self.model_uri, self.first = model_uri, first

    def predict(self, X, features_names=None):
        CALLS.append(f"predict:{self.first}:{','.join(features_names)}")
        return np.tile([self.first, 1 - self.first], (len(X), 1))


class Labelled(Fixed):
    class_names = ["setosa", "other"]


class Mean:
    def aggregate(self, Xs, features_names=None):
        CALLS.append(f"aggregate:{len(Xs)}:{features_names}")
        return np.mean(Xs, axis=0)


class ArgMax:
    class_names = ["label"]  # not used: seldon-core names no one-dimensional answer

    def transform_output(self, X, features_names=None):
        CALLS.append(f"output:{','.join(features_names)}")
        return np.argmax(X, axis=1)


class ByFirstValue:
    """Routes to child 1 when the first value is negative, to all children on 0, else child 0."""

    def route(self, X, features_names=None):
        first = X[0][0]
        return -1 if first == 0 else int(first < 0)


CLASSES = {
    "t:Double": Double,
    "m:Fixed": Fixed,
    "m:Labelled": Labelled,
    "c:Mean": Mean,
    "o:ArgMax": ArgMax,
    "r:Route": ByFirstValue,
}


def graph(spec: dict) -> GraphNode:
    return GraphNode.model_validate(spec)


def run(root: GraphNode, X, names=("x", "y")):
    CALLS.clear()
    components = build_components(
        root, default_class="m:Fixed", model_uri="/art", resolve=CLASSES.__getitem__
    )
    return GraphExecutor(root, components).predict(X, names)


ENSEMBLE = {
    "name": "out",
    "type": "OUTPUT_TRANSFORMER",
    "class": "o:ArgMax",
    "children": [
        {
            "name": "prep",
            "type": "TRANSFORMER",
            "class": "t:Double",
            "children": [
                {
                    "name": "vote",
                    "type": "COMBINER",
                    "class": "c:Mean",
                    "children": [
                        {"name": "a", "parameters": {"first": 0.9}},
                        {"name": "b", "parameters": {"first": 0.1}, "class": "m:Labelled"},
                        {"name": "c", "parameters": {"first": 0.8}},
                    ],
                }
            ],
        }
    ],
}


def test_transform_then_children_then_aggregate_then_transform_output() -> None:
    answer = run(graph(ENSEMBLE), [[1.0, 2.0], [3.0, 4.0]])
    assert CALLS == [
        "double:x,y",
        "predict:0.9:x2,y2",  # children get the transformer's output, named by its class_names
        "predict:0.1:x2,y2",
        "predict:0.8:x2,y2",
        "aggregate:3:[['t:0', 't:1'], ['setosa', 'other'], ['t:0', 't:1']]",
        "output:t:0,t:1",  # a combiner without class_names: t:0, t:1 as seldon-core names it
    ]
    assert answer.message.names == []  # one-dimensional: seldon-core sends no names
    assert answer.message.data.tolist() == [0, 0]  # mean of (0.9, 0.1, 0.8) = 0.6 > 0.4
    assert answer.routing == {}


def test_a_model_node_without_class_is_the_predict_class_built_with_model_uri() -> None:
    components = build_components(
        graph(ENSEMBLE), default_class="m:Fixed", model_uri="/art", resolve=CLASSES.__getitem__
    )
    assert type(components["a"]) is Fixed and components["a"].model_uri == "/art"
    assert components["a"].first == 0.9 and type(components["b"]) is Labelled


def test_a_model_with_a_child_passes_its_prediction_on() -> None:
    root = graph(
        {"name": "a", "parameters": {"first": 0.2}, "children": [{"name": "b", "class": "m:Labelled"}]}
    )
    answer = run(root, [[1.0, 1.0]])
    assert CALLS == ["predict:0.2:x,y", "predict:0.5:t:0,t:1"]
    assert answer.message.names == ["setosa", "other"]


ROUTED = {
    "name": "route",
    "type": "ROUTER",
    "class": "r:Route",
    "children": [
        {"name": "pos", "parameters": {"first": 0.7}},
        {"name": "neg", "parameters": {"first": 0.3}},
    ],
}


@pytest.mark.parametrize(
    ("first", "route", "calls"),
    [
        (5.0, 0, ["predict:0.7:x,y"]),
        (-5.0, 1, ["predict:0.3:x,y"]),
        (0.0, -1, ["predict:0.7:x,y", "predict:0.3:x,y"]),
    ],
)
def test_a_router_sends_the_message_to_the_child_it_picks(first: float, route: int, calls: list[str]) -> None:
    answer = run(graph(ROUTED), [[first, 1.0]])
    assert calls == CALLS
    assert answer.routing == {"route": route}
    assert answer.message.data[0].tolist() == pytest.approx([0.7, 0.3] if route != 1 else [0.3, 0.7])


class BadRoute:
    def __init__(self, answer):
        self.answer = answer

    def route(self, X, features_names=None):
        return self.answer


@pytest.mark.parametrize(
    ("value", "problem"), [(2, "route returned 2, but it has 2 children"), ("a", "route returned 'a'")]
)
def test_a_route_outside_the_children_names_the_node(value, problem: str) -> None:
    root = graph({**ROUTED, "class": "r:Bad", "parameters": {"answer": 0}})
    components = build_components(
        root, default_class="m:Fixed", model_uri="/art", resolve={**CLASSES, "r:Bad": BadRoute}.__getitem__
    )
    components["route"].answer = value
    with pytest.raises(GraphError, match=r"graph node 'route' \(ROUTER\): " + re.escape(problem)):
        GraphExecutor(root, components).predict([[1.0, 1.0]], ["x", "y"])


class Broken:
    def __init__(self, model_uri: str):
        self.model_uri = model_uri

    def predict(self, X, features_names=None):
        raise ValueError("bad input shape")


def test_a_failing_node_is_named_with_its_method() -> None:
    root = graph({"name": "m", "class": "m:Broken"})
    components = build_components(
        root, default_class="m:Fixed", model_uri="/art", resolve={"m:Broken": Broken}.__getitem__
    )
    with pytest.raises(
        GraphError, match=r"graph node 'm' \(MODEL\): Broken\.predict raised ValueError: bad input shape"
    ):
        GraphExecutor(root, components).predict([[1.0]], ["x"])


def test_a_class_lacking_its_node_method_or_failing_to_build_is_refused() -> None:
    root = graph(
        {"name": "vote", "type": "COMBINER", "class": "t:Double", "children": [{"name": "a"}, {"name": "b"}]}
    )
    with pytest.raises(GraphError, match="t:Double has no aggregate method, which a COMBINER needs"):
        build_components(root, default_class="m:Fixed", model_uri="/art", resolve=CLASSES.__getitem__)
    root = graph({"name": "a", "parameters": {"unknown": 1}})
    with pytest.raises(GraphError, match=r"graph node 'a': m:Fixed\(unknown, model_uri\) raised TypeError"):
        build_components(root, default_class="m:Fixed", model_uri="/art", resolve=CLASSES.__getitem__)


def test_every_node_needs_a_component() -> None:
    with pytest.raises(GraphError, match=r"no component for graph nodes \['neg'\]"):
        GraphExecutor(graph(ROUTED), {"route": ByFirstValue(), "pos": Fixed("/art")})
