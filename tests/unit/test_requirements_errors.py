"""Requirements no serving environment can be built from fail the build without retry; an unreachable or
failing package index may be retried. Told apart by what uv and pip print: uv runs for real against
local package indexes (one with ``tinypkg`` 1.0 and 1.1 only, a closed port, a server answering 503);
pip's output, recorded against the same indexes, is read as recorded."""

from __future__ import annotations

import base64
import hashlib
import http.server
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

import operators.lifecycle as ops
from pushbutton.errors import RequirementsError, ServingError
from pushbutton.procs import free_port
from pushbutton.serving import envs


def wheel(directory: Path, name: str, version: str) -> str:
    """A minimal pure-Python wheel (what an index serves)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n"
        for path, data in files.items()
    )
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    filename = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(directory / filename, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return filename


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PEP 503 index on disk holding tinypkg 1.0 and 1.1 (and nothing else)."""
    root = tmp_path_factory.mktemp("index")
    (root / "tinypkg").mkdir()
    links = [wheel(root / "tinypkg", "tinypkg", v) for v in ("1.0", "1.1")]
    (root / "tinypkg" / "index.html").write_text("".join(f'<a href="{link}">{link}</a>' for link in links))
    return root.as_uri()


@pytest.fixture
def busy_index() -> Iterator[str]:
    """An index answering 503 Service Unavailable to everything."""

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()
    thread.join()


def isolate_uv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, index_url: str) -> None:
    if envs._uv() is None:
        pytest.fail("uv is not installed in the venv (make venv installs it); these tests exercise it")
    monkeypatch.setenv("UV_INDEX_URL", index_url)
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))  # nothing cached: the index decides
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    for name in ("UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def uv_build(tmp_path: Path, *lines: str) -> None:
    envs._build(tmp_path / "env", sys.executable, list(lines), tmp_path / "final")


def test_uv_a_package_that_does_not_exist_is_a_requirements_error(monkeypatch, tmp_path, index) -> None:
    isolate_uv(monkeypatch, tmp_path, index)
    with pytest.raises(RequirementsError) as failure:
        uv_build(tmp_path, "tinypkg==1.0", "Nosuch_Pkg")
    error = failure.value
    assert error.packages == ("nosuch-pkg",)
    assert str(error).splitlines()[0] == (
        "package 'nosuch-pkg' does not exist on the package index (fix: correct its name in "
        "requirements.txt (the name pip installs: scikit-learn, not sklearn) or remove it, then push again)"
    )
    assert "was not found in the package registry" in error.output  # uv's own words follow


def test_uv_a_pin_no_release_matches_is_a_requirements_error(monkeypatch, tmp_path, index) -> None:
    isolate_uv(monkeypatch, tmp_path, index)
    with pytest.raises(RequirementsError) as failure:
        uv_build(tmp_path, "tinypkg==9.0")
    assert failure.value.packages == ("tinypkg",)
    assert str(failure.value).startswith("no release of 'tinypkg' matches 'tinypkg==9.0' (fix: pin a version")


def test_uv_contradicting_pins_are_a_requirements_error(monkeypatch, tmp_path, index) -> None:
    isolate_uv(monkeypatch, tmp_path, index)
    with pytest.raises(
        RequirementsError, match=r"^the requirements contradict each other: Because you require"
    ):
        uv_build(tmp_path, "tinypkg==1.0", "tinypkg>=1.1")


def test_uv_with_the_package_present_builds(monkeypatch, tmp_path, index) -> None:
    isolate_uv(monkeypatch, tmp_path, index)
    uv_build(tmp_path, "tinypkg==1.1")
    assert list((tmp_path / "env").glob("lib/python*/site-packages/tinypkg-1.1.dist-info"))


def test_uv_an_unreachable_index_may_be_retried(monkeypatch, tmp_path) -> None:
    isolate_uv(monkeypatch, tmp_path, f"http://127.0.0.1:{free_port()}/simple")  # nothing listens
    with pytest.raises(ServingError) as failure:
        uv_build(tmp_path, "nosuch-pkg")
    assert not isinstance(failure.value, RequirementsError)
    assert "Connection refused" in str(failure.value) and "may pass on a retry" in str(failure.value)


def test_uv_an_index_answering_503_may_be_retried(monkeypatch, tmp_path, busy_index) -> None:
    isolate_uv(monkeypatch, tmp_path, busy_index)
    with pytest.raises(ServingError) as failure:
        uv_build(tmp_path, "nosuch-pkg")
    assert not isinstance(failure.value, RequirementsError) and "503" in str(failure.value)


# pip 23.2.1's output (`pip install --quiet --retries 1 --index-url URL …`), recorded against the same
# local indexes: pip's fallback runs only where uv is missing, and a venv with pip costs seconds
PIP_MISSING = (
    "ERROR: Could not find a version that satisfies the requirement nosuch-pkg (from versions: none)\n"
    "ERROR: No matching distribution found for nosuch-pkg\n"
)
PIP_PIN = (
    "ERROR: Could not find a version that satisfies the requirement tinypkg==9.0 (from versions: 1.0, 1.1)\n"
    "ERROR: No matching distribution found for tinypkg==9.0\n"
)
PIP_CONFLICT = (
    "ERROR: Cannot install tinypkg==1.0 and tinypkg>=1.1 because these package versions have conflicting "
    "dependencies.\nERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/"
    "dependency-resolution/#dealing-with-dependency-conflicts\n"
)
PIP_REFUSED = (
    "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection "
    "broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPConnection object at 0x7f560d3ca6d0>: "
    "Failed to establish a new connection: [Errno 111] Connection refused')': /simple/nosuch-pkg/\n"
    + PIP_MISSING
)
PIP_503 = PIP_MISSING  # pip prints nothing else for an index answering 503


@pytest.mark.parametrize(
    ("output", "first_line"),
    [
        (PIP_MISSING, "package 'nosuch-pkg' does not exist on the package index (fix: correct its name"),
        (PIP_PIN, "no release of 'tinypkg' matches 'tinypkg==9.0'; available: 1.0, 1.1 (fix: pin a version"),
        (PIP_CONFLICT, "the requirements contradict each other: tinypkg==1.0 and tinypkg>=1.1 cannot be"),
    ],
    ids=["missing", "pin", "conflict"],
)
def test_pip_failures_no_retry_can_fix(output: str, first_line: str) -> None:
    found = envs.install_failure(output, tail=output.rstrip())
    assert isinstance(found, RequirementsError) and str(found).startswith(first_line)
    assert str(found).endswith(output.rstrip().splitlines()[-1])  # pip's own words follow


def test_pip_an_unreachable_index_may_be_retried() -> None:
    assert envs.install_failure(PIP_REFUSED) is None


def test_pips_silent_503_is_the_documented_limit() -> None:
    assert isinstance(envs.install_failure(PIP_503), RequirementsError)
    assert "pip says nothing when an index answers 5xx" in (envs.install_failure.__doc__ or "")


def test_a_pip_option_in_requirements_txt_names_file_line_and_fix(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("scikit-learn==1.6.1\n--extra-index-url https://example.org/simple\n")
    with pytest.raises(RequirementsError) as failure:
        envs.read_requirements(requirements)
    assert str(failure.value) == (
        f"{requirements}:2: '--extra-index-url https://example.org/simple' is a pip option, not a package "
        f"(fix: {envs.PIP_OPTION_FIX})"
    )


@pytest.mark.parametrize(
    ("raised", "retried"),
    [
        (RequirementsError("package 'nosuch-pkg' does not exist on the package index", "fix it"), False),
        (ServingError("uv pip install failed: Connection refused; may pass on a retry"), True),
    ],
    ids=["deterministic", "transient"],
)
def test_the_build_task_fails_without_retry_only_when_no_retry_can_help(
    monkeypatch: pytest.MonkeyPatch, raised: Exception, retried: bool
) -> None:
    import pushbutton.lifecycle as lifecycle

    monkeypatch.setattr(ops, "platform", lambda: object())

    def build(*args: object) -> None:
        raise raised

    monkeypatch.setattr(lifecycle, "build", build)
    task = ops.SeldonBuildOperator(task_id="build", model="iris", version="4")
    with pytest.raises(Exception) as failure:
        task.execute({"run_id": "registered__v4"})
    assert isinstance(failure.value, AirflowFailException) is not retried
    assert str(raised) in str(failure.value)
