"""The validated-config cache: used when the file is unchanged, never when it changed."""

from __future__ import annotations

import marshal
import os
import stat
import subprocess
import sys
from pathlib import Path

from backuppc_agent import config, config_cache


def write(path: Path, poll: float) -> None:
    path.write_text(
        f'[agent]\nsocket = "~/a.sock"\npoll_seconds = {poll}\nrequired_keys = []\n'
        '[mux]\ncontrol_dir = "/run/bpa-mux"\n'
    )


def test_a_second_load_comes_from_the_cache_and_matches(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    cfg_file = tmp_path / "c.toml"
    write(cfg_file, 0.5)
    first = config.load(str(cfg_file), home)
    cached = config_cache.cache_file(home, cfg_file)
    assert cached.exists()
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o700
    assert config.load(str(cfg_file), home) == first


def test_any_change_to_the_file_misses_the_cache(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    cfg_file = tmp_path / "c.toml"
    write(cfg_file, 0.5)
    assert config.load(str(cfg_file), home).agent.poll_seconds == 0.5
    write(cfg_file, 0.75)
    assert config.load(str(cfg_file), home).agent.poll_seconds == 0.75


def test_a_tampered_or_symlinked_cache_is_ignored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    cfg_file = tmp_path / "c.toml"
    write(cfg_file, 0.5)
    config.load(str(cfg_file), home)
    cached = config_cache.cache_file(home, cfg_file)
    cached.write_bytes(marshal.dumps({"key": "wrong", "sections": {}}))
    assert config.load(str(cfg_file), home).agent.poll_seconds == 0.5
    cached.write_bytes(b"\xda\x00 not marshal")
    assert config.load(str(cfg_file), home).agent.poll_seconds == 0.5
    cached.unlink()
    decoy = tmp_path / "decoy.json"
    decoy.write_text("{}")
    cached.symlink_to(decoy)
    assert config.load(str(cfg_file), home).agent.poll_seconds == 0.5
    cached.parent.chmod(0o777)
    assert config.load(str(cfg_file), home).agent.poll_seconds == 0.5


def test_a_cached_load_does_not_import_tomllib(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    cfg_file = tmp_path / "c.toml"
    write(cfg_file, 0.5)
    code = (
        "import sys; from pathlib import Path; from backuppc_agent import config; "
        f"config.load({str(cfg_file)!r}, Path({str(home)!r})); print('tomllib' in sys.modules)"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env=dict(os.environ),
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs == ["True", "False"]
