"""An inference graph run in-process the way Seldon Core v1's executor runs it, over plain Python.

For each node, parents first (``executor/predictor/predictor_process.go``):

1. *input*: a MODEL node's ``predict``, a TRANSFORMER's ``transform_input``; other types pass the
   message on;
2. *children*: none: the message is the node's answer. Otherwise a ROUTER's ``route`` picks one
   child by index (``-1``: all of them); any other node sends the message to all its children.
   A COMBINER's ``aggregate`` turns the children's answers into one; any other node answers with
   its (only) child's;
3. *output*: an OUTPUT_TRANSFORMER's ``transform_output`` on that answer.

Classes follow the seldon-core python wrapper contract: ``method(X, features_names)`` (``aggregate``
gets the list of answers and the list of their names); names of a transformed message come from the
class's ``feature_names`` (attribute or method) when it has one, else stay; a MODEL's answer is
named by its ``class_names``, else ``t:0``, ``t:1``, ... as the wrapper names them. Children run one
after the other (the executor runs them concurrently; answers are the same). The answer records each
ROUTER's choice as Seldon's ``meta.routing`` does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pushbutton.errors import PushbuttonError
from pushbutton.spec.model import NODE_METHODS, GraphNode

ALL_CHILDREN = -1  # what a ROUTER returns to send the message to every child


class GraphError(PushbuttonError):
    """A node failed, answered what the contract forbids, or a class cannot be built."""


@dataclass(frozen=True)
class Message:
    """What flows along the graph's edges: rows of values and their column names."""

    data: Any
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Answer:
    """The graph's answer and each ROUTER's choice (node name to child index, as ``meta.routing``)."""

    message: Message
    routing: dict[str, int]


class GraphExecutor:
    """Runs ``root`` over ``components``: each node's class instance, by node name."""

    def __init__(self, root: GraphNode, components: Mapping[str, Any]):
        missing = [node.name for _, node in root.walk() if node.name not in components]
        if missing:
            raise GraphError(f"no component for graph nodes {missing}; build one per node (build_components)")
        self.root = root
        self.components = dict(components)

    def predict(self, data: Any, names: Sequence[str] | None = None) -> Answer:
        routing: dict[str, int] = {}
        message = self._node(self.root, Message(data, list(names or [])), routing)
        return Answer(message, routing)

    def _node(self, node: GraphNode, message: Message, routing: dict[str, int]) -> Message:
        component = self.components[node.name]
        if node.type == "MODEL":
            out = _call(node, "predict", component, message.data, message.names)
            message = Message(out, _class_names(component, out))
        elif node.type == "TRANSFORMER":
            out = _call(node, "transform_input", component, message.data, message.names)
            message = Message(out, _feature_names(component, message.names))
        message = self._children(node, message, routing)
        if node.type == "OUTPUT_TRANSFORMER":
            out = _call(node, "transform_output", component, message.data, message.names)
            message = Message(out, _feature_names(component, message.names))
        return message

    def _children(self, node: GraphNode, message: Message, routing: dict[str, int]) -> Message:
        if not node.children:
            return message
        chosen = node.children
        if node.type == "ROUTER":
            route = _route(
                node, _call(node, "route", self.components[node.name], message.data, message.names)
            )
            routing[node.name] = route
            if route != ALL_CHILDREN:
                chosen = [node.children[route]]
        answers = [self._node(child, message, routing) for child in chosen]
        if node.type != "COMBINER":
            return answers[0]
        component = self.components[node.name]
        out = _call(node, "aggregate", component, [a.data for a in answers], [a.names for a in answers])
        return Message(out, _feature_names(component, answers[0].names))


def _route(node: GraphNode, value: Any) -> int:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise GraphError(
            f"graph node '{node.name}' (ROUTER): route returned {value!r}; return one child index "
            f"(0..{len(node.children) - 1}) or {ALL_CHILDREN} for all children"
        )
    route = int(array.reshape(-1)[0])
    if route != ALL_CHILDREN and not 0 <= route < len(node.children):
        raise GraphError(
            f"graph node '{node.name}' (ROUTER): route returned {route}, but it has "
            f"{len(node.children)} children; return 0..{len(node.children) - 1} or {ALL_CHILDREN}"
        )
    return route


def _call(node: GraphNode, method: str, component: Any, data: Any, names: Any) -> Any:
    try:
        return getattr(component, method)(data, names)
    except GraphError:
        raise
    except Exception as exc:  # the node's own code: say which node and method raised
        raise GraphError(
            f"graph node '{node.name}' ({node.type}): {type(component).__name__}.{method} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _names(component: Any, attribute: str) -> list[str] | None:
    value = getattr(component, attribute, None)
    if callable(value):
        value = value()
    return None if value is None else [str(v) for v in value]


def _feature_names(component: Any, names: list[str]) -> list[str]:
    return _names(component, "feature_names") or names


def _class_names(component: Any, out: Any) -> list[str]:
    declared = _names(component, "class_names")
    if declared is not None:
        return declared
    shape = np.shape(out)
    return [f"t:{i}" for i in range(shape[1])] if len(shape) == 2 else []


def build_components(
    root: GraphNode,
    *,
    default_class: str,
    model_uri: str,
    resolve: Callable[[str], type] | None = None,
) -> dict[str, Any]:
    """One instance per node, as the microservices build them: the node's class (a MODEL node
    without one: ``default_class``, the predict class) with the node's parameters, and ``model_uri``
    for MODEL nodes. ``resolve`` turns ``module:Class`` into the class (default: import it)."""
    resolve = resolve or _import
    components: dict[str, Any] = {}
    for _, node in root.walk():
        ref = node.class_ or default_class
        cls = resolve(ref)
        method = NODE_METHODS[node.type]
        if not callable(getattr(cls, method, None)):
            raise GraphError(
                f"graph node '{node.name}': {ref} has no {method} method, which a {node.type} needs"
            )
        kwargs = dict(node.parameters)
        if node.type == "MODEL":
            kwargs["model_uri"] = model_uri
        try:
            components[node.name] = cls(**kwargs)
        except Exception as exc:
            raise GraphError(
                f"graph node '{node.name}': {ref}({', '.join(kwargs)}) raised {type(exc).__name__}: {exc}"
            ) from exc
    return components


def _import(ref: str) -> type:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
