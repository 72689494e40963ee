"""BackupPC's host status as the supervisor exports it, against BackupPC's own view.

The real Debian BackupPC runs three dumps that its server schedules itself: one
that fails because no key is loaded, a good full one, and one stopped by the
server while it transfers. The exported values must equal what BackupPC's own
Perl library reads (BackupInfoRead, the server's ``status hosts``), and the
exposition must pass ``promtool check metrics`` where BackupPC's own metrics
page fails it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from backuppc_agent.metrics.scrape import PREFIX
from tests.e2e.test_backuppc import (  # noqa: F401  (site: the shared BackupPC fixture)
    BPC,
    CLIENT_A,
    CLIENT_B,
    CLIENT_SLOW,
    CLIENTS,
    ENV,
    METRICS_LISTEN,
    Site,
    as_backuppc,
    run_bpc,
    site,
    wait_mid_transfer,
)
from tests.helpers import wait_for
from tests.scrape import Scraped
from tests.scrape import scrape as scrape_url

#: BackupPC's own reading of its status and backups, as JSON (JSON::PP is core Perl).
OWN_VIEW = r"""
use strict; use lib "/usr/share/backuppc/lib"; use BackupPC::Lib; use JSON::PP;
my $bpc = BackupPC::Lib->new or die "BackupPC::Lib";
my $err = $bpc->ServerConnect(); die $err if $err;
our %Status; my $reply = $bpc->ServerMesg("status hosts"); eval $reply; die $@ if $@;
my %out;
for my $host (@ARGV) {
    my @b = $bpc->BackupInfoRead($host);
    $out{$host} = {backups => \@b, status => $Status{$host}};
}
print encode_json(\%out);
"""
CGI = "/usr/share/backuppc/cgi-bin/index.cgi"


def server_mesg(*words: str) -> str:
    done = run_bpc(str(BPC / "BackupPC_serverMesg"), *words, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def request_full(client: str) -> None:
    """Ask the server to dump CLIENT now, as the CGI's "Start Full Backup" button does."""
    assert "ok" in server_mesg("backup", client, client, "backuppc", "doFull")


def scrape() -> Scraped:
    return scrape_url(f"http://{METRICS_LISTEN}/metrics")


def value(scraped: Scraped, name: str, **labels: str) -> float | None:
    return scraped.value(f"backuppc_{name}", **labels)


def labelled(scraped: Scraped, name: str, host: str) -> dict[str, str]:
    """The labels (but host) of the one sample of an info metric for ``host``."""
    wanted = f"{PREFIX}backuppc_{name}"
    found = [dict(sample.labels) for sample in scraped.samples
             if sample.name == wanted and sample.labels.get("host") == host]  # fmt: skip
    assert len(found) == 1, found
    return {key: val for key, val in found[0].items() if key != "host"}


def quiet() -> bool:
    """No job queued and none running, as our own metrics say."""
    values = scrape()
    queued = [value(values, "queue_length", queue=q) for q in ("background", "user", "command")]
    states = [labelled(values, "host_state_info", client)["state"] for client in CLIENTS]
    return queued == [0, 0, 0] and states == ["idle"] * len(CLIENTS)


def own_view() -> dict[str, Any]:
    done = subprocess.run(as_backuppc("perl", "-e", OWN_VIEW, *CLIENTS), env=ENV,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@dataclass
class Dumped:
    """The site after the three dumps, and the scrape taken after the failed one."""

    site: Site
    failed: Scraped


@pytest.fixture(scope="module")
def dumped(site: Site) -> Dumped:  # noqa: F811  (the imported fixture)
    """Three dumps run by BackupPC's server: failed (no keys), good, stopped mid-transfer."""
    assert site.ssh_add("-D").returncode == 0
    request_full(CLIENT_A)
    wait_for(lambda: f"Backup failed on {CLIENT_A}" in site.new_log(), timeout=60)
    failed = scrape()
    assert site.ssh_add(str(site.key)).returncode == 0
    # keys loaded: the supervisor's "backup all" queues every host; let that pass end first,
    # or its "nothing to do" for a disabled host overwrites the result under test
    wait_for(lambda: f"Finished full backup on {CLIENT_B}" in site.new_log(), timeout=90)
    wait_for(quiet, timeout=60)
    request_full(CLIENT_A)
    wait_for(lambda: f"Finished full backup on {CLIENT_A}" in site.new_log(), timeout=90)
    request_full(CLIENT_SLOW)
    wait_for(lambda: f"Started full backup on {CLIENT_SLOW}" in site.new_log(), timeout=60)
    wait_for(lambda: labelled(scrape(), "host_state_info", CLIENT_SLOW)
             == {"state": "backup-in-progress"}, timeout=30)  # fmt: skip
    wait_mid_transfer()
    assert "ok" in server_mesg("stop", CLIENT_SLOW, "backuppc", "0")
    wait_for(lambda: f"Backup canceled on {CLIENT_SLOW}" in site.new_log(), timeout=60)
    return Dumped(site, failed)


def test_a_dump_without_keys_shows_failed_keys_not_loaded(dumped: Dumped) -> None:
    failed = dumped.failed
    assert labelled(failed, "last_attempt_info", CLIENT_A) == {
        "result": "failed",
        "error": "keys-not-loaded",
    }
    assert value(failed, "up") == 1
    assert value(failed, "last_backup_end_timestamp_seconds", host=CLIENT_A) is None


def test_every_host_equals_backuppcs_own_view(dumped: Dumped) -> None:
    values, own = scrape(), own_view()
    for client in CLIENTS:
        backups = own[client]["backups"]
        good = [b for b in backups if b["type"] in ("full", "incr")]
        for kind in ("full", "incr", "partial"):
            expected = sum(1 for b in backups if b["type"] == kind)
            assert value(values, "backups", host=client, type=kind) == expected, (client, kind)
        if good:
            last = max(good, key=lambda b: int(b["startTime"]))
            assert value(values, "last_backup_end_timestamp_seconds", host=client) == float(
                last["endTime"]
            )
            assert value(values, "last_backup_number", host=client) == int(last["num"])
            assert value(values, "last_backup_type", host=client, type=last["type"]) == 1
        else:
            assert value(values, "last_backup_end_timestamp_seconds", host=client) is None
        status = own[client]["status"] or {}
        state = status.get("state", "").removeprefix("Status_").replace("_", "-")
        assert labelled(values, "host_state_info", client) == {"state": state}


def test_the_good_and_the_stopped_dump_read_as_backuppc_logged_them(dumped: Dumped) -> None:
    values, own = scrape(), own_view()
    # after the dump, a later queue pass finding nothing to do turns "done" into "idle"
    shown = {"Reason_backup_done": "done", "Reason_nothing_to_do": "idle"}
    result = shown[own[CLIENT_A]["status"]["reason"]]
    assert labelled(values, "last_attempt_info", CLIENT_A) == {"result": result, "error": "none"}
    assert value(values, "last_backup_type", host=CLIENT_A, type="full") == 1
    assert own[CLIENT_SLOW]["status"]["reason"] == "Reason_backup_canceled_by_user"
    stopped = labelled(values, "last_attempt_info", CLIENT_SLOW)
    assert stopped["result"] == "canceled"
    assert stopped["error"] in ("aborted-by-user", "aborted"), own[CLIENT_SLOW]["status"]
    assert value(values, "host_backups_disabled", host=CLIENT_A) == 1
    assert value(values, "hosts") == len(CLIENTS)
    for queue in ("background", "user", "command"):
        assert value(values, "queue_length", queue=queue) is not None
    assert value(values, "up") == 1


def test_our_page_passes_promtool_where_backuppcs_own_fails(dumped: Dumped) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; make system-deps)")
    ours = subprocess.run([promtool, "check", "metrics"], input=scrape().text, text=True,
                          capture_output=True, timeout=30, check=False)  # fmt: skip
    assert ours.returncode == 0, ours.stdout + ours.stderr
    cgi = ENV | {"REQUEST_METHOD": "GET", "REMOTE_USER": "backuppc",
                 "QUERY_STRING": "action=metrics&format=prometheus"}  # fmt: skip
    page = subprocess.run(as_backuppc(CGI), env=cgi, capture_output=True, text=True,
                          timeout=60, check=False).stdout  # fmt: skip
    body = page.split("\r\n\r\n", 1)[-1].split("\n\n", 1)[-1]
    assert f'backuppc_hosts_full_age{{host="{CLIENT_A}"}}' in body, page[:2000]
    theirs = subprocess.run([promtool, "check", "metrics"], input=body, text=True,
                            capture_output=True, timeout=30, check=False)  # fmt: skip
    assert theirs.returncode != 0  # upstream #516: a sample without a value for no incr
    assert "expected float as value" in theirs.stdout + theirs.stderr
