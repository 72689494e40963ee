"""Why a client's sshd gave us nothing: refused, timed out, silent, or dropped by sshd.

OpenSSH 9.8's PerSourcePenalties: after ~15 connections that never log in (ssh-keyscan's,
port probes) sshd drops an address's connections for a while. _PATTERNS' texts were
measured with OpenSSH 9.2 and 10.0. ``probe`` runs only when they say nothing: a
connect that reaches a healthy sshd earns a penalty.
"""

from __future__ import annotations

import enum
import re
import socket
import time

#: How much of sshd's first lines the probe reads (the banner is at most 255 bytes).
PROBE_READ_BYTES = 1024


class Reach(enum.Enum):
    """How a connection to a client's sshd ended."""

    REFUSED = "refused"  # nothing listens there (ECONNREFUSED)
    TIMED_OUT = "timed out"  # no TCP answer in time (packets dropped, a wrong or dead address)
    SILENT = "silent"  # accepted, but no SSH greeting in time
    DROPPED = "dropped"  # accepted, then closed before the greeting (penalties, MaxStartups)
    NO_ADDRESS = "no address"  # the name does not resolve
    ANSWERED = "answered"  # sshd sent its greeting
    UNKNOWN = "unknown"  # none of the above (no route, ...)


# First match wins: a dropped connection can also mention a later failure.
_PATTERNS: tuple[tuple[re.Pattern[str], Reach], ...] = (
    (re.compile(r"Could not resolve hostname|Name or service not known|"
                r"Temporary failure in name resolution|No address associated"), Reach.NO_ADDRESS),
    (re.compile(r"Connection refused"), Reach.REFUSED),
    (re.compile(r"Not allowed at this time"), Reach.DROPPED),  # sshd >= 9.8, then it closes
    (re.compile(r"kex_exchange_identification: (?:read: )?Connection (?:closed|reset)"),
     Reach.DROPPED),
    (re.compile(r"^\S+: Connection closed by remote host\s*$|^read \(\S+\): Connection reset",
                re.M), Reach.DROPPED),  # ssh-keyscan
    # ssh under -E logs only this for a connection dropped before the greeting
    (re.compile(r"^Connection (?:closed|reset) by \S+ port \d+\s*$", re.M), Reach.DROPPED),
    (re.compile(r"timed out during banner exchange"), Reach.SILENT),
    (re.compile(r"Connection timed out|Operation timed out"), Reach.TIMED_OUT),
    (re.compile(r"^# \S+ SSH-\d", re.M), Reach.ANSWERED),  # ssh-keyscan's "# ADDR:22 SSH-2.0-..."
)  # fmt: skip


def classify(text: str) -> Reach | None:
    """How the connection ended, from ssh's or ssh-keyscan's output; None if it does not say."""
    for pattern, kind in _PATTERNS:
        if pattern.search(text):
            return kind
    return None


def probe(address: str, port: int, timeout: float) -> Reach:
    """Connect to ADDRESS:PORT and read until sshd's greeting, a close, or ``timeout``."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return Reach.NO_ADDRESS
    family, kind, proto, _, where = infos[0]
    deadline = time.monotonic() + timeout
    with socket.socket(family, kind, proto) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(where)
        except ConnectionRefusedError:
            return Reach.REFUSED
        except TimeoutError:
            return Reach.TIMED_OUT
        except OSError:
            return Reach.UNKNOWN
        return _greeting(conn, deadline)


def _greeting(conn: socket.socket, deadline: float) -> Reach:
    """ANSWERED once a line starts with ``SSH-``; DROPPED on a close or reset before it."""
    data = b""
    while len(data) < PROBE_READ_BYTES:
        conn.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = conn.recv(PROBE_READ_BYTES)
        except TimeoutError:
            return Reach.SILENT
        except ConnectionResetError:
            return Reach.DROPPED
        except OSError:
            return Reach.UNKNOWN
        if not chunk:
            return Reach.DROPPED
        data += chunk
        if any(line.startswith(b"SSH-") for line in data.split(b"\n")):
            return Reach.ANSWERED
    return Reach.UNKNOWN


def source_address(address: str, port: int) -> str | None:
    """Our address as ADDRESS sees it (the route's source; no packet is sent), or None."""
    try:
        family, _, _, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect(where)
            return str(udp.getsockname()[0])
    except OSError:
        return None


def explain(kind: Reach, address: str, port: int, timeout: float, source: str | None) -> str:
    """One clause saying what happened and what to do, for an error line."""
    where = f"{address} port {port}"
    if kind is Reach.DROPPED:
        exempt = source or "THIS_SERVER'S_ADDRESS"
        return (
            f"sshd on {where} accepted the connection and closed it before its greeting: "
            "OpenSSH 9.8 and later do that to an address for a while after many connections "
            "that never log in (ssh-keyscan's, port probes: PerSourcePenalties), or when "
            f"MaxStartups is full; on {address}, add 'PerSourcePenaltyExemptList {exempt}' to "
            "/etc/ssh/sshd_config and reload sshd, or wait for the penalty to expire "
            "(PerSourcePenalties in sshd_config(5))"
        )
    return {
        Reach.REFUSED: f"nothing listens on {where} (connection refused): "
        "is sshd running there, on that port?",
        Reach.TIMED_OUT: f"no answer from {where} within {timeout:g} s (connection timed out): "
        "a firewall dropping packets, or the wrong address",
        Reach.SILENT: f"{where} accepted the connection but sent no SSH greeting within "
        f"{timeout:g} s: a wedged sshd, or not sshd on that port",
        Reach.NO_ADDRESS: f"{address} does not resolve to an address",
        Reach.ANSWERED: f"sshd on {where} answered but offered no ed25519 host key "
        "(HostKey in its sshd_config)",
        Reach.UNKNOWN: f"{where} could not be reached",
    }[kind]
