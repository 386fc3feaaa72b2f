"""docker-compose.yaml: the official compose-spec JSON schema, pushbutton.deploycheck's own checks, and
the wiring the platform's code expects (Connections, ports, health paths, artifact store).

This validates the document only: no Docker engine runs in this repository's CI. Every check is also
run on a deliberately broken copy, so each one is shown to fail when it should.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pushbutton import deploycheck as dc
from pushbutton.config import REPO_ROOT, Settings
from tests.prerequisites import missing

SCHEMAS = Path(os.environ.get("PUSHBUTTON_SCHEMAS_DIR", REPO_ROOT.parent / "shared" / "schemas"))
COMPOSE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
LONG_RUNNING = {"postgres", "minio", "mlflow", "airflow-api", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer", "elasticsearch", "kibana", "logger", "gateway"}  # fmt: skip


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(text: str) -> dict:
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def lines(text: str) -> dict:
    return dc.key_lines(text)


@pytest.fixture(scope="module")
def schema() -> dict:
    schema_file = SCHEMAS / "compose" / "compose-spec.json"
    if not schema_file.exists():
        missing(f"the compose-spec schema {schema_file}", "set PUSHBUTTON_SCHEMAS_DIR to ../shared/schemas")
    return json.loads(schema_file.read_text())


@pytest.fixture(scope="module")
def resolved(text: str) -> dict:
    """The document as compose sees it with .env.example as .env (``$$`` stays the container's ``$``)."""
    example = dict(re.findall(r"^([A-Z_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    pattern = r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}"
    return yaml.safe_load(
        re.sub(pattern, lambda m: example.get(m.group(1), m.group(0)), text)
    )  # comments too


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


# -- the file as it is -------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec(compose: dict, schema: dict) -> None:
    jsonschema.validate(compose, schema)
    assert dc.schema_problems(compose, schema) == []


def test_the_file_passes_every_own_check(text: str) -> None:
    assert dc.check(text, ENV_EXAMPLE.read_text()) == []


def test_every_part_of_the_production_stack_runs(compose: dict) -> None:
    services = compose["services"]
    assert set(services) >= LONG_RUNNING
    assert LONG_RUNNING.isdisjoint(dc.one_shot_services(compose))  # so each must have a health check
    assert {"artifacts-init", "airflow-init", "kibana-password", "kibana-objects"} <= dc.one_shot_services(
        compose
    )
    es, kibana = services["elasticsearch"]["image"], services["kibana"]["image"]
    assert re.fullmatch(r"docker\.elastic\.co/elasticsearch/elasticsearch:9\.\d+\.\d+", es)
    assert kibana.rsplit(":", 1)[1] == es.rsplit(":", 1)[1]  # Kibana and Elasticsearch of one version


def test_airflow_components_share_one_postgres_metadata_db_and_the_platform_image(compose: dict) -> None:
    services = compose["services"]
    for name in (
        "airflow-api",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-init",
    ):
        service = services[name]
        assert service["image"] == "pushbutton/platform:0.1.0"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert _env(service)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert "@postgres:5432/airflow" in _env(service)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    commands = {services[n]["command"][1] for n in ("airflow-api", "airflow-scheduler", "airflow-dag-processor",
                                                    "airflow-triggerer")}  # fmt: skip
    assert commands == {"api-server", "scheduler", "dag-processor", "triggerer"}
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and re.search(r"^FROM \S+:\d+\.\d+\.\d+", dockerfile, re.M)


def test_the_dag_bundles_are_the_embedded_stacks(compose: dict) -> None:
    from pushbutton.stack import dag_bundles

    env = _env(compose["services"]["airflow-dag-processor"])
    cfg = Settings(home=Path(env["PUSHBUTTON_HOME"]), dags_dir=Path(env["PUSHBUTTON_DAGS_DIR"]))
    assert json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]) == dag_bundles(cfg)


def test_the_monitoring_connection_makes_the_store_choose_elasticsearch(resolved: dict) -> None:
    from airflow.sdk import Connection

    from operators.monitoring import connection_url
    from pushbutton.monitoring.store import ES_SCHEMES
    from pushbutton.monitoring.store.es_connection import from_url

    env = _env(resolved["services"]["airflow-scheduler"])
    for conn_id in ("MLFLOW", "SELDON", "STORE", "MONITORING", "ALERTS"):
        assert f"AIRFLOW_CONN_PUSHBUTTON_{conn_id}" in env
    url = connection_url(
        Connection.from_json(env["AIRFLOW_CONN_PUSHBUTTON_MONITORING"], conn_id="pushbutton_monitoring")
    )
    assert url is not None and url.startswith(ES_SCHEMES)
    assert from_url(url).hosts == ["http://elasticsearch:9200"]
    assert from_url(env["PUSHBUTTON_MONITORING_URL"]).hosts == [
        "http://elasticsearch:9200"
    ]  # the CLI and the logger read the same cluster


def test_mlflow_keeps_artifacts_in_the_minio_bucket_the_init_service_creates(resolved: dict) -> None:
    from pushbutton.artifacts import parse_destination

    services = resolved["services"]
    argv = services["mlflow"]["command"]
    destination = argv[argv.index("--artifacts-destination") + 1]
    init = services["artifacts-init"]
    location = parse_destination(destination, _env(services["mlflow"]))
    assert location and location.endpoint == "http://minio:9000"
    assert init["command"][:3] == ["python", "-m", "pushbutton.artifacts"]
    assert init["command"][3] == f"s3://{location.bucket}"
    assert services["mlflow"]["depends_on"]["artifacts-init"]["condition"] == "service_completed_successfully"
    assert _env(init)["MLFLOW_S3_ENDPOINT_URL"] == _env(services["mlflow"])["MLFLOW_S3_ENDPOINT_URL"]


def test_logger_and_gateway_probe_their_real_health_paths(compose: dict) -> None:
    services = compose["services"]
    logger, gateway = services["logger"], services["gateway"]
    assert logger["command"][:2] == ["pushbutton", "logger"]
    port = logger["command"][logger["command"].index("--port") + 1]
    assert f"http://localhost:{port}/health" in " ".join(logger["healthcheck"]["test"])
    assert gateway["command"][gateway["command"].index("--logger-url") + 1] == f"http://logger:{port}"
    port = gateway["command"][gateway["command"].index("--port") + 1]
    assert f"http://localhost:{port}/health" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"]["logger"]["condition"] == "service_healthy"


def test_env_example_holds_placeholders_only() -> None:
    text = ENV_EXAMPLE.read_text()
    values = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, re.M))
    secrets = {k: v for k, v in values.items() if dc.SECRET_KEY.search(k) or k.endswith("_USER")}
    assert secrets and all(v.startswith("change-me") for v in secrets.values()), secrets
    assert (
        ".env" in (REPO_ROOT / ".gitignore").read_text().split()
        and ".env" in (REPO_ROOT / ".dockerignore").read_text().split()
    )  # neither committed nor copied into the image


# -- each check fails on a broken copy -------------------------------------------------------


def _broken(compose: dict, edit: Any) -> dict:
    doc = copy.deepcopy(compose)
    edit(doc["services"])
    return doc


@pytest.mark.parametrize(
    ("image", "why"),
    [("postgres", "has no tag"), ("postgres:latest", "not pinned"), ("postgres:17", "not pinned"),
     ("registry.local:5000/pushbutton/platform", "has no tag")],
)  # fmt: skip
def test_unpinned_images_are_found(compose: dict, lines: dict, image: str, why: str) -> None:
    doc = _broken(compose, lambda s: s["postgres"].update(image=image))
    problems = dc.unpinned_images(doc, lines)
    assert len(problems) == 1 and why in problems[0] and "(fix:" in problems[0]
    assert problems[0].startswith(f"docker-compose.yaml:{lines[('services', 'postgres', 'image')]}: ")
    assert dc.unpinned_images(_broken(compose, lambda s: s["postgres"].update(image="p@sha256:" + "a" * 64)),
                              lines) == []  # fmt: skip


def test_a_service_without_an_image_is_found(compose: dict, lines: dict) -> None:
    doc = _broken(compose, lambda s: s["gateway"].pop("image"))
    assert ["no image" in p for p in dc.unpinned_images(doc, lines)] == [True]


def test_waiting_for_a_service_without_healthcheck_is_found(compose: dict, lines: dict) -> None:
    doc = _broken(compose, lambda s: s["logger"].pop("healthcheck"))
    problems = dc.health_problems(doc, lines)
    assert any("services.gateway.depends_on.logger" in p and "has no healthcheck" in p for p in problems)
    assert any(
        "services.logger:" in p and "long-running service without a healthcheck" in p for p in problems
    )
    disabled = _broken(compose, lambda s: s["kibana"].update(healthcheck={"disable": True}))
    assert any("services.kibana-objects.depends_on.kibana" in p for p in dc.health_problems(disabled, lines))
    unknown = _broken(
        compose, lambda s: s["gateway"]["depends_on"].update(nothere={"condition": "service_healthy"})
    )
    assert any("no service 'nothere'" in p for p in dc.health_problems(unknown, lines))


def test_a_long_running_service_without_healthcheck_is_found_but_one_shots_need_none(
    compose: dict, lines: dict
) -> None:
    doc = _broken(compose, lambda s: s["airflow-triggerer"].pop("healthcheck"))
    assert [p for p in dc.health_problems(doc, lines) if "airflow-triggerer" in p]
    assert "healthcheck" not in compose["services"]["artifacts-init"]  # a one-shot passes without one


@pytest.mark.parametrize(
    ("service", "key", "value"),
    [("postgres", "POSTGRES_PASSWORD", "hunter2"), ("mlflow", "AWS_SECRET_ACCESS_KEY", "abc"),
     ("gateway", "API_TOKEN", "t0ken"), ("gateway", "MY_SECRET", "$HOME")],
)  # fmt: skip
def test_a_secret_literal_in_the_environment_is_found(
    compose: dict, lines: dict, service: str, key: str, value: str
) -> None:
    doc = _broken(compose, lambda s: s[service].update(environment={**s[service]["environment"], key: value}))
    problems = dc.secret_literals(doc, lines)
    assert len(problems) == 1 and f"services.{service}.environment.{key}" in problems[0]
    assert "literal value for a secret" in problems[0] and value not in problems[0].replace(key, "")


def test_a_literal_password_in_a_url_or_connection_json_is_found(compose: dict, lines: dict) -> None:
    url = _broken(compose, lambda s: s["mlflow"]["command"].__setitem__(
        5, "postgresql+psycopg2://pushbutton:hunter2@postgres:5432/mlflow"))  # fmt: skip
    assert any("services.mlflow.command.5" in p and "URL with a literal password" in p
               for p in dc.secret_literals(url, lines))  # fmt: skip
    conn = '{"conn_type": "http", "password": "hunter2"}'
    json_doc = _broken(compose, lambda s: s["airflow-api"].update(environment={"AIRFLOW_CONN_X": conn}))
    assert any("AIRFLOW_CONN_X" in p and "password is a literal secret" in p
               for p in dc.secret_literals(json_doc, lines))  # fmt: skip


def test_a_variable_missing_from_env_example_is_found(text: str) -> None:
    broken = text.replace("${ELASTIC_PASSWORD:?set ELASTIC_PASSWORD in .env}", "${ELASTIC_PASSWORD_NEW}", 1)
    problems = dc.undeclared_variables(broken, ENV_EXAMPLE.read_text())
    assert len(problems) == 1 and "${ELASTIC_PASSWORD_NEW}: not listed in .env.example" in problems[0]
    line = next(i for i, t in enumerate(broken.splitlines(), 1) if "ELASTIC_PASSWORD_NEW" in t)
    assert problems[0].startswith(f"docker-compose.yaml:{line}: ")
    trimmed = re.sub(r"^MINIO_ROOT_USER=.*$", "", ENV_EXAMPLE.read_text(), flags=re.M)
    assert any("${MINIO_ROOT_USER}" in p for p in dc.undeclared_variables(text, trimmed))
    assert "HOSTNAME" not in dc.variables(text)  # $${HOSTNAME} is the container's, not compose's


def test_an_undeclared_volume_is_found(compose: dict, lines: dict) -> None:
    doc = _broken(compose, lambda s: s["elasticsearch"]["volumes"].append("es-snapshots:/snapshots"))
    problems = dc.undeclared_volumes(doc, lines)
    assert len(problems) == 1 and "volume 'es-snapshots' is not declared" in problems[0]
    long_form = _broken(
        compose, lambda s: s["kibana"].update(volumes=[{"type": "volume", "source": "kb", "target": "/x"}])
    )
    assert any("'kb'" in p for p in dc.undeclared_volumes(long_form, lines))
    bind = _broken(compose, lambda s: s["kibana"].update(volumes=["./deploy/kibana:/x:ro"]))
    assert dc.undeclared_volumes(bind, lines) == []


def test_the_schema_check_fails_on_a_broken_document(compose: dict, schema: dict) -> None:
    doc = _broken(compose, lambda s: s["gateway"].update(healthcheck={"test": ["CMD"], "intervall": "5s"}))
    problems = dc.schema_problems(doc, schema)
    assert problems and any("services.gateway.healthcheck" in p and "intervall" in p for p in problems)


def test_the_command_line_reports_problems_and_fails(tmp_path: Path, text: str, capsys: Any) -> None:
    bad = tmp_path / "docker-compose.yaml"
    bad.write_text(text.replace("image: postgres:17.5", "image: postgres:latest"))
    (tmp_path / ".env.example").write_text(ENV_EXAMPLE.read_text())
    assert dc.main([str(bad)]) == 1
    assert "postgres:latest' is not pinned" in capsys.readouterr().out
    assert dc.main([str(COMPOSE), str(ENV_EXAMPLE)]) == 0


# -- past one machine: the CeleryExecutor (compose profile `celery`) -----------------------------


@pytest.fixture(scope="module")
def variants() -> dict[str, dict[str, str]]:
    return dc.env_variants(ENV_EXAMPLE.read_text())


def _resolved_with(text: str, env: dict[str, str]) -> dict:
    return dc.resolve(yaml.safe_load(text), env)


def _seldon_extra(service: dict) -> dict:
    return json.loads(_env(service)["AIRFLOW_CONN_PUSHBUTTON_SELDON"])["extra"]


def test_the_celery_profile_runs_redis_and_workers_with_health_checks_and_pinned_images(
    compose: dict,
) -> None:
    services = compose["services"]
    redis, worker = services["redis"], services["airflow-worker"]
    assert redis["profiles"] == ["celery"] and worker["profiles"] == ["celery"]
    assert dc.image_problem(redis["image"]) is None and re.fullmatch(
        r"redis:\d+\.\d+\.\d+-\w+", redis["image"]
    )
    assert (
        worker["image"] == "pushbutton/platform:0.1.0"
        and worker["build"]["dockerfile"] == "deploy/Dockerfile"
    )
    assert worker["command"] == ["airflow", "celery", "worker"]
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    probe = " ".join(worker["healthcheck"]["test"])
    assert "celery --app airflow.providers.celery.executors.celery_executor.app inspect ping" in probe
    assert '-d "celery@$${HOSTNAME}"' in probe  # the container's own worker, $$: not compose's variable
    assert {"redis", "airflow-worker"}.isdisjoint(dc.one_shot_services(compose))
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["airflow-api"]["condition"] == "service_healthy"  # the Execution API
    assert (
        _env(worker)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == _env(services["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )


def test_env_example_documents_the_local_default_and_the_celery_switch(
    text: str, variants: dict[str, dict[str, str]]
) -> None:
    assert set(variants) == {"default", "celery"}
    default, celery = variants["default"], variants["celery"]
    assert (default["AIRFLOW_EXECUTOR"], default["COMPOSE_PROFILES"], default["PUSHBUTTON_SELDON_RUNTIME"]) == (
        "LocalExecutor", "", "local")  # fmt: skip
    assert (celery["AIRFLOW_EXECUTOR"], celery["COMPOSE_PROFILES"], celery["PUSHBUTTON_SELDON_RUNTIME"]) == (
        "CeleryExecutor", "celery", "seldon-v1")  # fmt: skip
    assert celery["PUSHBUTTON_IMAGE_REGISTRY"] and celery["REDIS_PASSWORD"].startswith("change-me")
    assert set(dc.active_services(yaml.safe_load(text), set())) & {"redis", "airflow-worker"} == set()
    assert {"redis", "airflow-worker"} <= set(dc.active_services(yaml.safe_load(text), {"celery"}))


def test_the_executor_broker_and_seldon_connection_come_from_env(
    text: str, variants: dict[str, dict[str, str]]
) -> None:
    from pushbutton.kube.runtime import seldon_v1_config

    default = _resolved_with(text, variants["default"])["services"]
    assert _env(default["airflow-scheduler"])["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    extra = _seldon_extra(default["airflow-scheduler"])
    logger_port = default["logger"]["command"][default["logger"]["command"].index("--port") + 1]
    assert extra["runtime"] == "local" and extra["logger_url"] == f"http://logger:{logger_port}"
    assert extra["kubernetes_conn_id"] == "kubernetes_default"

    env = variants["celery"]
    services = _resolved_with(text, env)["services"]
    for name in ("airflow-scheduler", "airflow-worker", "airflow-api", "airflow-triggerer"):
        assert _env(services[name])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    worker = _env(services["airflow-worker"])
    assert worker["AIRFLOW__CELERY__BROKER_URL"] == f"redis://default:{env['REDIS_PASSWORD']}@redis:6379/0"
    assert _env(services["redis"])["REDISCLI_AUTH"] == env["REDIS_PASSWORD"]  # the server's password
    metadata_db = worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("://", 1)[1]
    assert worker["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+postgresql://{metadata_db}"
    config = seldon_v1_config(_seldon_extra(services["airflow-worker"]), "connection pushbutton_seldon")
    assert (config.runtime, config.image_registry, config.logger_url) == (
        "seldon-v1", env["PUSHBUTTON_IMAGE_REGISTRY"], env["PUSHBUTTON_SELDON_LOGGER_URL"])  # fmt: skip


def test_the_shipped_file_passes_the_executor_rule_under_every_documented_env(
    text: str, variants: dict[str, dict[str, str]], lines: dict, compose: dict
) -> None:
    for name, env in variants.items():
        assert dc.executor_problems(text, env, name) == [], name
    assert dc.profile_problems(compose, lines) == []


def test_celery_with_the_local_runtime_is_refused(text: str, variants: dict[str, dict[str, str]]) -> None:
    env = {**variants["celery"], "PUSHBUTTON_SELDON_RUNTIME": "local"}
    problems = dc.executor_problems(text, env, "celery")
    assert len(problems) == 1, problems
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "AIRFLOW_CONN_PUSHBUTTON_SELDON:" in t)
    assert problems[0].startswith(f"docker-compose.yaml:{line}: services.")
    assert "airflow-worker" in problems[0] and "extra.runtime: runtime 'local'" in problems[0]
    assert (
        "'CeleryExecutor'" in problems[0]
        and "(fix: in .env set PUSHBUTTON_SELDON_RUNTIME=seldon-v1" in problems[0]
    )
    hybrid = {**variants["default"], "AIRFLOW_EXECUTOR": "LocalExecutor,KubernetesExecutor"}
    assert any("KubernetesExecutor" in p for p in dc.executor_problems(text, hybrid))
    # the whole check sees it when .env.example documents that combination
    broken_example = ENV_EXAMPLE.read_text().replace("#[celery] PUSHBUTTON_SELDON_RUNTIME=seldon-v1",
                                                     "#[celery] PUSHBUTTON_SELDON_RUNTIME=local")  # fmt: skip
    assert any("extra.runtime" in p for p in dc.check(text, broken_example))


def test_a_document_hard_coding_celery_with_the_local_runtime_is_refused(
    text: str, variants: dict[str, dict[str, str]]
) -> None:
    mutated = text.replace("${AIRFLOW_EXECUTOR:-LocalExecutor}", "CeleryExecutor")
    assert mutated != text
    problems = dc.executor_problems(mutated, variants["default"])
    assert any("extra.runtime: runtime 'local'" in p for p in problems)
    assert any("no active service runs `airflow celery worker`" in p and "COMPOSE_PROFILES=celery" in p
               for p in problems)  # fmt: skip
    one_host = mutated.replace("    PUSHBUTTON_HOME: /var/lib/pushbutton\n",
                               '    PUSHBUTTON_HOME: /var/lib/pushbutton\n    PUSHBUTTON_WORKERS_ON_ONE_HOST: "1"\n',
                               1)  # fmt: skip
    on_one_host = dc.executor_problems(one_host, {**variants["default"], "COMPOSE_PROFILES": "celery"})
    assert on_one_host == []  # the documented opt-in of pushbutton.executors


def test_seldon_v1_without_a_registry_is_refused(text: str, variants: dict[str, dict[str, str]]) -> None:
    problems = dc.executor_problems(text, {**variants["celery"], "PUSHBUTTON_IMAGE_REGISTRY": ""}, "celery")
    assert len(problems) == 1 and "extra.image_registry" in problems[0]
    assert "(fix: set extra.image_registry" in problems[0]


def test_a_hard_dependency_on_a_service_of_an_inactive_profile_is_found(compose: dict, lines: dict) -> None:
    optional = _broken(compose, lambda s: s["airflow-scheduler"]["depends_on"]["redis"].pop("required"))
    problems = dc.profile_problems(optional, lines)
    assert len(problems) == 1 and "services.airflow-scheduler.depends_on.redis" in problems[0]
    assert "['celery']" in problems[0] and "required: false" in problems[0]
    listed = _broken(compose, lambda s: s["gateway"].update(depends_on=["airflow-worker"]))
    assert any("services.gateway.depends_on.airflow-worker" in p for p in dc.profile_problems(listed, lines))
    assert dc.profile_problems(compose, lines) == []  # the worker may hard-depend on redis: same profile


def test_interpolation_follows_compose(text: str) -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert dc.interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $SET $${HOSTNAME}", env) == (
        "v d  d v ${HOSTNAME}")  # fmt: skip
    assert dc.interpolate("${SET:+alt}${EMPTY:+alt}", env) == "alt"
    with pytest.raises(ValueError, match=r"\$\{EMPTY\} is required: set it"):
        dc.interpolate("${EMPTY:?set it}", env)
    problems = dc.executor_problems(text, {})  # no .env at all: a required variable is named
    assert len(problems) == 1 and "is required" in problems[0]
