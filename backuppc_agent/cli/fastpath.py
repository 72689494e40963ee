"""A parser for the hot commands (hook, status, wait) that skips argparse when it can.

argparse costs ~4 ms per start (its import, building the parser, gettext
look-ups): a tenth of a hook's budget. The commands BackupPC and scripts run
most have a fixed, simple grammar, parsed here into the same namespace
argparse would build. Anything this parser is not sure about (an unknown
option, a missing value, --help, a bad choice or number) returns None, and
argparse parses the command line as usual, with its own error messages.
A unit test checks that both parsers agree.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

TYPE_CHECKING = False  # see records.py: typing stays off the hot path
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    Converter = Callable[[str], object]
    Options = dict[str, tuple[str, Converter | None]]
    Positionals = tuple[tuple[str, tuple[str, ...]], ...]

HOOK_NAMES = (
    "pre-dump", "post-dump", "pre-restore", "post-restore", "pre-archive", "post-archive", "ping",
)  # fmt: skip
MAX_SECONDS = 10**9


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise ValueError(text)
    return value


#: command -> (positional names with their allowed values, {option: (dest, converter | None)}),
#: a None converter meaning a flag. Defaults are what argparse would set.
_GRAMMAR: dict[str, tuple[Positionals, Options]] = {
    "status": ((), {"--json": ("json", None)}),
    "wait": ((), {"--timeout": ("timeout", _seconds), "--quiet": ("quiet", None),
                  "-q": ("quiet", None)}),
    "hook": ((("hook", HOOK_NAMES),), {
        "--client": ("client", str), "--host": ("host", str), "--host-ip": ("host_ip", str),
        "--type": ("type", str), "--xfer-ok": ("xfer_ok", str), "--share": ("share", str),
    }),
}  # fmt: skip
_DEFAULTS: dict[str, dict[str, object]] = {
    "status": {"json": False},
    "wait": {"timeout": None, "quiet": False},
    "hook": {"client": "", "host": "", "host_ip": "", "type": "", "xfer_ok": "", "share": ""},
}
_GLOBAL: Options = {
    "--config": ("config", str),
    "--debug": ("debug", None),
}


def parse(argv: Sequence[str]) -> SimpleNamespace | None:
    """Parse a hot command's argv into argparse's namespace, or None to defer to argparse."""
    values: dict[str, object] = {"config": None, "debug": False}
    rest = _take_options(list(argv), _GLOBAL, values, stop_at_word=True)
    if rest is None or not rest or rest[0] not in _GRAMMAR:
        return None
    command, words = rest[0], rest[1:]
    positionals, options = _GRAMMAR[command]
    values.update(_DEFAULTS[command], command=command)
    leftover = _take_options(words, {**options, **_GLOBAL}, values, stop_at_word=False)
    if leftover is None or len(leftover) != len(positionals):
        return None
    for (dest, allowed), word in zip(positionals, leftover, strict=True):
        if word not in allowed:
            return None
        values[dest] = word
    return SimpleNamespace(**values)


def _take_options(
    words: list[str],
    spec: Options,
    values: dict[str, object],
    stop_at_word: bool,
) -> list[str] | None:
    """Consume the options in ``spec``; return the other words, or None if unsure."""
    others: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if not word.startswith("-") or word == "-":
            if stop_at_word:
                return words[index:]
            others.append(word)
            index += 1
            continue
        name, has_value, inline = word.partition("=")
        if name not in spec:
            return None
        dest, convert = spec[name]
        if convert is None:
            if has_value:
                return None
            values[dest] = True
            index += 1
            continue
        if has_value:
            raw, index = inline, index + 1
        elif index + 1 < len(words) and not words[index + 1].startswith("-"):
            raw, index = words[index + 1], index + 2
        else:
            return None
        try:
            values[dest] = convert(raw)
        except ValueError:
            return None
    return None if stop_at_word else others
