"""measure_latency against a stand-in seldon microservice, with a simulated clock: each request
advances the clock by its service time, so counts, budgets and percentiles are exact."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pushbutton.errors import ServingError
from pushbutton.serving.checks import measure_latency


class StandIn:
    """Answers one label per row; a request of n rows 'takes' 2 + n simulated milliseconds."""

    def __init__(self) -> None:
        self.ms = 0  # simulated milliseconds (integers: no rounding in the budget arithmetic)
        self.sizes: list[int] = []
        self.status = 200
        self.release = threading.Event()
        self.hang = False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["data"]["ndarray"]
                stand_in.sizes.append(len(rows))
                stand_in.ms += 2 + len(rows)
                if stand_in.hang:
                    stand_in.release.wait(10)
                body = json.dumps({"data": {"names": [], "ndarray": [0] * len(rows)}}).encode()
                self.send_response(stand_in.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def clock(self) -> float:
        return self.ms / 1000


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.server.shutdown()
    server.server.server_close()
    thread.join()


ROWS = [[float(i), 1.0] for i in range(10)]


def test_single_rows_then_whole_batches_until_the_count(stand_in: StandIn) -> None:
    latency = measure_latency(
        stand_in.url, ["a", "b"], ROWS, batch_rows=4, timeout=5, single=(12, 60.0), batch=(3, 60.0),
        clock=stand_in.clock,
    )  # fmt: skip
    assert stand_in.sizes == [1] * 12 + [4, 4, 4]  # batches of 4: the 2-row tail is never sent
    assert latency.single_ms == pytest.approx((3.0,) * 12) and latency.batch_ms == pytest.approx((6.0,) * 3)
    figures = latency.summary()
    assert figures["single"] == {"requests": 12, "rows": 1, "p50_ms": 3.0, "p99_ms": 3.0, "timeouts": 0}
    assert figures["batch"]["rows"] == 4 and figures["timeout_seconds"] == 5


def test_the_budget_ends_sampling_after_at_least_one_request(stand_in: StandIn) -> None:
    latency = measure_latency(
        stand_in.url, ["a", "b"], ROWS, batch_rows=100, timeout=5, single=(200, 0.03), batch=(30, 0.001),
        clock=stand_in.clock,
    )  # fmt: skip
    assert len(latency.single_ms) == 10  # 3 ms each: the 30 ms budget is spent after 10 requests
    assert latency.batch_rows == 10 and len(latency.batch_ms) == 1  # a budget below one request: one


def test_a_request_slower_than_the_timeout_counts_as_timed_out(stand_in: StandIn) -> None:
    stand_in.hang = True
    latency = measure_latency(stand_in.url, ["a", "b"], ROWS[:2], batch_rows=2, timeout=0.2, single=(5, 60.0),
                              batch=(5, 60.0), clock=stand_in.clock)  # fmt: skip
    assert latency.single_timeouts == 1 and latency.single_ms == (200.0,)  # one, then that kind stops
    assert latency.batch_timeouts == 1 and latency.summary()["batch"]["timeouts"] == 1


def test_a_failed_request_is_an_error_naming_it(stand_in: StandIn) -> None:
    stand_in.status = 400
    with pytest.raises(
        ServingError, match=r"a latency request of 1 row\(s\) to http://.* failed with HTTP 400"
    ):
        measure_latency(stand_in.url, ["a", "b"], ROWS, batch_rows=4, timeout=5, clock=stand_in.clock)
