"""Our hosts-file reader against BackupPC's own (BackupPC::Storage::Text::HostInfoRead).

Each case is a ConfDir holding only a ``hosts`` file; one perl run reads every
case with BackupPC's code and prints, per case, the hash HostInfoRead returns
(every field: host, dhcp, user, moreUsers, or whatever the header names) and
which keys BackupPC_dump's name test (``/^([\\w\\.\\s-]+)$/``) accepts. Needs perl
and /usr/share/backuppc/lib (``make system-deps`` installs backuppc); no root.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backuppc_agent.backuppc import confdir

LIB = Path("/usr/share/backuppc/lib")
PERL = r"""
use BackupPC::Storage::Text;
use JSON::PP;
my @out;
for my $dir (@ARGV) {
    my $s = BackupPC::Storage::Text->new({}, {ConfDir => $dir, TopDir => $dir});
    my $hosts = $s->HostInfoRead();
    push(@out, {hosts => $hosts, dumpable => [grep { /^([\w\.\s-]+)$/ } keys(%$hosts)]});
}
print(JSON::PP->new->ascii->canonical->encode(\@out));
"""
HEADER = b"host        dhcp    user    moreUsers     # <--- do not edit this line\n"
HOSTILE = {
    "mixed case": HEADER + b"Web01 0 backuppc\nDB.Example-1 1 u\n",
    "no header": b"web01 0 backuppc\ndb 0 backuppc\n",
    "a lone name": HEADER + b"lonely\nweb01 0 backuppc\n",
    "lone name first": b"lonely\nweb01 0 backuppc\ndb 0 x\n",
    "escaped spaces": HEADER + b"mail\\ server 0 backuppc\\ x\na\\  0\\\\ x\n",
    "slashes": HEADER + b"evil/name 0 x\n../etc 0 x\na\\ /b 0 x\na\\/b 0 x\n",
    "dots": HEADER + b".. 0 x\n. 0 x\n... 0 x\n",
    "spaces": HEADER + b"  indented 0 x\n\tweb01 0 x\nweb02\t0\tx   \n",
    "very long lines": HEADER + b"x" * 100_000 + b" 0 " + b"y" * 100_000 + b"\n",
    "comments mid-line": HEADER + b"web01 0 backuppc # old: web02\nweb#03 0 x\n# web04 0 x\n",
    "CRLF": HEADER.replace(b"\n", b"\r\n") + b"web01 0 backuppc\r\nweb02\r0\rx\r\n",
    "duplicates in case": HEADER + b"Web01 0 first\nWEB01 1 second more\nweb01 0\n",
    "empty file": b"",
    "only comments": b"# hosts\n   # none yet\n\n",
    "odd header": b"name flag # a header of our own\nweb01 1 x y z\n",
    "non-ascii": HEADER + "h\u00f6st 0 x\nh\\ \u00d6 0 x\n".encode() + b"q\\ \xff 0 x\n",
    "white space bytes": HEADER + b"a\x0b0 x\nb\x0c0\nc\xa00 x\nd\x850 x\ne 0\x00 x\n",
    "leading dash": HEADER + b"-oProxyCommand=x 0 x\n--x 0 y\n",
}
TOKENS = [
    b"web01", b"Web01", b"WEB01", b"db.example-1", b"host", b"dhcp", b"user", b"0", b"1",
    b"..", b".", b"/", b"-", b"\\", b"\\ ", b"#", b"# c", b" ", b"  ", b"\t", b"\r", b"\n",
    b"\r\n", b"\x0b", b"\x0c", b"\xa0", b"\x85", b"\xc3\xa9", b"\xc3\x96", b"\xff", b"\x00",
    b"_", b"%",
]  # fmt: skip
LINE = st.lists(st.sampled_from(TOKENS), max_size=8).map(b"".join) | st.binary(max_size=20)
HOSTS_FILE = st.lists(LINE, max_size=8).map(b"\n".join)

needs_backuppc = pytest.mark.skipif(
    not LIB.is_dir(), reason="BackupPC is not installed (make system-deps installs backuppc)"
)


def raw(text: str | None) -> bytes | None:
    """A string of ours as the bytes BackupPC holds."""
    return None if text is None else text.encode("utf-8", "surrogateescape")


def backuppc_reads(base: Path, files: list[bytes]) -> list[tuple[dict[bytes, object], set[bytes]]]:
    """BackupPC's hash and its dumpable keys for each of ``files`` (one perl run)."""
    dirs = []
    for number, data in enumerate(files):
        directory = base / str(number)
        directory.mkdir()
        (directory / "hosts").write_bytes(data)
        dirs.append(str(directory))
    argv = ("perl", f"-I{LIB}", "-e", PERL, *dirs)
    out = subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout

    def latin1(value: str | None) -> bytes | None:  # JSON::PP printed each byte as \u00XX
        return None if value is None else value.encode("latin-1")

    return [
        (
            {
                latin1(name): {latin1(k): latin1(v) for k, v in fields.items()}
                for name, fields in item["hosts"].items()
            },
            {name.encode("latin-1") for name in item["dumpable"]},
        )
        for item in json.loads(out)
    ]


def ours(data: bytes) -> tuple[dict[bytes, object], set[bytes]]:
    """Our reader's hosts, in the same shape, and the keys it would build a path from."""
    hosts = confdir.parse_hosts(data)
    found = {
        raw(name): {raw(k): raw(v) for k, v in fields.items()} for name, fields in hosts.items()
    }
    return found, {raw(name) or b"" for name in hosts if confdir.usable(name)}


def assert_agree(tmp_path: Path, files: list[bytes]) -> None:
    for data, (theirs, dumpable) in zip(files, backuppc_reads(tmp_path, files), strict=True):
        hosts, usable = ours(data)
        assert hosts == theirs, data[:300]
        assert usable == dumpable - {b".", b".."}, data[:300]


@needs_backuppc
def test_hostile_hosts_files_read_as_backuppc_reads_them(tmp_path: Path) -> None:
    assert_agree(tmp_path, list(HOSTILE.values()))
    hosts, _ = ours(HOSTILE["duplicates in case"])
    assert hosts == {
        b"web01": {b"host": b"web01", b"dhcp": b"0", b"user": None, b"moreUsers": None}
    }


@needs_backuppc
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=st.lists(HOSTS_FILE, min_size=30, max_size=30))
def test_generated_hosts_files_read_as_backuppc_reads_them(
    tmp_path_factory: pytest.TempPathFactory, files: list[bytes]
) -> None:
    assert_agree(tmp_path_factory.mktemp("hosts"), files)


def test_no_path_is_built_from_a_name_backuppc_dump_refuses(tmp_path: Path) -> None:
    conf, top = tmp_path / "etc", tmp_path / "top"
    (top / "pc" / "web01").mkdir(parents=True)
    conf.mkdir()
    (tmp_path / "x.pl").write_text("$Conf{XferMethod} = 'smb';\n")  # what "../x" would reach
    (conf / "..pl").write_text("$Conf{XferMethod} = 'smb';\n")  # what "." would reach
    (conf / "mail server.pl").write_text("$Conf{XferMethod} = 'rsyncd';\n")
    (top / "pc" / "web01" / "config.pl").write_text("$Conf{XferMethod} = 'ftp';\n")
    (conf / "web01.pl").write_text("$Conf{XferMethod} = 'smb';\n")
    reader = confdir.ConfDir(conf, top)
    for name in ("../x", ".", "..", "a /b", "a\\b", "h\u00f6st", "x\x00"):
        assert reader.host_file(name) is None, name
    assert reader.host_file("mail server") == conf / "mail server.pl"
    # the old-style TopDir/pc/HOST/config.pl comes first, looked up by the lower-cased name
    assert reader.host("Web01") == confdir.Host("web01", "web01", "ftp", uses_ssh=False)
