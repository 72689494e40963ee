"""Ready means a backup can authenticate: real ssh-agent, ssh-add, ssh-keygen certificates, sshd.

A key added with ``ssh-add -c`` lists but cannot sign with nobody to confirm;
a certificate counts only while valid (checked against an sshd that trusts
the test CA); keys under agent.lifetime_seconds are reported as expired.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from tests.helpers import (
    Setup,
    cli,
    make_setup,
    private_dir,
    running,
    ssh_add,
    wait_for,
)
from tests.scrape import scrape
from tests.sshd import CLIENT_USER, Sshd, needs_root, running_sshd

pytestmark = needs_root
ADDRESS = "127.0.0.70"


def plain_key(directory: Path, name: str) -> Path:
    """An ed25519 key without passphrase (a CA, or a key to certify)."""
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
        timeout=30,
    )
    return key


def certify(ca: Path, key: Path, validity: str) -> Path:
    """Sign KEY.pub with the CA for the client user, valid ``validity`` (ssh-keygen -V)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "backup-id", "-n", CLIENT_USER,
         "-V", validity, f"{key}.pub"],
        check=True,
        timeout=30,
        capture_output=True,
    )  # fmt: skip
    return Path(f"{key}-cert.pub")


def login(socket: Path) -> subprocess.CompletedProcess[str]:
    """One real ssh login to the test sshd with whatever the agent offers."""
    argv = [
        "ssh", "-F", "/dev/null", "-o", f"IdentityAgent={socket}", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=10", f"{CLIENT_USER}@{ADDRESS}", "true",
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = private_dir(tmp_path_factory.mktemp("ca"))
    return plain_key(directory, "ca")


@pytest.fixture(scope="module")
def server(ca: Path, keys: dict[str, Path]) -> Iterator[Sshd]:
    """An sshd that accepts key "a" and any certificate the test CA signed."""
    trusted = ca.parent / "trusted_ca.pub"
    trusted.write_text(Path(f"{ca}.pub").read_text())
    trusted.chmod(0o644)
    ca.parent.chmod(0o755)
    with running_sshd(ADDRESS, keys["a"], extra_config=f"TrustedUserCAKeys {trusted}\n") as srv:
        yield srv


def status_json(setup: Setup) -> dict[str, object]:
    done = cli("status", "--json", config=setup.config)
    assert done.stdout, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def reason_contains(setup: Setup, text: str) -> bool:
    current = setup.state()
    return bool(current and text in current["reason"])


def test_a_confirm_key_lists_but_is_not_ready_and_the_pre_dump_says_why(
    tmp_path: Path, keys: dict[str, Path], server: Sshd
) -> None:
    setup = make_setup(tmp_path / "inst", hooks={"wait_seconds": 0.5})
    with running(setup):
        assert ssh_add(setup.socket, "-c", str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        assert ssh_add(setup.socket, "-l").returncode == 0  # it lists like any key
        wait_for(lambda: reason_contains(setup, "confirmation required"))
        published = setup.state()
        assert published is not None
        assert published["state"] == "waiting"
        assert [why for _fp, why in published["unusable"]] == ["refused"]
        status = status_json(setup)
        assert status["state"] == "waiting"
        assert "confirmation required" in str(status["reason"])
        hook = cli("hook", "pre-dump", "--client", "c1", "--host", ADDRESS, config=setup.config)
        assert hook.returncode == exitcodes.HOOK_NOT_READY
        assert "SSH keys loaded but not usable" in hook.stdout
        assert "confirmation required" in hook.stdout
        assert "Permission denied" not in hook.stdout + hook.stderr
        # What the hook spares the backup: the same key really cannot log in.
        assert "Permission denied" in login(setup.socket).stderr


def test_a_valid_certificate_is_ready_logs_in_and_shows_its_expiry(
    tmp_path: Path, ca: Path, server: Sshd, free_port: int
) -> None:
    key = plain_key(private_dir(tmp_path / "k"), "certified")
    cert = certify(ca, key, "-5m:+1h")
    setup = make_setup(tmp_path / "inst", metrics={"listen": f"127.0.0.1:{free_port}"})
    with running(setup):
        assert ssh_add(setup.socket, str(key)).returncode == 0  # the key and its certificate
        wait_for(lambda: setup.published("ready"))
        published = setup.state()
        assert published is not None
        [(_fingerprint, expires, source)] = published["expiries"]
        assert source == "certificate"
        assert published["expires"] == expires
        valid_before = _valid_before(cert)
        assert expires == valid_before
        text = cli("status", config=setup.config).stdout
        assert (
            f"[certificate expires {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(expires))}"
            in text
        )
        metrics = scrape(f"http://127.0.0.1:{free_port}/metrics")
        assert metrics.value("identity_expiry_timestamp_seconds") == expires
        assert metrics.value("identities_unusable", reason="expired") == 0
        before = server.logtext().count("ED25519-CERT")
        assert login(setup.socket).returncode == 0
        assert server.logtext().count("ED25519-CERT") > before


@pytest.mark.parametrize(
    ("validity", "reason", "why"),
    [
        ("20200101:20200102", "expired at 2020-01-02", "expired"),
        ("+1d:+2d", "not valid until", "not-yet-valid"),
    ],
)
def test_a_certificate_outside_its_validity_is_not_ready_and_cannot_log_in(
    tmp_path: Path, ca: Path, server: Sshd, validity: str, reason: str, why: str
) -> None:
    key = plain_key(private_dir(tmp_path / "k"), "certified")
    certify(ca, key, validity)
    setup = make_setup(tmp_path / "inst")
    with running(setup):
        assert ssh_add(setup.socket, str(key)).returncode == 0
        wait_for(lambda: reason_contains(setup, reason))
        published = setup.state()
        assert published is not None
        assert published["state"] == "waiting"
        assert [w for _fp, w in published["unusable"]] == [why]
        assert status_json(setup)["state"] == "waiting"
        assert login(setup.socket).returncode != 0


def test_keys_under_an_agent_lifetime_are_reported_as_expired_at_their_deadline(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    setup = make_setup(
        tmp_path / "inst", agent={"lifetime_seconds": 3}, hooks={"wait_seconds": 0.5}
    )
    with running(setup) as supervisor:
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"))
        ready = setup.state()
        assert ready is not None
        [(_fp, expires, source)] = ready["expiries"]
        assert source == "lifetime"
        assert ready["expires"] == expires
        wait_for(lambda: setup.published("waiting"), timeout=30)
        waiting = setup.state()
        assert waiting is not None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))
        assert f"1 key(s) appeared; with agent.lifetime_seconds = 3 they expire at {stamp}" in (
            supervisor.logtext()
        )
        assert waiting["reason"] == (
            f"1 key expired at {stamp} (agent.lifetime_seconds = 3); run ssh-add again"
        )
        # The supervisor saw the key vanish no earlier than a second before its deadline.
        assert waiting["since"] >= expires - 1.0
        hook = cli("hook", "pre-dump", "--client", "c1", "--host", ADDRESS, config=setup.config)
        assert hook.returncode == exitcodes.HOOK_NOT_READY
        assert "SSH keys not loaded; run 'ssh-add'" in hook.stdout
        assert f"1 key expired at {stamp} (agent.lifetime_seconds = 3)" in hook.stdout


def _valid_before(cert: Path) -> float:
    import base64  # noqa: PLC0415

    from backuppc_agent.agent.certs import parse_certificate  # noqa: PLC0415

    parsed = parse_certificate(base64.b64decode(cert.read_text().split()[1]))
    assert parsed is not None
    assert parsed.expires is not None
    return parsed.expires
