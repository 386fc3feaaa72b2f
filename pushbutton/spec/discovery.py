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
    """Load every spec under ``root``. Directories that claim one model name, or whose paths differ
    only in case, are each an error naming the others: neither may be pushed while both exist."""
    results: list[Discovered] = []
    loaded: list[tuple[Path, ModelSpec]] = []
    for model_dir in find_spec_dirs(root):
        try:
            loaded.append((model_dir, load_model_dir(model_dir)))
        except SpecError as exc:
            results.append(Discovered(model_dir, None, exc))
    by_name: dict[str, list[Path]] = {}
    by_folded: dict[str, list[Path]] = {}
    for model_dir, spec in loaded:
        by_name.setdefault(spec.name, []).append(model_dir)
        by_folded.setdefault(_folded(root, model_dir), []).append(model_dir)
    for model_dir, spec in loaded:
        folded = _folded(root, model_dir)
        same_name = [d for d in by_name[spec.name] if d != model_dir]
        same_folded = [d for d in by_folded[folded] if d != model_dir and d not in same_name]
        if not same_name and not same_folded:
            results.append(Discovered(model_dir, spec, None))
            continue
        file = model_dir / SPEC_FILE
        line = field_line(compose(file), "name")
        issues = [
            SpecIssue(
                str(file),
                "name",
                f"model name '{spec.name}' is also claimed by {other / SPEC_FILE}"
                + (
                    " (a directory differing from this one only in case)"
                    if _folded(root, other) == folded
                    else ""
                )
                + "; while two directories claim one model, neither can be validated or pushed",
                f"give one of them another `name:` or remove the copy ({other})",
                line=line,
            )
            for other in same_name
        ]
        issues += [
            SpecIssue(
                str(file),
                "",
                f"directory {model_dir} differs from {other} only in case; they collide on case-insensitive "
                "file systems and in DAG stub names",
                f"rename or remove one of them ({other})",
                line=line,
            )
            for other in same_folded
        ]
        results.append(Discovered(model_dir, None, SpecError(issues)))
    return sorted(results, key=lambda found: found.model_dir)


def _folded(root: Path, model_dir: Path) -> str:
    return model_dir.relative_to(root).as_posix().casefold()
