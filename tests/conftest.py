"""Fixtures shared by every tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import helpers
from tests.beds import Bed, bed_for
from tests.helpers import (
    Setup,
    agent_holding,
    askpass_helper,
    kill_agents_on,
    make_key,
    make_setup,
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip tests marked ``root`` (``@pytest.mark.root("why")``) when not run as root."""
    marker = item.get_closest_marker("root")
    if marker is not None and os.geteuid() != 0:
        pytest.skip(marker.args[0] if marker.args else "needs root")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A private test installation; any agent left on its socket is killed afterwards."""
    tmp_path.chmod(0o700)
    installation = make_setup(tmp_path / "inst")
    try:
        yield installation
    finally:
        kill_agents_on(installation.socket)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two passphrase-protected ed25519 keys and an askpass helper, made once."""
    directory = tmp_path_factory.mktemp("keys")
    directory.chmod(0o700)
    return {
        "a": make_key(directory, "id_a"),
        "b": make_key(directory, "id_b"),
        "askpass": askpass_helper(directory),
    }


@pytest.fixture
def keyring_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private file keyring for this test, seen by every child process; its data dir."""
    for name, value in helpers.keyring_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    return tmp_path / "xdg-data"


@pytest.fixture(scope="session")
def procfs_trees() -> Path:
    """The fixture procfs trees of the metrics tests (see tests/fixtures/procfs/README.md)."""
    return Path(__file__).parent / "fixtures" / "procfs"


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bound to port 0, then released)."""
    import socket  # noqa: PLC0415 (only the metrics tests need it)

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def agent(keys: dict[str, Path]) -> Iterator[Path]:
    """A real ssh-agent (not supervised) holding the passphrase-protected key "a"."""
    with agent_holding(keys["a"], keys["askpass"]) as sock:
        yield sock


@pytest.fixture
def recording_bed(agent: Path) -> Iterator[Bed]:
    """A Bed on ``agent`` whose ``[mux] ssh`` records its argv and fails: no network needed.

    Hooks wait at most 2 s for keys and for a master. The control dir is not created.
    """
    hooks = {"wait_seconds": 2, "connect_timeout_seconds": 2}
    with bed_for(agent, recording_ssh=True, hooks=hooks) as bed:
        yield bed


# CI runs must be repeatable: hypothesis explores the same examples on every run
# (derandomize). `make fuzz` explores afresh with many more examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("fuzz", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
