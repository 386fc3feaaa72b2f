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
gets the list of answers and the list of their names); every node's answer (a transformer's,
router's or combiner's too) is named by its class's ``class_names`` (method or attribute), else
``t:0``, ``t:1``, ... (none for one-dimensional output), as seldon-core 1.18's wrapper names every response
(``construct_response(..., is_request=False, ...)`` → ``client_class_names``). Children run one
after the other (the executor runs them concurrently; answers are the same). The answer records each
ROUTER's choice as Seldon's ``meta.routing`` does.

The nodes are reached through ``NodeCalls``: ``Components`` calls class instances in this process (the
model tests, the gate); on the local runtime ``graph_server.RemoteNodes`` calls each node's seldon-core
microservice over HTTP, so the same executor serves the graph; an observer sees each node's request
and answer (the per-node request log, ``graph_log``).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class NodeCalls(Protocol):
    """How the executor reaches the nodes: in-process objects (``Components``) or, on the local runtime,
    one seldon-core microservice per node over HTTP (``graph_server.RemoteNodes``). Messages are
    whatever the implementation passes along (``Message`` in-process, Seldon JSON messages remote)."""

    def call(self, node: GraphNode, method: str, message: Any) -> Any: ...

    def route(self, node: GraphNode, message: Any) -> Any: ...

    def aggregate(self, node: GraphNode, messages: list[Any]) -> Any: ...


# called once per node after its subtree ran: node, the message it got, its answer (None if it failed),
# when it got it and when it answered (epoch seconds), and the error (None if it answered)
NodeObserver = Callable[[GraphNode, Any, Any, float, float, "Exception | None"], None]


class Components:
    """``NodeCalls`` over each node's class instance, by node name."""

    def __init__(self, components: Mapping[str, Any]):
        self.components = dict(components)

    def call(self, node: GraphNode, method: str, message: Message) -> Message:
        component = self.components[node.name]
        out = _call(node, method, component, message.data, message.names)
        return Message(out, _class_names(component, out))

    def route(self, node: GraphNode, message: Message) -> Any:
        return _call(node, "route", self.components[node.name], message.data, message.names)

    def aggregate(self, node: GraphNode, messages: list[Message]) -> Message:
        component = self.components[node.name]
        out = _call(node, "aggregate", component, [a.data for a in messages], [a.names for a in messages])
        return Message(out, _class_names(component, out))


class GraphExecutor:
    """Runs ``root`` over ``components`` (each node's class instance, by node name), or over ``calls``."""

    def __init__(
        self,
        root: GraphNode,
        components: Mapping[str, Any] | None = None,
        *,
        calls: NodeCalls | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if calls is None:
            components = components or {}
            missing = [node.name for _, node in root.walk() if node.name not in components]
            if missing:
                raise GraphError(
                    f"no component for graph nodes {missing}; build one per node (build_components)"
                )
            calls = Components(components)
        self.root = root
        self.calls = calls
        self.clock = clock

    def predict(self, data: Any, names: Sequence[str] | None = None) -> Answer:
        message, routing = self.run(Message(data, list(names or [])))
        return Answer(message, routing)

    def run(self, message: Any, observer: NodeObserver | None = None) -> tuple[Any, dict[str, int]]:
        """The graph's answer to ``message`` and each ROUTER's choice; ``observer`` sees every node."""
        routing: dict[str, int] = {}
        return self._node(self.root, message, routing, observer), routing

    def _node(
        self, node: GraphNode, message: Any, routing: dict[str, int], observer: NodeObserver | None
    ) -> Any:
        started, received = self.clock(), message
        try:
            if node.type == "MODEL":
                message = self.calls.call(node, "predict", message)
            elif node.type == "TRANSFORMER":
                message = self.calls.call(node, "transform_input", message)
            message = self._children(node, message, routing, observer)
            if node.type == "OUTPUT_TRANSFORMER":
                message = self.calls.call(node, "transform_output", message)
        except Exception as exc:
            if observer is not None and not getattr(exc, "observed", False):
                exc.observed = True  # type: ignore[attr-defined]  # only the failing node reports it
                observer(node, received, None, started, self.clock(), exc)
            raise
        if observer is not None:
            observer(node, received, message, started, self.clock(), None)
        return message

    def _children(
        self, node: GraphNode, message: Any, routing: dict[str, int], observer: NodeObserver | None
    ) -> Any:
        if not node.children:
            return message
        chosen = node.children
        if node.type == "ROUTER":
            route = _route(node, self.calls.route(node, message))
            routing[node.name] = route
            if route != ALL_CHILDREN:
                chosen = [node.children[route]]
        answers = [self._node(child, message, routing, observer) for child in chosen]
        if node.type != "COMBINER":
            return answers[0]
        return self.calls.aggregate(node, answers)


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


def _class_names(component: Any, out: Any) -> list[str]:
    """seldon-core's ``client_class_names``: none for one-dimensional output (whatever the class
    declares), else the class's ``class_names``, else ``t:0``, ``t:1``, ..."""
    shape = np.shape(out)
    if len(shape) < 2:
        return []
    declared = _names(component, "class_names")
    return declared if declared is not None else [f"t:{i}" for i in range(shape[1])]


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
