"""A real Tang server on its own loopback address: tangd under socat, keys from tangd-keygen.

As Tang's own tests run it: ``socat TCP-LISTEN:PORT,bind=ADDR,fork,reuseaddr
SYSTEM:"tangd DIR"``, one tangd per connection. Never a wildcard bind. Each
test's Tang has its own key directory; ``rotate`` and ``forget_old`` do what an
operator does with ``tangd-rotate-keys`` and then deleting the hidden keys.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import private_dir, stop_process, wait_for

#: tangd's programs in Debian 12 and 13 (package tang-common)
LIBEXEC = Path("/usr/libexec")
TANGD = LIBEXEC / "tangd"
PORT = 18070
#: This module's addresses; nothing else in tests/ uses 127.0.0.71-72.
ADDRESSES = ("127.0.0.71", "127.0.0.72")

needs_tang = pytest.mark.skipif(
    not (TANGD.exists() and shutil.which("socat") and shutil.which("clevis")),
    reason="needs tang, clevis and socat (tests/system-deps.sh installs them)",
)


class Tang:
    """One Tang server: its URL, key directory, and start/stop/rotate."""

    def __init__(self, address: str, db: Path) -> None:
        self.address = address
        self.url = f"http://{address}:{PORT}"
        self.db = private_dir(db)
        self._proc: subprocess.Popen[bytes] | None = None
        subprocess.run([str(LIBEXEC / "tangd-keygen"), str(self.db)], check=True, timeout=30)

    def start(self) -> Tang:
        """Start socat + tangd; return once GET /adv answers."""
        listen = f"TCP-LISTEN:{PORT},bind={self.address},fork,reuseaddr"
        self._proc = subprocess.Popen(
            ["socat", listen, f"SYSTEM:{TANGD} {self.db}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.answers, timeout=10)
        return self

    def answers(self) -> bool:
        """True if the advertisement can be fetched now."""
        try:
            with urllib.request.urlopen(f"{self.url}/adv", timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop socat and any tangd it forked (its session)."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
        stop_process(self._proc, group=True)
        self._proc = None
        wait_for(lambda: not self.answers(), timeout=5)

    def rotate(self) -> None:
        """New keys advertised; the old ones kept hidden (.NAME.jwk) so old JWEs still open."""
        for jwk in self.db.glob("*.jwk"):
            jwk.rename(jwk.with_name(f".{jwk.name}"))
        subprocess.run([str(LIBEXEC / "tangd-keygen"), str(self.db)], check=True, timeout=30)

    def forget_old(self) -> None:
        """Delete the hidden old keys: JWEs bound to them can no longer be opened."""
        for jwk in self.db.glob(".*.jwk"):
            jwk.unlink()


@contextmanager
def running_tangs(root: Path, count: int = 1) -> Iterator[list[Tang]]:
    """``count`` Tang servers, started; always stopped afterwards."""
    tangs = [Tang(address, root / f"tang-{i}") for i, address in enumerate(ADDRESSES[:count])]
    try:
        for server in tangs:
            server.start()
        yield tangs
    finally:
        for server in tangs:
            server.stop()
