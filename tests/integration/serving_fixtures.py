"""What the serving tests deploy: a real serving env, two trained iris versions that answer
differently and a broken model class (``build_iris``), and a real gateway process (``Serving``).

The fixtures ``iris_build`` (session) and ``serving`` (module) live in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pushbutton.config import REPO_ROOT, Settings
from pushbutton.procs import ProcessGroup, free_port, http_ok, wait_ready
from pushbutton.serving.envs import ServingEnv, ensure_env, model_requirements
from pushbutton.serving.gateway import GatewayClient, gateway_argv
from pushbutton.serving.local import LocalRuntime
from pushbutton.serving.spec import Release
from pushbutton.spec import ModelSpec, load_model_dir
from pushbutton.training import load_reference

IRIS = Path(REPO_ROOT) / "models" / "iris"
BROKEN_CLASS = """
class Broken:
    def __init__(self, model_uri):
        raise RuntimeError(f"weights at {model_uri} are corrupted (raised on purpose by the test)")

    def predict(self, X, features_names=None):
        return X
"""


@dataclass(frozen=True)
class IrisBuild:
    """What the serving tests deploy: the spec, code, env and two releases that answer differently."""

    spec: ModelSpec
    code_dir: Path
    env: ServingEnv
    v1: Release
    v2: Release
    golden: pd.DataFrame  # feature columns only
    expected_v1: list[int]
    expected_v2: list[int]


def build_iris(root: Path, envs_root: Path) -> IrisBuild:
    """Train iris in-process under ``root`` (v2 on rotated labels, so every answer differs) and build
    its serving env in ``envs_root``; uv's own cache stays the default, so re-runs are warm."""
    import mlflow.sklearn

    from pushbutton.data import split

    code_dir = root / "code"
    shutil.copytree(IRIS, code_dir, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (code_dir / "broken.py").write_text(BROKEN_CLASS)
    spec = load_model_dir(code_dir)
    train = load_reference(code_dir, spec.train.entry_point)
    data = split(spec, code_dir)
    golden = pd.read_csv(code_dir / "golden.csv")[spec.feature_names]
    models = {
        "1": train(data.x_train, data.y_train, spec.train.params),
        "2": train(data.x_train, (data.y_train + 1) % 3, spec.train.params),
    }
    releases = {}
    for version, model in models.items():
        path = root / "models" / version
        mlflow.sklearn.save_model(model, str(path))
        releases[version] = path
    env = ensure_env(
        model_requirements(code_dir, str(releases["1"])),
        python=Settings().serving_python,
        root=envs_root,
    )
    expected = {v: [int(x) for x in m.predict(golden)] for v, m in models.items()}
    assert expected["1"] != expected["2"]
    return IrisBuild(
        spec=spec,
        code_dir=code_dir,
        env=env,
        v1=Release("1", str(releases["1"]), env.key, str(code_dir)),
        v2=Release("2", str(releases["2"]), env.key, str(code_dir)),
        golden=golden,
        expected_v1=expected["1"],
        expected_v2=expected["2"],
    )


@dataclass
class Serving:
    settings: Settings
    runtime: LocalRuntime
    gateway: GatewayClient
    group: ProcessGroup
    state: Path

    def start_gateway(self) -> None:
        argv = gateway_argv(self.settings.host, self.settings.gateway_port, self.state)
        info = self.group.start("gateway", argv)
        wait_ready(info, http_ok(f"{self.settings.gateway_url}/health"), 60, "gateway")

    def stop_gateway(self) -> None:
        self.group.stop("gateway")


@contextmanager
def serving_home(home: Path) -> Iterator[Serving]:
    """A real gateway process and a LocalRuntime on ``home``; every process stopped afterwards."""
    gateway_port = free_port()
    logger_port = next(p for p in iter(free_port, None) if p != gateway_port)  # `up` in its tests starts one
    settings = Settings(home=home, gateway_port=gateway_port, logger_port=logger_port)
    group = ProcessGroup(home / "run", home / "logs")
    runtime = LocalRuntime(settings, ready_timeout=120)
    result = Serving(
        settings, runtime, GatewayClient(settings.gateway_url), group, home / "gateway" / "routes.json"
    )
    try:
        result.start_gateway()
        yield result
    finally:
        runtime.stop_all()
        group.stop_all()
        result.gateway.close()


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from ``/proc/net/tcp``)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found
