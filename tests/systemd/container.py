"""A Debian tree booted under a real systemd with systemd-nspawn, driven from outside.

The tree is built once per release by build-tree.sh and cached; every run boots
a copy (the cache is never changed), on a private network (its own loopback:
its sshd on 127.0.0.1:22 and its BackupPC never meet the host's tests).
Commands run inside with nsenter, in all the container's namespaces; a reboot
is `systemctl poweroff` and a new boot of the same copy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from tests.e2e.terminal import Terminal
from tests.helpers import ROOT, wait_for

CACHE = Path(os.environ.get("BPA_TREE_CACHE", "/var/cache/backuppc-agent-tests"))
WORK = ROOT / "build" / "systemd"
BUILD_TREE = Path(__file__).with_name("build-tree.sh")
#: debootstrap and apt for a first build on a bare machine (~3 min each here).
BUILD_TREE_SECONDS = 1200
BOOT_SECONDS = 90
POWEROFF_SECONDS = 60
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ROOT_ENV = {"PATH": PATH, "LANG": "C.UTF-8", "TERM": "dumb", "HOME": "/root", "USER": "root"}
#: As make deb copies the working tree: these at its top, those anywhere.
TOP_EXCLUDES = (".git", ".venv", ".venv-debian", "build", "dist", ".hypothesis")
ANY_EXCLUDES = ("*.egg-info", "__pycache__", ".*_cache")


def cached_tree(release: str) -> Path:
    """The cached tree of ``release``, built first if missing (build-tree.sh)."""
    tree = CACHE / release
    done = subprocess.run(
        ["sh", str(BUILD_TREE), release, str(tree)],
        capture_output=True,
        text=True,
        timeout=BUILD_TREE_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"build-tree.sh {release} failed: {done.stderr[-3000:]}")
    return tree


def fresh_root(release: str) -> Path:
    """Where this run copies ``release``'s tree: its own directory under build/systemd.

    Copies that earlier runs left (a run that was killed) are removed first, unless a
    systemd-nspawn still boots them.
    """
    for old in WORK.glob(f"{release}-*"):
        run = re.fullmatch(rf"{release}-(\d+)(-console\.log)?", old.name)
        if not run or Path(f"/proc/{run.group(1)}").exists():
            continue
        if old.is_dir() and not _booted_by_nspawn(old):
            shutil.rmtree(old, ignore_errors=True)
        elif not old.is_dir():
            old.unlink(missing_ok=True)
    return WORK / f"{release}-{os.getpid()}"


def _booted_by_nspawn(root: Path) -> bool:
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if words[0].endswith(b"systemd-nspawn") and str(root).encode() in words:
            return True
    return False


def user_env(user: str, home: str) -> dict[str, str]:
    return {"PATH": PATH, "LANG": "C.UTF-8", "HOME": home, "USER": user, "LOGNAME": user}


class Container:
    """One booted copy of a cached tree; ``run`` executes a command inside."""

    def __init__(self, release: str, root: Path) -> None:
        self.release = release
        self.root = root
        self.name = f"bpa-{release}-{os.getpid()}"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.boots = 0
        self.system_state = ""

    @classmethod
    def copy_of(cls, release: str, tree: Path, root: Path) -> Container:
        """A fresh copy of ``tree`` at ``root`` (reflinked where the file system can)."""
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["cp", "-a", "--reflink=auto", str(tree), str(root)],
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return cls(release, root)

    def path(self, inside: str) -> Path:
        """Where the file ``inside`` (an absolute path in the container) is on the host."""
        return self.root / inside.lstrip("/")

    @property
    def console_log(self) -> Path:
        return self.root.with_name(f"{self.root.name}-console.log")

    # -- boot and power off -------------------------------------------------------------

    def boot(self) -> str:
        """Boot the tree and wait until systemd has finished; return its system state."""
        self.boots += 1
        with self.console_log.open("a") as console:
            console.write(f"\n==== boot {self.boots} ====\n")
            console.flush()
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "--register=no", "--keep-unit", "--private-network",
                 "--quiet", f"--machine={self.name}", "-D", str(self.root), "-b"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.pid1 = wait_for(self._find_pid1, timeout=BOOT_SECONDS, every=0.05)
        self.system_state = wait_for(self._booted, timeout=BOOT_SECONDS, every=0.2)
        return self.system_state

    def _find_pid1(self) -> int:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self.nspawn.returncode}: "
                                 f"{self.console_log.read_text()[-3000:]}")  # fmt: skip
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm, _, rest = stat.partition(" (")[2].rpartition(") ")
            if int(rest.split()[1]) == self.nspawn.pid and comm == "systemd":
                return int(entry.name)
        return 0

    def _booted(self) -> str:
        """systemd's state once the boot has ended ('running', 'degraded'), else ''."""
        done = self.run("systemctl", "is-system-running", "--wait", timeout=BOOT_SECONDS)
        state = done.stdout.strip()
        return state if state in ("running", "degraded") else ""

    def poweroff(self) -> None:
        """`systemctl poweroff` inside; wait for the end (killed past the deadline)."""
        if self.nspawn is None:
            return
        if self.nspawn.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run("systemctl", "poweroff", timeout=20)
            try:
                self.nspawn.wait(timeout=POWEROFF_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.name} did not power off within "
                                     f"{POWEROFF_SECONDS} s") from None  # fmt: skip
        self.nspawn = None
        self.pid1 = 0

    def kill(self) -> None:
        """Last resort: SIGKILL the container's init (the kernel ends its pid namespace)."""
        if self.nspawn is None:
            return
        if self.pid1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
        try:
            self.nspawn.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.nspawn.pid, signal.SIGKILL)
            self.nspawn.wait(timeout=30)
        self.nspawn = None
        self.pid1 = 0

    def reboot(self) -> str:
        self.poweroff()
        return self.boot()

    # -- commands inside ----------------------------------------------------------------

    def command(
        self, *argv: str, user: str | None = None, env: dict[str, str] | None = None
    ) -> list[str]:
        """An argv that runs ``argv`` inside (as ``user``, without PAM, if given)."""
        assert self.pid1, "the container is not running"
        proc_root = f"/proc/{self.pid1}/root"
        enter = ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p",
                 f"--root={proc_root}", f"--wd={proc_root}/root"]  # fmt: skip
        if user is not None:
            home = "/var/lib/backuppc" if user == "backuppc" else f"/home/{user}"
            env = user_env(user, home) | (env or {})
            argv = ("setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
                    *argv)  # fmt: skip
        environment = [f"{key}={value}" for key, value in (env or ROOT_ENV).items()]
        return [*enter, "env", "-i", *environment, *argv]

    def run(
        self,
        *argv: str,
        user: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,  # noqa: A002 (subprocess's name)
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*argv, user=user, env=env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def check(self, *argv: str, **kwargs: object) -> str:
        """``run`` that must exit 0; its stdout."""
        done = self.run(*argv, **kwargs)  # type: ignore[arg-type]
        assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stdout}{done.stderr}"
        return done.stdout

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, **kwargs)  # type: ignore[arg-type]

    def terminal(self, *argv: str) -> Terminal:
        """``argv`` inside, on a pty (as root), in a session of its own in there.

        The pty's session leader is nsenter, outside the container's pid namespace: a
        login shell could not hand the terminal back to it ("Cannot set tty process
        group") and would exit 2. setsid --ctty makes the session inside.
        """
        return Terminal(self.command("setsid", "--ctty", "--wait", *argv))

    # -- systemd ------------------------------------------------------------------------

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show -p ...` as a dict."""
        out = self.check("systemctl", "show", unit, *(f"--property={p}" for p in properties))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str, every_boot: bool = False) -> str:
        """This boot's journal (`journalctl -b`); with ``every_boot``, the earlier boots' too
        (the trees keep a persistent journal): their shutdowns."""
        boot = () if every_boot else ("-b",)
        return self.check("journalctl", *boot, "--no-pager", "-o", "short-monotonic", *args)

    def copy_source(self, inside: str = "/root/src", commit: str = "") -> None:
        """The working tree (as `make deb` copies it: also uncommitted edits) to ``inside``;
        with ``commit``, that commit's tree instead (git archive)."""
        dest = self.path(inside)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        excludes = [f"--exclude=./{name}" for name in TOP_EXCLUDES]
        excludes += [f"--exclude={pattern}" for pattern in ANY_EXCLUDES]
        argv = ["git", "archive", commit] if commit else ["tar", "-c", *excludes, "."]
        tar = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=tar.stdout,
                               capture_output=True, timeout=120, check=False)  # fmt: skip
        assert tar.stdout is not None
        tar.stdout.close()
        assert tar.wait(timeout=120) == 0
        assert untar.returncode == 0, untar.stderr
