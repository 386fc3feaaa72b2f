"""``serving.graph``: multi-node graphs in model.yaml, checked before anything is built.

The bad-spec catalog (test_spec_catalog.py, ``specs/graph-*``) holds one case per refused shape;
here: what a valid graph loads as, and the static class checks' edge cases.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pushbutton.errors import SpecError
from pushbutton.spec import load_model_dir
from pushbutton.spec.model import GraphNode

SPECS = Path(__file__).parent / "specs"

GRAPH = """
serving:
  graph:
    name: prep
    type: TRANSFORMER
    class: nodes:Scale
    parameters: {factor: 2.5, tag: x, strict: true}
    children:
      - name: vote
        type: COMBINER
        class: nodes:Average
        children:
          - {name: a, parameters: {member: a}}
          - {name: b, class: nodes:Other}
"""

NODES = """
import numpy as np
from helpers import Base


class Scale:
    def transform_input(self, X, features_names=None):
        return X


class Mean:
    def aggregate(self, Xs, features_names=None):
        return np.mean(Xs, axis=0)


class Average(Mean):
    pass


class Other(Base):
    pass
"""


def model_dir(tmp_path: Path, graph: str = GRAPH, nodes: str = NODES) -> Path:
    target = tmp_path / "m"
    shutil.copytree(SPECS / "good-minimal", target)
    (target / "model.yaml").write_text((target / "model.yaml").read_text() + graph)
    (target / "nodes.py").write_text(nodes)
    return target


def test_a_graph_of_every_kind_loads_with_classes_parameters_and_children(tmp_path: Path) -> None:
    spec = load_model_dir(model_dir(tmp_path))
    graph = spec.serving.graph
    assert (graph.name, graph.type, graph.class_) == ("prep", "TRANSFORMER", "nodes:Scale")
    assert graph.parameters == {"factor": 2.5, "tag": "x", "strict": True}
    [vote] = graph.children
    assert (vote.type, [c.name for c in vote.children]) == ("COMBINER", ["a", "b"])
    a, b = vote.children
    assert (a.type, a.class_, a.parameters) == ("MODEL", None, {"member": "a"})  # predict.class serves it
    assert b.class_ == "nodes:Other"
    assert [path for path, _ in graph.walk()] == [
        "graph",
        "graph.children.0",
        "graph.children.0.children.0",
        "graph.children.0.children.1",
    ]


def test_the_default_graph_is_one_model_node_serving_the_predict_class() -> None:
    assert GraphNode().model_dump() == {
        "name": "model",
        "type": "MODEL",
        "class_": None,
        "children": [],
        "parameters": {},
        "requirements": None,
    }


def test_a_method_inherited_from_a_class_of_the_module_counts(tmp_path: Path) -> None:
    """``Average(Mean)`` aggregates through ``Mean``; ``Other(Base)`` subclasses an imported class,
    which parsing cannot see into, so it is left to the build's import check."""
    load_model_dir(model_dir(tmp_path))


def test_a_model_node_class_needs_predict(tmp_path: Path) -> None:
    graph = GRAPH.replace("{name: b, class: nodes:Other}", "{name: b, class: nodes:Scale}")
    with pytest.raises(SpecError) as caught:
        load_model_dir(model_dir(tmp_path, graph))
    [issue] = caught.value.issues
    assert issue.field == "serving.graph.children.0.children.1.class" and issue.line == 35
    assert "class 'Scale' in nodes.py has no predict method" in issue.message
    assert "def predict(self, X, features_names=None)" in issue.fix


def test_a_base_of_the_module_without_the_method_is_no_excuse(tmp_path: Path) -> None:
    nodes = NODES.replace(
        "    def aggregate(self, Xs, features_names=None):\n        return np.mean(Xs, axis=0)\n",
        "    pass\n",
    )
    with pytest.raises(SpecError, match=r"class 'Average' in nodes\.py has no aggregate method"):
        load_model_dir(model_dir(tmp_path, nodes=nodes))


def test_a_node_requirements_file_is_checked_line_by_line(tmp_path: Path) -> None:
    graph = GRAPH.replace("    class: nodes:Scale\n", "    class: nodes:Scale\n    requirements: prep.txt\n")
    target = model_dir(tmp_path, graph)
    (target / "prep.txt").write_text("numpy\n-r other.txt\n")
    with pytest.raises(SpecError) as caught:
        load_model_dir(target)
    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.field) == (
        str(target / "prep.txt"),
        2,
        "serving.graph.requirements",
    )
    assert "pip option" in issue.message


def test_graphs_are_trees_so_a_node_cannot_name_itself_as_child() -> None:
    """Children are nested nodes, not names: a cycle cannot be written, except through a recursive
    YAML alias, which the loader refuses (catalog case graph-cycle-alias)."""
    node = GraphNode.model_validate({"name": "a", "type": "MODEL", "children": [{"name": "b"}]})
    assert isinstance(node.children[0], GraphNode)
    with pytest.raises(ValueError, match=r"valid dictionary|not a mapping"):
        GraphNode.model_validate({"name": "a", "children": ["a"]})
