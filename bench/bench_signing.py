"""Issue 12 targets: the signing probe of one key, the supervisor's probe cycle with 10,000 keys."""

from __future__ import annotations

import tempfile
from pathlib import Path

from backuppc_agent import config as config_mod
from backuppc_agent.agent.authwatch import AuthWatch
from backuppc_agent.agent.probe import probe
from backuppc_agent.agent.signing import sign_keys
from backuppc_agent.state import State
from bench.bench_agent import KEY_COUNT, _load_many_keys
from bench.common import Result, median_seconds
from tests.helpers import agent_holding, askpass_helper, make_key


def _watch(socket: Path, required: tuple[str, ...] = ()) -> AuthWatch:
    agent = {"socket": str(socket), "required_keys": list(required)}
    return AuthWatch(config_mod.from_mapping({"agent": agent}, "bench", Path("/")).agent)


def _cycle(socket: Path, watch: AuthWatch) -> State:
    """One supervisor poll: list, fingerprint, assess (signing only when due)."""
    result = probe(socket, 10.0)
    return watch.assess(result).state


def _one_key(root: Path) -> Result:
    key = make_key(root, "id_sign")
    with agent_holding(key, askpass_helper(root)) as socket:
        identities = probe(socket, 5.0).identities
        assert sign_keys(socket, identities, 5.0)[identities[0].fingerprint].ok
        seconds = median_seconds(lambda: sign_keys(socket, identities, 5.0), runs=101)
    return Result(
        "signing probe, one ed25519 key (connect + sign + parse), median of 101",
        seconds * 1000,
        "ms",
        "small beside the 0.2 s poll",
        "",
        seconds < 0.05,
    )


def _many_keys() -> list[Result]:
    with agent_holding() as socket:
        _load_many_keys(socket, KEY_COUNT)
        steady = _watch(socket)
        assert _cycle(socket, steady) is State.READY
        steady_s = median_seconds(lambda: _cycle(socket, steady), runs=7, warmup=0)
        fresh_s = median_seconds(lambda: _cycle(socket, _watch(socket)), runs=7, warmup=0)
        wanted = probe(socket, 10.0).fingerprints[KEY_COUNT // 2]
        required_s = median_seconds(
            lambda: _cycle(socket, _watch(socket, (wanted,))), runs=7, warmup=0
        )
    rows = [
        ("probe cycle, keys unchanged (no signing)", steady_s),
        (f"probe cycle, keys changed: signs the first 8 of {KEY_COUNT}", fresh_s),
        (f"probe cycle, keys changed: signs 1 required key of {KEY_COUNT}", required_s),
    ]
    return [
        Result(f"{name}, {KEY_COUNT} keys, median of 7", s * 1000, "ms", "<= 1000 ms", "", s <= 1)
        for name, s in rows
    ]


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o700)
        return [_one_key(root), *_many_keys()]
