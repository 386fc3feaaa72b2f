"""CLI answers that are one clear line rather than a traceback or a misleading message: bad settings,
bad versions, unknown models, broken unrelated specs, DAG stub names, sync counts, --help."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import pushbutton.config
from pushbutton import actions
from pushbutton import registry as reg
from pushbutton.cli import VERSION_CHOICE, build_parser, main
from pushbutton.config import REPO_ROOT, Settings, settings
from pushbutton.dagstubs import STUB_DIR, stub_name, sync_stubs
from pushbutton.errors import NotFound

IRIS = REPO_ROOT / "models" / "iris"
BROKEN = Path(__file__).parent / "specs" / "bad-cron"


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    settings.cache_clear()
    yield
    settings.cache_clear()


def test_a_bad_port_variable_names_the_variable_and_type(capsys, monkeypatch, fresh_settings) -> None:
    monkeypatch.setenv("PUSHBUTTON_AIRFLOW_PORT", "abc")
    code, out, err = run(capsys, "status")
    assert (code, out) == (1, "")
    assert err.startswith("error: environment variable PUSHBUTTON_AIRFLOW_PORT='abc' is invalid: ")
    assert err.endswith("(fix: set it to an integer from 1 to 65535, or unset it for the default)\n")


@pytest.mark.parametrize("host", ["http://127.0.0.1", "127.0.0.1:8000", "::1", ""])
def test_a_host_with_scheme_port_or_ipv6_is_refused(capsys, monkeypatch, fresh_settings, host) -> None:
    monkeypatch.setenv("PUSHBUTTON_HOST", host)
    code, out, err = run(capsys, "status")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: environment variable PUSHBUTTON_HOST={host!r} is invalid: ")
    assert "not a bare host name or IPv4 address" in err
    assert "(fix: set it to a host name or IPv4 address, e.g. 127.0.0.1 (no scheme" in err


def test_a_mistyped_variable_is_named_with_its_likely_fix(capsys, monkeypatch, fresh_settings) -> None:
    monkeypatch.setenv("PUSHBUTTON_MLFLOW_POTR", "5999")
    monkeypatch.setenv("PUSHBUTTON_NONSENSE", "1")
    monkeypatch.setenv("PUSHBUTTON_AIRFLOW_PORT", "abc")  # stops the command before anything runs
    code, out, err = run(capsys, "status")
    lines = err.splitlines()
    assert (code, out) == (1, "")
    assert lines[0] == (
        "warning: PUSHBUTTON_MLFLOW_POTR is not a pushbutton setting and is ignored "
        "(did you mean PUSHBUTTON_MLFLOW_PORT?)"
    )
    assert lines[1].startswith(
        "warning: PUSHBUTTON_NONSENSE is not a pushbutton setting and is ignored (known: "
    )
    assert "PUSHBUTTON_HOME" in lines[1] and "PUSHBUTTON_TEST_" not in lines[1]  # settings only
    assert lines[2].startswith("error: environment variable PUSHBUTTON_AIRFLOW_PORT")


def test_every_known_variable_is_read_somewhere() -> None:
    """A whole-word match: ``PUSHBUTTON_TEST_PYTHON`` was listed while only ``..._PYTHON312`` was read."""
    from pushbutton.config import OTHER_VARIABLES, REPO_ROOT

    sources = [
        p
        for d in ("pushbutton", "plugins", "tests", "dags", "operators")
        for p in (REPO_ROOT / d).rglob("*.py")
        if p.name != "config.py" and p.resolve() != Path(__file__).resolve()
    ]
    text = "\n".join(p.read_text() for p in sources)
    assert [v for v in sorted(OTHER_VARIABLES) if not re.search(rf"\b{v}\b", text)] == []


def test_the_test_suites_variables_warn_nothing_and_a_near_miss_names_them() -> None:
    from pushbutton.config import unknown_variables

    read_by_the_tests = {
        "PUSHBUTTON_TEST_PYTHON312": "/usr/bin/python3.12",  # the 3.12 serving-env test
        "PUSHBUTTON_TEST_REQUIRE_ALL": "1",  # .ci/run: a missing prerequisite fails, not skips
        "PUSHBUTTON_TEST_SESSION": "0f3c",
        "PUSHBUTTON_CHROMIUM": "/usr/bin/chromium",
    }
    assert unknown_variables(read_by_the_tests) == []
    assert unknown_variables({"PUSHBUTTON_TEST_PYTHON": "/usr/bin/python3.12"}) == [
        "PUSHBUTTON_TEST_PYTHON is not a pushbutton setting and is ignored "
        "(did you mean PUSHBUTTON_TEST_PYTHON312?)"
    ]


def test_a_bad_version_is_refused_before_anything_runs(capsys, monkeypatch) -> None:
    monkeypatch.setattr(actions, "_client", lambda settings: pytest.fail("Airflow was called"))
    with pytest.raises(SystemExit) as exit_:
        main(["rollback", "churn", "--version", "abc"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert (
        "argument --version: 'abc' is not a version; use a version number (e.g. 3), 'candidate' or "
        "'previous'" in err
    )


def test_the_promotion_dags_accept_exactly_the_cli_versions() -> None:
    text = (REPO_ROOT / "dags" / "pushbutton_promotions.py").read_text()
    patterns = re.findall(r'pattern=r"(\^\([^"]*)"', text)
    assert patterns == [VERSION_CHOICE.pattern]  # one pattern, the CLI's, no duplicate alternative
    assert build_parser().parse_args(["promote", "m", "--version", "12"]).version == "12"


class NoApprovals:
    def __init__(self, dags: set[str]):
        self.dags = dags

    def pending_hitl(self, dag_id: str) -> list:
        return []

    def get_dag(self, dag_id: str) -> dict:
        if dag_id not in self.dags:
            raise NotFound(f"GET /api/v2/dags/{dag_id} answered 404")
        return {"dag_id": dag_id}


def test_approve_an_unknown_model_says_it_is_unknown(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(actions, "_client", lambda settings: NoApprovals({"iris__cicd"}))
    cfg = Settings(home=tmp_path)
    with pytest.raises(NotFound, match=r"^unknown model 'nosuch': Airflow has no DAG nosuch__cicd; "):
        actions.respond_approval(cfg, "nosuch", approve=True)
    with pytest.raises(NotFound, match=r"^no approval is waiting in iris__cicd$"):
        actions.respond_approval(cfg, "iris", approve=True)


class OneApproval(NoApprovals):
    def __init__(self):
        super().__init__({"iris__cicd"})
        self.answers: list[tuple] = []

    def pending_hitl(self, dag_id: str) -> list:
        return [{"task_instance": {"dag_run_id": "registered__v4", "task_id": "approve", "map_index": -1}}]

    def respond_hitl(self, dag_id, run_id, task_id, options, params, map_index=-1) -> None:
        self.answers.append((dag_id, run_id, task_id, options, params))


def test_approve_from_the_cli_passes_the_comment_on(monkeypatch, capsys) -> None:
    client = OneApproval()
    monkeypatch.setattr(actions, "_client", lambda settings: client)
    code, out, _ = run(capsys, "approve", "iris", "--reject", "--comment", "canary answers look off")
    assert code == 0 and json.loads(out)["answer"] == "Reject"
    code, _, _ = run(capsys, "approve", "iris")
    assert [a[3:] for a in client.answers] == [
        (["Reject"], {"comment": "canary answers look off"}),
        (["Approve"], {"comment": "via pushbutton CLI"}),
    ]


def test_status_finds_a_model_despite_an_unrelated_broken_spec(tmp_path: Path) -> None:
    shutil.copytree(BROKEN, tmp_path / "aaa-broken")  # sorts first
    shutil.copytree(IRIS, tmp_path / "iris")
    spec, unreadable = actions.find_model_spec(tmp_path, "iris")
    assert spec is not None and spec.name == "iris" and unreadable == []
    spec, unreadable = actions.find_model_spec(tmp_path, "churn")
    assert spec is None and unreadable == [tmp_path / "aaa-broken" / "model.yaml"]


def test_status_of_an_unknown_model_names_the_unreadable_specs(monkeypatch, tmp_path: Path) -> None:
    shutil.copytree(BROKEN, tmp_path / "models" / "broken")
    monkeypatch.setattr(reg.Registry, "ping", lambda self: None)
    monkeypatch.setattr(reg.Registry, "versions", lambda self, name: [])
    cfg = Settings(home=tmp_path / "home", models_dir=tmp_path / "models")
    with pytest.raises(NotFound) as failure:
        actions.model_status(cfg, "churn")
    message = str(failure.value)
    assert message.startswith("model 'churn' has no registered version; push it with")
    assert f"no spec named 'churn' under {tmp_path / 'models'}" in message
    assert (
        f"could not be read (one may be 'churn'): {tmp_path / 'models' / 'broken' / 'model.yaml'}" in message
    )


def test_stub_names_never_collide(tmp_path: Path) -> None:
    models, dags = tmp_path / "models", tmp_path / "dags"
    for directory in ("fraud-x", "fraud_x", "fraud/x", "fraud.x", "iris"):
        shutil.copytree(IRIS, models / directory)
    names = {stub_name(models, models / d) for d in ("fraud-x", "fraud_x", "fraud/x", "fraud.x", "iris")}
    assert names == {"fraud-x.py", "fraud_x.py", "fraud.x.py", "fraud%2Ex.py", "iris.py"}
    sync_stubs(models, dags)
    stubs = sorted(p.name for p in (dags / STUB_DIR).glob("*.py"))
    assert stubs == sorted(names)
    assert (
        "build_model_dags('fraud_x', globals(), first_seen=" in (dags / STUB_DIR / "fraud_x.py").read_text()
    )
    assert (
        "build_model_dags('fraud-x', globals(), first_seen=" in (dags / STUB_DIR / "fraud-x.py").read_text()
    )


def test_sync_dags_counts_stubs_only(capsys, monkeypatch, tmp_path: Path) -> None:
    shutil.copytree(IRIS, tmp_path / "models" / "iris")
    cfg = Settings(home=tmp_path / "home", models_dir=tmp_path / "models", dags_dir=tmp_path / "dags")
    monkeypatch.setattr(pushbutton.config, "settings", lambda: cfg)
    assert run(capsys, "sync-dags") == (
        0,
        f"DAG stubs in {cfg.home / 'dags' / 'models'}: 1 written or removed\n",
        "",
    )
    assert run(capsys, "sync-dags") == (
        0,
        f"DAG stubs in {cfg.home / 'dags' / 'models'}: 0 written or removed\n",
        "",
    )
    assert not (cfg.dags_dir / "models").exists()  # never in the source tree


def test_help_is_a_description_and_every_argument_has_help() -> None:
    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text and "thin call" not in text
    assert text.split("\n\n")[1].startswith("Model lifecycle on Airflow:")
    subparsers = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"pushbutton {name}: {action.dest} has no help"
