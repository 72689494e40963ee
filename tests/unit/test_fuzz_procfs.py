"""Fuzz the procfs parsers and the collector parts that read them.

Any text gives a dataclass (what could be read, plus the malformed lines),
never an exception; well-formed lines always parse back to their values; and a
collector part over an arbitrary file always finishes, exporting or counting.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backuppc_agent.metrics import swapread
from backuppc_agent.metrics.pidstatus import parse_status_name, parse_status_swap
from backuppc_agent.metrics.scrape import Part, ScrapeErrors
from backuppc_agent.metrics.swap import SECTIONS, SwapPart
from backuppc_agent.metrics.swapread import Parsed
from backuppc_agent.state import Snapshot, State

#: text as a hostile or broken procfs might hand it over (after utf-8 "replace" decoding)
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
numbers = st.integers(min_value=0, max_value=2**53)
procfs_words = st.sampled_from(
    ["SwapTotal:", "SwapFree:", "SwapCached:", "kB", "pswpin", "pswpout", "some", "full",
     "total=", "avg10=0.00", "tmpfs", "Filename", "partition", "file", "-1", "\\040", ":", "="]
)  # fmt: skip
#: lines built from the words the parsers look for, to reach their deeper branches
near_lines = st.lists(
    st.lists(st.one_of(procfs_words, numbers.map(str), texts), max_size=6).map(" ".join),
    max_size=8,
).map("\n".join)
contents = st.one_of(texts, near_lines)


@given(contents)
@example("SwapTotal: 12 kB\nSwapTotal: x kB\n")
@example("SwapFree:\n")
@example("SwapTotal: \u00b2 kB")  # same trap as vmstat's
def test_any_meminfo_text_parses(text: str) -> None:
    info = swapread.parse_meminfo(text)
    assert all(value >= 0 and value % swapread.KIB == 0 for value in info.found.values())
    assert all(line in text.splitlines() for line in info.malformed)


@given(contents)
@example("pswpin\npswpout -1\n")
@example("pswpin \u00b2")  # make fuzz: str.isdigit() takes '²', int() does not
def test_any_vmstat_text_parses(text: str) -> None:
    stat = swapread.parse_vmstat(text)
    assert all(value >= 0 for value in stat.found.values())


@given(contents)
@example("")
@example("Filename Type Size Used Priority\n/dev/x partition 1 2 x\n")
def test_any_swaps_text_parses(text: str) -> None:
    swaps = swapread.parse_swaps(text)
    assert all(isinstance(device.priority, int) for device in swaps.found)
    if not text.startswith(swapread.SWAPS_HEADER):
        assert swaps.found == ()
        assert len(swaps.malformed) == 1  # no header: the file is cut short or wrong


@given(contents)
@example("some total=\nfull avg10=1 total=99999999999999999999\n")
@example("some total=\u00b9\u00b2")
def test_any_pressure_text_parses(text: str) -> None:
    pressure = swapread.parse_pressure(text)
    assert all(value >= 0 for value in pressure.found.values())


@given(contents)
@example("tmpfs /a\\0 tmpfs rw 0 0\ntmpfs /a\\0 tmpfs rw 0 0\n")
def test_any_mounts_text_parses(text: str) -> None:
    points = swapread.parse_mounts(text).found
    assert len(points) == len(set(points))


@given(numbers, numbers, numbers)
def test_well_formed_meminfo_lines_parse_back(total: int, free: int, cached: int) -> None:
    text = f"MemTotal: 1 kB\nSwapCached: {cached} kB\nSwapTotal: {total} kB\nSwapFree: {free} kB\n"
    info = swapread.parse_meminfo(text)
    assert info == Parsed({"SwapCached": cached * 1024, "SwapTotal": total * 1024,
                           "SwapFree": free * 1024})  # fmt: skip


@given(numbers, numbers, st.integers(min_value=-(2**15), max_value=2**15))
def test_well_formed_swaps_lines_parse_back(size: int, used: int, priority: int) -> None:
    text = f"Filename\tType\tSize\tUsed\tPriority\n/swap\\040file file {size} {used} {priority}\n"
    swaps = swapread.parse_swaps(text)
    assert swaps == Parsed(
        (swapread.SwapArea("/swap file", "file", size * 1024, used * 1024, priority),)
    )


@given(numbers, numbers)
def test_well_formed_pressure_lines_parse_back(some: int, full: int) -> None:
    text = f"some avg10=0.00 avg60=0.00 avg300=0.00 total={some}\nfull avg10=0.00 total={full}\n"
    pressure = swapread.parse_pressure(text)
    assert pressure == Parsed({"some": some / 1_000_000, "full": full / 1_000_000})


status_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda head, line, tail: head + line + tail,
        st.binary(max_size=60),
        st.sampled_from([b"\nVmSwap:", b"\nVmSwap:\t 12 kB\n", b"\nVmSwap: 9", b"\nThreads:\t1\n"]),
        st.binary(max_size=60),
    ),
)


@given(status_bytes)
@example(b"")
@example(b"Name:\tx\nThreads:\t1\n")
@example(b"Name:\tx\nVmSwap:\t 1")
def test_any_status_gives_vmswap_none_or_value_error(data: bytes) -> None:
    try:
        swap = parse_status_swap(data)
    except ValueError as err:
        error = str(err)
    else:
        error = ""
    if error:
        assert "\n" not in error
    elif swap is None:
        assert b"\nVmSwap:" not in data
        assert b"\nThreads:" in data  # a kernel thread or a zombie, not a cut-short file
    else:
        assert swap >= 0
    assert isinstance(parse_status_name(data), str)


# -- the parts over arbitrary files -------------------------------------------------


def _statvfs(_path: str) -> os.statvfs_result:
    return os.statvfs_result((4096, 4096, 10, 5, 5, 10, 5, 5, 0, 255))


def _parts(root: Path, errors: ScrapeErrors) -> list[Part]:
    snapshot = Snapshot(State.READY, "ok", "/x", 1, 1, (), 0.0, 1)
    return [SwapPart(errors, name, root, 5, lambda: snapshot, _statvfs) for name in SECTIONS]


FILES = ("meminfo", "vmstat", "swaps", "pressure/memory", "mounts", "1/status")


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzzproc")
    (root / "pressure").mkdir()
    (root / "1").mkdir()
    return root


@given(st.sampled_from(FILES), st.binary(max_size=400))
@example("pressure/memory", b"")
@example("1/status", b"\xff\xfe")
def test_every_part_finishes_on_any_file_content(fuzz_root: Path, name: str, raw: bytes) -> None:
    for other in FILES:
        (fuzz_root / other).write_bytes(b"")
    (fuzz_root / name).write_bytes(raw)
    errors = ScrapeErrors()
    for part in _parts(fuzz_root, errors):
        list(part.collect())  # may export or count, must not raise
    counts = errors.counts()
    # every file but the fuzzed one is empty: each of their readers counted it
    assert counts["vmstat"] >= (name != "vmstat")
    assert counts["meminfo"] >= (name != "meminfo")
