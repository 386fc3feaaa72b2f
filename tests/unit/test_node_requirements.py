"""A graph node's own ``requirements`` file is installed: a version's nodes share one serving
environment (and one image), built from the model's requirements plus every node's file; two files
pinning a package differently are refused before anything is installed, naming both lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pushbutton.errors import RequirementsError
from pushbutton.lifecycle import serving_requirements
from pushbutton.serving.envs import env_key, version_requirements
from pushbutton.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_node_files_add_their_packages(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "scikit-learn==1.9.1\n")
    write(tmp_path / "nodes" / "tree.txt", "# the tree member\nscikit-learn==1.9.1\nxgboost==3.0.2\n")
    found = version_requirements(tmp_path, None, "requirements.txt", {"serving.graph.children.1.requirements":
                                 "nodes/tree.txt"})  # fmt: skip
    assert found == ["scikit-learn==1.9.1", "scikit-learn==1.9.1", "xgboost==3.0.2"]
    without = version_requirements(tmp_path, None, "requirements.txt")
    assert without == ["scikit-learn==1.9.1"]
    assert env_key("3.11", found) != env_key("3.11", without)  # a node's package gives another env


def test_contradicting_pins_name_both_lines(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "numpy==2.1.0\nscikit-learn==1.9.1\n")
    write(tmp_path / "tree.txt", "\nScikit_Learn==1.5.2\n")
    with pytest.raises(RequirementsError) as caught:
        version_requirements(tmp_path, None, "requirements.txt", {"serving.graph.children.0.requirements":
                             "tree.txt"})  # fmt: skip
    err = caught.value
    assert err.where == f"{tmp_path / 'tree.txt'}:2 (serving.graph.children.0.requirements)"
    assert f"{tmp_path / 'requirements.txt'}:2 (requirements)" in err.problem
    assert "scikit-learn==1.9.1" in err.problem and "pin the package the same way" in err.fix
    assert err.packages == ("scikit-learn",)


def test_a_pip_option_in_a_node_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "")
    write(tmp_path / "n.txt", "--extra-index-url https://example.invalid/simple\n")
    with pytest.raises(RequirementsError, match="pip option") as caught:
        version_requirements(tmp_path, None, "requirements.txt", {"serving.graph.requirements": "n.txt"})
    assert caught.value.where == f"{tmp_path / 'n.txt'}:1"


def test_serving_requirements_walks_the_graph_of_the_spec(tmp_path: Path) -> None:
    code = tmp_path / "code"
    shutil.copytree(REPO / "models" / "ensemble-iris", code, ignore=shutil.ignore_patterns("__pycache__"))
    spec_file = code / "model.yaml"
    text = spec_file.read_text(encoding="utf-8")
    text = text.replace("        parameters: {member: tree}\n",
                        "        parameters: {member: tree}\n        requirements: tree-requirements.txt\n")  # fmt: skip
    spec_file.write_text(text, encoding="utf-8")
    write(code / "tree-requirements.txt", "threadpoolctl==3.6.0\n")
    spec = load_spec(code)
    assert serving_requirements(spec, code, None) == ["scikit-learn==1.9.1", "threadpoolctl==3.6.0"]
    write(code / "tree-requirements.txt", "scikit-learn==1.5.2\n")
    with pytest.raises(RequirementsError, match=r"serving\.graph\.children\.1\.requirements"):
        serving_requirements(spec, code, None)


def test_what_is_not_a_contradiction_is_left_to_the_resolver(tmp_path: Path) -> None:
    """Markers choosing per Python, an unpinned line beside a pin, extras and one file's own lines
    are no contradiction (the model's requirements file alone, as before graphs, is not checked)."""
    write(tmp_path / "requirements.txt", 'numpy==1.26.4; python_version < "3.12"\n'
                                         'numpy==2.1.0; python_version >= "3.12"\nscikit-learn==1.9.1\n')  # fmt: skip
    write(
        tmp_path / "node.txt", 'numpy==1.26.4; python_version < "3.12"\nscikit-learn\npandas[performance]\n'
    )
    found = version_requirements(
        tmp_path, None, "requirements.txt", {"serving.graph.requirements": "node.txt"}
    )
    assert found[-3:] == ['numpy==1.26.4; python_version < "3.12"', "scikit-learn", "pandas[performance]"]
    write(tmp_path / "node.txt", 'numpy==2.0.0; python_version >= "3.12"\n')  # same marker, other pin
    with pytest.raises(RequirementsError, match=r"contradicts 'numpy==2\.1\.0; python_version >= \"3\.12\"'"):
        version_requirements(tmp_path, None, "requirements.txt", {"serving.graph.requirements": "node.txt"})


def test_a_node_naming_the_models_own_file_adds_nothing(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "scikit-learn==1.9.1\n")
    nodes = {
        "serving.graph.requirements": "requirements.txt",
        "serving.graph.children.0.requirements": "./requirements.txt",
    }
    assert version_requirements(tmp_path, None, "requirements.txt", nodes) == ["scikit-learn==1.9.1"]
