"""The metrics endpoint: loopback unless configured otherwise; TLS 1.2+ when configured.

HTTPS itself (a trusted scrape, plain HTTP refused, a silent client not
stalling others) is in test_exporter.py; this file fills in where the
endpoint binds, old TLS versions, and unusable TLS files.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from pathlib import Path

import pytest

from backuppc_agent.config import from_mapping
from tests.helpers import cli, running
from tests.integration.test_exporter import fetch, make_certificate, metrics_setup


def listening_on(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on ``port`` (/proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(_address(address))
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def test_the_default_listen_address_is_loopback() -> None:
    assert from_mapping({}, "defaults", Path("/root")).metrics.listen == "127.0.0.1:9842"


def test_the_endpoint_binds_only_the_configured_loopback_address(
    tmp_path: Path, free_port: int
) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port)
    with running(setup):
        bound = listening_on(free_port)
        status, _ = fetch(f"http://127.0.0.1:{free_port}/ready")
    assert bound == {"127.0.0.1"}
    assert status == 503  # waiting: answered, on loopback


def test_every_address_only_when_configured(tmp_path: Path, free_port: int) -> None:
    setup = metrics_setup(tmp_path / "inst", free_port)
    setup.config.write_text(
        setup.config.read_text().replace(f"127.0.0.1:{free_port}", f"0.0.0.0:{free_port}")
    )
    with running(setup):
        bound = listening_on(free_port)
    assert bound == {"0.0.0.0"}


def test_tls_refuses_clients_older_than_tls_1_2(tmp_path: Path, free_port: int) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    tls = {"certfile": certfile, "keyfile": keyfile}
    setup = metrics_setup(tmp_path / "inst", free_port, metrics=tls)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would speak TLS 1.1 if allowed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    current = ssl.create_default_context(cafile=str(certfile))
    with running(setup):
        with (
            pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL"),
            socket.create_connection(("127.0.0.1", free_port), timeout=5) as raw,
            old.wrap_socket(raw),
        ):
            pass
        with (
            socket.create_connection(("127.0.0.1", free_port), timeout=5) as raw,
            current.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
        ):
            version = wrapped.version()
    assert version in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("broken", ["missing", "not-pem", "key-mismatch"])
def test_unusable_tls_files_stop_the_start_with_one_line(
    tmp_path: Path, free_port: int, broken: str
) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    if broken == "missing":
        keyfile = tmp_path / "nope.pem"
    elif broken == "not-pem":
        keyfile.write_text("not a key\n")
    else:
        other = tmp_path / "other"
        other.mkdir()
        keyfile = make_certificate(other)[1]
    tls = {"certfile": certfile, "keyfile": keyfile}
    setup = metrics_setup(tmp_path / "inst", free_port, metrics=tls)
    done = cli("run", config=setup.config, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("backuppc-agent: ")]
    assert len(lines) == 1, done.stderr
    assert "metrics.certfile, metrics.keyfile: cannot load" in lines[0]
    assert listening_on(free_port) == set()
