"""Serving environments: one isolated virtualenv per (Python, requirements) set.

seldon-core pins clash with Airflow 3, so models are served (and tested) from their own venv:
seldon-core + mlflow-skinny at the platform's MLflow version + the model's requirements. An env is
keyed by a short hash of its full requirement set, built into a temporary directory and renamed
into place, and reused as long as its completion marker exists.

An install that cannot succeed (a package that does not exist, a pin no release matches, contradicting
pins, a package that does not build) raises ``RequirementsError``, told apart from an unreachable or
failing package index (plain ``ServingError``: a retry may work) by what uv or pip prints.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pushbutton.errors import RequirementsError, ServingError
from pushbutton.locks import file_lock
from pushbutton.procs import model_env

MARKER = ".pushbutton-env.json"
INSTALL_TIMEOUT = 1800.0

# seldon-core's own pins decide the Python range: 1.18.2 needs setuptools<81 (gunicorn 20 imports
# pkg_resources); 1.19.0 is the first release that installs on 3.12.
SELDON_BASE = {
    "3.11": ("seldon-core==1.18.2", "setuptools<81"),
    "3.12": ("seldon-core==1.19.0",),
}
COMMON_BASE = ("pandas<3", "numpy<2", "pytest")


@dataclass(frozen=True)
class ServingEnv:
    """A built serving environment."""

    key: str
    path: Path
    python: Path
    created: bool = False
    seconds: float = 0.0

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name


def platform_mlflow_version() -> str:
    return importlib.metadata.version("mlflow")


def base_requirements(python_version: str) -> list[str]:
    """What every serving env holds for ``python_version`` (``major.minor``)."""
    try:
        seldon = SELDON_BASE[python_version]
    except KeyError:
        raise ServingError(
            f"no seldon-core release is pinned for Python {python_version}; serve with Python "
            f"{' or '.join(SELDON_BASE)} (set PUSHBUTTON_SERVING_PYTHON to such an interpreter)"
        ) from None
    return [*seldon, f"mlflow-skinny=={platform_mlflow_version()}", *COMMON_BASE]


def normalize_requirement(line: str) -> str:
    """One canonical requirement string; ``mlflow`` becomes ``mlflow-skinny`` (the full server
    package pins cryptography/flask against seldon-core, and loading a model needs only skinny)."""
    req, name = _parse(line)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    out = f"{name}{extras} @ {req.url}" if req.url else f"{name}{extras}{req.specifier}"
    if req.marker:
        out += f"; {req.marker}"
    return out


def _parse(line: str, where: str = "") -> tuple[Requirement, str]:
    """The requirement on ``line`` (a trailing comment dropped) and its canonical name, ``mlflow`` read
    as ``mlflow-skinny``; ``RequirementsError`` for a line pip would not accept."""
    try:
        req = Requirement(line.split(" #", 1)[0].strip())
    except InvalidRequirement as exc:
        raise RequirementsError(
            f"invalid requirement '{line}': {exc}", "write it as pip would accept it, e.g. 'package==1.2'",
            where=where,
        ) from exc  # fmt: skip
    name = canonicalize_name(req.name)
    return req, "mlflow-skinny" if name == "mlflow" else name


PIP_OPTION_FIX = (
    "list the packages themselves, one per line (the serving environment is built from this file "
    "alone; a package index comes from UV_INDEX_URL or PIP_INDEX_URL in the environment)"
)


def requirement_lines(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, requirement)`` of a requirements file, comments and blank lines left out."""
    found = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            found.append((number, line))
    return found


def requirement_problem(line: str) -> tuple[str, str] | None:
    """``(problem, fix)`` when a requirements line cannot go into a serving environment."""
    if line.startswith("-"):
        return f"'{line}' is a pip option, not a package", PIP_OPTION_FIX
    try:
        normalize_requirement(line)
    except ServingError:
        return (
            f"'{line}' is not a valid requirement",
            "write 'package==version', or 'package @ URL' for a direct reference",
        )
    return None


def read_requirements(*paths: str | Path) -> list[str]:
    """Requirement lines of existing ``requirements.txt`` files (comments dropped); a pip option
    (``-r``, ``--extra-index-url`` …) is an error: silently dropped, it would change what serves."""
    lines: list[str] = []
    for path in paths:
        if not Path(path).is_file():
            continue
        for number, line in requirement_lines(path):
            if line.startswith("-"):
                raise RequirementsError(
                    f"'{line}' is a pip option, not a package", PIP_OPTION_FIX, where=f"{path}:{number}"
                )
            lines.append(line)
    return lines


def model_requirements(
    code_dir: str | Path, model_uri: str | None = None, requirements_file: str = "requirements.txt"
) -> list[str]:
    """The model directory's requirements plus a local MLflow model's ``requirements.txt`` (which
    records e.g. ``skops``, needed to load an MLflow 3 sklearn model)."""
    paths = [Path(code_dir) / requirements_file]
    if model_uri:
        local = model_uri.removeprefix("file://")
        if "://" not in local and ":" not in local.split("/", 1)[0]:
            paths.append(Path(local) / "requirements.txt")
    return read_requirements(*paths)


def version_requirements(
    code_dir: str | Path,
    model_uri: str | None = None,
    requirements_file: str = "requirements.txt",
    node_files: Mapping[str, str] | None = None,
) -> list[str]:
    """What a version's serving environment (or image) installs: ``model_requirements`` plus the
    requirements file of every graph node that names one (``node_files``: the node's field path, e.g.
    ``serving.graph.children.0.requirements``, → its file relative to ``code_dir``). The nodes of a
    version share one environment, so a package that two of these files pin differently (for the same
    environment marker) is a ``RequirementsError`` naming both lines, raised before anything is
    installed. Anything subtler (an unpinned line beside a pin, ranges that may overlap, the MLflow
    model's own requirements) is left to the installer's resolver."""
    code_dir = Path(code_dir)
    lines = model_requirements(code_dir, model_uri, requirements_file)
    main = (code_dir / requirements_file).resolve()
    sources = [(main, "requirements")]
    for field, name in (node_files or {}).items():
        path = (code_dir / name).resolve()
        if path not in {source for source, _ in sources}:
            sources.append((path, field))
    # (package, marker) → (its pin, the file, where in it, the line)
    pinned: dict[tuple[str, str], tuple[str, Path, str, str]] = {}
    for path, field in sources:
        if not path.is_file():
            continue
        for number, line in requirement_lines(path):
            if line.startswith("-"):
                raise RequirementsError(
                    f"'{line}' is a pip option, not a package", PIP_OPTION_FIX, where=f"{path}:{number}"
                )
            where = f"{path}:{number} ({field})"
            pin, key = _pin(line, where)
            if pin:
                earlier = pinned.setdefault(key, (pin, path, where, line))
                if earlier[1] != path and earlier[0] != pin:
                    raise RequirementsError(
                        f"'{line}' contradicts '{earlier[3]}' at {earlier[2]}: a version's graph nodes share "
                        "one serving environment",
                        "pin the package the same way in both files (or drop it from one of them)",
                        packages=(key[0],),
                        where=where,
                    )
            if path != main:
                lines.append(line)
    return lines


def _pin(line: str, where: str) -> tuple[str, tuple[str, str]]:
    """``(what the line pins: its version specifier or URL, '' for none), (package, marker)``."""
    req, name = _parse(line, where)
    return (req.url or str(req.specifier)), (name, str(req.marker or ""))


def full_requirements(python_version: str, requirements: Iterable[str]) -> list[str]:
    """Base + model requirements, normalized, de-duplicated and sorted."""
    lines = {normalize_requirement(r) for r in [*base_requirements(python_version), *requirements]}
    return sorted(lines)


def env_key(python_version: str, requirements: Iterable[str]) -> str:
    """16 hex digits identifying the env for ``python_version`` (``3.11``) and the model's requirements.

    The base requirements are part of the hash, so an upgrade of the platform's MLflow gives new keys.
    """
    lines = full_requirements(python_version, requirements)
    digest = hashlib.sha256("\n".join([f"python {python_version}", *lines]).encode()).hexdigest()
    return digest[:16]


@functools.cache
def python_version(python: str) -> str:
    """``major.minor`` of the interpreter at ``python``."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return f"{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServingError(
            f"cannot run serving interpreter '{python}': {exc}; "
            "point PUSHBUTTON_SERVING_PYTHON at a working python3.11 or python3.12"
        ) from exc
    return out.stdout.strip()


def _uv() -> list[str] | None:
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    found = shutil.which("uv")
    return [found] if found else None


def load_env(root: str | Path, key: str) -> ServingEnv:
    """An already built env; ``ServingError`` if ``root/key`` is missing or incomplete."""
    path = Path(root) / key
    if not key or not (path / MARKER).is_file():
        raise ServingError(
            f"serving environment '{key}' is not built under {root}; build it with "
            "pushbutton.serving.envs.ensure_env(<requirements>) (pushbutton's build step does this)"
        )
    return ServingEnv(key=key, path=path, python=path / "bin" / "python")


def ensure_env(requirements: Iterable[str], *, python: str | None = None, root: str | Path) -> ServingEnv:
    """Build (or reuse) the serving env for ``requirements`` under ``root`` and return it.

    Concurrent calls for the same key serialize on ``root/<key>.lock``; the second one reuses.
    """
    python = python or sys.executable
    version = python_version(python)
    lines = full_requirements(version, requirements)
    key = env_key(version, requirements)
    root = Path(root)
    with file_lock(root / f"{key}.lock"):
        with contextlib.suppress(ServingError):
            return load_env(root, key)
        final = root / key
        if final.exists():  # no marker: not a finished build of ours (builds are renamed complete)
            shutil.rmtree(final)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
        tmp.chmod(0o755)
        try:
            _build(tmp, python, lines, final)
            seconds = time.monotonic() - started
            marker = {"key": key, "python": version, "requirements": lines, "seconds": round(seconds, 2)}
            (tmp / MARKER).write_text(json.dumps(marker, indent=2))
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ServingEnv(key=key, path=final, python=final / "bin" / "python", created=True, seconds=seconds)


def _run(argv: list[str], what: str, lines: list[str], classify: bool = False) -> None:
    """Run an installer step; with ``classify``, a failure no retry can fix is a ``RequirementsError``."""
    env = model_env()  # a requirement's build script is model code too
    env["UV_PYTHON_DOWNLOADS"] = "never"
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServingError(f"{what} for requirements {lines} failed: {exc}") from exc
    if proc.returncode != 0:
        output = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        if classify and (final := install_failure(proc.stdout + proc.stderr, output)) is not None:
            raise final
        raise ServingError(
            f"{what} for requirements {lines} failed (exit {proc.returncode}); if the package index was "
            f"unreachable this may pass on a retry, else fix or loosen the model's requirements.txt. "
            f"Installer output (tail):\n{output}"
        )


# what uv (0.13: "error: Request failed after 3 retries", "cause: Failed to fetch: URL", "cause: tcp
# connect error", "HTTP status server error (503 …)") and pip ("WARNING: Retrying (Retry(…)) after
# connection broken by 'NewConnectionError(…)'") print when the package index could not be asked
_NETWORK = re.compile(
    r"Request failed after|Failed to fetch|error sending request|tcp connect error|dns error|"
    r"failed to lookup address|Connection refused|Connection reset|timed out|server error|"
    r"Too Many Requests|os error 1(?:01|10|11|13)|Retrying \(Retry\(|NewConnectionError|"
    r"ConnectTimeoutError|ReadTimeoutError|Max retries exceeded|ProxyError|"
    r"Temporary failure in name resolution|Name or service not known|Network is unreachable",
    re.IGNORECASE,
)
_MISSING = re.compile(  # uv, uv with --find-links only
    r"Because (?P<pkg>[^\s]+) was not found in the (?:package registry|provided package locations)"
)
_NO_VERSION = re.compile(r"there is no version of (?P<req>[^\s,]+)")  # uv
_PIP_NO_MATCH = re.compile(
    r"Could not find a version that satisfies the requirement (?P<req>\S+) \(from versions: (?P<found>[^)]*)\)"
)
_CONFLICT = re.compile(  # uv's first cause line; pip's summary
    r"(?P<uv>Because you require .+?, we can conclude that your requirements are unsatisfiable)|"
    r"Cannot install (?P<pip>.+?) because these package versions have conflicting dependencies"
)
_BUILD = re.compile(r"Failed to build `(?P<uv>[^`]+)`|Failed building wheel for (?P<pip>\S+)")


def requirement_name(requirement: str) -> str:
    """The canonical distribution name a requirement (or an installer's ``name==1.0``) is about."""
    return canonicalize_name(re.split(r"[\s<>=!~;\[@(]", requirement.strip(), maxsplit=1)[0])


def install_failure(output: str, tail: str = "") -> RequirementsError | None:
    """The ``RequirementsError`` an installer's failed output shows, or None when it may be transient
    (the package index unreachable, timing out, answering 5xx) or is not recognised.

    Read from uv 0.13 and pip 23-25 output. Limits: pip says nothing when an index answers 5xx, and
    names an unreachable index only in its retry warnings (none with ``PIP_RETRIES=0``), so under pip
    such an outage looks like a package that does not exist."""
    if _NETWORK.search(output):
        return None
    if found := _MISSING.search(output):
        name = requirement_name(found["pkg"])
        return _missing(name, tail)
    if found := _PIP_NO_MATCH.search(output):
        name, versions = requirement_name(found["req"]), [v.strip() for v in found["found"].split(",")]
        if versions == ["none"]:
            return _missing(name, tail)
        shown = ", ".join(versions[-8:]) + (" …" if len(versions) > 8 else "")
        return _no_version(found["req"], name, tail, f"; available: {shown}")
    if found := _NO_VERSION.search(output):
        return _no_version(found["req"], requirement_name(found["req"]), tail)
    if found := _CONFLICT.search(output):
        what = found["uv"] or f"{found['pip']} cannot be installed together"
        return RequirementsError(
            f"the requirements contradict each other: {what}",
            "loosen or align these pins in requirements.txt (the serving environment also installs "
            f"seldon-core, mlflow-skinny, {', '.join(COMMON_BASE)})",
            output=tail,
        )
    if found := _BUILD.search(output):
        requirement = found["uv"] or found["pip"]
        return RequirementsError(
            f"package '{requirement}' does not build from source here",
            "pin a version that ships a wheel for this Python on Linux, or remove it from requirements.txt",
            (requirement_name(requirement),),
            tail,
        )
    return None


def _missing(name: str, tail: str) -> RequirementsError:
    return RequirementsError(
        f"package '{name}' does not exist on the package index",
        "correct its name in requirements.txt (the name pip installs: scikit-learn, not sklearn) or remove "
        "it, then push again",
        (name,),
        tail,
    )


def _no_version(requirement: str, name: str, tail: str, available: str = "") -> RequirementsError:
    return RequirementsError(
        f"no release of '{name}' matches '{requirement}'{available}",
        f"pin a version of {name} that exists (`pip index versions {name}` lists them), then push again",
        (name,),
        tail,
    )


def _build(target: Path, python: str, lines: list[str], final: Path) -> None:
    uv = _uv()
    if uv is not None:
        # relocatable: entry points find their interpreter relative to themselves, so the
        # rename from the build directory keeps `bin/seldon-core-microservice` working
        _run([*uv, "venv", "--quiet", "--relocatable", "-p", python, str(target)], "uv venv", lines)
        py = str(target / "bin" / "python")
        install = [*uv, "pip", "install", "--quiet", "-p", py]
        try:  # from uv's cache alone when it holds everything: ~1 s instead of ~7 s of index queries
            _run([*install, "--offline", *lines], "uv pip install --offline", lines)
        except ServingError:  # not all cached ("not found in the cache"): the index decides
            _run([*install, *lines], "uv pip install", lines, classify=True)
        return
    _run([python, "-m", "venv", str(target)], "python -m venv", lines)
    py = str(target / "bin" / "python")
    pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *lines]
    _run(pip, "pip install", lines, classify=True)
    _retarget_scripts(target, final)


def _retarget_scripts(target: Path, final: Path) -> None:
    """pip writes absolute shebangs; point them (and activate scripts) at the final location."""
    old, new = str(target).encode(), str(final).encode()
    for script in (target / "bin").iterdir():
        if script.is_symlink() or not script.is_file() or script.stat().st_size > 1_000_000:
            continue
        data = script.read_bytes()
        if old in data:
            script.write_bytes(data.replace(old, new))
