"""Print the man page backuppc-agent(1), rendered from the complete argparse parser.

debian/rules runs it when the package is built: the page lists the same global
options, commands and per-command options as --help, because it is made from the
same parser. argparse-manpage renders the parser: version 1.2 on Debian 12 (module
build_manpages), 4.x on Debian 13 (argparse_manpage). Their .TH lines differ (1.2
puts "Manual" where the date goes, 4.x says "Generated Python Manual"), so this
writes its own, dated by the changelog entry (SOURCE_DATE_EPOCH, which
dpkg-buildpackage sets): the page is the same on every build of one version.
"""

from __future__ import annotations

import os
import sys
import time

# argparse wraps usage and help to the terminal's width: a fixed, wide one keeps the
# page the same wherever it is built, and leaves the wrapping to man.
os.environ["COLUMNS"] = "1000"

try:
    from argparse_manpage.manpage import Manpage  # type: ignore[import-not-found]
except ImportError:  # Debian 12: python3-argparse-manpage 1.2
    from build_manpages.manpage import Manpage  # type: ignore[import-not-found]

from backuppc_agent import __version__
from backuppc_agent.cli.parser import build_manual_parser

SEE_ALSO = r"""
.SH SEE ALSO
.BR ssh\-agent (1),
.BR ssh\-add (1),
.BR backuppc\-agent\-askpass (1).
The configuration, BackupPC's wiring, the exit codes and the metrics:
.I /usr/share/doc/backuppc\-agent/README.md
"""


def main() -> int:
    """Write the page to stdout; return 0."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    rendered = str(Manpage(build_manual_parser()))
    body = rendered.split("\n", 1)[1]  # everything after argparse-manpage's .TH line
    sys.stdout.write(f'.TH BACKUPPC\\-AGENT 1 {date} "backuppc\\-agent {__version__}" ')
    sys.stdout.write('"User Commands"\n' + body + SEE_ALSO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
