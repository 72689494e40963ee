"""The client gate under every POSIX sh here: what it runs, what it refuses.

The gate (backuppc_agent/install/files/client/backuppc-agent-gate) is run as
sshd runs a forced command: SSH_ORIGINAL_COMMAND set, sshd's PATH, which here
starts with recording rsync/tar/logger (tests/gate.py). The commands that must
pass are the ones a real BackupPC 4.4 sent (recorded from rsync_bpc 3.1.3 and
Debian's TarClientCmd / TarClientRestoreCmd, with --protect-args removed from
RsyncArgs); everything hostile is refused with one stderr line, a syslog line,
and nothing run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.gate import GATE, GateRun, Shims, make_shims, run_gate, shells
from tests.helpers import ROOT

SHELLS = shells()
JOB = "0123abcd.0123456789ab"
SHARE = "/srv/share dir"
# What rsync_bpc 3.1.3 sent for Debian's default RsyncArgs without --protect-args.
RSYNC_SEND = "/usr/bin/rsync --server --sender"
RSYNC_FULL = f"{RSYNC_SEND} -lHogDtprcxe.iLsfxC --timeout=72000 --numeric-ids . /srv/data/"
RSYNC_INCR = f"{RSYNC_SEND} -lHogDtprxe.iLsfxC --timeout=72000 --numeric-ids . /srv/data/"
RSYNC_RESTORE = (
    "/usr/bin/rsync --server -lHogDtprRe.iLsfxC --log-format=%i --delete --super --stats"
    " --partial --numeric-ids . /srv/data"
)
# ... and with Debian's defaults untouched: everything but this goes over the protocol.
RSYNC_PROTECTED = "/usr/bin/rsync --server --sender -slHogDtprcxe.iLsfxC"
TAR_FULL = r"env LC_ALL=C /bin/tar -c -v -f - -C /srv/share\ dir --totals ."
TAR_INCR = TAR_FULL.removesuffix(" .") + r" --newer=2026-12-06\ 00:56:11 ."
TAR_RESTORE = r"env LC_ALL=C /bin/tar -x -p --numeric-owner --same-owner -v -f - -C /srv/share\ dir"
MARK = f"env BACKUPPC_AGENT_JOB={JOB} "


@pytest.fixture(params=[name for name, _ in SHELLS])
def shell(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return dict(SHELLS)[request.param]


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory) -> Shims:
    return make_shims(tmp_path_factory.mktemp("gate"))


def test_the_gate_is_posix_sh_and_executable() -> None:
    assert GATE.read_text().startswith("#!/bin/sh\n")
    assert GATE.stat().st_mode & 0o111 == 0o111


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_the_gate_is_executable_in_git() -> None:
    staged = subprocess.run(
        ["git", "ls-files", "-s", str(GATE)], capture_output=True, text=True, check=True,
        cwd=GATE.parent,
    ).stdout  # fmt: skip
    assert staged.startswith("100755 "), staged


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_the_gate_passes_shellcheck_as_sh() -> None:
    done = subprocess.run(
        ["shellcheck", "-s", "sh", str(GATE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def test_true_exits_0_and_runs_nothing(shims: Shims, shell: tuple[str, ...]) -> None:
    done = run_gate(shims, shell, "true")
    assert (done.code, done.stdout, done.stderr, done.ran) == (0, "", "", None)


@pytest.mark.parametrize("mode", ["backup", "restore"])
def test_the_probe_names_the_gate_its_version_and_mode(
    shims: Shims, shell: tuple[str, ...], mode: str
) -> None:
    done = run_gate(shims, shell, "echo backuppc-agent-gate-probe", mode)
    assert (done.code, done.stdout, done.stderr) == (0, f"backuppc-agent-gate 1 {mode}\n", "")


@pytest.mark.parametrize(
    ("command", "program", "argv"),
    [
        (RSYNC_FULL, "rsync", RSYNC_FULL.split()[1:]),
        (RSYNC_INCR, "rsync", RSYNC_INCR.split()[1:]),
        ("rsync --server --sender -vlogDtprze.iLsfxCIvu . /etc /home", "rsync",
         ["--server", "--sender", "-vlogDtprze.iLsfxCIvu", ".", "/etc", "/home"]),
        ("rsync --server --sender -lHogDtprxe31.2iLsfxC -B4096 --files-from=- --from0 . /srv",
         "rsync", ["--server", "--sender", "-lHogDtprxe31.2iLsfxC", "-B4096", "--files-from=-",
                   "--from0", ".", "/srv"]),
        (TAR_FULL, "tar", ["-c", "-v", "-f", "-", "-C", SHARE, "--totals", "."]),
        (TAR_INCR, "tar",
         ["-c", "-v", "-f", "-", "-C", SHARE, "--totals", "--newer=2026-12-06 00:56:11", "."]),
        (r"env LC_ALL=C /bin/tar -c -v -f - -C /srv --totals --exclude=./a\ \(b\)\;c ./x\$y",
         "tar", ["-c", "-v", "-f", "-", "-C", "/srv", "--totals", "--exclude=./a (b);c", "./x$y"]),
    ],
)  # fmt: skip
def test_backup_mode_execs_what_backuppc_sends_with_exactly_its_words(
    shims: Shims, shell: tuple[str, ...], command: str, program: str, argv: list[str]
) -> None:
    for marked in (command, MARK + command):
        done = run_gate(shims, shell, marked)
        assert (done.code, done.stderr, done.ran, done.argv) == (0, "", program, argv), marked
        assert done.job == (JOB if marked.startswith(MARK) else "<unset>")
        assert done.logged is None


def test_tar_gets_lc_all_c_and_rsync_gets_the_callers_locale(
    shims: Shims, shell: tuple[str, ...]
) -> None:
    run_gate(shims, shell, MARK + TAR_FULL)
    assert shims.env("tar")["lc_all"] == "C"
    run_gate(shims, shell, MARK + RSYNC_FULL)
    assert shims.env("rsync")["lc_all"] == "<unset>"


TAR_RESTORE_ARGV = ["-x", "-p", "--numeric-owner", "--same-owner", "-v", "-f", "-", "-C", SHARE]


@pytest.mark.parametrize(
    ("command", "program", "argv"),
    [(RSYNC_RESTORE, "rsync", RSYNC_RESTORE.split()[1:]),
     (MARK + RSYNC_RESTORE, "rsync", RSYNC_RESTORE.split()[1:]),
     (TAR_RESTORE, "tar", TAR_RESTORE_ARGV),
     (RSYNC_FULL, "rsync", RSYNC_FULL.split()[1:])],
)  # fmt: skip
def test_restore_mode_also_execs_the_receiving_rsync_and_tar_extract(
    shims: Shims, shell: tuple[str, ...], command: str, program: str, argv: list[str]
) -> None:
    done = run_gate(shims, shell, command, "restore")
    assert (done.code, done.stderr, done.ran, done.argv) == (0, "", program, argv)


HOSTILE_BOTH: list[tuple[str | None, str]] = [
    (None, "no command"),
    ("", "no command"),
    ("id", "not an allowed program"),
    ("sh", "not an allowed program"),
    ("sh -c id", "not an allowed program"),
    ("/bin/bash -i", "not an allowed program"),
    ("bash -c 'id'", "shell syntax"),
    ("scp -t /tmp", "not an allowed program"),
    ("scp -f /etc/shadow", "not an allowed program"),
    ("internal-sftp", "not an allowed program"),
    ("/usr/lib/openssh/sftp-server", "not an allowed program"),
    ("rsync --server --sender -e.iLsfxC . /; id", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . /x && id", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . /x | id", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . $(id)", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . `id`", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . /x > /tmp/out", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . < /etc/passwd", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . '/x'", "shell syntax"),
    ('rsync --server --sender -e.iLsfxC . "/x"', "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . /x*", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . ~root", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . /x #", "shell syntax"),
    ("rsync --server --sender -e.iLsfxC . /x\\", "backslash ends"),
    ("rsync --server --sender -e.iLsfxC . /x\nid", "control character"),
    ("rsync --server --sender -e.iLsfxC . /x\rid", "control character"),
    ("rsync --server --sender -e.iLsfxC .\t/x", "control character"),
    ("rsync --server --sender -e.iLsfxC . /x\x1b[2J", "control character"),
    ("rsync --server --sender -e.iLsfxC . /x\x7f", "control character"),
    ("rsync --server --sender -e.iLsfxC . /" + "a" * 5000, "word longer"),
    ("rsync --server --sender -e.iLsfxC . " + "/a " * 3000, "longer than 8192"),
    ("rsync --server --sender -e.iLsfxC . " + "/a " * 300, "more than 256 words"),
    ("rsync --server --sender --rsh=sh . /x", "--rsh is not allowed"),
    ("rsync --server --sender -e sh . /x", "-e with a command"),
    ("rsync --server --sender -esh . /x", "-e with a command"),
    ("rsync --server --sender -lHe.iLs;id . /x", "shell syntax"),
    ("rsync --server --sender -lHe.iL/bin/sh . /x", "-e with a command"),
    ("rsync --server --sender -e31.2x.y . /x", "-e with a command"),
    ("rsync --server --sender -eid.iLsfxC . /x", "-e with a command"),
    ("rsync --server --sender --server -e.iLsfxC . /x", "--server twice"),
    ("rsync --server --server --sender -e.iLsfxC . /x", "--server twice"),
    ("rsync --sender --server -e.iLsfxC . /x", "without --server as its first"),
    ("rsync --server --sender --sender -e.iLsfxC . /x", "--sender twice"),
    ("rsync --server --sender -e.iLsfxC /x", "before '.'"),
    ("rsync --server --sender -e.iLsfxC .", "without a path"),
    ("rsync --server --sender -e.iLsfxC . --remove-source-files", "starts with '-'"),
    ("rsync --server --sender --remove-source-files -e.iLsfxC . /x", "--remove-source-files"),
    ("rsync --server --sender --remove-sent-files -e.iLsfxC . /x", "--remove-sent-files"),
    ("rsync --server --sender --temp-dir=/tmp -e.iLsfxC . /x", "--temp-dir"),
    ("rsync --server --sender --log-file=/root/.ssh/authorized_keys . /x", "--log-file"),
    ("rsync --server --sender --log-file-format=x . /x", "--log-file-format"),
    ("rsync --server --sender --write-devices . /x", "--write-devices"),
    ("rsync --server --sender --copy-devices . /x", "--copy-devices"),
    ("rsync --server --daemon --config=/tmp/x . /x", "--daemon"),
    ("rsync --server --sender --config=/tmp/x . /x", "--config"),
    ("rsync --server --sender --password-file=/etc/shadow . /x", "--password-file"),
    ("rsync --server --sender --files-from=/etc/shadow . /x", "--files-from other than"),
    ("rsync --server --sender --files-from /etc/shadow . /x", "--files-from is not allowed"),
    ("rsync --server --sender --only-write-batch=/tmp/b . /x", "--only-write-batch"),
    ("rsync --server --sender --write-batch=/tmp/b . /x", "--write-batch"),
    ("rsync --server --sender --backup-dir=/tmp . /x", "--backup-dir"),
    ("rsync --server --sender --timeout=1;id . /x", "shell syntax"),
    ("rsync --server --sender --timeout=a/b . /x", "value of rsync option --timeout"),
    ("rsync --server --sender --protect-args . /x", "--protect-args"),
    ("rsync --server --sender --secluded-args . /x", "--secluded-args"),
    ("rsync --server --sender -M--log-file=/x . /x", "letter not allowed"),
    ("rsync --server --sender -f+x . /x", "letter not allowed"),
    ("rsync --server --sender -T/tmp . /x", "letter not allowed"),
    ("rsync --server --sender - . /x", "lone '-'"),
    ("rsync --server --sender -Bx . /x", "-Bx is not allowed"),
    (RSYNC_PROTECTED, "-s (--protect-args)"),
    ("rsync --server --sender -se.iLsfxC . /x", "-s (--protect-args)"),
    ("/tmp/rsync --server --sender -e.iLsfxC . /x", "not an allowed rsync"),
    ("./rsync --server --sender -e.iLsfxC . /x", "not an allowed rsync"),
    ("/usr/bin/rsync2 --server --sender . /x", "not an allowed program"),
    ("env rsync --server --sender -e.iLsfxC . /x", "env without a variable"),
    ("env env LC_ALL=C /bin/tar -c -f - .", "env without a variable"),
    ("env LD_PRELOAD=/tmp/x.so rsync --server --sender . /x", "environment variable"),
    ("env PATH=/tmp rsync --server --sender . /x", "environment variable"),
    ("BACKUPPC_AGENT_JOB=0123abcd.0123456789ab rsync --server --sender . /x", "not an allowed"),
    ("env BACKUPPC_AGENT_JOB=x;id rsync --server --sender . /x", "shell syntax"),
    ("env BACKUPPC_AGENT_JOB=0123abcd rsync --server --sender . /x", "malformed job marker"),
    (f"env BACKUPPC_AGENT_JOB={JOB} BACKUPPC_AGENT_JOB={JOB} rsync --server", "marker twice"),
    ("env", "env without a variable"),
    ("env LC_ALL=C rsync --server --sender -e.iLsfxC . /x", "LC_ALL=C is for tar"),
    ("env LC_ALL=C /bin/tar -c -v -f - -C /srv --to-command=id .", "--to-command"),
    ("env LC_ALL=C /bin/tar -c -v -f - -C /srv --to-com=id .", "--to-com"),
    ("env LC_ALL=C /bin/tar -c -v -f - -C /srv -I id .", "-I is not allowed"),
    ("env LC_ALL=C /bin/tar -c -v -f - -C /srv --use-compress-program=id .", "--use-compress"),
    (
        "env LC_ALL=C /bin/tar -c -v -f - --checkpoint=1 --checkpoint-action=exec=id .",
        "--checkpoint",
    ),
    ("env LC_ALL=C /bin/tar -c -v -f - --rsh-command=/bin/sh .", "--rsh-command"),
    ("env LC_ALL=C /bin/tar -c -v -f - --rmt-command=/bin/sh .", "--rmt-command"),
    ("env LC_ALL=C /bin/tar -c -v -f - -F id .", "-F is not allowed"),
    ("env LC_ALL=C /bin/tar -c -v -f - --info-script=id .", "--info-script"),
    ("env LC_ALL=C /bin/tar -c -v -f - --new-volume-script=id .", "--new-volume-script"),
    ("env LC_ALL=C /bin/tar -c -v -f host:file -C /srv .", "-f other than '-'"),
    ("env LC_ALL=C /bin/tar -c -v -f /tmp/out -C /srv .", "-f other than '-'"),
    ("env LC_ALL=C /bin/tar -c -v -C /srv .", "without -f -"),
    ("env LC_ALL=C /bin/tar -c -v -f", "without its value"),
    ("env LC_ALL=C /bin/tar -cvf - -C /srv .", "-cvf is not allowed"),
    ("env LC_ALL=C /bin/tar -c -v -f - -C /srv --remove-files .", "--remove-files"),
    ("env LC_ALL=C /bin/tar -c -v -f - -C /srv -z .", "-z is not allowed"),
    (
        "env LC_ALL=C /bin/tar -c -v -f - -C /srv --listed-incremental=/tmp/s .",
        "--listed-incremental",
    ),
    ("env LC_ALL=C /bin/tar -c -x -v -f - -C /srv .", "-c or -x twice"),
    ("env LC_ALL=C /bin/tar -v -f - -C /srv .", "without -c or -x"),
    ("env LC_ALL=C /bin/tar -c -v -f - -C -x .", "-C to a path that starts"),
    ("env LC_ALL=C /bin/tar -c -v -f - -C /srv -p .", "-p outside extract"),
    ("env LC_ALL=C /tmp/tar -c -v -f - -C /srv .", "not an allowed tar"),
    ("sh -s -- job 0123abcd", "bad job id"),
    ("sh -s -- job 0123abcd.0123456789ab;id", "bad job id"),
    ("sh -s -- client 0123abcd.0123456789ab", "bad client id"),
    ("sh -s -- client ../..", "bad client id"),
    ("sh -s -- kill 0123abcd", "not an allowed program"),
    ("sh -s", "not an allowed program"),
    ("echo backuppc-agent-gate-probe; id", "shell syntax"),
    ("echo hello", "not an allowed program"),
    ("true; id", "shell syntax"),
    ("true id", "not an allowed program"),
]
HOSTILE_BACKUP_ONLY: list[tuple[str | None, str]] = [
    (RSYNC_RESTORE, "--delete is not allowed"),
    ("rsync --server -lHogDtprRe.iLsfxC . /srv/data", "receiving mode"),
    ("rsync --server --delete --sender -e.iLsfxC . /x", "--delete is not allowed"),
    ("rsync --server --sender --delete-excluded -e.iLsfxC . /x", "--delete-excluded"),
    (TAR_RESTORE, "extract (writes) in backup mode"),
    ("env LC_ALL=C /bin/tar -x -v -f - -C /srv", "extract (writes) in backup mode"),
    ("backuppc-agent-gate undo", "undo needs the restore key"),
]
HOSTILE_RESTORE: list[tuple[str | None, str]] = [
    ("rsync --server -lHogDtprRe.iLsfxC . /a /b", "more than one destination"),
    ("rsync --server -lHogDtprRe.iLsfxC --temp-dir=/tmp . /x", "--temp-dir"),
    ("rsync --server -lHogDtprRe.iLsfxC --partial-dir=/tmp . /x", "--partial-dir"),
    ("rsync --server -lHogDtprRe.iLsfxC --link-dest=/etc . /x", "--link-dest"),
    ("rsync --server -lHogDtprRe.iLsfxC --log-file=/x . /x", "--log-file"),
    ("rsync --server --sender --remove-source-files -e.iLsfxC . /x", "--remove-source-files"),
    ("rsync --server -slHogDtprRe.iLsfxC", "-s (--protect-args)"),
    ("env LC_ALL=C /bin/tar -x -v -f - -C /srv --to-command=id", "--to-command"),
    ("env LC_ALL=C /bin/tar -x -v -f - -C /srv -P", "-P is not allowed"),
    ("env LC_ALL=C /bin/tar -x -v -f - -C /srv etc/passwd", "extract with a file list"),
    ("backuppc-agent-gate undo; id", "shell syntax"),
]


def _assert_refused(done: GateRun, why: str) -> None:
    assert done.code == 1, done
    assert done.ran is None, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("backuppc-agent-gate: refused: "), lines
    assert why in lines[0], lines[0]
    assert "(command: " in lines[0]
    assert done.logged is not None
    assert done.logged[:4] == ["-t", "backuppc-agent-gate", "-p", "auth.warning"]
    assert done.logged[-1] == lines[0].removeprefix("backuppc-agent-gate: ")


@pytest.mark.parametrize(("command", "why"), HOSTILE_BOTH + HOSTILE_BACKUP_ONLY)
def test_backup_mode_refuses_hostile_commands_with_one_line_and_runs_nothing(
    shims: Shims, shell: tuple[str, ...], command: str | None, why: str
) -> None:
    _assert_refused(run_gate(shims, shell, command), why)


@pytest.mark.parametrize(("command", "why"), HOSTILE_BOTH + HOSTILE_RESTORE)
def test_restore_mode_refuses_hostile_commands_too(
    shims: Shims, shell: tuple[str, ...], command: str | None, why: str
) -> None:
    _assert_refused(run_gate(shims, shell, command, "restore"), why)


def test_the_refusal_shows_the_command_printable_and_cut(
    shims: Shims, shell: tuple[str, ...]
) -> None:
    done = run_gate(shims, shell, "id\x1b]0;x\x07" + "y" * 400)
    line = done.stderr.splitlines()[0]
    shown = line.split("(command: ", 1)[1].removesuffix(")")
    assert shown == ("id?]0;x?" + "y" * 400)[:200]


def test_a_refusal_does_not_need_logger(tmp_path: Path, shell: tuple[str, ...]) -> None:
    shims = make_shims(tmp_path)
    (shims.bin / "logger").unlink()
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("tr", "cut"):
        (tools / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    done = subprocess.run(
        [*shell, str(GATE), "backup", "/x/authorized_keys"],
        env={"PATH": f"{shims.bin}:{tools}", "SSH_ORIGINAL_COMMAND": "id"},
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == ("backuppc-agent-gate: refused: not an allowed program (command: id)\n")


def test_a_refusal_is_one_line_even_without_tr_and_cut(
    tmp_path: Path, shell: tuple[str, ...]
) -> None:
    shims = make_shims(tmp_path)
    done = subprocess.run(
        [*shell, str(GATE), "backup", "/x/authorized_keys"],
        env={"PATH": str(shims.bin), "SSH_ORIGINAL_COMMAND": "id"},
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == "backuppc-agent-gate: refused: not an allowed program (command: )\n"


@pytest.mark.parametrize(
    ("mode", "authkeys"), [("shell", "/x/authorized_keys"), ("backup", "authorized_keys"),
                           ("", "")],
)  # fmt: skip
def test_a_gate_installed_wrong_exits_2_and_runs_nothing(
    shims: Shims, shell: tuple[str, ...], mode: str, authkeys: str
) -> None:
    done = run_gate(shims, shell, RSYNC_FULL, mode, authkeys)
    assert (done.code, done.ran) == (2, None)
    assert len(done.stderr.splitlines()) == 1


def test_a_missing_rsync_exits_2_with_one_line(tmp_path: Path, shell: tuple[str, ...]) -> None:
    shims = make_shims(tmp_path)
    (shims.bin / "rsync").unlink()
    done = subprocess.run(
        [*shell, str(GATE), "backup", "/x/authorized_keys"],
        env={"PATH": f"{shims.bin}:/nonexistent-only", "SSH_ORIGINAL_COMMAND": RSYNC_FULL},
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "backuppc-agent-gate: rsync is not on PATH\n"


def test_undo_puts_the_saved_file_back_with_the_files_mode_and_removes_the_gate(
    tmp_path: Path, shims: Shims, shell: tuple[str, ...]
) -> None:
    gate = tmp_path / "gate"
    shutil.copyfile(GATE, gate)
    gate.chmod(0o755)
    authkeys = tmp_path / "authorized_keys"
    authkeys.write_text('restrict,command="gate" ssh-ed25519 AAAA new\n')
    authkeys.chmod(0o644)  # client-setup kept the original's mode on the file it wrote
    saved = tmp_path / "authorized_keys.backuppc-agent-saved"
    saved.write_text("ssh-ed25519 AAAA old\n")
    saved.chmod(0o600)
    done = run_gate(shims, shell, "backuppc-agent-gate undo", "restore", str(authkeys), gate)
    assert (done.code, done.stdout, done.stderr) == (0, f"restored {authkeys}\n", "")
    assert authkeys.read_text() == "ssh-ed25519 AAAA old\n"
    assert authkeys.stat().st_mode & 0o777 == 0o644
    assert not saved.exists()
    assert not gate.exists()


def test_undo_without_a_saved_copy_says_so_and_exits_1(
    tmp_path: Path, shims: Shims, shell: tuple[str, ...]
) -> None:
    gate = tmp_path / "gate"
    shutil.copyfile(GATE, gate)
    authkeys = tmp_path / "authorized_keys"
    authkeys.write_text("entry\n")
    done = run_gate(shims, shell, "backuppc-agent-gate undo", "restore", str(authkeys), gate)
    assert done.code == 1
    assert "no saved copy" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert authkeys.read_text() == "entry\n"
    assert gate.exists()


# ---- fuzz: whatever comes in, the gate refuses in one line or runs the sending rsync / tar -c

PIECES = [
    "rsync", "/usr/bin/rsync", "--server", "--sender", "-lHogDtprcxe.iLsfxC", "-e.iLsfxC", "-e",
    ".", "/srv", "/", "--delete", "--remove-source-files", "--rsh=sh", "-s", "--timeout=5",
    "--files-from=-", "--log-format=%i", "env", f"BACKUPPC_AGENT_JOB={JOB}", "LC_ALL=C",
    "/bin/tar", "tar", "-c", "-x", "-v", "-f", "-", "-C", "--totals", "--to-command=id", "-I",
    "id", "sh", "-c", ";", "|", "$(id)", "`id`", "'", '"', "\\", "\\ ", "\n", "\t", "\x1b",
    "true", "echo", "backuppc-agent-gate-probe", "undo", "backuppc-agent-gate", "-p",
    "job", "client", "0123abcd", "-eid", "-e.iLsfxC;id", "~", "#", "*", "-B1", "--newer=x",
]  # fmt: skip


@st.composite
def commands(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.one_of(st.sampled_from(PIECES), st.text(
        alphabet=st.characters(exclude_characters="\0", max_codepoint=0x7F), max_size=12
    )), max_size=14))  # fmt: skip
    joiner = draw(st.sampled_from([" ", "  ", ""]))
    return joiner.join(words)


def _allowed_exec(done: GateRun, mode: str) -> bool:
    if done.ran == "rsync":
        assert done.argv is not None
        receiving = done.argv[:2] != ["--server", "--sender"]
        return done.argv[0] == "--server" and (not receiving or mode == "restore")
    if done.ran == "tar":
        assert done.argv is not None
        return "-c" in done.argv or (mode == "restore" and "-x" in done.argv)
    return False


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(command=commands(), mode=st.sampled_from(["backup", "restore"]))
@example(command=MARK + RSYNC_FULL, mode="backup")
@example(command=RSYNC_PROTECTED, mode="backup")
@example(command="rsync --server --sender -e.iLsfxC . /x\\;id", mode="backup")
def test_fuzz_whatever_comes_in_the_gate_refuses_in_one_line_or_runs_only_allowed_programs(
    shims: Shims, command: str, mode: str
) -> None:
    for _, shell in SHELLS:
        done = run_gate(shims, shell, command, mode, timeout=10)
        if done.code == 1:
            assert done.ran is None
            assert len(done.stderr.splitlines()) == 1, done.stderr
            assert done.stderr.startswith("backuppc-agent-gate: refused: ")
            continue
        assert done.code == 0, done
        assert done.stderr == ""
        if done.ran is None:
            assert command in ("true", "echo backuppc-agent-gate-probe") or done.stdout.startswith(
                "killed "
            ), done
        else:
            assert _allowed_exec(done, mode), done
            if mode == "backup" and done.ran == "rsync":
                assert done.argv is not None
                assert done.argv[:2] == ["--server", "--sender"]


@pytest.mark.parametrize(
    ("command", "stdout"),
    [
        (MARK + "true", ""),
        (MARK + "echo backuppc-agent-gate-probe", "backuppc-agent-gate 1 backup\n"),
    ],
)
def test_the_probes_answer_with_the_job_marker_master_ssh_puts_before_them(
    shims: Shims, shell: tuple[str, ...], command: str, stdout: str
) -> None:
    done = run_gate(shims, shell, command)
    assert (done.code, done.stdout, done.stderr, done.ran) == (0, stdout, "", None)


def _marked_sleeper(token: str) -> subprocess.Popen[bytes]:
    """A job as the gate leaves it: its own session, the marker in its environment."""
    return subprocess.Popen(
        ["sleep", "60"], env={"PATH": "/usr/bin:/bin", "BACKUPPC_AGENT_JOB": token},
        start_new_session=True,
    )  # fmt: skip


@pytest.mark.parametrize("form", ["job", "client"])
def test_the_kill_forms_end_the_marked_jobs_and_run_nothing_from_stdin(
    tmp_path: Path, shims: Shims, shell: tuple[str, ...], form: str
) -> None:
    tag, other_tag = "a1b2c3d4", "a1b2c3d5"  # two clients on one machine
    token = f"{tag}.{os.urandom(6).hex()}"
    other = f"{other_tag}.{os.urandom(6).hex()}"
    jobs = [_marked_sleeper(token), _marked_sleeper(other)]
    canary = tmp_path / "ran"
    ident = token if form == "job" else tag
    try:
        shims.clear()
        done = subprocess.run(
            [*shell, str(GATE), "backup", "/x/authorized_keys"],
            env={"PATH": shims.path(), "SSH_ORIGINAL_COMMAND": f"sh -s -- {form} {ident}"},
            input=f"touch {canary}\necho killed 99\n".encode(), capture_output=True,
            timeout=15, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().splitlines()[-1] == "killed 1"
        assert jobs[0].wait(timeout=5) == -15  # TERM did it
        assert jobs[1].poll() is None  # another job of another client lives on
        assert not canary.exists()
    finally:
        for job in jobs:
            job.kill()
            job.wait()
