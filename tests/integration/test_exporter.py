"""The running supervisor's metrics endpoint, with real ssh-agent, ssh-add, HTTP and TLS."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backuppc_agent.events import EventStore, HookRecord
from tests.helpers import Section, Setup, cli, make_setup, running, ssh_add, wait_for
from tests.scrape import fetch, scrape


def metrics_setup(root: Path, port: int, **sections: Section) -> Setup:
    """A test installation whose supervisor serves metrics on 127.0.0.1:``port``."""
    metrics = {"listen": f"127.0.0.1:{port}", **sections.pop("metrics", {})}
    return make_setup(root, metrics=metrics, **sections)


def test_metrics_and_ready_follow_keys_coming_and_going(
    tmp_path: Path, free_port: int, keys: dict[str, Path]
) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port)
    base = f"http://127.0.0.1:{free_port}"
    with running(setup):
        scraped = scrape(base + "/metrics")
        assert scraped.status == 200
        assert scraped.value("ready") == 0
        assert scraped.value("state", state="waiting") == 1
        assert scraped.value("ssh_agent_up") == 1
        assert fetch(base + "/ready")[0] == 503
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: scrape(base + "/metrics").value("ready") == 1)
        scraped = scrape(base + "/metrics")
        assert scraped.value("state", state="ready") == 1
        assert scraped.value("identities") == 1
        status, text = fetch(base + "/ready")
        assert (status, text.split(":")[0]) == (200, "ready")
        assert ssh_add(setup.socket, "-D").returncode == 0
        wait_for(lambda: fetch(base + "/ready")[0] == 503)
        assert scrape(base + "/metrics").value("state", state="waiting") == 1


def test_a_restarted_agent_is_counted_and_its_swap_reported(tmp_path: Path, free_port: int) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port)
    url = f"http://127.0.0.1:{free_port}/metrics"
    with running(setup) as sup:
        scraped = scrape(url)
        assert scraped.value("ssh_agent_swap_bytes") == 0
        assert scraped.value("ssh_agent_restarts_total") == 0
        state = setup.state()
        assert state is not None
        subprocess.run(["kill", "-KILL", str(state["agent_pid"])], check=True)
        wait_for(lambda: scrape(url).value("ssh_agent_restarts_total") == 1)
        assert sup.proc is not None
        assert sup.proc.poll() is None


def test_a_hook_run_shows_up_in_the_counters(tmp_path: Path, free_port: int) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port)
    url = f"http://127.0.0.1:{free_port}/metrics"
    with running(setup):
        with EventStore(setup.state_dir) as store:
            store.record(HookRecord(1_700_000_000.0, "pre-dump", "client1", "ok", 0.3))
            store.record(HookRecord(1_700_000_100.0, "pre-dump", "client2", "not-ready", 30.0))
        scraped = scrape(url)
    assert scraped.value("hook_runs_total", hook="pre-dump", result="ok") == 1
    assert scraped.value("hook_runs_total", hook="pre-dump", result="not-ready") == 1
    assert scraped.value("hook_wait_seconds_bucket", le="0.5") == 1
    assert scraped.value("hook_wait_seconds_bucket", le="30.0") == 2
    assert scraped.value("hook_wait_seconds_sum") == pytest.approx(30.3)
    assert scraped.value("last_success_timestamp_seconds", host="client1") == (1_700_000_000.0)


def test_real_hook_runs_show_up_in_the_counters(tmp_path: Path, free_port: int) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port, hooks={"wait_seconds": 0})
    url = f"http://127.0.0.1:{free_port}/metrics"
    with running(setup):
        post = cli(
            "hook", "post-dump", "--client", "client1", "--xfer-ok", "1", config=setup.config
        )
        assert post.returncode == 0, post.stdout + post.stderr
        pre = cli("hook", "pre-dump", "--client", "client2", "--host", "127.0.0.1",
                  config=setup.config)  # fmt: skip
        assert pre.returncode == 5, pre.stdout + pre.stderr  # not ready: no keys loaded
        scraped = scrape(url)
    assert scraped.value("hook_runs_total", hook="post-dump", result="ok") == 1
    assert scraped.value("hook_runs_total", hook="pre-dump", result="not-ready") == 1
    # never seen yet, exported at 0: increase() will see the first one
    for result in ("bad-name", "ssh-failed", "error"):
        assert scraped.value("hook_runs_total", hook="pre-dump", result=result) == 0, result
    assert scraped.value("hook_wait_seconds_count") == 1
    assert scraped.value("last_success_timestamp_seconds", host="client1")


def meminfo_bytes(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(key)


def test_swap_metrics_come_from_this_machines_proc(tmp_path: Path, free_port: int) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port, swap={"top_processes": 2})
    with running(setup):
        scraped = scrape(f"http://127.0.0.1:{free_port}/metrics")
    assert scraped.value("swap_total_bytes") == meminfo_bytes("SwapTotal")
    assert scraped.has("process_swap_bytes")
    assert len(scraped.by("process_swap_bytes", "pid")) <= 2
    # every tmpfs of this machine is exported, or its failed statvfs counted
    points = {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[2] == "tmpfs"}  # fmt: skip
    exported = len(scraped.by("tmpfs_size_bytes", "mountpoint"))
    failed = scraped.errors.get("tmpfs")
    assert exported + (failed or 0) == len(points) > 0


def test_sighup_applies_a_new_top_processes(tmp_path: Path, free_port: int) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port, swap={"top_processes": 0})
    url = f"http://127.0.0.1:{free_port}/metrics"
    with running(setup) as sup:
        assert not scrape(url).has("process_swap_bytes")  # 0 skips the per-process scan
        setup.config.write_text(
            setup.config.read_text().replace("top_processes = 0", "top_processes = 3")
        )
        sup.signal(signal.SIGHUP)
        wait_for(lambda: scrape(url).has("process_swap_bytes"))


def test_a_taken_port_fails_the_start_with_one_line(tmp_path: Path, free_port: int) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port))
        squatter.listen()
        result = cli("run", config=setup.config, timeout=20)
    assert result.returncode == 4
    assert f"cannot serve metrics on 127.0.0.1:{free_port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_live_endpoint_passes_promtool_check_metrics(tmp_path: Path, free_port: int) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; make system-deps)")
    setup = metrics_setup(tmp_path / "inst", free_port)
    with running(setup):
        text = scrape(f"http://127.0.0.1:{free_port}/metrics").text
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        text=True,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key file, mode 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backuppc-agent test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    return certfile, keyfile


def test_tls_serves_https_and_a_silent_client_does_not_stall_it(
    tmp_path: Path, free_port: int
) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    tls = {"certfile": certfile, "keyfile": keyfile}
    setup = metrics_setup(tmp_path / "inst", free_port, metrics=tls)
    trusted = ssl.create_default_context(cafile=str(certfile))
    with running(setup), socket.create_connection(("127.0.0.1", free_port)):
        # the connection above never says hello: a handshake in the accept loop would hang here
        started = time.monotonic()
        scraped = scrape(f"https://127.0.0.1:{free_port}/metrics", trusted)
        assert scraped.status == 200
        assert time.monotonic() - started < 3
        assert scraped.value("ready") == 0
        assert fetch(f"https://127.0.0.1:{free_port}/ready", trusted)[0] == 503
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            scrape(f"http://127.0.0.1:{free_port}/metrics")
