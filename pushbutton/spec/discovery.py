"""Find every model spec under a directory; one broken spec never hides the others."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pushbutton.errors import SpecError, SpecIssue
from pushbutton.spec.checks import load_model_dir
from pushbutton.spec.loader import SPEC_FILE, compose, field_line
from pushbutton.spec.model import ModelSpec

MAX_DEPTH = 3
_NAME_LINE = re.compile(r"^name:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)


@dataclass(frozen=True)
class Discovered:
    """A model directory and either its valid spec or the error that explains why it is not."""

    model_dir: Path
    spec: ModelSpec | None
    error: SpecError | None

    @property
    def key(self) -> str:
        """Stable identifier of the directory, relative to the models root (used for DAG stub names)."""
        return self.model_dir.name


def find_spec_dirs(root: Path) -> list[Path]:
    """Directories under ``root`` (up to MAX_DEPTH deep, hidden ones skipped) that hold a model.yaml."""
    found: list[Path] = []
    root = Path(root)
    for current, dirs, files in os.walk(root):
        depth = len(Path(current).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and depth < MAX_DEPTH)
        if SPEC_FILE in files:
            found.append(Path(current))
            dirs[:] = []  # a model directory does not contain other models
    return sorted(found)


def declared_name(model_dir: Path) -> str | None:
    """The top-level ``name:`` of a directory's model.yaml, read without validating the spec."""
    try:
        found = _NAME_LINE.search((Path(model_dir) / SPEC_FILE).read_text(errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def discover(root: Path) -> list[Discovered]:
    """Load every spec under ``root``; duplicate names are an error on each later spec."""
    results: list[Discovered] = []
    owners: dict[str, Path] = {}
    for model_dir in find_spec_dirs(root):
        try:
            spec = load_model_dir(model_dir)
        except SpecError as exc:
            results.append(Discovered(model_dir, None, exc))
            continue
        first = owners.setdefault(spec.name, model_dir)
        if first != model_dir:
            file = model_dir / SPEC_FILE
            issue = SpecIssue(
                str(file),
                "name",
                f"model name '{spec.name}' is already used by {first / SPEC_FILE}",
                "give every model in the repository a unique name",
                line=field_line(compose(file), "name"),
            )
            results.append(Discovered(model_dir, None, SpecError([issue])))
            continue
        results.append(Discovered(model_dir, spec, None))
    return results
