"""The local serving runtime end to end: real serving env, real seldon-core microservices, real gateway.

Tests share one gateway and reuse microservices across tests (apply() keys them by model+version);
each test applies the spec it needs, so any single test also runs alone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pushbutton.errors import ServingError
from pushbutton.serving.checks import predict_in_env, run_model_tests
from pushbutton.serving.envs import ensure_env, env_key, python_version
from pushbutton.serving.microservice import READY_PATH, service_name
from pushbutton.serving.spec import Predictor, ServingSpec, champion_only, predictor, with_candidate
from pushbutton.spec.model import TrafficSpec
from tests.integration.serving_fixtures import IrisBuild, Serving, listening_addresses

pytestmark = pytest.mark.integration

NS, DEP = "models", "iris"


def payload(build: IrisBuild, rows: int | None = None) -> dict:
    frame = build.golden if rows is None else build.golden.head(rows)
    return {"data": {"names": list(frame.columns), "ndarray": frame.to_numpy().tolist()}}


def canary(build: IrisBuild) -> ServingSpec:
    return with_candidate(build.spec, build.v2, build.v1)


def shadow(build: IrisBuild) -> ServingSpec:
    return with_candidate(
        build.spec.model_copy(update={"traffic": TrafficSpec(mode="shadow")}), build.v2, build.v1
    )


def until(check, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def test_env_is_built_once_reused_and_failures_name_the_requirements(tmp_path):
    requirements = ["scikit-learn==1.9.1"]
    with ThreadPoolExecutor(2) as pool:  # two builds of one key: the lock makes the second reuse
        built = list(pool.map(lambda _: ensure_env(requirements, root=tmp_path), range(2)))
    assert sorted(e.created for e in built) == [False, True]
    assert built[0].key == built[1].key == env_key(python_version(sys.executable), requirements)
    assert (built[0].path / "bin" / "seldon-core-microservice").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".build-")]
    again = ensure_env(requirements, root=tmp_path)
    assert not again.created and again.path == built[0].path
    with pytest.raises(ServingError, match=r"(?s)scikit-learn==0\.0\.1.*No solution"):
        ensure_env(["scikit-learn==0.0.1"], root=tmp_path)


def test_model_checks_run_in_the_serving_env(iris_build: IrisBuild):
    b = iris_build
    predicted = predict_in_env(b.env, b.code_dir, "predict:IrisClassifier", b.v1.model_uri, b.golden)
    assert predicted == b.expected_v1
    with pytest.raises(ServingError, match=r"stage 'load'.*corrupted"):
        predict_in_env(b.env, b.code_dir, "broken:Broken", b.v1.model_uri, b.golden)
    with pytest.raises(ServingError, match=r"stage 'predict'.*not in index"):
        predict_in_env(b.env, b.code_dir, "predict:IrisClassifier", b.v1.model_uri, b.golden.iloc[:, :2])
    passed, output = run_model_tests(b.env, b.code_dir, b.code_dir / "tests", b.v1.model_uri)
    assert passed, output
    assert "1 passed" in output
    passed, output = run_model_tests(b.env, b.code_dir, b.code_dir / "tests", str(b.code_dir / "missing"))
    assert not passed and "1 failed" in output


def test_first_release_then_promotion_serves_right_answers(serving: Serving, iris_build: IrisBuild):
    b = iris_build
    first = serving.runtime.apply(with_candidate(b.spec, b.v1, None))
    resp = serving.gateway.predict(NS, DEP, payload(b))
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["ndarray"] == b.expected_v1
    assert resp.headers["X-Pushbutton-Predictor"] == "candidate"
    assert resp.headers["X-Pushbutton-Version"] == "1"

    svc = serving.runtime.services.get(service_name(NS, DEP, "1"))
    assert httpx.get(svc.url + "/health/ping").text == "pong"
    assert httpx.get(svc.url + READY_PATH).status_code == 200
    # seldon alone binds 0.0.0.0; the launcher keeps REST and metrics on the platform host
    assert svc.host == "127.0.0.1"
    assert listening_addresses(svc.http_port) == listening_addresses(svc.metrics_port) == {"127.0.0.1"}

    promoted = serving.runtime.apply(champion_only(b.spec, b.v1))
    assert promoted["started"] == [] and promoted["stopped"] == []  # same version: only the route changed
    assert promoted["reused"] == [service_name(NS, DEP, "1")]
    assert first["route"]["backends"]["candidate"]["url"] == promoted["route"]["backends"]["champion"]["url"]
    resp = serving.gateway.predict(NS, DEP, payload(b))
    assert resp.headers["X-Pushbutton-Predictor"] == "champion"
    assert resp.json()["data"]["ndarray"] == b.expected_v1


def test_requests_that_do_not_fit_the_schema_get_400_naming_the_feature(
    serving: Serving, iris_build: IrisBuild
):
    b = iris_build
    serving.runtime.apply(champion_only(b.spec, b.v1))
    names = list(b.golden.columns)
    row = b.golden.to_numpy().tolist()[0]

    url = serving.gateway.route(NS, DEP)["config"]["backends"]["champion"]["url"]
    errors_before = serving.gateway.describe()["backends"][url]["errors"]

    def send(data: dict) -> httpx.Response:
        return serving.gateway.predict(NS, DEP, {"data": data})

    cases = [
        ({"ndarray": [row[:3]]}, "rows have 3 values, the model takes 4"),
        ({"ndarray": row}, "not one row per instance"),
        ({"names": [*names[:3], "petal_size"], "ndarray": [row]}, "unknown feature(s) ['petal_size']"),
        (
            {"names": names, "ndarray": [[*row[:2], "wide", row[3]]]},
            f"feature '{names[2]}' (double) in row 0",
        ),
        ({"ndarray": [[row[0], None, *row[2:]]]}, f"'{names[1]}' (double) in row 0 is missing"),
    ]
    bodies = [({"data": data}, message) for data, message in cases]
    bodies.append(
        ({"jsonData": {names[0]: row[0]}}, "not dict data; send them as data.ndarray or data.tensor")
    )
    bodies += [  # payloads seldon-core itself cannot decode (it would answer 500)
        ({"data": None}, "data is null, not an object"),
        ({"data": {"ndarray": [row, row[:3]]}}, "rows differ: row 0 has 4 values, row 1 has 3 values"),
        ({"data": {"tensor": {"shape": [2, 4], "values": row}}}, "4 values, which do not fill shape [2, 4]"),
    ]
    for body, message in bodies:
        resp = serving.gateway.predict(NS, DEP, body)
        assert resp.status_code == 400, (body, resp.text)
        status = resp.json()["status"]
        assert status["reason"] == "MICROSERVICE_BAD_DATA" and message in status["info"], status
    reordered = {"names": names[::-1], "ndarray": [row[::-1]]}  # named columns may come in any order
    assert send(reordered).json()["data"]["ndarray"] == b.expected_v1[:1]
    assert send({"ndarray": [row]}).json()["data"]["ndarray"] == b.expected_v1[:1]
    assert serving.gateway.describe()["backends"][url]["errors"] == errors_before  # a 4xx is the client's


def test_apply_is_idempotent(serving: Serving, iris_build: IrisBuild):
    spec = champion_only(iris_build.spec, iris_build.v1)
    serving.runtime.apply(spec)
    pids = {s.name: s.pid for s in serving.runtime.services.list(NS, DEP)}
    route = serving.gateway.route(NS, DEP)["config"]
    again = serving.runtime.apply(spec)
    assert again["changed"] is False
    assert again["started"] == [] and again["stopped"] == []
    assert {s.name: s.pid for s in serving.runtime.services.list(NS, DEP)} == pids
    assert serving.gateway.route(NS, DEP)["config"] == route


def test_canary_split_follows_weights(serving: Serving, iris_build: IrisBuild):
    b = iris_build
    result = serving.runtime.apply(canary(b))
    assert result["route"]["weights"] == {"candidate": 10, "champion": 90}
    body = payload(b, rows=3)
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=serving.settings.gateway_url) as client:
        for _ in range(2000):
            resp = client.post(f"/seldon/{NS}/{DEP}/api/v1.0/predictions", json=body)
            assert resp.status_code == 200, resp.text
            role = resp.headers["X-Pushbutton-Predictor"]
            expected = b.expected_v1 if role == "champion" else b.expected_v2
            assert resp.json()["data"]["ndarray"] == expected[:3]
            seen[role] += 1
    share = seen["candidate"] / 2000
    print(f"canary split over 2000 requests: {dict(seen)} -> candidate {share:.3f}")
    assert abs(share - 0.10) <= 0.03, seen
    route = serving.gateway.route(NS, DEP)
    assert route["backends"]["candidate"]["requests"] >= seen["candidate"]


def test_shadow_answers_are_never_returned(serving: Serving, iris_build: IrisBuild):
    b = iris_build
    serving.runtime.apply(shadow(b))
    before = serving.gateway.route(NS, DEP)["backends"]["candidate"]
    for _ in range(300):
        resp = serving.gateway.predict(NS, DEP, payload(b))
        assert resp.status_code == 200
        assert resp.headers["X-Pushbutton-Predictor"] == "champion"
        assert resp.json()["data"]["ndarray"] == b.expected_v1  # v2 would answer differently on every row

    def copies_served() -> bool:
        now = serving.gateway.route(NS, DEP)["backends"]["candidate"]
        return now["shadow_requests"] - before["shadow_requests"] >= 300 and now["inflight"] == 0

    until(copies_served, what="300 shadow copies served")
    after = serving.gateway.route(NS, DEP)["backends"]["candidate"]
    assert after["requests"] == before["requests"]  # the shadow answered no client
    assert after["shadow_errors"] == before["shadow_errors"]


def test_a_model_that_fails_to_load_leaves_the_route_alone(serving: Serving, iris_build: IrisBuild):
    b = iris_build
    serving.runtime.apply(canary(b))
    before = serving.gateway.route(NS, DEP)["config"]
    broken = Predictor(
        name="candidate",
        model=DEP,
        version="3",
        model_uri=b.v1.model_uri,
        class_ref="broken:Broken",
        code_uri=str(b.code_dir),
        env_key=b.env.key,
        traffic=10,
    )
    spec = canary(b)
    spec = ServingSpec(namespace=NS, deployment=DEP, predictors=[spec.predictor("champion"), broken])
    with pytest.raises(ServingError) as failure:
        serving.runtime.apply(spec)
    message = str(failure.value)
    assert service_name(NS, DEP, "3") in message
    assert "corrupted (raised on purpose" in message  # the microservice's log tail
    assert serving.gateway.route(NS, DEP)["config"] == before
    assert serving.runtime.services.get(service_name(NS, DEP, "3")) is None
    assert service_name(NS, DEP, "3") not in serving.group.names()  # the half-started process is gone
    assert serving.gateway.predict(NS, DEP, payload(b)).status_code == 200


def test_killed_candidate_is_marked_down_and_no_request_fails(serving: Serving, iris_build: IrisBuild):
    b = iris_build
    serving.runtime.apply(canary(b))
    candidate = serving.runtime.services.get(service_name(NS, DEP, "2"))
    failures: list[str] = []
    roles: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=serving.settings.gateway_url, timeout=30) as client:
            while not stop.is_set():
                try:
                    resp = client.post(f"/seldon/{NS}/{DEP}/api/v1.0/predictions", json=payload(b, 2))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
                else:
                    roles[resp.headers["X-Pushbutton-Predictor"]] += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        until(lambda: roles["candidate"] >= 5, what="candidate answering under load")
        os.killpg(serving.group.get(candidate.name).pgid, signal.SIGKILL)  # crash it: no graceful stop
        until(
            lambda: serving.gateway.route(NS, DEP)["backends"]["candidate"]["up"] is False,
            what="gateway reporting the candidate down",
        )
        served = roles.total()
        until(lambda: roles.total() >= served + 200, what="200 more requests after the crash")
    finally:
        stop.set()
        worker.join()
    assert failures == []
    candidate_state = serving.gateway.route(NS, DEP)["backends"]["candidate"]
    assert candidate_state["up"] is False and candidate_state["last_error"]
    status = serving.runtime.status(NS, DEP)
    assert status["backends"]["candidate"]["up"] is False
    assert status["backends"]["champion"]["up"] is True


def test_gateway_restart_keeps_routes(serving: Serving, iris_build: IrisBuild):
    serving.runtime.apply(champion_only(iris_build.spec, iris_build.v1))
    before = serving.gateway.route(NS, DEP)["config"]
    serving.stop_gateway()
    serving.start_gateway()
    assert serving.gateway.route(NS, DEP)["config"] == before
    resp = serving.gateway.predict(NS, DEP, payload(iris_build))
    assert resp.status_code == 200 and resp.json()["data"]["ndarray"] == iris_build.expected_v1


def test_down_then_up_serves_the_same_release_again(serving: Serving, iris_build: IrisBuild):
    """``pushbutton down`` stops model servers with the stack; ``up`` starts them again, same split."""
    from pushbutton import stack
    from pushbutton.procs import free_port

    b = iris_build
    serving.runtime.apply(canary(b))
    before = serving.gateway.route(NS, DEP)["config"]
    cfg = serving.settings.model_copy(update={"mlflow_port": free_port()})
    stopped = stack.down(cfg)
    assert {"gateway", service_name(NS, DEP, "1"), service_name(NS, DEP, "2")} <= set(stopped)

    info = stack.up(cfg, airflow=False)
    assert any(f"serving {NS}/{DEP} again" in note for note in info.notes), info.notes
    after = serving.gateway.route(NS, DEP)
    assert after["weights"] == before["weights"] and after["shadows"] == before["shadows"]
    assert {r: x["version"] for r, x in after["backends"].items()} == {"champion": "1", "candidate": "2"}
    assert all(x["url"] != before["backends"][r]["url"] for r, x in after["backends"].items())
    answers = {
        resp.headers["X-Pushbutton-Version"]: resp.json()["data"]["ndarray"]
        for resp in (serving.gateway.predict(NS, DEP, payload(b)) for _ in range(200))
    }
    assert answers == {"1": b.expected_v1, "2": b.expected_v2}
    assert all(not r["restarted"] and not r["errors"] for r in serving.runtime.restore())  # idempotent


def test_restore_without_a_service_record_says_how_to_redeploy(serving: Serving, iris_build: IrisBuild):
    b = iris_build
    serving.runtime.apply(champion_only(b.spec, b.v1))
    name = service_name(NS, DEP, "1")
    serving.runtime.stop_all()
    (serving.runtime.services.meta_dir / f"{name}.json").unlink()
    try:
        [result] = [r for r in serving.runtime.restore() if r["deployment"] == f"{NS}/{DEP}"]
        assert result["restarted"] == []
        assert len(result["errors"]) == 1 and "pushbutton promote iris --version 1" in result["errors"][0]
        assert serving.gateway.predict(NS, DEP, payload(b)).status_code == 502
    finally:
        serving.runtime.apply(champion_only(b.spec, b.v1))
    assert serving.gateway.predict(NS, DEP, payload(b)).json()["data"]["ndarray"] == b.expected_v1


def test_activation_retires_the_old_champion_and_remove_stops_everything(
    serving: Serving, iris_build: IrisBuild
):
    b = iris_build
    serving.runtime.apply(canary(b))  # restarts the candidate if an earlier test killed it
    activated = serving.runtime.apply(champion_only(b.spec, b.v2))
    assert activated["stopped"] == [service_name(NS, DEP, "1")]
    assert [s.version for s in serving.runtime.services.list(NS, DEP)] == ["2"]
    resp = serving.gateway.predict(NS, DEP, payload(b))
    assert resp.headers["X-Pushbutton-Version"] == "2"
    assert resp.json()["data"]["ndarray"] == b.expected_v2

    removed = serving.runtime.remove(NS, DEP)
    assert removed["route_deleted"] is True
    assert removed["stopped"] == [service_name(NS, DEP, "2")]
    assert serving.runtime.services.list(NS, DEP) == []
    resp = serving.gateway.predict(NS, DEP, payload(b))
    assert resp.status_code == 404 and "models/iris" in resp.json()["error"]
    status = serving.runtime.status(NS, DEP)
    assert status["route"] is None and status["services"] == []


def first_pick_is(taken: int, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Make the next microservice start pick ``taken`` as its HTTP port first; returns the picks."""
    from pushbutton.serving import microservice as ms

    picks: list[list[int]] = []
    real = ms._free_ports

    def pick(count: int) -> list[int]:
        picks.append([taken, *real(count - 1)] if not picks else real(count))
        return picks[-1]

    monkeypatch.setattr(ms, "_free_ports", pick)
    return picks


def test_a_port_taken_before_seldon_binds_it_is_picked_again(
    serving: Serving, iris_build: IrisBuild, monkeypatch: pytest.MonkeyPatch
):
    """The race between picking a free port and seldon-core binding it: another process wins the
    port, gunicorn logs "Connection in use" and exits; the start is retried on new ports."""
    import socket

    from pushbutton.serving import microservice as ms

    b = iris_build
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = first_pick_is(taken, monkeypatch)
        services = ms.Microservices(serving.settings)
        svc = services.start(
            b.env, namespace="races", model="iris", version="1", code_dir=b.code_dir,
            class_ref=b.spec.predict.class_, model_uri=b.v1.model_uri, timeout=120,
        )  # fmt: skip
    try:
        assert len(picks) == 2 and svc.http_port == picks[1][0] != taken
        first_attempt = services.group.log_dir / f"{svc.name}.log.1"
        assert ms.PORT_TAKEN in first_attempt.read_text()
        answer = httpx.post(f"{svc.url}/api/v1.0/predictions", json=payload(b, rows=2), timeout=10)
        assert answer.json()["data"]["ndarray"] == b.expected_v1[:2]
    finally:
        services.stop(svc.name)


def test_a_port_answered_by_another_server_is_not_taken_for_ours(
    serving: Serving, iris_build: IrisBuild, monkeypatch: pytest.MonkeyPatch
):
    """Another server wins the picked port *and* answers the readiness check: the start must not
    record that server as the model (the route would send requests to a stranger); new ports."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pushbutton.serving import microservice as ms

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    b = iris_build
    impostor = ThreadingHTTPServer(("0.0.0.0", 0), Healthy)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    taken = impostor.server_address[1]
    picks = first_pick_is(taken, monkeypatch)
    services = ms.Microservices(serving.settings)
    try:
        svc = services.start(
            b.env, namespace="impostor", model="iris", version="1", code_dir=b.code_dir,
            class_ref=b.spec.predict.class_, model_uri=b.v1.model_uri, timeout=120,
        )  # fmt: skip
        try:
            assert len(picks) == 2 and svc.http_port == picks[1][0] != taken
            answer = httpx.post(f"{svc.url}/api/v1.0/predictions", json=payload(b, rows=2), timeout=10)
            assert answer.json()["data"]["ndarray"] == b.expected_v1[:2]
        finally:
            services.stop(svc.name)
    finally:
        impostor.shutdown()
        impostor.server_close()


def test_applying_a_deployment_leaves_a_version_warmed_for_its_test_running(
    serving: Serving, iris_build: IrisBuild
):
    """A CI/CD run's test step warms v2 (not routed) while a promotion applies the deployment: the
    apply must not stop v2 under the test; the run itself releases it."""
    b = iris_build
    serving.runtime.apply(champion_only(b.spec, b.v1))
    url = serving.runtime.warm(NS, predictor(b.spec, "candidate", b.v2))
    applied = serving.runtime.apply(champion_only(b.spec, b.v1))
    assert service_name(NS, DEP, "2") not in applied["stopped"]
    answer = httpx.post(f"{url}/api/v1.0/predictions", json=payload(b, rows=2), timeout=10)
    assert answer.json()["data"]["ndarray"] == b.expected_v2[:2]
    assert serving.runtime.release(NS, DEP, "2") is True
    assert serving.runtime.endpoint(NS, DEP, "2") is None
