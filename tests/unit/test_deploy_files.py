"""The shipped service files and install's bookkeeping of what it wrote (pure functions)."""

from __future__ import annotations

import re
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backuppc_agent import config as config_mod
from backuppc_agent.install import plan, targets, templates
from backuppc_agent.install.plan import Action
from tests.helpers import ROOT

OTHER = templates.Values(
    program="/opt/bpa/bin/backuppc-agent",
    config="/srv/bpa.toml",
    user="bkp",
    group="bkpgrp",
    home="/srv/home",
    socket="/srv/home/s/agent.sock",
    env_file="/srv/home/s/agent.env",
    writable_dirs="/srv/home/s /srv/state",
    socket_dir="/srv/home/s",
)


# -- shipped files -------------------------------------------------------------

ALL = (
    templates.SUPERVISOR,
    templates.SYSVINIT,
    templates.SYSVINIT_DEFAULT,
    templates.SYSTEMD_SERVICE,
    templates.SYSTEMD_AGENT,
    templates.SYSTEMD_DROPIN,
    templates.PROFILE,
)

#: Where OTHER's values must appear, and the shipped text each stands for. Spelled out
#: here, not taken from templates, so a substitution added, lost or misplaced fails.
BACK_TO_SHIPPED = {
    "/opt/bpa/bin/backuppc-agent": "/usr/bin/backuppc-agent",
    "/srv/bpa.toml": "/etc/backuppc-agent/config.toml",
    "/srv/home/s/agent.sock": "/var/lib/backuppc/.ssh/agent.socket",
    "/srv/home/s/agent.env": "/var/lib/backuppc/.ssh/agent.env",
    "/srv/home/s /srv/state": (
        "/var/lib/backuppc/.ssh /var/lib/backuppc/.local/state/backuppc-agent"
    ),
    "ReadWritePaths=/srv/home/s\n": "ReadWritePaths=/var/lib/backuppc/.ssh\n",
    'HOME="/srv/home"': 'HOME="/var/lib/backuppc"',
    "user=bkp": "user=backuppc",
    "User=bkp": "User=backuppc",
    "RUN_AS=bkp": "RUN_AS=backuppc",
    'USER="bkp"': 'USER="backuppc"',
    'LOGNAME="bkp"': 'LOGNAME="backuppc"',
    "Group=bkpgrp": "Group=backuppc",
}


def _back_to_shipped(text: str) -> str:
    pattern = re.compile("|".join(re.escape(k) for k in sorted(BACK_TO_SHIPPED, key=len)[::-1]))
    return pattern.sub(lambda match: BACK_TO_SHIPPED[match.group(0)], text)


@pytest.mark.parametrize("name", ALL)
def test_rendering_changes_only_the_installation_values(name: str) -> None:
    shipped = templates.read(name)
    assert "/srv/" not in shipped
    assert "bkp" not in shipped
    rendered = templates.render(name, OTHER)
    for other, default in BACK_TO_SHIPPED.items():  # every default replaced, nothing else
        assert rendered.count(other) == shipped.count(default), other
    assert "bkp" not in re.sub("|".join(map(re.escape, BACK_TO_SHIPPED)), "", rendered)
    assert _back_to_shipped(rendered) == shipped


@pytest.mark.parametrize("name", ALL)
def test_rendering_replaces_every_default_path(name: str) -> None:
    text = templates.render(name, OTHER)
    for literal in ("/usr/bin/backuppc-agent", "/etc/backuppc-agent/config.toml", "/var/lib/"):
        assert literal not in text, f"{name} still names {literal}"


def test_a_replaced_value_is_never_replaced_again() -> None:
    tricky = templates.Values(home="/var/lib/backuppc/x", socket="/var/lib/backuppc/.ssh/s")
    text = templates.render_text(
        'HOME="/var/lib/backuppc" /var/lib/backuppc/.ssh/agent.socket', tricky
    )
    assert text == 'HOME="/var/lib/backuppc/x" /var/lib/backuppc/.ssh/s'


def test_the_user_is_replaced_only_where_it_names_the_account() -> None:
    text = templates.render(templates.SUPERVISOR, OTHER)
    assert "\nuser=bkp\n" in text
    assert 'USER="bkp"' in text
    assert "[program:backuppc-agent]" in text
    unit = templates.render(templates.SYSTEMD_SERVICE, OTHER)
    assert "User=bkp\nGroup=bkpgrp\n" in unit
    assert "ReadWritePaths=/srv/home/s /srv/state\n" in unit


def _settings(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+)=(.*)$", text, re.M))


def test_supervisord_settings_are_the_deliberate_ones() -> None:
    program = _settings(templates.read(templates.SUPERVISOR))
    assert program["autorestart"] == "true"
    assert program["exitcodes"] == "0"
    assert program["stopsignal"] == "TERM"
    assert program["stopasgroup"] == program["killasgroup"] == "false"
    assert int(program["stopwaitsecs"]) > 5  # the supervisor stops within 5 s
    assert program["redirect_stderr"] == "true"
    assert program["command"].endswith(" run")


def test_the_systemd_supervisor_adopts_the_agent_of_its_own_unit_and_hides_no_peers() -> None:
    unit = templates.read(templates.SYSTEMD_SERVICE)
    settings = _settings(unit)
    # The agent lives in backuppc-ssh-agent.service: the whole supervisor unit may be
    # stopped (no KillMode=process leaving an agent behind in its cgroup).
    assert "KillMode" not in settings
    assert settings["ExecStart"].endswith(" run --adopt")
    assert settings["Wants"] == "backuppc-ssh-agent.service"
    # While it runs, an agent it ended (stop-agent on a restart) is started again.
    assert settings["Upholds"] == "backuppc-ssh-agent.service"
    assert settings["After"].startswith("backuppc-ssh-agent.service ")
    assert settings["ConditionPathExists"] == "/etc/backuppc-agent/config.toml"
    assert settings["Restart"] == "always"
    assert settings["Type"] == "exec"
    assert "\nPrivateUsers=" not in unit  # ssh-agent checks peer uids
    assert "\nMemoryDenyWriteExecute=" not in unit
    assert settings["ProtectSystem"] == "strict"


def test_the_agent_unit_runs_ssh_agent_stops_cleanly_and_is_only_pulled_in() -> None:
    unit = templates.read(templates.SYSTEMD_AGENT)
    settings = _settings(unit)
    assert settings["ExecStart"].endswith(" agent")
    assert settings["SuccessExitStatus"] == "2"  # ssh-agent's exit after TERM
    assert settings["Restart"] == "on-failure"
    assert settings["ConditionPathExists"] == "/etc/backuppc-agent/config.toml"
    assert settings["User"] == "backuppc"
    assert "[Install]" not in unit  # static: backuppc-agent.service wants it
    assert "\nPrivateUsers=" not in unit


def test_the_backuppc_dropin_exports_the_socket_and_orders_after_the_agent() -> None:
    settings = _settings(templates.read(templates.SYSTEMD_DROPIN))
    assert settings["Environment"] == "SSH_AUTH_SOCK=/var/lib/backuppc/.ssh/agent.socket"
    assert settings["Wants"] == settings["After"] == "backuppc-agent.service"


def test_the_repository_paths_are_the_package_files() -> None:
    pairs = {
        "supervisor.d/backuppc-agent.conf": templates.SUPERVISOR,
        "initscripts/backuppc-agent": templates.SYSVINIT,
        "initscripts/backuppc-agent.service": templates.SYSTEMD_SERVICE,
        "initscripts/backuppc-ssh-agent.service": templates.SYSTEMD_AGENT,
        "initscripts/backuppc.service.d/backuppc-agent.conf": templates.SYSTEMD_DROPIN,
        "initscripts/default-backuppc": templates.SYSVINIT_DEFAULT,
        "initscripts/profile-backuppc-agent.sh": templates.PROFILE,
    }
    package = ROOT / "backuppc_agent" / "install" / templates.FILES
    for shown, name in pairs.items():
        # a symlink, so the two can never drift apart; to the file install renders
        assert (ROOT / shown).is_symlink(), shown
        assert (ROOT / shown).resolve() == (package / name).resolve(), shown
        assert (ROOT / shown).read_text() == templates.read(name), shown
    shipped = {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()}
    # client/: what client-setup installs on the clients, never on this server
    for_clients = {name for name in shipped if name.startswith("client/")}
    assert for_clients == {"client/backuppc-agent-gate"}
    assert shipped - for_clients == set(ALL) == set(pairs.values())


# -- the config file install writes ------------------------------------------------


def test_the_default_config_file_is_valid_toml_and_names_every_key() -> None:
    text = targets.default_config()
    assert config_mod.from_mapping(tomllib.loads(text), "x").agent.unlock == "none"
    for section, keys in config_mod.defaults().items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"\n# {key} = " in text
    uncommented = tomllib.loads(
        "\n".join(
            line.removeprefix("# ")
            for line in text.splitlines()
            if not line.startswith("# ") or " = " in line
        )
    )
    assert config_mod.from_mapping(uncommented, "x") == config_mod.from_mapping({}, "x")


# -- managed files and blocks -----------------------------------------------------


@pytest.mark.parametrize(
    ("current", "recorded", "new", "action"),
    [
        (None, None, "a", Action.CREATE),
        ("a", plan.digest("a"), "a", Action.UNCHANGED),
        ("a", plan.digest("a"), "b", Action.UPDATE),
        ("edited", plan.digest("a"), "a", Action.KEPT),
        ("edited", plan.digest("a"), "b", Action.CONFLICT),
        ("theirs", None, "b", Action.CONFLICT),
        ("b", None, "b", Action.CONFLICT),
    ],
)
def test_decide(current: str | None, recorded: str | None, new: str, action: Action) -> None:
    assert plan.decide(current, recorded, new) is action


text_bodies = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(text_bodies)
def test_a_stamped_file_parses_back_to_its_body(body: str) -> None:
    parsed, recorded = plan.parse_file(plan.stamp_file(body))
    assert parsed == body
    assert recorded == plan.digest(body)


def test_the_marker_goes_after_a_shebang() -> None:
    stamped = plan.stamp_file("#!/bin/sh\necho hi\n")
    assert stamped.startswith("#!/bin/sh\n# Written by backuppc-agent install (sha256:")
    assert plan.parse_file(stamped)[0] == "#!/bin/sh\necho hi\n"


def test_a_second_plan_of_the_same_file_changes_nothing() -> None:
    first = plan.plan_text(None, "x = 1\n", block=False)
    assert first.action is Action.CREATE
    assert first.text is not None
    assert plan.plan_text(first.text, "x = 1\n", block=False) == plan.Decision(
        Action.UNCHANGED, None
    )


def test_an_edited_file_is_kept_then_conflicts_when_ours_changes() -> None:
    ours = plan.plan_text(None, "x = 1\n", block=False).text
    assert ours is not None
    edited = ours + "y = 2\n"
    assert plan.plan_text(edited, "x = 1\n", block=False).action is Action.KEPT
    assert plan.plan_text(edited, "x = 3\n", block=False).action is Action.CONFLICT
    assert plan.plan_text(ours, "x = 3\n", block=False).action is Action.UPDATE


@given(text_bodies.map(lambda text: text.replace(">>>", "").replace("<<<", "")), text_bodies)
def test_a_block_is_appended_once_and_the_rest_of_the_file_is_untouched(
    before: str, body: str
) -> None:
    first = plan.plan_text(before, body, block=True)
    assert first.text is not None
    assert first.text.startswith(before)
    again = plan.plan_text(first.text, body, block=True)
    assert again.action is Action.UNCHANGED
    updated = plan.plan_text(first.text, body + "more\n", block=True)
    assert updated.action is Action.UPDATE
    assert updated.text is not None
    assert updated.text.startswith(before)
    assert updated.text.count("# <<< backuppc-agent <<<") == 1


def test_an_edited_block_is_kept_and_text_after_it_survives_an_update() -> None:
    text = plan.plan_text("head\n", "one\n", block=True).text
    assert text is not None
    text += "tail\n"
    assert plan.plan_text(text, "one\n", block=True).action is Action.UNCHANGED
    changed = plan.plan_text(text, "two\n", block=True).text
    assert changed is not None
    assert changed.endswith("two\n# <<< backuppc-agent <<<\ntail\n")
    edited = text.replace("one\n", "one, edited\n")
    assert plan.plan_text(edited, "one\n", block=True).action is Action.KEPT
    assert plan.plan_text(edited, "two\n", block=True).action is Action.CONFLICT


def test_an_identical_unmarked_file_is_unchanged_not_a_conflict() -> None:
    # The Debian package's conffile (/etc/init.d/backuppc-agent) is exactly the shipped text.
    body = templates.read(templates.SYSVINIT)
    assert plan.plan_text(body, body, block=False) == plan.Decision(Action.UNCHANGED, None)
    assert plan.plan_text(body + "# local\n", body, block=False).action is Action.CONFLICT
