"""BackupPC_dump SIGKILLed mid-transfer, with the real Debian BackupPC (see test_backuppc.py).

BackupPC's own stop sends one SIGINT, which test_backuppc.py covers: the dump
aborts the transfer itself and runs DumpPostUserCmd. A SIGKILL (the OOM killer,
`kill -9`, a crashed server's process group) gives it no such chance: rsync_bpc
loses its parent and, left alone, pulls the rest of the share into the pool for
a dump that no longer exists, while the client keeps sending. Our transfer
wrapper (rsync_bpc's ssh) watches its parent's parent and ends the remote job.
"""

from __future__ import annotations

import signal
import time

from tests.e2e.test_backuppc import (
    CLIENT_SLOW,
    Site,
    remote_jobs,
    site,  # noqa: F401  (the module-scoped BackupPC installation, shared)
    start_slow_dump,
)
from tests.helpers import wait_for
from tests.sshd import user_processes


def _ours(needle: str) -> list[tuple[int, str]]:
    """Processes of user backuppc (the server side) whose command line contains ``needle``."""
    return [p for p in user_processes("backuppc") if needle in p[1]]


def test_a_sigkilled_dump_leaves_nothing_running_on_the_client_or_the_server(
    site: Site,  # noqa: F811  (the imported fixture)
) -> None:
    assert site.ssh_add(str(site.key)).returncode == 0
    dump = start_slow_dump()
    try:
        assert _ours("rsync_bpc")
        dump.send_signal(signal.SIGKILL)
        dump.wait(timeout=10)
        started = time.monotonic()
        wait_for(lambda: not remote_jobs(), timeout=15)
        ended = time.monotonic() - started
        wait_for(lambda: not _ours("rsync_bpc"), timeout=10)
        wait_for(lambda: not _ours(f"master ssh {CLIENT_SLOW}"), timeout=5)
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    assert ended < 10
