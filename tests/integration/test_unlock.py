"""Unattended unlock against real ssh-agent, ssh-add, ssh-keygen and a file keyring.

The keyring is keyrings.alt's PlaintextKeyring in a temp XDG_DATA_HOME, picked
with PYTHON_KEYRING_BACKEND: a real backend, real files. A known passphrase is
planted and every place it must never reach is searched for it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from backuppc_agent.agent import passphrases
from backuppc_agent.doctor import Verdict, checks_agent
from tests.helpers import (
    KEYRING_BACKEND,
    PASSPHRASE,
    ROOT,
    Setup,
    Supervisor,
    agent_holding,
    cli,
    key_fingerprint,
    kill_agents_on,
    make_key,
    make_setup,
    plant_passphrase,
    private_dir,
    proc_texts,
    recording_wrapper,
    running,
    ssh_add,
    wait_for,
)


def passphrase(
    *args: str, stdin: str = "", config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "backuppc_agent"]
    argv += (["--config", str(config)] if config else []) + ["passphrase", *args]
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def unlocking_setup(tmp_path: Path, *keys: Path) -> Setup:
    return make_setup(tmp_path / "inst", agent={"unlock": "keyring", "keys": list(keys)})


# -- passphrase set / check / delete ------------------------------------------------


def test_set_stores_only_a_passphrase_that_opens_the_key(
    keyring_env: Path, keys: dict[str, Path]
) -> None:
    wrong = passphrase("set", str(keys["a"]), stdin="not it\n")
    assert wrong.returncode == exitcodes.FAILED
    assert "does not open" in wrong.stderr
    assert passphrase("check", str(keys["a"])).returncode == 8
    stored = passphrase("set", str(keys["a"]), stdin=PASSPHRASE + "\n")
    assert stored.returncode == 0, stored.stderr
    assert KEYRING_BACKEND in stored.stdout
    checked = passphrase("check", str(keys["a"]))
    assert checked.returncode == 0
    assert PASSPHRASE not in stored.stdout + stored.stderr + checked.stdout + checked.stderr


def test_check_reports_a_wrong_stored_passphrase_with_exit_8(
    keyring_env: Path, keys: dict[str, Path]
) -> None:
    plant_passphrase(keys["a"], "stale passphrase")
    result = passphrase("check", str(keys["a"]))
    assert result.returncode == 8
    assert "does not open" in result.stderr


def test_delete_removes_the_entry_and_says_when_there_is_none(
    keyring_env: Path, keys: dict[str, Path]
) -> None:
    plant_passphrase(keys["a"], PASSPHRASE)
    assert passphrase("delete", str(keys["a"])).returncode == 0
    again = passphrase("delete", str(keys["a"]))
    assert again.returncode == exitcodes.FAILED
    assert "nothing deleted" in again.stderr


def test_a_key_without_passphrase_or_a_missing_file_is_refused(
    keyring_env: Path, tmp_path: Path
) -> None:
    bare = make_key(private_dir(tmp_path / "k"), "bare", passphrase="")
    result = passphrase("set", str(bare), stdin="anything\n")
    assert result.returncode == exitcodes.FAILED
    assert "has no passphrase" in result.stderr
    missing = passphrase("set", str(tmp_path / "nope"), stdin="x\n")
    assert missing.returncode == exitcodes.FAILED
    assert "no such key file" in missing.stderr
    assert "Traceback" not in result.stderr + missing.stderr


def test_doctor_names_a_key_once_whether_its_passphrase_opens_it_or_its_file_is_gone(
    keyring_env: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    plant_passphrase(keys["a"], PASSPHRASE)
    plant_passphrase(gone, PASSPHRASE)
    found = [checks_agent._key_passphrase(key) for key in (keys["a"], gone, keys["b"])]
    assert [(f.verdict, f.message) for f in found] == [
        (Verdict.OK, f"{keys['a']}: the stored passphrase opens it"),
        (Verdict.FAIL, f"{gone}: no such key file"),
        (Verdict.FAIL, f"{keys['b']}: no stored passphrase that opens it"),
    ]


def test_set_runs_ssh_keygen_once_before_asking_and_once_after_and_check_once(
    keyring_env: Path, keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = recording_wrapper(tmp_path, "ssh-keygen")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")

    def runs() -> int:
        return record.read_text().splitlines().count(f"-y -f {keys['a']}")

    assert passphrase("set", str(keys["a"]), stdin=PASSPHRASE + "\n").returncode == 0
    assert runs() == 2  # has it a passphrase at all; does the one typed open it
    assert passphrase("check", str(keys["a"])).returncode == 0
    assert runs() == 3


def test_set_says_when_the_config_would_not_use_the_passphrase(
    keyring_env: Path, keys: dict[str, Path], setup: Setup
) -> None:
    stored = passphrase("set", str(keys["a"]), stdin=PASSPHRASE + "\n", config=setup.config)
    assert stored.returncode == 0
    assert 'unlock = "keyring"' in stored.stdout
    assert "[agent] keys" in stored.stdout


#: deployment.md's lines that choose the keyring backend for the backuppc account.
_DOCUMENTED_KEYRINGRC = re.compile(
    r"^mkdir -p ~/\.config/python_keyring\n.*?keyringrc\.cfg\n", re.M | re.S
)

#: The backend keyring's config file names (None: no config file found).
_CONFIGURED_BACKEND = (
    "import keyring.core; b = keyring.core.load_config(); "
    "print(b and f'{type(b).__module__}.{type(b).__qualname__}')"
)


def test_the_keyringrc_that_deployment_md_writes_picks_the_backend(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    """keyring reads keyringrc.cfg from its config dir: 25 ignores one in the data dir, 23.9
    refuses to run with one only there.

    The documented setup, run as written in a bare HOME (no XDG variables, no
    PYTHON_KEYRING_BACKEND), must choose the backend for whichever keyring is installed.
    """
    docs = (ROOT / "docs" / "deployment.md").read_text()
    found = _DOCUMENTED_KEYRINGRC.search(docs)
    assert found, "deployment.md no longer shows where keyringrc.cfg goes"
    home = private_dir(tmp_path / "home")
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    subprocess.run(["/bin/sh", "-eu", "-c", found.group(0)], env=env, check=True, timeout=30)
    # Without a config keyring falls back to the best backend it finds, which may be
    # this same one: ask keyring which backend its config file names.
    configured = subprocess.run(
        [sys.executable, "-c", _CONFIGURED_BACKEND],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert configured.stdout.strip() == KEYRING_BACKEND, configured.stdout + configured.stderr
    argv = [sys.executable, "-m", "backuppc_agent", "passphrase"]
    stored = subprocess.run(
        [*argv, "set", str(keys["a"])],
        input=PASSPHRASE + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stored.returncode == 0, stored.stdout + stored.stderr
    assert KEYRING_BACKEND in stored.stdout
    checked = subprocess.run(
        [*argv, "check", str(keys["a"])], env=env, capture_output=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stderr


# -- the supervisor unlocks ---------------------------------------------------------


def test_the_supervisor_loads_every_configured_key_at_start(
    keyring_env: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    plant_passphrase(keys["a"], PASSPHRASE)
    plant_passphrase(keys["b"], PASSPHRASE)
    inst = unlocking_setup(tmp_path, keys["a"], keys["b"])
    with running(inst, wait_state="ready") as sup:
        wait_for(lambda: (inst.state() or {}).get("identities") == 2)
        state = inst.state()
        assert state is not None
        assert sorted(state["fingerprints"]) == sorted(
            [key_fingerprint(keys["a"]), key_fingerprint(keys["b"])]
        )
        assert "unattended unlock: loaded" in sup.logtext()


def test_a_wrong_passphrase_leaves_it_waiting_and_ssh_add_still_works(
    keyring_env: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    plant_passphrase(keys["a"], "stale passphrase")
    inst = unlocking_setup(tmp_path, keys["a"])
    with running(inst) as sup:
        wait_for(lambda: "unattended unlock of" in sup.logtext(), timeout=15)
        assert f"the stored passphrase does not open {keys['a']}" in sup.logtext()
        assert "ERROR" in sup.logtext()
        assert inst.published("waiting")
        assert ssh_add(inst.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: inst.published("ready"), timeout=5)


def test_a_missing_passphrase_says_how_to_store_it(
    keyring_env: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    inst = unlocking_setup(tmp_path, keys["a"])
    with running(inst) as sup:
        wait_for(lambda: "unattended unlock of" in sup.logtext(), timeout=15)
        assert f"backuppc-agent passphrase set {keys['a']}" in sup.logtext()
        assert inst.published("waiting")


def test_keys_come_back_after_an_agent_restart_and_are_not_reloaded_on_adoption(
    keyring_env: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    plant_passphrase(keys["a"], PASSPHRASE)
    inst = unlocking_setup(tmp_path, keys["a"])
    first = Supervisor(inst).start(wait_state="ready")
    try:
        old_agent = (inst.state() or {})["agent_pid"]
        os.kill(old_agent, signal.SIGKILL)
        wait_for(lambda: (inst.state() or {}).get("agent_restarts") == 1, timeout=10)
        wait_for(lambda: inst.published("ready"), timeout=10)
        assert first.logtext().count("unattended unlock: loaded") == 2
        first.signal(signal.SIGKILL)
        first.wait()
        second = Supervisor(inst).start(wait_state="ready")
        second.stop()
        assert "adopted running ssh-agent" in second.logtext()
        assert "unattended unlock: loaded" not in second.logtext()
    finally:
        first.stop()
        kill_agents_on(inst.socket)


# -- the passphrase goes nowhere else ---------------------------------------------


def test_the_passphrase_never_reaches_argv_environment_logs_or_the_state_dir(
    keyring_env: Path, keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = recording_wrapper(tmp_path, "ssh-add")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    plant_passphrase(keys["a"], PASSPHRASE)
    inst = unlocking_setup(tmp_path, keys["a"])
    with running(inst, wait_state="ready") as sup:
        state = inst.state()
        assert state is not None
        seen = [sup.logtext().encode(), record.read_bytes(), inst.env_file.read_bytes()]
        seen += [path.read_bytes() for path in inst.state_dir.rglob("*") if path.is_file()]
        seen += [proc_texts(sup.pid), proc_texts(state["agent_pid"])]
        seen += [cli("status", "--json", config=inst.config).stdout.encode()]
    assert str(keys["a"]).encode() in record.read_bytes()
    assert b"SSH_ASKPASS_REQUIRE=force" in record.read_bytes()
    for text in seen:
        assert PASSPHRASE.encode() not in text


def test_ssh_keygen_and_ssh_add_get_the_passphrase_only_on_stdin(
    keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `passphrase set/check` and the unlock run: neither argv nor environment holds it."""
    records = [recording_wrapper(tmp_path, "ssh-keygen"), recording_wrapper(tmp_path, "ssh-add")]
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    with agent_holding() as sock:
        assert passphrases.opens(keys["a"], PASSPHRASE)
        assert not passphrases.opens(keys["a"], "wrong")
        passphrases.add(sock, keys["a"], PASSPHRASE)
        assert ssh_add(sock, "-l").returncode == 0
    seen = [record.read_text() for record in records]
    for text in seen:  # the wrappers ran, with the key and through askpass
        assert str(keys["a"]) in text
        assert "SSH_ASKPASS_REQUIRE=force" in text
        assert PASSPHRASE not in text
