"""Checks of the production stack's ``docker-compose.yaml`` beyond its schema (compose-spec.json).

Each check takes the loaded document (and, where it needs them, the raw text or ``.env.example``) and
returns its problems as ``docker-compose.yaml:LINE: services.NAME.FIELD: problem (fix: …)`` strings; an
empty list means the check passed. ``python -m pushbutton.deploycheck [COMPOSE [ENV_EXAMPLE]]`` runs
them all (no Docker needed), as the unit tests do.

* ``unpinned_images`` — every service has an image with an exact tag (``name:1.2.3``, ``RELEASE.…``)
  or a digest; no ``latest``, no missing tag, no floating major-only tag;
* ``health_problems`` — every ``depends_on`` target waited for with ``service_healthy`` has a health
  check, and so has every long-running service (one-shot jobs — ``restart: "no"`` or waited for with
  ``service_completed_successfully`` — need none);
* ``secret_literals`` — an environment value whose key names a PASSWORD, SECRET, TOKEN or KEY is a
  ``${VAR}`` interpolation (``…_FILE``/``…_PATH`` keys name a file and may be literal), and no URL or Connection JSON anywhere in a service carries a literal
  password;
* ``undeclared_variables`` — every ``${VAR}`` the file uses is listed in ``.env.example``;
* ``undeclared_volumes`` — every named volume a service mounts is declared under ``volumes:``;
* ``profile_problems`` — a service that only runs under a compose profile (``profiles: [celery]``) is
  not a hard ``depends_on`` of a service that runs without that profile (``required: false`` there);
* ``executor_problems`` — evaluated with each ``.env`` variant ``.env.example`` documents (its values,
  and each set of ``#[NAME] KEY=value`` lines over them): a distributed Airflow executor
  (``pushbutton.executors``) does not keep the ``local`` serving runtime, a ``seldon-v1`` Connection's
  extra is valid, and a CeleryExecutor has an active worker service.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?:[:?\-+][^}]*)?\}$")
# ${VAR}, ${VAR:-default}, ${VAR:?message} and bare $VAR; `$$` is an escaped dollar (left to the container)
VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
URL_PASSWORD = re.compile(r"://[^/\s:@'\"]+:([^@/\s'\"]+)@")
PATH_SUFFIXES = ("_FILE", "_PATH")  # where a secret is (a mounted file), not the secret itself
FLOATING_TAGS = {"latest", "stable", "edge", "main", "master", "nightly", "dev", "lts", "current"}
EXACT_TAG = re.compile(r"\d+\.\d+|^RELEASE\.")
ONE_SHOT_RESTART = {"no", "on-failure"}
FILE = "docker-compose.yaml"


def _where(lines: dict[tuple[str, ...], int], *path: str) -> str:
    for end in range(len(path), 0, -1):  # the deepest key written in the file (merged keys are not)
        if path[:end] in lines:
            return f"{FILE}:{lines[path[:end]]}: {'.'.join(path)}"
    return f"{FILE}: {'.'.join(path)}"


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """1-based line of each mapping key written in the file, by key path (``("services", "mlflow")``)."""
    found: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    found.setdefault((*path, key.value), key.start_mark.line + 1)
                    walk(value, (*path, key.value))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return found


def _services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: (spec or {}) for name, spec in (doc.get("services") or {}).items()}


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", "KEY"]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _depends(spec: dict[str, Any]) -> dict[str, str]:
    deps = spec.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (d or {}).get("condition", "service_started") for name, d in deps.items()}


def image_problem(image: str | None) -> str | None:
    """Why ``image`` is not pinned to an exact version (``None`` when it is); also for Kubernetes."""
    if not image:
        return "no image (fix: name the image with an exact tag, e.g. app:1.2.3, also for a service that is built)"
    if "@sha256:" in image:
        return None
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    if not tag:
        return f"{image!r} has no tag (fix: pin an exact version, e.g. {image}:1.2.3)"
    if tag.lower() in FLOATING_TAGS or not EXACT_TAG.search(tag):
        return (f"{image!r} is not pinned: tag {tag!r} moves (fix: an exact version such as {repository}:1.2.3, "
                "or a digest @sha256:…)")  # fmt: skip
    return None


def unpinned_images(doc: dict[str, Any], lines: dict[tuple[str, ...], int]) -> list[str]:
    problems = []
    for name, spec in _services(doc).items():
        problem = image_problem(spec.get("image"))
        if problem:
            problems.append(f"{_where(lines, 'services', name, 'image')}: {problem}")
    return problems


def one_shot_services(doc: dict[str, Any]) -> set[str]:
    """Services that run to completion: ``restart: "no"``/``on-failure``, or awaited as completed."""
    services = _services(doc)
    done = {n for n, s in services.items() if str(s.get("restart", "")) in ONE_SHOT_RESTART}
    for spec in services.values():
        done |= {dep for dep, cond in _depends(spec).items() if cond == "service_completed_successfully"}
    return done


def _has_healthcheck(spec: dict[str, Any]) -> bool:
    check = spec.get("healthcheck")
    return bool(check) and not check.get("disable") and bool(check.get("test"))


def health_problems(doc: dict[str, Any], lines: dict[tuple[str, ...], int]) -> list[str]:
    services, one_shot, problems = _services(doc), one_shot_services(doc), []
    for name, spec in services.items():
        for dep, condition in _depends(spec).items():
            where = _where(lines, "services", name, "depends_on", dep)
            if dep not in services:
                problems.append(f"{where}: no service {dep!r} (fix: name a service of this file)")
            elif condition == "service_healthy" and not _has_healthcheck(services[dep]):
                problems.append(f"{where}: waits for {dep!r} to be healthy, but {dep!r} has no healthcheck "
                                f"(fix: give services.{dep} a healthcheck)")  # fmt: skip
        if name not in one_shot and not _has_healthcheck(spec):
            problems.append(f"{_where(lines, 'services', name)}: long-running service without a healthcheck "
                            "(fix: add healthcheck.test probing its health endpoint, or restart: \"no\" "
                            "for a one-shot job)")  # fmt: skip
    return problems


def _strings(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, str(index)))
    elif isinstance(value, str):
        yield path, value


def _literal(value: str) -> bool:
    return bool(value) and not value.startswith(("${", "$$"))


def _json_secrets(value: str) -> list[str]:
    """Secret-named fields of a Connection JSON (``AIRFLOW_CONN_*``) holding a literal."""
    try:
        data = json.loads(value)
    except ValueError:
        return []
    return [".".join(p) for p, v in _strings(data, ()) if SECRET_KEY.search(p[-1]) and _literal(v)]


def literal_secrets(value: str) -> list[str]:
    """What in one value is a literal secret: a Connection JSON's password field, a URL's password."""
    found = [f"{field} is a literal secret" for field in _json_secrets(value)]
    found += ["a URL with a literal password" for p in URL_PASSWORD.findall(value) if _literal(p)]
    return found


def secret_literals(doc: dict[str, Any], lines: dict[tuple[str, ...], int]) -> list[str]:
    problems = []
    for name, spec in _services(doc).items():
        for key, value in _environment(spec).items():
            where = _where(lines, "services", name, "environment", key)
            if (
                SECRET_KEY.search(key)
                and not key.endswith(PATH_SUFFIXES)
                and value
                and not INTERPOLATION.match(value)
            ):
                problems.append(f"{where}: a literal value for a secret (fix: {key}: ${{{key}}} and set it "
                                "in .env, listed in .env.example)")  # fmt: skip
            for field in _json_secrets(value):
                problems.append(f'{where}: {field} is a literal secret (fix: "${{VAR}}" from .env)')
        for path, value in _strings(spec, ("services", name)):
            for password in URL_PASSWORD.findall(value):
                if _literal(password):
                    problems.append(f"{_where(lines, *path)}: a URL with a literal password (fix: "
                                    "user:${VAR}@host, the password from .env)")  # fmt: skip
    return problems


def variables(text: str) -> set[str]:
    """Every variable the compose file interpolates (``${VAR…}`` and ``$VAR``; not ``$$``)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return {braced or bare for braced, bare in VARIABLE.findall(body)}


def env_example_names(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", text, re.M)}


def undeclared_variables(text: str, env_example: str) -> list[str]:
    listed, lines = env_example_names(env_example), text.splitlines()
    problems = []
    for variable in sorted(variables(text) - listed):
        line = next((i for i, t in enumerate(lines, 1) if re.search(rf"\$\{{?{variable}\b", t)), 0)
        problems.append(f"{FILE}:{line}: ${{{variable}}}: not listed in .env.example (fix: add "
                        f"{variable}=<placeholder> with a comment saying what it is)")  # fmt: skip
    return problems


def undeclared_volumes(doc: dict[str, Any], lines: dict[tuple[str, ...], int]) -> list[str]:
    declared, problems = set((doc.get("volumes") or {}).keys()), []
    for name, spec in _services(doc).items():
        for mount in spec.get("volumes") or []:
            if isinstance(mount, dict):
                source = mount.get("source") if mount.get("type", "volume") == "volume" else None
            else:
                source = str(mount).split(":", 1)[0] if ":" in str(mount) else None
            if source and not source.startswith((".", "/", "~", "$")) and source not in declared:
                problems.append(f"{_where(lines, 'services', name, 'volumes')}: volume {source!r} is not "
                                f"declared (fix: add `{source}:` under the top-level volumes)")  # fmt: skip
    return problems


def profile_problems(doc: dict[str, Any], lines: dict[tuple[str, ...], int]) -> list[str]:
    """A dependency that is off under some profile choice while its dependent runs must be optional."""
    services, problems = _services(doc), []
    for name, spec in services.items():
        mine = set(spec.get("profiles") or [])
        deps = spec.get("depends_on") or {}
        for dep, options in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            theirs = set((services.get(dep) or {}).get("profiles") or [])
            always_with_me = not theirs or (mine and mine <= theirs)
            if always_with_me or (options or {}).get("required", True) is False:
                continue
            runs = f"profile(s) {sorted(mine)}" if mine else "every profile choice"
            problems.append(f"{_where(lines, 'services', name, 'depends_on', dep)}: {name!r} runs under {runs} "
                            f"but {dep!r} only under profile(s) {sorted(theirs)}, so compose refuses to start "
                            f"{name!r} without them (fix: add `required: false` to this dependency, or give "
                            f"{name!r} the same profiles)")  # fmt: skip
    return problems


# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, ${VAR:+alt}, $VAR and $$
_INTERPOLATED = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """The compose file as compose reads it with ``env`` as its ``.env`` (``$$`` becomes ``$``);
    ``ValueError`` naming the variable when a required one (``${VAR:?…}``) is unset or empty."""

    def value(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m["name"] or m["bare"], m["op"] or "", m["arg"] or ""
        current = env.get(name, "")
        given = bool(current) if op.startswith(":") else name in env  # `:` also treats empty as unset
        if op.endswith("-"):
            return current if given else arg
        if op.endswith("?"):
            if not given:
                raise ValueError(f"${{{name}}} is required: {arg or 'not set'}")
            return current
        if op.endswith("+"):
            return arg if given else ""
        return current

    return _INTERPOLATED.sub(value, text)


def env_values(text: str) -> dict[str, str]:
    """``KEY=value`` lines of an env file (``export`` and surrounding quotes allowed; comments skipped)."""
    found = re.findall(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", text, re.M)
    return {key: value.strip().strip("'\"") for key, value in found}


def env_variants(env_example: str) -> dict[str, dict[str, str]]:
    """``default``: the values of ``.env.example``; one more per ``#[NAME] KEY=value`` group over them."""
    base, variants = env_values(env_example), {}
    for name, key, value in re.findall(r"^#\[([\w-]+)\]\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", env_example, re.M):
        variants.setdefault(name, dict(base))[key] = value.strip()
    return {"default": base, **variants}


def active_services(doc: dict[str, Any], profiles: set[str]) -> dict[str, dict[str, Any]]:
    """The services ``docker compose up`` starts with these profiles (``COMPOSE_PROFILES``)."""
    return {n: s for n, s in _services(doc).items() if not s.get("profiles") or profiles & set(s["profiles"])}


def resolve(value: Any, env: dict[str, str]) -> Any:
    """A loaded compose document with every string interpolated (as compose does; keys stay)."""
    if isinstance(value, dict):
        return {key: resolve(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, env) for item in value]
    return interpolate(value, env) if isinstance(value, str) else value


def _key_line(lines: dict[tuple[str, ...], int], name: str, key: str) -> int:
    """The line an environment key of a service is written on: in the service, else in its anchor."""
    path = ("services", name, "environment", key)
    return lines.get(path) or min((n for p, n in lines.items() if p[-2:] == ("environment", key)), default=0)


def executor_problems(text: str, env: dict[str, str], variant: str = "default") -> list[str]:
    """With ``env`` as ``.env``: no distributed executor with the ``local`` runtime (the rule of
    ``pushbutton.executors``), a valid ``seldon-v1`` extra, and a worker for the CeleryExecutor."""
    from pushbutton.errors import SpecError
    from pushbutton.executors import check_local_runtime, distributed_executors

    lines, using = key_lines(text), f"with the {variant!r} .env values of .env.example"
    try:
        doc = resolve(yaml.safe_load(text), env)
    except ValueError as exc:
        return [f"{FILE}: {exc} {using} (fix: set it in .env.example)"]
    profiles = {p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()}
    services, celery = active_services(doc, profiles), False
    found: dict[tuple[int, str], list[str]] = {}  # (line, problem) -> services (one anchor, many services)
    for name, spec in services.items():
        environ = _environment(spec)
        executor = environ.get("AIRFLOW__CORE__EXECUTOR", "")
        celery |= any("Celery" in e for e in distributed_executors(executor))
        conn = environ.get("AIRFLOW_CONN_PUSHBUTTON_SELDON")
        if not conn:
            continue
        extra = (json.loads(conn).get("extra") or {}) if conn.lstrip().startswith("{") else {}
        runtime = extra.get("runtime", "local")
        try:
            if runtime == "local":
                check_local_runtime(executor, environ, "pushbutton_seldon")
            elif runtime == "seldon-v1":
                from pushbutton.kube.runtime import seldon_v1_config

                seldon_v1_config(extra, "connection pushbutton_seldon")
        except SpecError as exc:
            line = _key_line(lines, name, "AIRFLOW_CONN_PUSHBUTTON_SELDON")
            for issue in exc.issues:
                fix = (f"in .env set PUSHBUTTON_SELDON_RUNTIME=seldon-v1 and PUSHBUTTON_IMAGE_REGISTRY, or "
                       f"AIRFLOW_EXECUTOR=LocalExecutor; {issue.fix}") if runtime == "local" else issue.fix  # fmt: skip
                found.setdefault((line, f"{issue.field}: {issue.message}; {using} (fix: {fix})"), []).append(
                    name
                )
    problems = [f"{FILE}:{line}: services.{','.join(names)}.environment.AIRFLOW_CONN_PUSHBUTTON_SELDON."
                f"{problem}" for (line, problem), names in found.items()]  # fmt: skip
    if celery and not any(_is_celery_worker(spec) for spec in services.values()):
        line = min((n for k, n in lines.items() if k[-1] == "AIRFLOW__CORE__EXECUTOR"), default=0)
        problems.append(f"{FILE}:{line}: AIRFLOW__CORE__EXECUTOR: the CeleryExecutor {using}, but no "
                        f"active service runs `airflow celery worker` (profiles {sorted(profiles)}), so no task "
                        "would ever run (fix: COMPOSE_PROFILES=celery in .env)")  # fmt: skip
    return problems


def _is_celery_worker(spec: dict[str, Any]) -> bool:
    command = spec.get("command") or []
    words = command.split() if isinstance(command, str) else [str(c) for c in command]
    return "celery" in words and "worker" in words


def schema_problems(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [f"{FILE}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message} (fix: see the compose "
            "specification)" for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))]  # fmt: skip


def check(text: str, env_example: str, schema: dict[str, Any] | None = None) -> list[str]:
    """Every check over one compose file's text; the schema check too when ``schema`` is given."""
    doc, lines = yaml.safe_load(text), key_lines(text)
    structural: list[Callable[[dict[str, Any], dict[tuple[str, ...], int]], list[str]]] = [
        unpinned_images, health_problems, secret_literals, undeclared_volumes, profile_problems,
    ]  # fmt: skip
    problems = [p for run in structural for p in run(doc, lines)]
    problems += undeclared_variables(text, env_example)
    for variant, env in env_variants(env_example).items():
        problems += executor_problems(text, env, variant)
    if schema is not None:
        problems += schema_problems(doc, schema)
    return problems


def main(argv: list[str] | None = None) -> int:
    from pushbutton.config import REPO_ROOT

    args = sys.argv[1:] if argv is None else argv
    compose = Path(args[0]) if args else REPO_ROOT / "docker-compose.yaml"
    example = Path(args[1]) if len(args) > 1 else compose.parent / ".env.example"
    problems = check(compose.read_text(), example.read_text() if example.exists() else "")
    for problem in problems:
        print(problem)
    print(f"{compose}: {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
