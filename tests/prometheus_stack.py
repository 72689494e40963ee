"""A real Prometheus and Alertmanager on loopback, with the shipped rules, for the tests.

Debian's ``prometheus`` and ``prometheus-alertmanager`` run as child processes
with 1 s scrape and evaluation intervals. The shipped rules are used as they
are, except that every ``for:`` duration is read in seconds instead of minutes
(``for: 15m`` -> ``for: 15s``): the one change that keeps the test in seconds.
The shipped Alertmanager example is used with its group timings shortened to
1 s and its webhook pointed at a receiver in the test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, stop_process, wait_for

RULES = ROOT / "metrics" / "backuppc-agent.rules.yml"
ALERTMANAGER_EXAMPLE = ROOT / "metrics" / "alertmanager.example.yml"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def fast_rules(text: str) -> str:
    """The shipped rules with each ``for: Nm`` read as ``for: Ns`` (nothing else changed)."""
    return re.sub(r"(\n\s+for: )(\d+)m\n", r"\1\2s\n", text)


@dataclass
class Webhook:
    """An HTTP receiver on loopback that keeps every JSON body POSTed to it."""

    bodies: list[dict[str, Any]] = field(default_factory=list)

    def alert_names(self) -> set[str]:
        return {alert["labels"]["alertname"] for body in self.bodies for alert in body["alerts"]}


@contextmanager
def webhook_server() -> Iterator[tuple[Webhook, int]]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            hook.bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def alertmanager_config(webhook_port: int) -> str:
    """The shipped example, 1 s group timings, its webhook at our receiver."""
    text = ALERTMANAGER_EXAMPLE.read_text()
    text = re.sub(r"(group_wait|group_interval): \w+", r"\1: 1s", text)
    return text.replace("http://127.0.0.1:9095/", f"http://127.0.0.1:{webhook_port}/")


def prometheus_config(target: str, alertmanager: str, rules: Path) -> str:
    return f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["{alertmanager}"]}}]
scrape_configs:
  - job_name: backuppc-agent
    static_configs: [{{targets: ["{target}"]}}]
"""


class Prometheus:
    """Prometheus's HTTP API, and the webhook its Alertmanager delivers to."""

    def __init__(self, address: str, webhook: Webhook) -> None:
        self.base = f"http://{address}"
        self.webhook = webhook

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/alerts")["alerts"])

    def alert_state(self, name: str, **labels: str) -> str | None:
        """ "pending", "firing" or None for the alert with these labels."""
        for alert in self.alerts():
            found = alert["labels"]
            if found["alertname"] == name and all(found.get(k) == v for k, v in labels.items()):
                return str(alert["state"])
        return None


@contextmanager
def started(argv: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, ready when ``ready_url`` answers 200; stopped afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        wait_for(lambda: _answers(ready_url) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log.read_text()[-2000:]
        yield proc
    finally:
        stop_process(proc)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@contextmanager
def monitoring(work: Path, target: str, prom_port: int, am_port: int) -> Iterator[Prometheus]:
    """Alertmanager, the webhook and Prometheus scraping ``target``; yields the API."""
    assert PROMETHEUS is not None
    assert ALERTMANAGER is not None
    rules = work / "rules.yml"
    rules.write_text(fast_rules(RULES.read_text()))
    with webhook_server() as (hook, hook_port):
        (work / "alertmanager.yml").write_text(alertmanager_config(hook_port))
        am_argv = [ALERTMANAGER, f"--config.file={work / 'alertmanager.yml'}",
                   f"--storage.path={work / 'am-data'}", "--cluster.listen-address=",
                   f"--web.listen-address=127.0.0.1:{am_port}"]  # fmt: skip
        am_ready = f"http://127.0.0.1:{am_port}/-/ready"
        with started(am_argv, work / "alertmanager.log", am_ready):
            config = prometheus_config(target, f"127.0.0.1:{am_port}", rules)
            (work / "prometheus.yml").write_text(config)
            argv = [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}"]  # fmt: skip
            ready = f"http://127.0.0.1:{prom_port}/-/ready"
            with started(argv, work / "prometheus.log", ready):
                yield Prometheus(f"127.0.0.1:{prom_port}", hook)
