"""Fuzz the config loader: any document gives a Config or a ConfigError, nothing else."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from backuppc_agent import config
from backuppc_agent.errors import ConfigError

HOME = Path("/home/backuppc")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "~/x",
            "/abs/path",
            "rel/path",
            "/a/../b",
            "",
            "stop-agent",
            "keyring",
            "127.0.0.1:9842",
            "SHA256:" + "A" * 43,
            "-oProxyCommand=x",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)
keys = st.sampled_from([k for section in config.defaults().values() for k in section] + ["bogus"])
sections = st.sampled_from([*config.sections(), "bogus"])
documents = st.dictionaries(
    sections, st.one_of(st.dictionaries(keys, values, max_size=6), values), max_size=5
)


@settings(max_examples=300)
@given(documents)
def test_any_document_gives_a_config_or_a_config_error(data: dict[str, object]) -> None:
    try:
        cfg = config.from_mapping(data, "fuzz.toml", HOME)
    except ConfigError as err:
        problems = err.problems
    else:
        assert cfg.agent.socket.is_absolute()
        assert ".." not in cfg.state.dir.parts
        return
    assert problems
    assert all(isinstance(p, str) and "\n" not in p for p in problems)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_any_file_content_gives_a_config_or_a_config_error(tmp_path_factory, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    path.write_bytes(raw)
    try:
        config.load(str(path), HOME)
    except ConfigError:
        pass
