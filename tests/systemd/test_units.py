"""The package's systemd units under a real systemd, on Debian 13 and Debian 12.

Each release's cached tree (build-tree.sh) is copied and booted with
systemd-nspawn on a private network; inside, `make deb` builds the package from
this working tree with that release's debhelper and lintian, apt installs it, and
from then on the tests do what an operator does, through systemctl, journalctl
and a terminal: install, the operator's login (su and ssh), ssh-add at its prompt,
trust, doctor, a dump by the real BackupPC, on_stop both ways, reboots, unattended
unlock, apt remove and purge. The tests run in file order and build on each other,
once per release.

Inside the container: the backuppc account's key (with a passphrase), a client
sshd on 127.0.0.2 (its own unit, log /var/log/bpa-client-sshd.log, user
bpaclient), the container's own sshd on 127.0.0.1 for the operator's ssh login.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.helpers import wait_for
from tests.systemd.container import Container, cached_tree, fresh_root

RELEASES = ("trixie", "bookworm")
SUPERVISOR, AGENT, BACKUPPC = "backuppc-agent", "backuppc-ssh-agent", "backuppc"
HOME = "/var/lib/backuppc"
SOCKET = f"{HOME}/.ssh/agent.socket"
KEY = f"{HOME}/.ssh/id_ed25519"
CONFIG = "/etc/backuppc-agent/config.toml"
PASSPHRASE = "systemd tier passphrase 2718"
CLIENT, CLIENT_ADDRESS, CLIENT_USER = "bpa-client", "127.0.0.2", "bpaclient"
CLIENT_UID = "2741"
CLIENT_LOG = "/var/log/bpa-client-sshd.log"
#: The site's Tang, for unlock = "tang".
TANG_ADDRESS, TANG_DB = "127.0.0.5", "/var/lib/bpa-tang"
TANG_URL = f"http://{TANG_ADDRESS}:18070"
#: A second client sshd that penalises us (OpenSSH >= 9.8 only).
PENALISING, PENAL_LOG = "127.0.0.4", "/var/log/bpa-penal-sshd.log"
SHARE = "/srv/bpa-share"
LOG = f"{HOME}/log/LOG"
WAIT_SECONDS = 3  # hooks.wait_seconds: how long a pre hook waits for keys
#: A hook that finds no keys must give up within wait_seconds and a start-up's slack.
FAIL_FAST_SECONDS = WAIT_SECONDS + 5
AS_AGENT_USER = {"SSH_AUTH_SOCK": SOCKET}
METRICS_URL = "http://127.0.0.1:9842/metrics"  # [metrics] listen's default, inside
NEVER_IN_JOURNAL = ("remains running after unit stopped", "left-over process")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root("boots Debian trees with systemd-nspawn"),
    pytest.mark.skipif(
        not (shutil.which("systemd-nspawn") and shutil.which("debootstrap")),
        reason="needs systemd-nspawn and debootstrap (packages systemd-container, debootstrap:"
        " tests/system-deps.sh)",
    ),
]


@dataclass
class Box:
    """A booted container with the package installed, and what the steps printed."""

    c: Container
    apt_output: str
    install_output: str = ""

    def as_backuppc(self, *argv: str, timeout: float = 60) -> tuple[int, str]:
        done = self.c.run(*argv, user="backuppc", env=AS_AGENT_USER, timeout=timeout)
        return done.returncode, done.stdout + done.stderr

    def status(self) -> tuple[int, str]:
        return self.as_backuppc("backuppc-agent", "--config", CONFIG, "status")

    def ready(self) -> bool:
        return self.status()[0] == 0

    def keys_listed(self) -> str:
        return self.as_backuppc("ssh-add", "-l")[1]

    def unit(self, unit: str) -> dict[str, str]:
        return self.c.show(unit, "ActiveState", "SubState", "Result", "NRestarts", "MainPID",
                           "ConditionResult", "LoadState")  # fmt: skip

    def active(self, unit: str) -> bool:
        return self.unit(unit)["ActiveState"] == "active"

    def log(self) -> str:
        path = self.c.path(LOG)
        return path.read_text(errors="replace") if path.exists() else ""

    def accepted(self) -> int:
        path = self.c.path(CLIENT_LOG)
        return path.read_text(errors="replace").count("Accepted publickey") if path.exists() else 0

    def set_config(self, key: str, value: str) -> None:
        """Set ``key`` (commented out at its default by install) in config.toml."""
        path = self.c.path(CONFIG)
        text, count = re.subn(rf"(?m)^#? ?{key} = .*$", f"{key} = {value}", path.read_text())
        assert count == 1, f"{key} not in {CONFIG} once"
        path.write_text(text)

    def hook(self, name: str) -> tuple[int, str, float]:
        """Run BackupPC's configured ``name`` command for the client, as BackupPC does."""
        command = hook_command(self.c.path("/etc/backuppc/config.pl").read_text(), name)
        started = time.monotonic()
        code, out = self.as_backuppc(*command, timeout=120)
        return code, out, time.monotonic() - started

    def settle(self, predicate: Callable[[], object], what: str, timeout: float = 20) -> None:
        """Wait for ``predicate``; past ``timeout`` fail with the units' status and journal."""
        try:
            wait_for(predicate, timeout=timeout, every=0.1)
        except AssertionError:
            units = (SUPERVISOR, AGENT, BACKUPPC)
            status = self.c.run("systemctl", "status", "--no-pager", "-l", "-n", "30", *units)
            raise AssertionError(f"not {what} within {timeout} s\n{self.status()[1]}\n"
                                 f"{status.stdout}{status.stderr}") from None  # fmt: skip

    def reload(self) -> None:
        """`systemctl reload` (SIGHUP): the supervisor reads config.toml again."""
        line = "SIGHUP: configuration reloaded"
        before = self.c.journal("-u", SUPERVISOR).count(line)
        self.c.check("systemctl", "reload", SUPERVISOR)
        self.settle(lambda: self.c.journal("-u", SUPERVISOR).count(line) > before, "reloaded")

    def adopted(self, pid: str) -> bool:
        """True once the running supervisor has adopted the agent ``pid``."""
        line = f"adopted running ssh-agent pid {pid} "
        journal = self.c.journal("-u", SUPERVISOR, "_PID=" + self.unit(SUPERVISOR)["MainPID"])
        return line in journal

    def waiting(self) -> bool:
        return re.match(r"state:\s+waiting", self.status()[1]) is not None

    def dump(self, kind: str) -> None:
        """BackupPC's server dumps the client (``kind`` doFull or doIncr); wait for the end."""
        word = {"doFull": "full", "doIncr": "incr"}[kind]
        ended = (f"Finished {word} backup on {CLIENT}", f"Backup failed on {CLIENT}")
        before = [self.log().count(line) for line in ended]
        mesg = "/usr/share/backuppc/bin/BackupPC_serverMesg"
        code, out = self.as_backuppc(mesg, "backup", CLIENT, CLIENT, "backuppc", kind)
        assert code == 0, out
        wait_for(lambda: [self.log().count(line) for line in ended] != before, timeout=90)
        if self.log().count(ended[0]) == before[0]:
            bad = f"{HOME}/pc/{CLIENT}/XferLOG.bad.z"
            xferlog = self.as_backuppc("/usr/share/backuppc/bin/BackupPC_zcat", bad)[1]
            raise AssertionError(f"{self.log()[-3000:]}\n{xferlog[-3000:]}")

    def journal_has_no_leftovers(self) -> None:
        """No unit of this machine's life so far left a process behind (shutdowns included)."""
        journal = self.c.journal(every_boot=True)
        found = [line for line in journal.splitlines() if any(s in line for s in NEVER_IN_JOURNAL)]
        assert found == [], "\n".join(found)


def hook_command(config_pl: str, setting: str) -> list[str]:
    """BackupPC's words for ``$Conf{setting}`` with the client's variables substituted."""
    match = re.search(rf"^\$Conf\{{{setting}\}}\s*=\s*'([^']*)';", config_pl, re.MULTILINE)
    assert match, f"no {setting} in config.pl"
    values = {"$client": CLIENT, "$host": CLIENT_ADDRESS, "$XferMethod": "rsync", "$xferOK": "1"}
    return [_substitute(word, values) for word in match.group(1).split()]


def _substitute(word: str, values: dict[str, str]) -> str:
    """One word with BackupPC's variables replaced, as BackupPC does it (no shell)."""
    for name, value in values.items():
        word = word.replace(name, value)
    return word


# -- the container ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=RELEASES)
def box(request: pytest.FixtureRequest) -> Iterator[Box]:
    release = request.param
    started = time.monotonic()
    container = Container.copy_of(release, cached_tree(release), fresh_root(release))
    try:
        container.boot()
        # BPA_SYSTEMD_COMMIT=HEAD: build a commit, not the working tree (others' edits).
        container.copy_source(commit=os.environ.get("BPA_SYSTEMD_COMMIT", ""))
        yield Box(container, _build_and_install(container))
    finally:
        try:
            container.poweroff()
        finally:
            container.kill()
            print(f"{release}: {time.monotonic() - started:.0f} s")  # the tier's time, in -rA
            if os.environ.get("BPA_KEEP_TREES") != "1":  # keep the copy to look into it
                shutil.rmtree(container.root, ignore_errors=True)
                container.console_log.unlink(missing_ok=True)


def _build_and_install(c: Container) -> str:
    """`make deb` inside with the release's own tools (lintian errors fail), then apt."""
    src = "/root/src"
    built = c.run("make", "-C", src, "deb", timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    debs = sorted(c.path(f"{src}/dist").glob("backuppc-agent_*_all.deb"))
    assert debs, built.stdout
    done = c.run("apt-get", "install", "-y", "-q", f"{src}/dist/{debs[-1].name}", timeout=300,
                 env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
                      "LANG": "C.UTF-8", "HOME": "/root"})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _client_sshd(c: Container, release: str) -> None:
    """The client: user bpaclient, a share, an sshd on 127.0.0.2 as a unit of its own."""
    # A uid no host account has: host tests clean up by uid, and they see our processes.
    c.check("useradd", "--uid", CLIENT_UID, "--create-home", "--shell", "/bin/sh", CLIENT_USER)
    c.check("usermod", "-p", "*", CLIENT_USER)  # sshd without PAM refuses locked accounts
    share = c.path(SHARE)
    share.mkdir(parents=True)
    for number in range(3):
        (share / f"file{number}.txt").write_text(f"file {number}\n" * 100)
    c.check("chmod", "-R", "a+rX", SHARE)
    c.path("/etc/bpa-client").mkdir()
    c.check("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/etc/bpa-client/host_ed25519")
    c.check("cp", f"{KEY}.pub", "/etc/bpa-client/authorized_keys")
    c.check("chmod", "0644", "/etc/bpa-client/authorized_keys")
    # OpenSSH >= 9.8 penalises sources whose connections never authenticate (ssh-keyscan).
    penalty = "PerSourcePenaltyExemptList 127.0.0.0/8\n" if release != "bookworm" else ""
    c.path("/etc/bpa-client/sshd_config").write_text(
        f"ListenAddress {CLIENT_ADDRESS}:22\nHostKey /etc/bpa-client/host_ed25519\n"
        "PidFile none\nUsePAM no\nLogLevel VERBOSE\n"
        "AuthorizedKeysFile /etc/bpa-client/authorized_keys\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"AllowUsers {CLIENT_USER}\nMaxSessions 64\nUseDNS no\n" + penalty
    )
    c.path("/etc/systemd/system/bpa-client-sshd.service").write_text(
        "[Unit]\nDescription=the test client's sshd\n[Service]\n"
        "ExecStartPre=/bin/mkdir -p /run/sshd\n"
        f"ExecStart=/usr/sbin/sshd -D -f /etc/bpa-client/sshd_config -E {CLIENT_LOG}\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    # The container's own sshd (the operator's logins) leaves 127.0.0.2:22 to the client.
    c.path("/etc/ssh/sshd_config.d/bpa-loopback.conf").write_text("ListenAddress 127.0.0.1\n")
    c.check("systemctl", "restart", "ssh")
    c.check("systemctl", "daemon-reload")
    c.check("systemctl", "enable", "--now", "bpa-client-sshd")
    log = c.path(CLIENT_LOG)
    wait_for(lambda: log.exists() and "Server listening on" in log.read_text(), timeout=20)


def _backuppc_host(c: Container) -> None:
    """The client in BackupPC's hosts, over rsync; ping through /bin/echo (no cap_net_raw)."""
    hosts = c.path("/etc/backuppc/hosts")
    hosts.write_text(hosts.read_text() + f"{CLIENT} 0 backuppc\n")
    c.path(f"/etc/backuppc/{CLIENT}.pl").write_text(
        f"$Conf{{XferMethod}} = 'rsync';\n$Conf{{ClientNameAlias}} = '{CLIENT_ADDRESS}';\n"
        f"$Conf{{RsyncShareName}} = ['{SHARE}'];\n$Conf{{PingPath}} = '/bin/echo';\n"
        "$Conf{XferLogLevel} = 1;\n$Conf{BackupsDisable} = 1;\n"  # only the dumps we ask for
    )
    c.check("chown", "backuppc:www-data", f"/etc/backuppc/{CLIENT}.pl")


def _add_key(box: Box) -> None:
    """ssh-add without a person (an askpass helper): for tests whose point is elsewhere."""
    helper = f"{HOME}/bpa-askpass"
    box.c.path(helper).write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
    box.c.check("chown", "backuppc:backuppc", helper)
    box.c.check("chmod", "0700", helper)
    askpass = {"SSH_ASKPASS": helper, "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
    done = box.c.run("ssh-add", KEY, user="backuppc", env=AS_AGENT_USER | askpass)
    assert done.returncode == 0, done.stderr
    box.c.check("rm", "-f", helper)


def _login_shows_held(c: Container, term_argv: tuple[str, ...]) -> str:
    term = c.terminal(*term_argv)
    try:
        return term.expect("backuppc-agent: backups are held: no keys loaded")
    finally:
        term.send("exit")
        term.close()


def _ssh_add_in_su(c: Container) -> str:
    """An operator's `su - backuppc` and `ssh-add`, the passphrase typed at its prompt."""
    term = c.terminal("su", "-", "backuppc")
    term.expect("backups are held")
    term.send("ssh-add")
    term.expect("Enter passphrase for")
    term.send(PASSPHRASE)
    out = term.expect("Identity added")
    term.send("exit")
    assert term.close() == 0, term.output
    return out


# -- 1. quiet before install, then install's next steps -----------------------------------


@pytest.mark.timeout(1800)  # the fixture: a first tree build (debootstrap, apt), make deb
def test_after_apt_install_both_units_stay_quiet_until_install_writes_the_config(
    box: Box,
) -> None:
    assert "backuppc-agent install" in box.apt_output
    for unit in (SUPERVISOR, AGENT):
        state = box.unit(unit)
        assert state["LoadState"] == "loaded", (unit, state)
        assert state["ActiveState"] != "failed", (unit, state)
        assert state["NRestarts"] == "0", (unit, state)
    # A restart loop would show within RestartSec=2 s: look again after two of them.
    time.sleep(5)
    for unit in (SUPERVISOR, AGENT):
        state = box.unit(unit)
        assert state["ActiveState"] == "inactive", (unit, state)
        assert (state["NRestarts"], state["Result"]) == ("0", "success"), (unit, state)
    status = box.c.run("systemctl", "status", "--no-pager", SUPERVISOR)
    assert f"ConditionPathExists={CONFIG} was not met" in status.stdout, status.stdout
    assert box.c.show(SUPERVISOR, "UnitFileState")["UnitFileState"] == "enabled"
    assert box.active(BACKUPPC)  # its drop-in Wants= (not Requires=) our skipped unit


def test_install_and_each_next_step_it_prints_works_at_once(box: Box) -> None:
    c = box.c
    key = c.run("ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", KEY, user="backuppc")
    assert key.returncode == 0, key.stderr
    _client_sshd(c, c.release)
    _backuppc_host(c)
    box.install_output = c.check("backuppc-agent", "install", "--client-user", CLIENT_USER)
    box.set_config("wait_seconds", f"{WAIT_SECONDS}.0")
    steps = box.install_output.partition("next:\n")[2].splitlines()
    systemctl = [line.split() for line in steps if line.strip().startswith("systemctl")]
    assert [words[1] for words in systemctl] == ["daemon-reload", "enable", "restart"], steps
    for words in systemctl:
        c.check(*words)
    box.settle(lambda: all(box.active(u) for u in (SUPERVISOR, AGENT, BACKUPPC)), "all active")
    box.settle(box.waiting, "waiting")
    for unit in (SUPERVISOR, AGENT, BACKUPPC):  # BackupPC's server started for good
        assert box.unit(unit)["NRestarts"] == "0", box.c.journal("-u", unit)


# -- 2. the operator's login --------------------------------------------------------------


def test_su_login_says_backups_are_held(box: Box) -> None:
    _login_shows_held(box.c, ("su", "-", "backuppc"))


def test_an_ssh_login_reaches_our_agent_and_ssh_add_at_its_prompt_makes_it_ready(
    box: Box,
) -> None:
    """pam_systemd starts backuppc's user manager; on trixie it offers a second agent."""
    c = box.c
    c.check("install", "-d", "-m", "0700", "/root/.ssh")
    c.check("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/.ssh/id_ed25519")
    authorized = f"{HOME}/.ssh/authorized_keys"
    c.check("install", "-m", "0600", "-o", "backuppc", "-g", "backuppc",
            "/root/.ssh/id_ed25519.pub", authorized)  # fmt: skip
    term = c.terminal("ssh", "-tt", "-o", "StrictHostKeyChecking=accept-new", "-o",
                      "BatchMode=yes", "backuppc@127.0.0.1")  # fmt: skip
    try:
        term.expect("backuppc-agent: backups are held: no keys loaded")
        term.send('echo "sock=$SSH_AUTH_SOCK;"')
        term.expect(f"sock={SOCKET};")
        # trixie's openssh-client: the user manager listens on a second agent socket.
        # The terminal echoes what is typed: only the shell's arithmetic makes the 42s.
        term.send('test -S "$XDG_RUNTIME_DIR/openssh_agent" && echo "second-agent-$((40 + 2))"')
        term.send('echo "end-of-$((6 * 7))"')
        offered = "second-agent-42" in term.expect("end-of-42")
        term.send("ssh-add")
        term.expect("Enter passphrase for")
        term.send(PASSPHRASE)
        term.expect("Identity added")
        uid = c.check("id", "-u", "backuppc").strip()
        manager = box.unit(f"user@{uid}.service")
        term.send("exit")
    finally:
        term.close()
        c.check("rm", "-f", authorized)
    assert manager["ActiveState"] == "active", manager  # the login had a user manager
    assert offered == (c.release != "bookworm"), term.output
    box.settle(box.ready, "ready", 10)
    assert "ED25519" in box.keys_listed()


# -- 3. trust, doctor, a dump by BackupPC -------------------------------------------------


def test_trust_and_doctor_are_all_ok(box: Box) -> None:
    c = box.c
    trusted = c.run("backuppc-agent", "trust", CLIENT, "--yes")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    # The machine's own swap is not the point here: a /proc/swaps without any.
    c.path("/root/procfs").mkdir(exist_ok=True)
    c.path("/root/procfs/swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n")
    done = c.run("backuppc-agent", "doctor", "--procfs", "/root/procfs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("FAIL")] == []
    assert "ok   access: backuppc runs /usr/bin/backuppc-agent" in done.stdout, done.stdout


def test_trust_names_sshds_penalty_and_the_exemption_to_add(box: Box) -> None:
    """OpenSSH >= 9.8 (Debian 13): a client sshd that drops us for PerSourcePenalties."""
    c = box.c
    if c.release == "bookworm":
        pytest.skip("Debian 12's sshd 9.2 has no PerSourcePenalties")
    c.path("/etc/bpa-penal").mkdir()
    c.check("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/etc/bpa-penal/host_ed25519")
    c.path("/etc/bpa-penal/sshd_config").write_text(
        f"ListenAddress {PENALISING}:22\nHostKey /etc/bpa-penal/host_ed25519\n"
        "PidFile /run/bpa-penal.pid\nUsePAM no\nLogLevel VERBOSE\n"
        # Each scan without login costs 5 s; past 10 s the source is refused.
        "PerSourcePenalties noauth:5 min:10 max:60\n"
    )
    c.check("mkdir", "-p", "/run/sshd")
    c.check("/usr/sbin/sshd", "-f", "/etc/bpa-penal/sshd_config", "-E", PENAL_LOG)
    try:
        for _ in range(10):  # scan until sshd drops us
            scanned = c.run("ssh-keyscan", "-t", "ed25519", PENALISING, timeout=30)
            if "ssh-ed25519" not in scanned.stdout:
                break
        assert "penalty: connections without attempting" in c.path(PENAL_LOG).read_text()
        done = c.run("backuppc-agent", "trust", "penalised", "--host", PENALISING, "--yes")
    finally:
        c.sh("kill $(cat /run/bpa-penal.pid)")
    assert done.returncode == 9, done.stdout + done.stderr  # FAILED
    assert "PerSourcePenalties" in done.stderr, done.stderr
    assert "PerSourcePenaltyExemptList" in done.stderr, done.stderr
    assert "is sshd running" not in done.stderr


def test_backuppc_dumps_the_client_over_one_authentication(box: Box) -> None:
    before = box.accepted()
    box.dump("doFull")
    assert box.accepted() - before == 1, box.c.path(CLIENT_LOG).read_text()


# -- 4. on_stop ---------------------------------------------------------------------------


def test_keep_agent_a_supervisor_restart_keeps_the_agent_and_its_keys(box: Box) -> None:
    box.set_config("on_stop", '"keep-agent"')
    box.reload()
    agent_pid = box.unit(AGENT)["MainPID"]
    supervisor_pid = box.unit(SUPERVISOR)["MainPID"]
    box.c.check("systemctl", "restart", SUPERVISOR)
    box.settle(box.ready, "ready", 15)
    assert box.unit(AGENT)["MainPID"] == agent_pid
    assert box.unit(SUPERVISOR)["MainPID"] != supervisor_pid
    assert "ED25519" in box.keys_listed()
    box.journal_has_no_leftovers()


def test_a_killed_supervisor_is_restarted_and_adopts_the_agent_with_its_keys(box: Box) -> None:
    agent_pid = box.unit(AGENT)["MainPID"]
    restarts = int(box.unit(SUPERVISOR)["NRestarts"])
    box.c.check("systemctl", "kill", "--signal=KILL", SUPERVISOR)
    box.settle(lambda: int(box.unit(SUPERVISOR)["NRestarts"]) == restarts + 1, "restarted")
    box.settle(lambda: box.adopted(agent_pid), "agent adopted")
    box.settle(box.ready, "ready")
    assert box.unit(AGENT)["MainPID"] == agent_pid
    assert "ED25519" in box.keys_listed()


def test_a_killed_agent_is_restarted_over_its_stale_socket_and_adopted_again(box: Box) -> None:
    agent_pid = box.unit(AGENT)["MainPID"]
    box.c.check("systemctl", "kill", "--signal=KILL", AGENT)  # its socket stays behind
    box.settle(lambda: box.active(AGENT) and box.unit(AGENT)["MainPID"] != agent_pid,
               "a new agent")  # fmt: skip
    assert box.unit(AGENT)["NRestarts"] == "1"
    box.settle(lambda: box.adopted(box.unit(AGENT)["MainPID"]), "new agent adopted")
    box.settle(box.waiting, "waiting")  # the keys died with the agent
    _add_key(box)
    box.settle(box.ready, "ready")


def test_stop_agent_a_supervisor_restart_ends_the_keys_and_a_new_agent_serves(box: Box) -> None:
    box.set_config("on_stop", '"stop-agent"')
    box.reload()
    assert box.ready()
    agent_pid = box.unit(AGENT)["MainPID"]
    box.c.check("systemctl", "restart", SUPERVISOR)
    box.settle(lambda: box.active(AGENT) and box.unit(AGENT)["MainPID"] != agent_pid,
               "a new agent after the restart")  # fmt: skip
    box.settle(box.waiting, "waiting")
    assert "The agent has no identities" in box.keys_listed()
    box.journal_has_no_leftovers()


def test_stop_agent_a_supervisor_stop_ends_the_agent_and_a_start_brings_both(box: Box) -> None:
    box.c.check("systemctl", "start", AGENT)  # whatever the restart above left
    box.settle(lambda: box.adopted(box.unit(AGENT)["MainPID"]), "agent adopted")
    box.c.check("systemctl", "stop", SUPERVISOR)
    box.settle(lambda: box.unit(AGENT)["ActiveState"] == "inactive", "agent stopped")
    assert not box.c.path(SOCKET).exists()
    assert box.unit(AGENT)["Result"] == "success", box.c.journal("-u", AGENT)
    box.journal_has_no_leftovers()
    box.c.check("systemctl", "start", SUPERVISOR)
    box.settle(lambda: box.active(AGENT), "agent active")
    box.settle(box.waiting, "waiting")


# -- 5. BackupPC after us; hooks while not ready ------------------------------------------


def test_backuppc_is_ordered_after_both_units_and_hooks_fail_fast_without_keys(box: Box) -> None:
    after = box.c.show(BACKUPPC, "After")["After"].split()
    assert f"{SUPERVISOR}.service" in after, after
    assert f"{AGENT}.service" in after, after
    assert "SSH_AUTH_SOCK=" + SOCKET in box.c.show(BACKUPPC, "Environment")["Environment"]
    code, out, seconds = box.hook("DumpPreUserCmd")
    assert code != 0, out
    assert "SSH keys not loaded" in out, out
    assert seconds < FAIL_FAST_SECONDS, (seconds, out)


# -- 6. reboot -----------------------------------------------------------------------------


def _started(box: Box, unit: str) -> int:
    return int(
        box.c.show(unit, "ExecMainStartTimestampMonotonic")["ExecMainStartTimestampMonotonic"]
    )


@pytest.mark.timeout(240)
def test_after_a_reboot_it_waits_hooks_fail_fast_and_ssh_add_makes_it_ready(box: Box) -> None:
    box.c.reboot()
    box.settle(lambda: all(box.active(u) for u in (SUPERVISOR, AGENT, BACKUPPC)), "all active", 30)
    assert _started(box, AGENT) <= _started(box, SUPERVISOR) <= _started(box, BACKUPPC)
    box.settle(box.waiting, "waiting")
    code, out, seconds = box.hook("DumpPreUserCmd")
    assert code != 0, out
    assert "SSH keys not loaded" in out, out
    assert seconds < FAIL_FAST_SECONDS, (seconds, out)
    _ssh_add_in_su(box.c)
    box.settle(box.ready, "ready", 10)
    code, out, _ = box.hook("DumpPreUserCmd")
    assert code == 0, out
    code, out, _ = box.hook("DumpPostUserCmd")
    assert code == 0, out
    for unit in (SUPERVISOR, AGENT):
        assert box.unit(unit)["NRestarts"] == "0", box.c.journal("-u", unit)
    box.journal_has_no_leftovers()


# -- 7. unattended unlock -----------------------------------------------------------------


def _store_passphrase(c: Container) -> None:
    """As the docs say: a keyring backend that opens alone, then `passphrase set` at a pty."""
    rc = f"{HOME}/.config/python_keyring/keyringrc.cfg"
    made = c.run("mkdir", "-p", rc.rpartition("/")[0], user="backuppc")
    assert made.returncode == 0, made.stderr
    c.path(rc).write_text("[backend]\ndefault-keyring=keyrings.alt.file.PlaintextKeyring\n")
    c.check("chown", "backuppc:backuppc", rc)
    term = c.terminal("su", "-", "backuppc")
    term.expect("$ ")
    term.send(f"backuppc-agent passphrase set {KEY}")
    term.expect("Passphrase for")
    term.send(PASSPHRASE)
    term.expect("stored the passphrase")
    term.send("exit")
    assert term.close() == 0, term.output


@pytest.mark.timeout(240)
def test_unattended_unlock_loads_the_key_at_boot_under_the_units_hardening(box: Box) -> None:
    _store_passphrase(box.c)
    box.set_config("unlock", '"keyring"')
    box.set_config("keys", f'["{KEY}"]')
    box.c.reboot()
    box.settle(box.ready, "ready", 30)
    assert "ED25519" in box.keys_listed()
    journal = box.c.journal("-u", SUPERVISOR)
    assert "ERROR" not in journal, journal
    fetch = (
        f"import urllib.request as u; print(u.urlopen({METRICS_URL!r}, timeout=10).read().decode())"
    )
    metrics = box.c.run("python3", "-c", fetch)
    assert "\nbackuppc_agent_ready 1.0\n" in metrics.stdout, metrics.stdout[:2000] + metrics.stderr
    before = box.accepted()
    box.dump("doIncr")
    assert box.accepted() - before == 1


def _tang(c: Container) -> None:
    """A Tang on the container's loopback, as a unit (it comes back after a reboot)."""
    c.check("mkdir", "-p", TANG_DB)
    c.check("/usr/libexec/tangd-keygen", TANG_DB)
    c.path("/etc/systemd/system/bpa-tang.service").write_text(
        "[Unit]\nDescription=the test site's Tang\n[Service]\n"
        f"ExecStart=/usr/bin/socat TCP-LISTEN:18070,bind={TANG_ADDRESS},fork,reuseaddr "
        f'"SYSTEM:/usr/libexec/tangd {TANG_DB}"\n'
        "[Install]\nWantedBy=multi-user.target\n"
    )
    c.check("systemctl", "daemon-reload")
    c.check("systemctl", "enable", "--now", "bpa-tang")
    fetch = f"import urllib.request as u; u.urlopen({TANG_URL + '/adv'!r}, timeout=5).read()"
    wait_for(lambda: c.run("python3", "-c", fetch).returncode == 0, timeout=20)


@pytest.mark.timeout(300)
def test_tang_unlock_loads_the_key_at_boot_and_waits_while_no_tang_answers(box: Box) -> None:
    c = box.c
    _tang(c)
    stored = c.run("backuppc-agent", "--config", CONFIG, "passphrase", "set", KEY,
                   "--tang", TANG_URL, "--yes", user="backuppc", input=PASSPHRASE + "\n",
                   timeout=60)  # fmt: skip
    assert stored.returncode == 0, stored.stdout + stored.stderr
    assert PASSPHRASE not in stored.stdout + stored.stderr
    box.set_config("unlock", '"tang"')
    box.c.reboot()
    box.settle(box.ready, "ready by Tang", 30)
    assert "ERROR" not in box.c.journal("-u", SUPERVISOR)
    # A reboot with the site's Tang down: waiting, naming it; ready once it answers.
    c.check("systemctl", "disable", "bpa-tang")
    box.c.reboot()
    box.settle(lambda: TANG_URL in box.status()[1], "waiting on Tang", 30)
    assert re.match(r"state:\s+waiting", box.status()[1]), box.status()[1]
    term = c.terminal("su", "-", "backuppc")  # the operator's login says why
    try:
        term.expect("backuppc-agent: backups are held: ")
        term.expect(TANG_URL)
    finally:
        term.send("exit")
        term.close()
    c.check("systemctl", "start", "bpa-tang")
    box.settle(box.ready, "ready once Tang answers", 30)


# -- 8. upgrade, remove and purge ----------------------------------------------------------


def _ours(box: Box) -> list[str]:
    out = box.c.check("ps", "-u", "backuppc", "-o", "pid=,args=")
    return [line for line in out.splitlines() if "backuppc-agent" in line or "ssh-agent" in line]


def test_an_upgrade_restarts_neither_unit_and_keeps_the_keys(box: Box) -> None:
    """The same .deb again: dpkg runs the upgrade path of prerm and postinst."""
    box.settle(box.ready, "ready")
    pids = {unit: box.unit(unit)["MainPID"] for unit in (SUPERVISOR, AGENT)}
    debs = sorted(box.c.path("/root/src/dist").glob("backuppc-agent_*_all.deb"))
    done = box.c.run("dpkg", "-i", f"/root/src/dist/{debs[-1].name}", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {unit: box.unit(unit)["MainPID"] for unit in (SUPERVISOR, AGENT)} == pids
    assert box.ready()
    assert "ED25519" in box.keys_listed()


def test_apt_remove_stops_both_units_and_the_kept_agent_and_leaves_the_config(box: Box) -> None:
    box.set_config("on_stop", '"keep-agent"')
    box.reload()
    box.c.check("systemctl", "restart", SUPERVISOR)
    box.settle(box.ready, "ready", 15)
    done = box.c.run("apt-get", "remove", "-y", "-q", "backuppc-agent", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for unit in (SUPERVISOR, AGENT):
        assert box.unit(unit)["ActiveState"] in ("inactive", "failed"), box.unit(unit)
    assert _ours(box) == []
    assert box.c.path(CONFIG).exists()
    assert box.active(BACKUPPC)


def test_apt_purge_removes_what_postrm_says_and_leaves_known_hosts(box: Box) -> None:
    done = box.c.run("apt-get", "purge", "-y", "-q", "backuppc-agent", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"left {HOME}/.ssh/known_hosts" in done.stdout, done.stdout
    gone = ["/usr/bin/backuppc-agent", "/etc/backuppc-agent", SOCKET, f"{HOME}/.ssh/agent.env",
            f"{HOME}/.ssh/mux", f"{HOME}/.ssh/backuppc-agent.conf",
            f"{HOME}/.local/state/backuppc-agent"]  # fmt: skip
    assert [path for path in gone if box.c.path(path).exists()] == []
    marker = "# >>> backuppc-agent (sha256:"
    for path in ("/etc/backuppc/config.pl", f"{HOME}/.profile"):
        assert marker not in box.c.path(path).read_text(), path
    assert box.c.path(KEY).exists()
    assert _ours(box) == []
    assert box.active(BACKUPPC)
    box.journal_has_no_leftovers()
