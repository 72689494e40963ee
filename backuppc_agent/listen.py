"""The metrics endpoint's ``HOST:PORT``: config's check of metrics.listen, the server's split,
and the join back for messages.
"""

from __future__ import annotations

import contextlib


def split_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:PORT`` for IPv6) into host and port; raise ValueError if not."""
    host, _, port = value.rpartition(":")  # no ":" leaves host empty
    if not (host and port.isascii() and port.isdigit() and len(port) <= 5 and int(port) < 65536):
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


def join_listen(host: str, port: int) -> str:
    """``HOST:PORT`` as split_listen reads it back (``[::1]:PORT`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_problem(value: str) -> str | None:
    """Why ``value`` cannot be metrics.listen, or None; port 0 (any free port) is for tests only."""
    with contextlib.suppress(ValueError):
        if value == "" or split_listen(value)[1] > 0:
            return None
    return f'{value!r} must be HOST:PORT (e.g. 127.0.0.1:9842) or "" to disable'
