"""The HTTP layer on its own: listen addresses, routing, methods, concurrent scrapes."""

from __future__ import annotations

import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from backuppc_agent.listen import join_listen, split_listen
from backuppc_agent.metrics.http import MetricsServer, make_app
from backuppc_agent.metrics.scrape import Part, ScrapeCollector, ScrapeErrors
from tests.scrape import scrape


class SlowPart(Part):
    """A collector part that takes 0.2 s and counts how many of it run at once."""

    name = "slow"

    def __init__(self, errors: ScrapeErrors) -> None:
        super().__init__(errors)
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        threading.Event().wait(0.2)
        with self.lock:
            self.running -= 1
        return [GaugeMetricFamily("slow", "A slow metric.", value=1)]


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    app = make_app(CollectorRegistry(), lambda: (False, "waiting: test"))
    served = MetricsServer("127.0.0.1:0", app)
    try:
        yield served
    finally:
        served.close()


def request(server: MetricsServer, path: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{join_listen(*server.address)}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, bytes(reply.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:9842", ("127.0.0.1", 9842)), ("[::1]:9842", ("::1", 9842)),
     ("backup01.example.org:80", ("backup01.example.org", 80))],
)  # fmt: skip
def test_listen_addresses_are_split_into_host_and_port_and_joined_back(
    listen: str, expected: tuple[str, int]
) -> None:
    assert split_listen(listen) == expected
    assert join_listen(*expected) == listen


def test_an_ipv6_loopback_address_serves() -> None:
    served = MetricsServer("[::1]:0", make_app(CollectorRegistry(), lambda: (True, "ready: x")))
    try:
        assert request(served, "/ready") == (200, b"ready: x\n")
    finally:
        served.close()


def test_ready_is_503_when_not_ready_and_other_methods_are_refused(
    server: MetricsServer,
) -> None:
    assert request(server, "/ready") == (503, b"waiting: test\n")
    assert request(server, "/ready", method="POST")[0] == 405
    assert request(server, "/nothing")[0] == 404


def test_concurrent_scrapes_are_served_one_at_a_time() -> None:
    errors = ScrapeErrors()
    slow = SlowPart(errors)
    registry = CollectorRegistry()
    registry.register(ScrapeCollector([slow], errors))
    served = MetricsServer("127.0.0.1:0", make_app(registry, lambda: (True, "ready")))
    host, port = served.address
    replies: list[int] = []
    try:
        threads = [
            threading.Thread(
                target=lambda: replies.append(scrape(f"http://{host}:{port}/metrics").status)
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        served.close()
    assert replies == [200, 200, 200]
    assert slow.most == 1


def test_close_releases_the_port() -> None:
    first = MetricsServer("127.0.0.1:0", make_app(CollectorRegistry(), lambda: (True, "ok")))
    port = first.address[1]
    first.close()
    second = MetricsServer(f"127.0.0.1:{port}", make_app(CollectorRegistry(), lambda: (True, "")))
    second.close()


def test_processes_exiting_during_real_scans_are_never_errors() -> None:
    from pathlib import Path  # noqa: PLC0415

    from backuppc_agent.metrics.swapread import SwapReader  # noqa: PLC0415

    churn = subprocess.Popen(  # ~ a thousand short-lived processes while we scan
        ["sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"]
    )
    failures: list[str] = []
    scans = 0
    try:
        while churn.poll() is None:
            assert SwapReader(Path("/proc"), failures.append).processes(10) is not None
            assert failures == []  # found ESRCH on open() of a dying task once
            scans += 1
    finally:
        churn.kill()
        churn.wait()
    assert scans > 0
