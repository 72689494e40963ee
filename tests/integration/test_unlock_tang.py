"""Unattended unlock bound to the network: real clevis, real Tang on 127.0.0.71-72.

The passphrase is stored with ``passphrase set --tang`` (a subprocess, as an
operator runs it), the supervisor decrypts it at start, and every place the
plaintext must never reach is searched for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from backuppc_agent.agent import tang as tang_mod
from tests.helpers import (
    PASSPHRASE,
    Setup,
    cli,
    kill_agents_on,
    make_setup,
    private_dir,
    proc_texts,
    recording_wrapper,
    running,
    ssh_add,
    wait_for,
)
from tests.scrape import scrape
from tests.tang import Tang, needs_tang, running_tangs

pytestmark = needs_tang


def passphrase(
    *args: str, config: Path, stdin: str = PASSPHRASE + "\n"
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "backuppc_agent", "--config", str(config), "passphrase", *args]
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def tang_setup(tmp_path: Path, key: Path) -> Setup:
    return make_setup(tmp_path / "inst", agent={"unlock": "tang", "keys": [key]})


def store(
    inst: Setup, key: Path, tangs: list[Tang], *extra: str
) -> subprocess.CompletedProcess[str]:
    urls = [arg for server in tangs for arg in ("--tang", server.url)]
    result = passphrase("set", str(key), *urls, *extra, "--yes", config=inst.config)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def stored_on(tmp_path: Path, key: Path, tangs: list[Tang]) -> Setup:
    """An installation whose ``key`` has its passphrase stored on ``tangs``."""
    inst = tang_setup(tmp_path, key)
    store(inst, key, tangs)
    return inst


def reason(inst: Setup) -> str:
    return str((inst.state() or {}).get("reason", ""))


# -- passphrase set --tang ---------------------------------------------------------------


def test_set_pins_the_advertised_thumbprint_and_stores_a_private_jwe(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path) as [server]:
        inst = tang_setup(tmp_path, keys["a"])
        result = store(inst, keys["a"], [server])
        advertised = tang_mod.advertised_thumbprints(server.url)
        assert f"pinned {advertised[0]} for {server.url}" in result.stdout
        jwe = tang_mod.jwe_path(inst.state_dir, keys["a"])
        assert jwe.stat().st_mode & 0o777 == 0o600
        assert PASSPHRASE.encode() not in jwe.read_bytes()
        assert tang_mod.jwe_urls(jwe.read_bytes()) == [server.url]
        assert tang_mod.jwe_thumbprints(jwe.read_bytes()) == {server.url: advertised}
        checked = passphrase("check", str(keys["a"]), config=inst.config)
        assert checked.returncode == 0, checked.stderr
    assert PASSPHRASE not in result.stdout + result.stderr


def test_set_refuses_a_wrong_passphrase_bad_urls_and_an_unconfirmed_thumbprint(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path) as [server]:
        inst = tang_setup(tmp_path, keys["a"])
        wrong = passphrase(
            "set",
            str(keys["a"]),
            "--tang",
            server.url,
            "--yes",
            config=inst.config,
            stdin="not it\n",
        )
        assert wrong.returncode == exitcodes.FAILED
        assert "does not open" in wrong.stderr
        bad = passphrase("set", str(keys["a"]), "--tang", "ftp://x", config=inst.config)
        assert bad.returncode == exitcodes.USAGE
        assert "http://" in bad.stderr
        over = passphrase(
            "set", str(keys["a"]), "--tang", server.url, "--threshold", "2", config=inst.config
        )
        assert over.returncode == exitcodes.USAGE
        unconfirmed = passphrase("set", str(keys["a"]), "--tang", server.url, config=inst.config)
        assert unconfirmed.returncode == exitcodes.USAGE
        assert "--yes" in unconfirmed.stderr
        for result in (wrong, bad, over, unconfirmed):
            assert len(result.stderr.strip().splitlines()) == 1
            assert "Traceback" not in result.stderr
        assert not tang_mod.jwe_path(inst.state_dir, keys["a"]).exists()


def test_set_fails_cleanly_when_the_tang_does_not_answer(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    inst = tang_setup(tmp_path, keys["a"])
    result = passphrase(
        "set", str(keys["a"]), "--tang", "http://127.0.0.71:18070", "--yes", config=inst.config
    )
    assert result.returncode == exitcodes.FAILED
    assert "no Tang answers: http://127.0.0.71:18070" in result.stderr
    assert not tang_mod.jwe_path(inst.state_dir, keys["a"]).exists()


# -- the supervisor unlocks --------------------------------------------------------------


def test_boot_to_ready_with_one_tang(keys: dict[str, Path], tmp_path: Path) -> None:
    with running_tangs(tmp_path) as [server]:
        inst = stored_on(tmp_path, keys["a"], [server])
        with running(inst, wait_state="ready") as sup:
            assert "unattended unlock: loaded" in sup.logtext()


def test_two_tangs_threshold_one_unlock_with_one_down(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path, count=2) as [first, second]:
        inst = tang_setup(tmp_path, keys["a"])
        result = store(inst, keys["a"], [first, second], "--threshold", "1")
        assert "(1 of 2)" in result.stdout
        first.stop()
        with running(inst, wait_state="ready"):
            pass


def test_every_tang_down_waits_with_the_reason_then_ready_when_one_returns(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path, count=2) as [first, second]:
        inst = stored_on(tmp_path, keys["a"], [first, second])
        first.stop()
        second.stop()
        with running(inst) as sup:
            wait_for(lambda: "no Tang answers" in reason(inst), timeout=15)
            assert first.url in reason(inst)
            assert second.url in reason(inst)
            assert inst.published("waiting")
            assert (inst.state() or {})["unlock_waiting"] == "tang-unreachable"
            assert "ssh-add by hand works" in sup.logtext()
            second.start()
            wait_for(lambda: inst.published("ready"), timeout=8)
            assert (inst.state() or {})["unlock_waiting"] == ""


def test_ssh_add_by_hand_still_works_while_no_tang_answers(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path) as [server]:
        inst = stored_on(tmp_path, keys["a"], [server])
        server.stop()
        with running(inst):
            wait_for(lambda: "no Tang answers" in reason(inst), timeout=15)
            assert ssh_add(inst.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
            wait_for(lambda: inst.published("ready"), timeout=5)


def test_rotated_keys_still_unlock_until_the_old_ones_go_then_rekey_fixes_it(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path) as [server]:
        inst = stored_on(tmp_path, keys["a"], [server])
        server.rotate()
        assert passphrase("check", str(keys["a"]), config=inst.config).returncode == 0
        with running(inst, wait_state="ready"):
            pass
        kill_agents_on(inst.socket)
        server.forget_old()
        with running(inst) as sup:
            wait_for(lambda: "cannot open the stored passphrase" in reason(inst), timeout=15)
            assert f"passphrase rekey {keys['a']}" in reason(inst)
            assert (inst.state() or {})["unlock_waiting"] == "tang-refused"
            assert "ERROR" in sup.logtext()
        kill_agents_on(inst.socket)
        fixed = passphrase("rekey", str(keys["a"]), "--yes", config=inst.config)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "give it again" in fixed.stdout
        advertised = tang_mod.advertised_thumbprints(server.url)
        jwe = tang_mod.jwe_path(inst.state_dir, keys["a"]).read_bytes()
        assert tang_mod.jwe_thumbprints(jwe) == {server.url: advertised}
        with running(inst, wait_state="ready"):
            pass


def test_rekey_with_the_old_key_still_kept_needs_no_passphrase(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path) as [server]:
        inst = stored_on(tmp_path, keys["a"], [server])
        server.rotate()
        fixed = passphrase("rekey", str(keys["a"]), "--yes", config=inst.config, stdin="")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        server.forget_old()
        assert passphrase("check", str(keys["a"]), config=inst.config).returncode == 0


def test_a_copy_of_the_state_dir_without_tang_unlocks_nothing(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path) as [server]:
        inst = stored_on(tmp_path, keys["a"], [server])
    stolen = make_setup(tmp_path / "stolen", agent={"unlock": "tang", "keys": [keys["a"]]})
    shutil.copytree(inst.state_dir, stolen.state_dir)
    stolen.state_dir.chmod(0o700)
    with running(stolen) as sup:
        wait_for(lambda: "no Tang answers" in reason(stolen), timeout=15)
        assert stolen.published("waiting")
        assert (stolen.state() or {})["identities"] == 0
        assert "unattended unlock: loaded" not in sup.logtext()
    checked = passphrase("check", str(keys["a"]), config=stolen.config)
    assert checked.returncode == exitcodes.FAILED


# -- the plaintext goes nowhere ------------------------------------------------------------


def test_the_plaintext_is_in_no_file_log_argv_environment_or_metric(
    keys: dict[str, Path], tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [recording_wrapper(tmp_path, "clevis"), recording_wrapper(tmp_path, "ssh-add")]
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    with running_tangs(tmp_path) as [server]:
        inst = make_setup(
            tmp_path / "inst",
            agent={"unlock": "tang", "keys": [keys["a"]]},
            metrics={"listen": f"127.0.0.1:{free_port}"},
        )
        stored = store(inst, keys["a"], [server])
        with running(inst, wait_state="ready") as sup:
            metrics = scrape(f"http://127.0.0.1:{free_port}/metrics").text
            assert "backuppc_agent_unlock_waiting_tang 0.0" in metrics
            seen = [sup.logtext().encode(), metrics.encode(), proc_texts(sup.pid)]
            seen += [proc_texts((inst.state() or {})["agent_pid"])]
            seen += [cli("status", "--json", config=inst.config).stdout.encode()]
            seen += [stored.stdout.encode(), stored.stderr.encode()]
        seen += [r.read_bytes() for r in records]
        files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
        seen += [p.read_bytes() for p in files if p != keys["a"]]
    assert records[0].read_bytes().count(b"\ndecrypt\n") >= 2  # set checks, the supervisor opens
    assert str(keys["a"]).encode() in records[1].read_bytes()
    assert [text for text in seen if PASSPHRASE.encode() in text] == []


def core_of(pid: int, directory: Path) -> bytes:
    """A core dump of the running process ``pid`` (gdb's gcore; the process runs on)."""
    done = subprocess.run(
        ["gcore", "-o", str(directory / "core"), str(pid)],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    core = directory / f"core.{pid}"
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert core.exists()
    try:
        return core.read_bytes()
    finally:
        core.unlink()


@contextmanager
def tracing_reads(pid: int, log: Path) -> Iterator[None]:
    """strace the reads (whole buffers) and execs of ``pid``, its threads and children."""
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-s", "65536", "-e", "trace=read,readv,recvfrom,recvmsg,execve",
         "-o", str(log), "-p", str(pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: log.exists() or tracer.poll() is not None, 10)
        assert tracer.poll() is None, "strace could not attach"
        yield
    finally:
        tracer.terminate()
        tracer.wait(timeout=30)


def own_lines(trace: bytes) -> bytes:
    """The trace lines of the traced process's own threads: not of children that exec'd."""
    lines = [line.split(maxsplit=1) for line in trace.splitlines() if b" " in line.strip()]
    children = {pid for pid, call in lines if call.startswith(b"execve(")}
    return b"\n".join(call for pid, call in lines if pid not in children)


@pytest.mark.root("strace and gcore attach to the supervisor with ptrace")
@pytest.mark.skipif(
    not (shutil.which("gcore") and shutil.which("strace")),
    reason="needs gdb's gcore and strace (tests/system-deps.sh)",
)
def test_the_plaintext_never_enters_the_supervisors_memory(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    """clevis hands the passphrase to ssh-add through askpass: the supervisor never reads it."""
    with running_tangs(tmp_path) as [server]:
        inst = stored_on(tmp_path, keys["a"], [server])
        server.stop()
        with running(inst) as sup:
            wait_for(lambda: "no Tang answers" in reason(inst), timeout=15)
            trace = tmp_path / "reads.strace"
            with tracing_reads(sup.pid, trace):
                server.start()
                wait_for(lambda: inst.published("ready"), timeout=10)
            memory = core_of(sup.pid, private_dir(tmp_path / "cores"))
        reads = own_lines(trace.read_bytes())
    assert b"recvfrom(" in reads  # the trace saw the unlock's talk with the agent
    assert PASSPHRASE.encode() not in reads  # the supervisor's threads never read it
    assert b"backuppc_agent" in memory  # the supervisor's core
    assert PASSPHRASE.encode() not in memory


# -- doctor ------------------------------------------------------------------------------


def _doctor_lines(inst: Setup, tmp_path: Path) -> list[str]:
    procfs = tmp_path / "proc"
    procfs.mkdir(mode=0o700, exist_ok=True)
    (procfs / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n")
    result = cli("doctor", "--procfs", str(procfs), config=inst.config, timeout=60)
    return [line for line in result.stdout.splitlines() if "tang" in line or "unlock" in line]


def test_doctor_names_the_unlock_and_checks_each_tang_and_the_pinned_key(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    with running_tangs(tmp_path) as [server]:
        inst = make_setup(
            tmp_path / "inst",
            agent={"unlock": "tang", "keys": [keys["a"]]},
            backuppc={"user": "root"},
        )
        store(inst, keys["a"], [server])
        lines = _doctor_lines(inst, tmp_path)
        assert any('unattended unlock: "tang"' in line for line in lines), lines
        assert any("answers and advertises the pinned key" in line for line in lines), lines
        server.rotate()
        lines = _doctor_lines(inst, tmp_path)
        assert any("no longer advertises" in line and "rekey" in line for line in lines), lines
        tang_mod.jwe_path(inst.state_dir, keys["a"]).chmod(0o644)
        lines = _doctor_lines(inst, tmp_path)
        assert any("mode 0600" in line for line in lines), lines
        tang_mod.jwe_path(inst.state_dir, keys["a"]).chmod(0o600)
    lines = _doctor_lines(inst, tmp_path)
    assert any("no Tang answers" in line for line in lines), lines
