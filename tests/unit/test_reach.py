"""ssh.reach: telling a dropped connection (sshd's PerSourcePenalties) from refused and timed out.

The texts are what OpenSSH printed, verbatim: the "dropped" ones from an sshd 10.0
(Debian 13) that was penalising 127.0.0.1, the others from ssh 9.2 (Debian 12).
The probe tests connect to real loopback sockets in the states they classify.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from backuppc_agent.ssh import reach
from backuppc_agent.ssh.reach import Reach

ADDRESS = "127.0.0.52"

DROPPED_TEXTS = [
    # ssh-keyscan 10.0, sshd closed after "Not allowed at this time"
    "127.0.0.51: Connection closed by remote host\n",
    # ssh-keyscan 10.0, the close arrived as a reset
    "read (127.0.0.51): Connection reset by peer\n",
    # ssh 10.0 and 9.2 on their stderr
    (
        "kex_exchange_identification: read: Connection reset by peer\r\n"
        "Connection reset by 127.0.0.51 port 22\r\n"
    ),
    (
        "kex_exchange_identification: Connection closed by remote host\r\n"
        "Connection closed by 127.0.0.51 port 22\r\n"
    ),
    # ssh -v: the notice sshd writes before it closes
    (
        "debug1: Connection established.\r\n"
        "debug1: kex_exchange_identification: banner line 0: Not allowed at this time\r\n"
        "kex_exchange_identification: Connection closed by remote host\r\n"
    ),
    # ssh -E LOG (the master's log): only this line
    "Connection closed by 127.0.0.51 port 22\r\n",
]


@pytest.mark.parametrize("text", DROPPED_TEXTS)
def test_a_close_or_reset_before_the_greeting_reads_as_dropped(text: str) -> None:
    assert reach.classify(text) is Reach.DROPPED


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ssh: connect to host 127.0.0.42 port 22: Connection refused\r\n", Reach.REFUSED),
        ("ssh: connect to host 127.0.0.52 port 2222: Connection timed out\r\n", Reach.TIMED_OUT),
        (
            (
                "Connection timed out during banner exchange\r\n"
                "Connection to 127.0.0.52 port 2223 timed out\r\n"
            ),
            Reach.SILENT,
        ),
        (
            "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known\r\n",
            Reach.NO_ADDRESS,
        ),
        ("getaddrinfo nonexistent.invalid: Name or service not known\n", Reach.NO_ADDRESS),
        ("# 127.0.0.41:22 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\n", Reach.ANSWERED),
    ],
)
def test_refused_timed_out_silent_unresolved_and_answered_are_each_named(
    text: str, kind: Reach
) -> None:
    assert reach.classify(text) is kind


@pytest.mark.parametrize("text", ["", "\n", "debug1: CIDR range 127.0.0.52\n", "Permission denied"])
def test_ssh_keyscan_silence_says_nothing(text: str) -> None:
    # ssh-keyscan prints nothing when refused or timed out: the caller must probe.
    assert reach.classify(text) is None


def test_the_penalty_explanation_names_the_cause_and_the_fix_on_the_client() -> None:
    text = reach.explain(Reach.DROPPED, "client.example", 22, 5, "192.0.2.7")
    assert "closed it before its greeting" in text
    assert "PerSourcePenalties" in text
    assert "on client.example, add 'PerSourcePenaltyExemptList 192.0.2.7'" in text
    assert "wait for the penalty to expire" in text
    assert "sshd_config(5)" in text
    assert "is sshd running" not in text
    assert "\n" not in text


def test_refused_asks_for_sshd_and_timed_out_for_a_firewall() -> None:
    refused = reach.explain(Reach.REFUSED, "127.0.0.42", 22, 5, None)
    assert "nothing listens on 127.0.0.42 port 22 (connection refused)" in refused
    assert "is sshd running there" in refused
    timed_out = reach.explain(Reach.TIMED_OUT, "127.0.0.52", 2222, 5, None)
    assert "within 5 s (connection timed out)" in timed_out
    assert "PerSourcePenalties" not in refused + timed_out


def test_every_kind_has_an_explanation() -> None:
    for kind in Reach:
        assert reach.explain(kind, "h", 22, 5, "192.0.2.7")


# -- probe, against real loopback sockets -----------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on ADDRESS that never accepts (the kernel completes handshakes)."""
    sock = socket.socket()
    sock.bind((ADDRESS, 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return int(sock.getsockname()[1])


def test_a_closed_port_probes_as_refused_at_once() -> None:
    start = time.monotonic()
    assert reach.probe(ADDRESS, free_port(), 5.0) is Reach.REFUSED
    assert time.monotonic() - start < 1.0


def test_a_listener_that_never_speaks_probes_as_silent(listener: socket.socket) -> None:
    assert reach.probe(ADDRESS, listener.getsockname()[1], 0.3) is Reach.SILENT


def test_a_full_accept_queue_drops_the_syn_and_probes_as_timed_out() -> None:
    with socket.socket() as full:
        full.bind((ADDRESS, 0))
        full.listen(0)  # Linux queues one connection, then drops further SYNs
        port = full.getsockname()[1]
        with socket.create_connection((ADDRESS, port), timeout=5):
            assert reach.probe(ADDRESS, port, 0.5) is Reach.TIMED_OUT


def test_a_name_that_does_not_resolve_probes_as_no_address() -> None:
    assert reach.probe("nonexistent.invalid", 22, 1.0) is Reach.NO_ADDRESS


def test_the_source_address_is_the_one_the_server_sees(listener: socket.socket) -> None:
    with socket.create_connection((ADDRESS, listener.getsockname()[1]), timeout=5) as conn:
        seen = conn.getsockname()[0]
        assert reach.source_address(ADDRESS, 22) == seen
