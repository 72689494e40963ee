"""The BackupPC server-socket client against a stand-in server that speaks its protocol.

The real server is in tests/e2e; here the stand-in controls timing, to prove the
client never hangs up before the server has written (BackupPC dies of SIGPIPE).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from backuppc_agent import config as config_mod
from backuppc_agent.backuppc import serversock

SEED = b"1700000000,1,4242,0\n"


class StandIn:
    """A one-connection server: seed after ``seed_gate``, reply after ``reply_gate``."""

    def __init__(self, run_dir: Path, reply: bytes) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(run_dir / serversock.SOCKET_NAME))
        self.listener.listen(1)
        self.reply = reply
        self.seed_gate = threading.Event()
        self.reply_gate = threading.Event()
        self.received = b""
        self.write_error: OSError | None = None
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with self.listener:
            conn, _ = self.listener.accept()
        with conn:
            try:
                self.seed_gate.wait(30)
                conn.sendall(SEED)
                while not self.received.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    self.received += chunk
                self.reply_gate.wait(30)
                conn.sendall(self.reply)
                conn.recv(1)  # the client hangs up after reading the reply
            except OSError as err:  # EPIPE: what would have killed BackupPC
                self.write_error = err
            finally:
                self.done.set()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


def test_a_status_query_is_signed_as_backuppc_signs_it(run_dir: Path) -> None:
    server = StandIn(run_dir, b"$QueueLen = {'BgQueue' => 0};\n")
    server.seed_gate.set()
    server.reply_gate.set()
    assert serversock.query(run_dir, "s3cret", "status queueLen", 5) == (
        "$QueueLen = {'BgQueue' => 0};"
    )
    signed, message = server.received.decode().rstrip("\n").split(" ", 1)
    assert message == "status queueLen"
    assert signed == serversock.digest(SEED, 0, "s3cret", "status queueLen")
    perl = shutil.which("perl")
    if perl is not None:  # Digest::MD5 is core Perl: BackupPC's own computation
        script = "use Digest::MD5; my $m = Digest::MD5->new; $m->add($ARGV[0]); print $m->b64digest"
        data = SEED.decode() + "0" + "s3cret" + "status queueLen"
        done = subprocess.run([perl, "-e", script, data], capture_output=True, text=True,
                              timeout=30, check=True)  # fmt: skip
        assert signed == done.stdout


@pytest.mark.parametrize("stalls", ["seed", "reply"])
def test_a_slow_server_times_out_but_is_never_hung_up_on(run_dir: Path, stalls: str) -> None:
    server = StandIn(run_dir, b"ok\n")
    if stalls == "reply":
        server.seed_gate.set()
    with pytest.raises(serversock.ServerError, match="no answer in time"):
        serversock.query(run_dir, "", "status info", 0.3)
    server.seed_gate.set()
    server.reply_gate.set()  # the server writes late: the drain thread still listens
    assert server.done.wait(10)
    assert server.write_error is None


def test_no_server_is_a_server_error(run_dir: Path) -> None:
    with pytest.raises(serversock.ServerError, match="BackupPC server: no server socket at"):
        serversock.query(run_dir, "", "status info", 1)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run_dir / serversock.SOCKET_NAME))
    stale.close()  # a socket file nobody listens on, as after a crash
    with pytest.raises(serversock.ServerError, match="BackupPC server: nothing listens on"):
        serversock.query(run_dir, "", "status info", 1)


def test_a_server_message_is_signed_with_config_pls_secret(tmp_path: Path, run_dir: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "config.pl").write_text("$Conf{ServerMesgSecret} = 'xyzzy';\n")
    section = {"conf_dir": str(conf_dir), "run_dir": str(run_dir)}
    config = config_mod.from_mapping({"backuppc": section}, "t.toml", Path("/home/bk"))
    server = StandIn(run_dir, b"ok\n")
    server.seed_gate.set()
    server.reply_gate.set()
    assert serversock.send(config, "log", "keys", "loaded") == "ok"
    signed, message = server.received.decode().rstrip("\n").split(" ", 1)
    assert message == "log keys loaded"
    assert signed == serversock.digest(SEED, 0, "xyzzy", message)


def test_a_server_message_without_a_server_is_one_error(tmp_path: Path, run_dir: Path) -> None:
    section = {"conf_dir": str(tmp_path / "none"), "run_dir": str(run_dir)}
    config = config_mod.from_mapping({"backuppc": section}, "t.toml", Path("/home/bk"))
    with pytest.raises(serversock.ServerError, match="cannot read"):
        serversock.send(config, "backup", "all")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "config.pl").write_text("")
    with pytest.raises(serversock.ServerError, match="no server socket"):
        serversock.send(config, "backup", "all")
