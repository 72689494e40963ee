"""Fuzz name validation and the transfer wrapper's ssh argv: nothing unsafe gets through.

A name that passes is safe in a path and an argv; a refusal is one line; the
wrapper's ssh command always ends its options with "--" before a valid host,
and never carries an option that runs a local command.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backuppc_agent import names
from backuppc_agent.config import from_mapping
from backuppc_agent.errors import BadNameError, UsageError
from backuppc_agent.ssh import limits, sshconfig, wrap

CONTROL_DIR = Path("/run/bpa/mux")
CONFIG = from_mapping({"mux": {"control_dir": str(CONTROL_DIR)}}, "fuzz", Path("/home/bpa"))

hostile_words = st.sampled_from(
    ["-oProxyCommand=touch /tmp/x", "-o", "ProxyCommand sh", "-oLocalCommand=x", "-F", "-l",
     "root", "-p", "22", "--", "-", "..", ".", "%h", "a/b", "web01", "127.0.0.9", "root@host",
     "-qoproxycommand=x", 'proxycommand="x"', "-oPermitLocalCommand=yes", "-oPort=22", "rsync",
     "--server", "\x1b[2J", "host\n", "\udcff"]
)  # fmt: skip
any_text = st.text(alphabet=st.characters(exclude_characters="\0"), max_size=40)
words = st.one_of(hostile_words, any_text)


def _why(value: str) -> str | None:
    try:
        names.check(value, "client")
    except BadNameError as err:
        return str(err)
    return None


@given(words)
@example("\u2028")
@example("0" * 18 + "\x1b" + "\x1f" * 8 + "\U0001239a\U00018cd6\U0001b2fc" + "\U0002ebe1" * 6)
@example("a" * 253)
@example("a" * 254)
def test_any_name_is_safe_or_refused_in_one_line(value: str) -> None:
    refusal = _why(value)
    if refusal is not None:
        assert "\n" not in refusal
        assert refusal.isprintable()
        # the value is shown cut to 60 characters, each escaped to at most 10 ("\\U0002ebe1")
        assert len(refusal) < 60 * 10 + 100
        return
    assert 0 < len(value) <= names.MAX_NAME_CHARS
    assert not value.startswith("-")
    assert value not in (".", "..")
    assert not set(value) & set("/\\%")
    assert all(char.isprintable() and not char.isspace() for char in value)


@given(words)
def test_a_valid_client_gives_a_control_path_inside_the_dir_that_fits(client: str) -> None:
    try:
        path = sshconfig.control_path(CONTROL_DIR, client)
    except BadNameError:
        return
    assert path.parent == CONTROL_DIR
    assert len(str(path)) <= limits.CONTROL_PATH_MAX_CHARS


def _session(args: list[str]) -> tuple[str, ...] | str:
    try:
        return wrap.make_session_command(CONFIG, "web01", args, "0.1")
    except (BadNameError, UsageError) as err:
        return str(err)


@given(st.lists(words, max_size=8))
@example(["-l", "root", "-oProxyCommand=touch /tmp/x", "rsync", "--server"])
@example(["-o", "ProxyCommand=x", "host"])
@example(["-o", ' "LocalCommand" x', "host"])
@example(["-qoproxycommand=x", "host"])
@example(["-l", "root", "127.0.0.9", "-oProxyCommand=x"])  # after the host: the command
@example(["-o", "--", "root"])  # make fuzz: an option's value may be "--" itself
def test_the_wrapper_never_hands_ssh_a_bad_host_or_a_command_option(args: list[str]) -> None:
    argv = _session(args)
    if isinstance(argv, str):
        assert "\n" not in argv
        return
    options, host, _ = wrap.split_ssh_args(args)
    assert host is not None
    assert names.problem(host) is None
    ours = len(sshconfig.option_args(sshconfig.options(CONFIG, str(CONTROL_DIR / "web01"))))
    # ssh, our options, the caller's, "--", the host (an option's value may be "--" too)
    assert list(argv[1 + ours : 1 + ours + len(options) + 2]) == [*options, "--", host]
    for letter, value in wrap.option_values(options):
        words_ = value.replace("=", " ").replace('"', " ").split()
        assert not (letter == "o" and words_ and words_[0].lower() in wrap.COMMAND_KEYWORDS)
    # our own options come first: ssh keeps the first value it reads for each keyword
    first = ["-o", f"IdentityAgent={CONFIG.agent.socket}", "-o", "BatchMode=yes"]
    assert list(argv[1:5]) == first


@pytest.mark.parametrize(
    "args",
    [
        ["-l", "root", "-oProxyCommand=touch /tmp/x", "rsync", "--server"],
        ["-o", "ProxyCommand nc %h %p", "host", "true"],
        ["-o", "KnownHostsCommand=/bin/x", "host"],
        ["-xqoLocalCommand=x", "host"],
        ["-o", '"PermitLocalCommand"=yes', "host"],
    ],
)
def test_options_that_run_a_command_are_refused_from_the_command_line(args: list[str]) -> None:
    refusal = _session(args)
    assert isinstance(refusal, str)
    assert refusal.startswith("refusing ssh option ")


def test_ordinary_rsync_options_pass() -> None:
    argv = _session(["-l", "root", "-p", "2222", "-oPort=2222", "-x", "10.0.0.9", "rsync", "-x"])
    assert not isinstance(argv, str)
    assert argv[-5:] == ("10.0.0.9", "env", "BACKUPPC_AGENT_JOB=0.1", "rsync", "-x")
