"""BackupPC's files and status parsed, and the BackupPC part's families, on generated trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from backuppc_agent.backuppc import confdir, perldata, serverstatus
from backuppc_agent.backuppc.confdir import MalformedError
from backuppc_agent.metrics import backuppc as backuppc_part
from backuppc_agent.metrics.backuppc import BackupPCPart
from backuppc_agent.metrics.scrape import ScrapeErrors
from tests.bpc_tree import backups_line, make_tree
from tests.scrape import scrape


def test_the_last_good_backup_is_the_full_or_incr_that_started_last() -> None:
    text = (backups_line(0, "full", 100, 200) + backups_line(1, "incr", 300, 350)
            + backups_line(2, "partial", 400, 450) + backups_line(3, "active", 500, 0))  # fmt: skip
    backups = serverstatus.parse_backups(text.replace("\t500\t0\t", "\t500\t\t"))
    assert (backups.last_number, backups.last_type, backups.last_end) == (1, "incr", 350.0)
    assert backups.counts == {"full": 1, "incr": 1, "partial": 1, "active": 1}


def test_a_stopped_dump_kept_as_partial_has_no_end_time() -> None:
    # the line BackupPC 4.4.0 wrote for a full stopped mid-transfer by the server
    fields = ["0", "partial", "1795976153", *[""] * 11, "3", "", "", "0", "", "1", "rsync", "0",
              "", "4.4.0", "4", "0", "", ""]  # fmt: skip
    line = "\t".join(fields) + "\n"
    backups = serverstatus.parse_backups(line)
    assert backups.counts["partial"] == 1
    assert backups.last_number is None


@pytest.mark.parametrize("line", ["0\tful", "0\tfull\t100", "x\tfull\t1\t2\t", "0\tfull\t1\t\t"])
def test_a_half_written_backups_line_is_malformed(line: str) -> None:
    with pytest.raises(MalformedError):
        serverstatus.parse_backups(backups_line(0, "full", 1, 2) + line)


def test_hosts_are_labelled_as_backuppc_keys_them_and_no_path_is_built_from_a_bad_name(
    tmp_path: Path,
) -> None:
    config = make_tree(tmp_path, {"web1": [("full", 1, 2)], "db.example-1": []})
    (Path(config.conf_dir) / "hosts").write_text(
        "host dhcp user\n# a comment\nWeb1 0 backuppc\n\n  \nbad/name 0 x\n"
        "db.example-1 1 u\n.. 0 x\na\\ /b 0 x\n"
    )
    values = scrape([BackupPCPart(ScrapeErrors(), config)])
    assert values.value("backuppc_hosts") == 2  # bad/name: skipped by BackupPC too
    assert values.value("backuppc_last_backup_number", host="web1") == 0
    assert values.value("backuppc_backups", host="db.example-1", type="full") == 0
    assert values.errors["backuppc"] == 2  # "..", "a /b"


def test_config_numbers_are_read_only_when_plain() -> None:
    settings = confdir.assignments("$Conf{FullPeriod} = 6.97;  # weekly\n$Conf{IncrPeriod}=0.5;\n")
    assert confdir.config_number(settings, "FullPeriod") == 6.97
    assert confdir.config_number(settings, "IncrPeriod") == 0.5
    assert confdir.config_number(settings, "BackupsDisable") is None
    expression = confdir.assignments("$Conf{FullPeriod} = 7 * 0.99;\n")
    with pytest.raises(MalformedError):
        confdir.config_number(expression, "FullPeriod")


@pytest.mark.parametrize(
    ("reason", "error", "result", "word"),
    [
        ("Reason_backup_done", "", "done", "none"),
        ("Reason_backup_failed", "DumpPreUserCmd returned error status 1280", "failed",
         "keys-not-loaded"),
        ("Reason_backup_failed", "DumpPreUserCmd returned error status 1536", "failed",
         "ssh-master-failed"),
        ("Reason_backup_failed", "DumpPreUserCmd returned error status 256", "failed",
         "pre-command-failed"),
        ("Reason_backup_failed", "aborted by signal=INT", "aborted", "aborted"),
        ("Reason_backup_canceled_by_user", "aborted by user (signal=INT)", "canceled",
         "aborted-by-user"),
        ("Reason_no_ping", "no ping response", "no-ping", "no-ping"),
        ("Reason_something_new", "Tar exited with error 512 () status", "other",
         "transfer-failed"),
        (None, None, "none", "none"),
        ("Reason_backup_failed", "a\nnew\nfree text \"error\" " * 50, "failed", "other"),
    ],
)  # fmt: skip
def test_free_text_becomes_a_bounded_word(
    reason: str | None, error: str | None, result: str, word: str
) -> None:
    assert backuppc_part.result_word(reason, error) == result
    assert backuppc_part.error_word(error) == word
    assert result in backuppc_part.RESULTS


def test_states_are_bounded_words() -> None:
    assert backuppc_part.state_word("Status_backup_in_progress") == "backup-in-progress"
    assert backuppc_part.state_word("Status_idle") == "idle"
    assert backuppc_part.state_word("Status_'}{weird") == "other"


def test_perl_data_reads_nested_hashes_arrays_quotes_and_undef() -> None:
    text = (
        "$QueueLen = {'BgQueue' => 2,'UserQueue' => 0,'CmdQueue' => 1};"
        "%Status = ('a' => {'error' => 'it\\'s \\\\ ok', \"x\" => \"tab\\there \\$1\", "
        "n => -1.5e3, l => [1, undef, 'z']});\n"
    )
    data = perldata.parse_statements(text)
    assert data["QueueLen"] == {"BgQueue": 2, "UserQueue": 0, "CmdQueue": 1}
    assert data["Status"]["a"] == {"error": "it's \\ ok", "x": "tab\there $1", "n": -1500.0,
                                   "l": [1, None, "z"]}  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        '%Status = ("a" => {"b" => 1}',  # cut short
        '%Status = ("a" => system("rm -rf /"));',  # code, never run
        "%Status = (" + "[" * 50 + "]" * 50 + ");",  # deeper than any BackupPC data
        '%Status = ("a" => "unterminated);',
        "print 1;",
    ],
)
def test_anything_but_plain_perl_data_is_refused(text: str) -> None:
    with pytest.raises(perldata.PerlDataError):
        perldata.parse_statements(text)


def test_the_part_exports_each_hosts_backups_and_last_attempt(tmp_path: Path) -> None:
    config = make_tree(
        tmp_path,
        {"web1": [("full", 100, 200), ("incr", 300, 360)], "new": [], "db": [("partial", 5, 9)]},
        {"web1": ("Reason_backup_failed", "DumpPreUserCmd returned error status 1280")},
    )
    (Path(config.conf_dir) / "db.pl").write_text(
        "$Conf{BackupsDisable} = 1;\n$Conf{IncrPeriod} = 2;\n"
    )
    values = scrape([BackupPCPart(ScrapeErrors(), config)])
    assert values.value("backuppc_up") == 0  # no server: status.pl's last known state
    assert values.value("backuppc_hosts") == 3
    assert values.value("backuppc_last_backup_end_timestamp_seconds", host="web1") == 360
    assert values.value("backuppc_last_backup_number", host="web1") == 1
    assert values.value("backuppc_last_backup_type", host="web1", type="incr") == 1
    assert values.value("backuppc_last_backup_type", host="web1", type="full") == 0
    assert values.value("backuppc_last_backup_end_timestamp_seconds", host="db") is None
    assert values.value("backuppc_backups", host="db", type="partial") == 1
    attempt = {"error": "keys-not-loaded", "host": "web1", "result": "failed"}
    assert values.value("backuppc_last_attempt_info", **attempt) == 1
    none = {"error": "none", "host": "new", "result": "none"}
    assert values.value("backuppc_last_attempt_info", **none) == 1
    assert values.value("backuppc_host_backups_disabled", host="db") == 1
    assert values.value("backuppc_host_backup_period_seconds", host="web1") == 0.97 * 86400
    assert values.value("backuppc_host_backup_period_seconds", host="db") == 2 * 86400
    assert values.value("backuppc_pool_files", pool="pool") == 1234
    assert values.value("backuppc_pool_bytes", pool="cpool") == 100 * 1024
    assert not values.by("backuppc_host_state_info", "host")  # server down
    assert not values.by("backuppc_queue_length", "queue")
    assert values.errors["backuppc"] == 0


def test_a_half_written_backups_file_skips_that_host_and_counts_an_error(tmp_path: Path) -> None:
    config = make_tree(tmp_path, {"ok": [("full", 1, 2)], "torn": [("full", 1, 2)]})
    with (Path(config.top_dir) / "pc" / "torn" / "backups").open("a") as torn:
        torn.write("1\tinc")
    values = scrape([BackupPCPart(ScrapeErrors(), config)])
    assert values.value("backuppc_last_backup_number", host="ok") == 0
    assert not any(sample.labels.get("host") == "torn" for sample in values.samples)
    assert values.errors["backuppc"] == 1


def test_a_torn_status_file_is_counted_and_hosts_still_exported(tmp_path: Path) -> None:
    config = make_tree(tmp_path, {"ok": [("full", 1, 2)]}, {"ok": ("Reason_backup_done", "")})
    status = Path(config.log_dir) / "status.pl"
    status.write_text(status.read_text()[:150])
    values = scrape([BackupPCPart(ScrapeErrors(), config)])
    assert values.value("backuppc_last_backup_end_timestamp_seconds", host="ok") == 2
    assert values.errors["backuppc"] == 1


def test_no_hosts_file_no_backuppc_metrics_and_no_error(tmp_path: Path) -> None:
    config = make_tree(tmp_path, {})
    (Path(config.conf_dir) / "hosts").unlink()
    values = scrape([BackupPCPart(ScrapeErrors(), config)])
    assert not any(s.name.startswith("backuppc_agent_backuppc_") for s in values.samples)
    assert values.errors["backuppc"] == 0


def test_a_config_set_by_an_expression_falls_back_to_the_default_period(tmp_path: Path) -> None:
    config = make_tree(tmp_path, {"h": [("full", 1, 2)]}, main_conf="$Conf{FullPeriod} = 7*1;\n")
    values = scrape([BackupPCPart(ScrapeErrors(), config)])
    assert values.value("backuppc_host_backup_period_seconds", host="h") == 24 * 3600
    assert values.errors["backuppc"] == 1
