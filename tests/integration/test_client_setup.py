"""``backuppc-agent client-setup`` against a real sshd on loopback (addresses 127.0.0.85-88).

The client is user bpaclient with sshd's default ``AuthorizedKeysFile
.ssh/authorized_keys`` in its home (its ~/.ssh is set aside and put back
around the module). A real ssh-agent holds the backup key; the restore key is
a second real key. Nothing is mocked: the gate is the package's own script.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from backuppc_agent.backuppc import confdir
from backuppc_agent.install import clientkeys
from tests.e2e.terminal import ENV, Terminal
from tests.helpers import CLI, askpass_helper, cli, make_key, make_setup, private_dir, ssh_add
from tests.sshd import CLIENT_USER, Sshd, ensure_client_user, needs_root, public_key_line

ADDRESS = "127.0.0.85"
CLIENT = "client85"
GATE_SOURCE = (
    Path(__file__).resolve().parents[2] / "backuppc_agent/install/files/client/backuppc-agent-gate"
)
needs_gate = pytest.mark.skipif(
    not GATE_SOURCE.exists(), reason="the client gate script (issue 17, part a) is not in git yet"
)

pytestmark = needs_root


class HomeSshd(Sshd):
    """An sshd that reads the client's keys where a stock sshd does: ~/.ssh/authorized_keys."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config.read_text()
        default = "AuthorizedKeysFile .ssh/authorized_keys\n"
        self.config.write_text(
            text.replace(f"AuthorizedKeysFile {self.authorized_keys}\n", default)
        )


@dataclass
class Env:
    """One test's installation: config, keys, the client's files."""

    config: Path
    sshd: Sshd
    agent: Path
    backup: Path
    restore: Path
    other: Path
    askpass: Path
    ssh_dir: Path

    @property
    def authkeys(self) -> Path:
        return self.ssh_dir / "authorized_keys"

    @property
    def gate(self) -> Path:
        return self.ssh_dir / "backuppc-agent-gate"

    @property
    def saved(self) -> Path:
        return self.ssh_dir / "authorized_keys.backuppc-agent-saved"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = ("client-setup", CLIENT, "--login-user", CLIENT_USER, *args)
        return cli(*argv, config=self.config, timeout=timeout)

    def argv(self, *args: str) -> list[str]:
        """The same command line, for a terminal."""
        return [CLI, "--config", str(self.config), "client-setup", CLIENT, "--login-user",
                CLIENT_USER, *args]  # fmt: skip


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = private_dir(tmp_path_factory.mktemp("client-keys"))
    return {
        "backup": make_key(directory, "id_backup"),
        "restore": make_key(directory, "id_restore_ed25519"),
        "other": make_key(directory, "id_admin"),
        "askpass": askpass_helper(directory),
    }


@pytest.fixture(scope="module")
def client_ssh_dir() -> Iterator[Path]:
    """bpaclient's ~/.ssh (0700, bpaclient's), its former one set aside and put back after."""
    ensure_client_user()
    entry = pwd.getpwnam(CLIENT_USER)
    ssh_dir = Path(entry.pw_dir) / ".ssh"
    aside = Path(entry.pw_dir) / ".ssh.client-setup-test"
    if ssh_dir.exists():
        ssh_dir.rename(aside)
    try:
        ssh_dir.mkdir(mode=0o700)
        os.chown(ssh_dir, entry.pw_uid, entry.pw_gid)
        yield ssh_dir
    finally:
        shutil.rmtree(ssh_dir, ignore_errors=True)
        if aside.exists():
            aside.rename(ssh_dir)


@pytest.fixture(scope="module")
def server(client_ssh_dir: Path) -> Iterator[Sshd]:
    sshd = HomeSshd(ADDRESS)
    try:
        yield sshd.start()
    finally:
        sshd.stop()
        sshd.remove()


@pytest.fixture(scope="module")
def agent(keys: dict[str, Path]) -> Iterator[Path]:
    from tests.helpers import agent_holding  # noqa: PLC0415

    with agent_holding(keys["backup"], keys["askpass"]) as sock:
        yield sock


def original_text(keys: dict[str, Path]) -> bytes:
    """The client's file before setup: a comment, another key, the backup key with options."""
    return (
        "# bpaclient's keys\r\n"
        + public_key_line(keys["other"]) + "\n"
        + 'from="127.0.0.0/8",no-agent-forwarding ' + public_key_line(keys["backup"]) + "\n"
    ).encode()  # fmt: skip


@pytest.fixture
def env(
    tmp_path: Path, server: Sshd, agent: Path, keys: dict[str, Path], client_ssh_dir: Path
) -> Iterator[Env]:
    tmp_path.chmod(0o700)
    conf_dir = private_dir(tmp_path / "bpc")
    (conf_dir / "hosts").write_text(f"host dhcp user\n{CLIENT} 0 backuppc\n")
    (conf_dir / f"{CLIENT}.pl").write_text(f"$Conf{{ClientNameAlias}} = '{ADDRESS}';\n")
    known_hosts = private_dir(tmp_path / "ssh") / "known_hosts"
    known_hosts.write_text(server.known_hosts_line())
    setup = make_setup(
        tmp_path / "inst",
        agent={"socket": agent, "restore_key": keys["restore"]},
        mux={"known_hosts": known_hosts},
        hooks={"connect_timeout_seconds": 5},
        backuppc={"user": "root", "conf_dir": conf_dir, "top_dir": tmp_path / "top"},
    )
    entry = pwd.getpwnam(CLIENT_USER)
    authkeys = client_ssh_dir / "authorized_keys"
    authkeys.write_bytes(original_text(keys))
    os.chown(authkeys, entry.pw_uid, entry.pw_gid)
    authkeys.chmod(0o644)
    try:
        yield Env(setup.config, server, agent, keys["backup"], keys["restore"], keys["other"],
                  keys["askpass"], client_ssh_dir)  # fmt: skip
    finally:
        ssh_add(agent, "-d", f"{keys['restore']}.pub")
        for leftover in client_ssh_dir.iterdir():
            leftover.unlink()


def source_address(server: Sshd) -> str:
    """The address the client's sshd saw us connect from (the server as the client sees it)."""
    found = re.findall(rf"Accepted publickey for {CLIENT_USER} from (\S+)", server.logtext())
    assert found, server.logtext()
    return str(found[-1])


def expected_lines(env: Env) -> list[str]:
    home, address = env.ssh_dir, source_address(env.sshd)

    def entry(mode: str, key: Path) -> str:
        command = f"{home}/backuppc-agent-gate {mode} {home}/authorized_keys"
        return f'restrict,from="{address}",command="{command}" {public_key_line(key)}'

    return [
        "# bpaclient's keys\r",
        public_key_line(env.other),
        entry("backup", env.backup),
        entry("restore", env.restore),
    ]


def ssh_as_backup(env: Env, *command: str) -> subprocess.CompletedProcess[str]:
    """A BatchMode ssh with the backup key alone (from the agent)."""
    known = env.config.parent.parent / "ssh" / "known_hosts"
    options = [f"UserKnownHostsFile={known}", f"IdentityAgent={env.agent}", "BatchMode=yes",
               "IdentitiesOnly=yes", f"IdentityFile={env.backup}.pub"]  # fmt: skip
    argv = ["ssh", "-F", "none", *(f"-o{option}" for option in options)]
    argv += ["-l", CLIENT_USER, ADDRESS, *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Each file's bytes, mode and mtime (ns)."""
    return {
        p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
    }


@needs_gate
def test_setup_restricts_the_backup_key_adds_the_restore_key_and_keeps_the_original(
    env: Env,
) -> None:
    result = env.run("--yes")
    assert result.returncode == 0, result.stderr
    assert f"{CLIENT}: set up (gate " in result.stdout
    assert env.authkeys.read_bytes().decode().split("\n") == [*expected_lines(env), ""]
    assert env.saved.read_bytes() == original_text({"other": env.other, "backup": env.backup})
    assert stat.S_IMODE(env.saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.gate.stat().st_mode) == 0o755
    assert env.gate.read_bytes() == GATE_SOURCE.read_bytes()
    owner = pwd.getpwnam(CLIENT_USER).pw_uid
    assert {p.stat().st_uid for p in (env.authkeys, env.saved, env.gate)} == {owner}
    assert stat.S_IMODE(env.authkeys.stat().st_mode) == 0o644
    denied = ssh_as_backup(env, "id")
    assert denied.returncode != 0
    assert "uid=" not in denied.stdout


@needs_gate
def test_a_second_run_changes_nothing_and_says_so(env: Env) -> None:
    assert env.run("--yes").returncode == 0
    before = snapshot(env.ssh_dir)
    again = env.run("--yes")
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith("backup key restricted): nothing to change\n")
    assert again.stdout.startswith(f"{CLIENT}: already set up (gate ")
    assert snapshot(env.ssh_dir) == before


@needs_gate
def test_undo_with_the_restore_key_loaded_puts_back_the_original_bytes(env: Env) -> None:
    original = env.authkeys.read_bytes()
    env.authkeys.chmod(0o644)
    assert env.run("--yes").returncode == 0
    assert ssh_add(env.agent, str(env.restore), askpass=env.askpass).returncode == 0
    result = env.run("--undo")
    assert result.returncode == 0, result.stderr
    assert "undone" in result.stdout
    assert env.authkeys.read_bytes() == original
    assert env.authkeys.stat().st_mode & 0o777 == 0o644  # its mode too, not the copy's 0600
    assert sorted(p.name for p in env.ssh_dir.iterdir()) == ["authorized_keys"]
    assert "uid=" in ssh_as_backup(env, "id").stdout


@needs_gate
def test_undo_where_the_backup_key_gets_a_shell_puts_the_copy_back_with_the_files_mode(
    env: Env,
) -> None:
    original = env.authkeys.read_bytes()
    assert env.run("--yes").returncode == 0
    # Put back by hand, edited, and made 0640: the gate and the saved 0600 copy linger.
    env.authkeys.write_bytes(original + b"# edited by hand\n")
    env.authkeys.chmod(0o640)
    result = env.run("--undo")
    assert result.returncode == 0, result.stderr
    assert f"{CLIENT}: {env.authkeys} put back\n" in result.stdout
    assert env.authkeys.read_bytes() == original
    assert stat.S_IMODE(env.authkeys.stat().st_mode) == 0o640  # as the gate's undo keeps it
    assert sorted(p.name for p in env.ssh_dir.iterdir()) == ["authorized_keys"]


@needs_gate
def test_undo_without_the_restore_key_fails_fast_with_the_ssh_add_line(env: Env) -> None:
    assert env.run("--yes").returncode == 0
    before = snapshot(env.ssh_dir)
    started = time.monotonic()
    result = env.run("--undo")
    assert time.monotonic() - started < 10
    assert result.returncode == exitcodes.FAILED
    assert result.stderr.strip().endswith(f"ssh-add -t 1h {env.restore}")
    assert result.stderr.count("\n") == 1
    assert snapshot(env.ssh_dir) == before


def test_undo_on_a_client_never_set_up_has_nothing_to_undo(env: Env) -> None:
    before = snapshot(env.ssh_dir)
    result = env.run("--undo")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{CLIENT}: not set up: nothing to undo\n"
    assert snapshot(env.ssh_dir) == before


@needs_gate
def test_print_shows_the_gate_the_lines_and_the_commands_connecting_nowhere(env: Env) -> None:
    logins = env.sshd.accepted_publickey()
    result = env.run("--print")
    assert result.returncode == 0, result.stderr
    assert env.sshd.accepted_publickey() == logins
    assert GATE_SOURCE.read_text() in result.stdout
    home = pwd.getpwnam(CLIENT_USER).pw_dir
    gate = f"{home}/.ssh/backuppc-agent-gate"
    for key, mode in ((env.backup, "backup"), (env.restore, "restore")):
        line = f'restrict,command="{gate} {mode} {home}/.ssh/authorized_keys" '
        assert line + public_key_line(key) in result.stdout.splitlines()
    assert 'from="ADDRESS"' in result.stdout
    assert f"mv {home}/.ssh/authorized_keys.backuppc-agent-saved" in result.stdout


def test_without_yes_and_without_a_terminal_nothing_changes(env: Env) -> None:
    before = snapshot(env.ssh_dir)
    result = subprocess.run(
        [*env.argv()], capture_output=True, text=True, timeout=60, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == exitcodes.FAILED
    assert "nothing changed: confirm with --yes" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "- from=" in result.stdout  # the summary was shown first
    assert snapshot(env.ssh_dir) == before


def test_another_forced_command_is_reported_and_nothing_changes(env: Env) -> None:
    env.authkeys.write_text(f'command="echo hello there" {public_key_line(env.backup)}\n')
    before = snapshot(env.ssh_dir)
    result = env.run("--yes")
    assert result.returncode == exitcodes.FAILED
    assert "another forced command answers the probe: hello there" in result.stderr
    assert snapshot(env.ssh_dir) == before


@needs_gate
def test_at_a_terminal_the_summary_is_confirmed_before_anything_changes(env: Env) -> None:
    before = snapshot(env.ssh_dir)
    term = Terminal(env.argv(), {**ENV, "HOME": "/root"})
    term.expect("change the client? [y/N] ")
    assert snapshot(env.ssh_dir) == before
    term.send("n")
    assert term.close() == exitcodes.FAILED
    assert snapshot(env.ssh_dir) == before
    term = Terminal(env.argv(), {**ENV, "HOME": "/root"})
    shown = term.expect("change the client? [y/N] ")
    assert "+ restrict,from=" in shown
    assert "SHA256:" in shown
    term.send("y")
    term.expect("set up (gate ")
    assert term.close() == 0
    assert env.authkeys.read_bytes().decode().split("\n") == [*expected_lines(env), ""]


def test_the_remote_scripts_pass_shellcheck(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("needs shellcheck")
    for name in ("INSPECT_SCRIPT", "READ_SCRIPT", "WRITE_SCRIPT", "UNDO_SCRIPT"):
        script = tmp_path / f"{name}.sh"
        script.write_text("#!/bin/sh\n" + getattr(clientkeys, name))
        done = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout


@pytest.fixture
def dropped(env: Env, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A config whose BackupPC user is bpaclient, with that user's own agent: (config, record).

    ``[mux] ssh`` is a wrapper recording the uid and HOME it runs with.
    """
    entry = pwd.getpwnam(CLIENT_USER)
    ids = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
    top = Path(tempfile.mkdtemp(prefix="bpa-cs-"))  # bpaclient cannot enter tmp_path
    top.chmod(0o755)
    own = top / "bpaclient"
    own.mkdir(mode=0o700)
    for name in ("id_backup", "id_backup.pub", "askpass.sh", "askpass.secret"):
        source = env.backup.parent / name
        shutil.copy2(source, own / name)
    (own / "known_hosts").write_text(env.sshd.known_hosts_line())
    record = own / "ssh.record"
    wrapper = own / "ssh"
    wrapper.write_text(f'#!/bin/sh\necho "$(id -u) $HOME $*" >> {record}\nexec ssh "$@"\n')
    wrapper.chmod(0o755)
    record.write_text("")  # bpaclient's after the chown: both uids append to it
    (own / "askpass.sh").write_text(f"#!/bin/sh\ncat '{own / 'askpass.secret'}'\n")
    subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(own)], check=True)
    sock = own / "agent.sock"
    agent = subprocess.Popen([*ids, "ssh-agent", "-D", "-a", str(sock)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        askpass = {"SSH_ASKPASS": str(own / "askpass.sh"), "SSH_ASKPASS_REQUIRE": "force"}
        add_env = {"PATH": os.environ["PATH"], "SSH_AUTH_SOCK": str(sock), "DISPLAY": ":0"}
        add = [*ids, "ssh-add", str(own / "id_backup")]
        added = subprocess.run(add, env=add_env | askpass, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=30, check=False)  # fmt: skip
        assert added.returncode == 0, added.stderr
        setup = make_setup(
            tmp_path / "inst-dropped",
            agent={"socket": sock, "restore_key": env.restore},
            mux={"known_hosts": own / "known_hosts", "ssh": wrapper},
            hooks={"connect_timeout_seconds": 5},
            backuppc={"user": CLIENT_USER, "conf_dir": env.config.parent.parent / "bpc"},
        )
        yield setup.config, record
    finally:
        agent.kill()
        agent.wait()
        shutil.rmtree(top, ignore_errors=True)


def test_as_root_the_ssh_runs_as_the_backuppc_user_with_its_home(
    env: Env, dropped: tuple[Path, Path]
) -> None:
    config, record = dropped
    argv = ("client-setup", CLIENT, "--login-user", CLIENT_USER, "--yes")
    result = cli(*argv, config=config, timeout=60)
    assert result.returncode == 0, result.stderr
    assert env.authkeys.read_bytes().decode().split("\n") == [*expected_lines(env), ""]
    entry = pwd.getpwnam(CLIENT_USER)
    sessions = [line for line in record.read_text().splitlines() if f" {ADDRESS} " in line]
    assert len(sessions) >= 4, record.read_text()  # probe, inspect, read, write, probe
    assert {tuple(line.split()[:2]) for line in sessions} == {(str(entry.pw_uid), entry.pw_dir)}


def config_with_restore_key(env: Env, path: Path) -> Path:
    """``env``'s config with ``[agent] restore_key = path``."""
    text = env.config.read_text()
    assert f'restore_key = "{env.restore}"' in text
    config = env.config.with_name("config-new-restore.toml")
    config.write_text(text.replace(f'restore_key = "{env.restore}"', f'restore_key = "{path}"'))
    return config


def test_without_a_restore_key_and_a_terminal_it_names_the_ssh_keygen_command(
    env: Env, tmp_path: Path
) -> None:
    missing = tmp_path / "keys" / "id_restore_ed25519"
    config = config_with_restore_key(env, missing)
    result = subprocess.run(
        [CLI, "--config", str(config), "client-setup", CLIENT, "--yes"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == exitcodes.FAILED
    assert f"ssh-keygen -t ed25519 -f {missing} -C backuppc-restore@" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not missing.parent.exists()


def test_at_a_terminal_ssh_keygen_creates_the_restore_key_asking_its_passphrase(
    env: Env, tmp_path: Path
) -> None:
    made = tmp_path / "keys" / "id_restore_ed25519"
    config = config_with_restore_key(env, made)
    term = Terminal([CLI, "--config", str(config), "client-setup", CLIENT, "--login-user",
                     CLIENT_USER], {**ENV, "HOME": "/root"})  # fmt: skip
    term.expect("Enter passphrase")
    term.send("restore passphrase 4711")
    term.expect("Enter same passphrase again")
    term.send("restore passphrase 4711")
    shown = term.expect("change the client? [y/N] ")
    assert "restore passphrase" not in shown
    term.send("n")
    assert term.close() == exitcodes.FAILED
    assert stat.S_IMODE(made.parent.stat().st_mode) == 0o700
    assert public_key_line(made).endswith(f"backuppc-restore@{os.uname().nodename}")
    check = ["ssh-keygen", "-y", "-P", "restore passphrase 4711", "-f", str(made)]
    assert subprocess.run(check, capture_output=True, timeout=30, check=False).returncode == 0


@needs_gate
def test_an_rsync_host_that_still_protects_args_is_told_the_two_host_pl_lines(env: Env) -> None:
    conf_dir = env.config.parent.parent / "bpc"
    (conf_dir / "config.pl").write_text(
        "$Conf{XferMethod} = 'rsync';\n$Conf{RsyncArgs} = ['--super', '--protect-args'];\n"
    )
    done = env.run("--yes")
    assert done.returncode == 0, done.stderr
    told = done.stdout.splitlines()[-3:]
    assert told[0] == (
        f"{CLIENT}: the gate restricts the backup key, but RsyncArgs still pass --protect-args, "
        f"which the gate refuses: its backups fail: add to {conf_dir / CLIENT}.pl:"
    )
    assert [line.strip() for line in told[1:]] == list(confdir.WITHOUT_PROTECT_ARGS)
    with (conf_dir / f"{CLIENT}.pl").open("a") as host_pl:
        host_pl.write("\n".join(confdir.WITHOUT_PROTECT_ARGS) + "\n")
    again = env.run("--yes")
    assert "protect-args" not in again.stdout
