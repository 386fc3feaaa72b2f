"""The launcher that binds seldon-core's servers to the platform host (runs in the serving env)."""

from __future__ import annotations

import importlib.util
import types

import pytest

from pushbutton.serving.microservice import LAUNCHER, RUNTIME_DIR, microservice_argv


@pytest.fixture(scope="module")
def launcher():
    spec = importlib.util.spec_from_file_location(LAUNCHER, RUNTIME_DIR / f"{LAUNCHER}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("address", "bound"),
    [
        ("0.0.0.0:9000", "127.0.0.1:9000"),
        ("10.1.2.3:9000", "10.1.2.3:9000"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
        ("[::]:9000", "[::]:9000"),
    ],
)
def test_only_the_all_interfaces_address_is_rebound(launcher, address, bound):
    assert launcher.rebind(address, "127.0.0.1") == bound


def test_an_ipv6_host_is_bracketed(launcher):
    assert launcher.rebind("0.0.0.0:9000", "::1") == "[::1]:9000"


@pytest.mark.parametrize(
    "argv", [[], ["--bind-host"], ["--bind-host", ""], ["predict.Iris", "--http-port", "1"]]
)
def test_a_launch_without_a_host_exits_with_the_usage(launcher, argv):
    with pytest.raises(SystemExit) as exc:
        launcher.main(argv)
    assert "--bind-host HOST" in str(exc.value)


def test_the_microservice_command_runs_seldon_through_the_launcher(tmp_path):
    env = types.SimpleNamespace(bin=lambda name: tmp_path / "bin" / name)
    argv = microservice_argv(
        env, "predict:Iris", "models:/iris/1", host="10.0.0.5", http_port=1, metrics_port=2
    )
    assert argv[:6] == [
        str(tmp_path / "bin" / "python"),
        "-m",
        LAUNCHER,
        "--bind-host",
        "10.0.0.5",
        "predict.Iris",
    ]
    assert argv[argv.index("--http-port") + 1] == "1" and argv[argv.index("--grpc-workers") + 1] == "0"
