"""The config file ``install`` writes: every key, commented out at its default.

Rendered from the config dataclasses themselves, so a key added there shows up
here without a second list to keep in step.
"""

from __future__ import annotations

from backuppc_agent import config as config_mod

HEADER = """\
# backuppc-agent configuration (TOML). Every key is optional: the commented
# values are the built-in defaults. `~` is the home of the account that runs
# the supervisor (backuppc). Check a change with: backuppc-agent config check
# A running supervisor rereads this file on SIGHUP (reload); moving the socket
# or the state dir needs a restart.
"""


def render_default() -> str:
    """The commented default configuration."""
    return HEADER + "\n" + config_mod.toml_document(config_mod.defaults(), key_prefix="# ")
