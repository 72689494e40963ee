"""``backuppc-agent install`` into a temp root: what it writes, idempotence, operator edits.

The root gets copies of this host's /etc/backuppc (or a minimal stand-in);
the real /etc is never touched. Perl itself checks the block in config.pl, and
systemd-analyze the units install renders.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from backuppc_agent.install import templates
from tests.helpers import CLI, Setup, running, ssh_add, wait_for

BACKUPPC_ETC = Path("/etc/backuppc")
MINIMAL_CONFIG = "$Conf{XferMethod} = 'rsync';\n$Conf{UserCmdCheckStatus} = 0;\n"


def _home() -> Path | None:
    try:
        return Path(pwd.getpwnam("backuppc").pw_dir)
    except KeyError:
        return None


HOME = _home()
pytestmark = pytest.mark.skipif(
    HOME is None, reason="needs the backuppc account (apt install backuppc)"
)


def under(root: Path, path: Path | str) -> Path:
    return root / Path(path).relative_to("/")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake / with BackupPC's config and the backuppc account's (empty) home."""
    tree = tmp_path / "root"
    etc = under(tree, BACKUPPC_ETC)
    etc.mkdir(parents=True)
    if (BACKUPPC_ETC / "config.pl").exists():
        for name in ("config.pl", "hosts"):
            shutil.copy2(BACKUPPC_ETC / name, etc / name)
    else:
        (etc / "config.pl").write_text(MINIMAL_CONFIG)
        (etc / "hosts").write_text("host dhcp user\n")
    assert HOME is not None
    under(tree, HOME).mkdir(parents=True)
    return tree


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CLI, "install", "--root", str(root), "--program", CLI, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under root: inode, mtime and content (to prove nothing was written)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            found[str(path)] = (info.st_ino, info.st_mtime_ns, path.read_bytes())
    return found


def perl_conf(config_pl: Path, key: str) -> str:
    code = "our %Conf; do $ARGV[0]; die $@ if $@; print $Conf{$ARGV[1]} // 'undef'"
    return subprocess.run(
        ["perl", "-e", code, str(config_pl), key],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def test_a_fresh_install_writes_everything_for_sysvinit(root: Path) -> None:
    result = install(root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert HOME is not None
    config = under(root, "/etc/backuppc-agent/config.toml")
    check = subprocess.run(
        [CLI, "--config", str(config), "config", "check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    script = under(root, "/etc/init.d/backuppc-agent")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert f"DAEMON={CLI}\n" in script.read_text()
    assert "SSH_AUTH_SOCK=" in under(root, "/etc/default/backuppc").read_text()
    config_pl = under(root, "/etc/backuppc/config.pl")
    assert perl_conf(config_pl, "UserCmdCheckStatus") == "1"
    assert " hook pre-dump " in perl_conf(config_pl, "DumpPreUserCmd")
    ssh_dir = under(root, HOME / ".ssh")
    assert stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700
    assert "IdentityAgent" in (ssh_dir / "backuppc-agent.conf").read_text()
    assert (
        "backuppc-agent: the BackupPC account's login" in under(root, HOME / ".profile").read_text()
    )
    assert under(root, HOME / ".local/state/backuppc-agent").is_dir()
    assert "update-rc.d backuppc-agent defaults" in result.stdout


@pytest.mark.root("chown needs root")
def test_files_in_the_home_belong_to_backuppc_and_shared_files_keep_their_owner(root: Path) -> None:
    config_pl = under(root, "/etc/backuppc/config.pl")
    os.chown(config_pl, pwd.getpwnam("backuppc").pw_uid, 0)
    config_pl.chmod(0o640)
    assert install(root).returncode == 0
    assert HOME is not None
    uid = pwd.getpwnam("backuppc").pw_uid
    for path in (".ssh", ".ssh/backuppc-agent.conf", ".profile", ".local", ".local/state"):
        assert under(root, HOME / path).stat().st_uid == uid, path
    assert (config_pl.stat().st_uid, config_pl.stat().st_gid) == (uid, 0)
    assert stat.S_IMODE(config_pl.stat().st_mode) == 0o640
    assert under(root, "/etc/init.d/backuppc-agent").stat().st_uid == 0


def test_a_second_install_changes_nothing(root: Path) -> None:
    assert install(root).returncode == 0
    before = snapshot(root)
    again = install(root)
    assert again.returncode == 0
    assert snapshot(root) == before
    lines = again.stdout.splitlines()
    assert lines
    assert all(line.startswith("unchanged ") for line in lines), again.stdout


def test_dry_run_shows_diffs_and_writes_nothing(root: Path) -> None:
    before = snapshot(root)
    result = install(root, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert snapshot(root) == before
    assert not under(root, "/etc/backuppc-agent").exists()
    assert "would create" in result.stdout
    assert f"+++ {under(root, '/etc/init.d/backuppc-agent')}" in result.stdout
    assert "+$Conf{UserCmdCheckStatus} = 1;" in result.stdout


def test_an_operators_edit_is_kept_and_a_new_version_goes_next_to_it(root: Path) -> None:
    assert install(root).returncode == 0
    config = under(root, "/etc/backuppc-agent/config.toml")
    edited = config.read_text().replace('# on_stop = "stop-agent"', 'on_stop = "keep-agent"')
    config.write_text(edited)
    script = under(root, "/etc/init.d/backuppc-agent")
    script.write_text(script.read_text().replace("STOP_SECONDS=10", "STOP_SECONDS=20"))
    kept = install(root)
    assert kept.returncode == 0
    assert f"kept       {config}" in kept.stdout
    assert config.read_text() == edited
    moved = install(root, "--program", "/usr/local/bin/backuppc-agent")
    assert moved.returncode == 1
    assert f"CONFLICT   {script}" in moved.stdout
    assert "STOP_SECONDS=20" in script.read_text()
    sidecar = Path(f"{script}.backuppc-agent-new")
    assert "DAEMON=/usr/local/bin/backuppc-agent" in sidecar.read_text()
    assert f"update     {under(root, '/etc/backuppc/config.pl')}" in moved.stdout
    before = snapshot(root)
    assert install(root, "--program", "/usr/local/bin/backuppc-agent").returncode == 1
    assert snapshot(root) == before


def test_an_existing_profile_gets_our_block_appended(root: Path) -> None:
    assert HOME is not None
    profile = under(root, HOME / ".profile")
    profile.write_text("umask 022\nexport EDITOR=vi")
    assert install(root).returncode == 0
    text = profile.read_text()
    assert text.startswith("umask 022\nexport EDITOR=vi\n")
    assert text.count("# >>> backuppc-agent") == 1


def test_supervisord_is_chosen_when_its_conf_d_exists(root: Path) -> None:
    under(root, "/etc/supervisor/conf.d").mkdir(parents=True)
    result = install(root)
    assert result.returncode == 0
    program = under(root, "/etc/supervisor/conf.d/backuppc-agent.conf").read_text()
    assert f"command={CLI} --config /etc/backuppc-agent/config.toml run" in program
    assert not under(root, "/etc/init.d/backuppc-agent").exists()
    assert "supervisorctl update" in result.stdout


def test_systemd_units_are_written_and_verify(root: Path, tmp_path: Path) -> None:
    under(root, "/run/systemd/system").mkdir(parents=True)
    assert install(root).returncode == 0
    assert HOME is not None
    unit_dir = under(root, "/etc/systemd/system")
    unit = (unit_dir / "backuppc-agent.service").read_text()
    assert f"ReadWritePaths={HOME}/.ssh {HOME}/.local/state/backuppc-agent\n" in unit
    agent_unit = (unit_dir / "backuppc-ssh-agent.service").read_text()
    assert f"ReadWritePaths={HOME}/.ssh\n" in agent_unit
    dropin = unit_dir / "backuppc.service.d" / "backuppc-agent.conf"
    assert f"Environment=SSH_AUTH_SOCK={HOME}/.ssh/agent.socket" in dropin.read_text()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # BackupPC's own unit: /lib on Debian 12, /usr/lib on Debian 13.
    stocks = [
        Path(d) / "backuppc.service" for d in ("/usr/lib/systemd/system", "/lib/systemd/system")
    ]
    stock = next((path for path in stocks if path.exists()), None)
    if stock is not None:
        shutil.copy(stock, unit_dir / "backuppc.service")
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}
    names = ["backuppc-agent.service", "backuppc-ssh-agent.service"]
    names += ["backuppc.service"] if stock is not None else []
    # --man=no: backuppc-agent(1) comes with the package build, not with install.
    verify = subprocess.run(
        [analyze, "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout + verify.stderr == ""


def test_without_backuppc_it_writes_the_rest_and_says_what_is_missing(root: Path) -> None:
    under(root, "/etc/backuppc/config.pl").unlink()
    result = install(root)
    assert result.returncode == 1
    assert "config.pl not found: is BackupPC installed?" in result.stderr
    assert under(root, "/etc/backuppc-agent/config.toml").exists()
    assert not under(root, "/etc/backuppc/config.pl").exists()


# -- the login snippet it installs --------------------------------------------------


def login(setup: Setup, interactive: bool) -> subprocess.CompletedProcess[str]:
    snippet = setup.root / "profile.sh"
    values = templates.Values(
        program=CLI,
        config=str(setup.config),
        socket=str(setup.socket),
        env_file=str(setup.env_file),
    )
    snippet.write_text(templates.render(templates.PROFILE, values))
    script = f'. {snippet}; echo "sock=$SSH_AUTH_SOCK"'
    argv = ["sh", "-i", "-c", script] if interactive else ["sh", "-c", script]
    env = {"PATH": os.environ["PATH"], "HOME": str(setup.root)}
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_the_login_snippet_exports_the_socket_quietly_and_says_when_keys_are_missing(
    setup: Setup, keys: dict[str, Path]
) -> None:
    down = login(setup, interactive=True)
    assert "backups are held: start the backuppc-agent service" in down.stdout
    with running(setup):
        quiet = login(setup, interactive=False)
        assert quiet.stdout == f"sock={setup.socket}\n"
        waiting = login(setup, interactive=True)
        assert waiting.stdout == (
            "backuppc-agent: backups are held: no keys loaded (or the agent is locked); "
            f"run ssh-add\nsock={setup.socket}\n"
        )
        assert ssh_add(setup.socket, "-c", str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: "confirmation required" in (setup.state() or {}).get("reason", ""))
        confirm = login(setup, interactive=True).stdout
        assert confirm.startswith("backuppc-agent: backups are held: key SHA256:")
        assert "confirmation required (added with ssh-add -c" in confirm
        assert ssh_add(setup.socket, "-D").returncode == 0
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"), timeout=5)
        assert login(setup, interactive=True).stdout == f"sock={setup.socket}\n"
