"""install's plan and report against a temp root: wording, packaged units, access refusals."""

from __future__ import annotations

import pwd
from collections.abc import Sequence
from pathlib import Path

import pytest

from backuppc_agent import config as config_mod
from backuppc_agent import doctor
from backuppc_agent.backuppc import confdir
from backuppc_agent.doctor import checks_backuppc
from backuppc_agent.install import access, plan, targets, templates
from backuppc_agent.install.context import Context
from backuppc_agent.install.plan import Action

USER = pwd.getpwuid(0)


def context(root: Path, text: str = "") -> Context:
    config = config_mod.from_mapping({}, "/etc/backuppc-agent/config.toml", Path("/home/b"))
    if text:
        path = root / "config.toml"
        path.write_text(text)
        config = config_mod.load(str(path), Path("/home/b"))
    return Context(config, Path("/etc/backuppc-agent/config.toml"), USER, root)


def block_target(path: str) -> targets.Target:
    return targets.Target(Path(path), "$Conf{X} = 1;\n", True, 0o644, False, "BackupPC config")


def test_a_block_added_to_an_existing_file_is_reported_as_appended(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.pl").write_text("$Conf{Y} = 2;\n")
    step = plan.plan_target(context(tmp_path), block_target("/etc/config.pl"))
    assert plan.describe(step, dry_run=False).startswith("append to ")
    assert plan.describe(step, dry_run=True).startswith("would append to ")


def test_a_block_in_a_missing_file_is_reported_as_created(tmp_path: Path) -> None:
    step = plan.plan_target(context(tmp_path), block_target("/etc/none.pl"))
    assert plan.describe(step, dry_run=False).startswith("create ")


def test_a_unit_the_package_ships_unchanged_is_not_written_to_etc(tmp_path: Path) -> None:
    unit = templates.read(templates.SYSTEMD_SERVICE)
    packaged = tmp_path / "lib/systemd/system/backuppc-agent.service"
    packaged.parent.mkdir(parents=True)
    packaged.write_text(unit)
    wanted = targets.init_targets("systemd", templates.SHIPPED)
    step = plan.plan_target(context(tmp_path), wanted[0])
    assert (step.action, step.writes, step.disk_path) == (Action.UNCHANGED, False, packaged)
    other = targets.init_targets("systemd", templates.Values(program="/opt/x/backuppc-agent"))
    assert plan.plan_target(context(tmp_path), other[0]).action is Action.CREATE


def test_with_the_package_installed_supervisord_is_not_picked(tmp_path: Path) -> None:
    (tmp_path / "etc/supervisor/conf.d").mkdir(parents=True)
    assert targets.detect_init(context(tmp_path)) == "supervisord"
    (tmp_path / "var/lib/dpkg/info").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/info/backuppc-agent.list").write_text("/.\n")
    assert targets.detect_init(context(tmp_path)) in ("systemd", "sysvinit")


class Runner:
    """A fake runuser: fails the argv words listed in ``refused``."""

    def __init__(self, *refused: str) -> None:
        self.refused = refused
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, user: pwd.struct_passwd, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(tuple(argv))
        if any(word in self.refused for word in argv):
            return 126, "runuser: failed to execute x: Permission denied"
        return 0, ""


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    path.write_text("key\n")
    return path


def test_nothing_is_wrong_when_the_user_can_run_and_read_everything(
    tmp_path: Path, key: Path
) -> None:
    ctx = context(tmp_path, f'[agent]\nkeys = ["{key}"]\n')
    runner = Runner()
    assert access.problems(USER, "/usr/bin/x", ctx.root / "config.toml", ctx.config, runner) == []
    assert ("/usr/bin/x", "--version") in runner.calls
    assert ("test", "-r", str(key)) in runner.calls


def test_an_unrunnable_program_and_an_unreadable_key_are_each_one_line_with_a_fix(
    tmp_path: Path, key: Path
) -> None:
    ctx = context(tmp_path, f'[agent]\nkeys = ["{key}"]\n')
    runner = Runner("/root/v/bin/backuppc-agent", str(key))
    found = access.problems(USER, "/root/v/bin/backuppc-agent", ctx.root, ctx.config, runner)
    lines = [problem.line() for problem in found]
    assert len(lines) == 2
    assert "cannot run /root/v/bin/backuppc-agent (runuser: " in lines[0]
    assert "/usr/bin/python3 -m venv /opt/backuppc-agent" in lines[0]
    assert f"cannot read key file {key}: chown root {key} && chmod 0600 {key}" in lines[1]


def test_files_that_do_not_exist_yet_are_not_checked(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    runner = Runner("test")
    missing = tmp_path / "not-yet.toml"
    assert access.problems(USER, None, missing, ctx.config, runner) == []
    assert runner.calls == []


def test_doctor_fails_a_hook_program_the_backuppc_user_cannot_run(tmp_path: Path) -> None:
    etc = tmp_path / "etc-backuppc"
    etc.mkdir()
    hook = "'/root/v/bin/backuppc-agent --config /c.toml hook pre-dump --client $client'"
    (etc / "config.pl").write_text(f"$Conf{{DumpPreUserCmd}} = {hook};\n")
    env = doctor.Env(
        ctx=context(tmp_path),
        backuppc=confdir.ConfDir(etc, tmp_path),
        procfs=tmp_path,
        sysfs=tmp_path,
        running_uid=0,
        runner=Runner("/root/v/bin/backuppc-agent"),
    )
    [finding] = checks_backuppc.check_access(env)
    assert finding.verdict is doctor.Verdict.FAIL
    assert "cannot run /root/v/bin/backuppc-agent" in finding.line()
    assert "fix: install the Debian package" in finding.line()
    env = doctor.Env(env.ctx, env.backuppc, tmp_path, tmp_path, running_uid=0, runner=Runner())
    [finding] = checks_backuppc.check_access(env)
    assert finding.verdict is doctor.Verdict.OK
