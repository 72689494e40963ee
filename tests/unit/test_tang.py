"""Clevis argument tuples and pin configs, the JWE's place, the listener's waiting status."""

from __future__ import annotations

import json
from pathlib import Path

from backuppc_agent import askpass
from backuppc_agent.agent import tang
from backuppc_agent.agent.tang import Pin
from backuppc_agent.agent.unlock import REFUSED_TANG, WAITING_TANG, KeyOutcome, waiting_status


def test_one_tang_is_a_tang_pin_and_several_an_sss_pin_each_with_its_thumbprint() -> None:
    one = tang.pin_config([Pin("http://t1", "A")], 1)
    assert one == ("tang", json.dumps({"thp": "A", "url": "http://t1"}, sort_keys=True))
    pin, config = tang.pin_config([Pin("http://t1", "A"), Pin("http://t2", "B")], 1)
    assert pin == "sss"
    assert json.loads(config) == {
        "t": 1,
        "pins": {"tang": [{"url": "http://t1", "thp": "A"}, {"url": "http://t2", "thp": "B"}]},
    }


def test_clevis_never_gets_y_so_the_pinned_thumbprint_is_checked() -> None:
    assert tang.make_encrypt_command("tang", "{}") == ("clevis", "encrypt", "tang", "{}")
    assert askpass.CLEVIS_DECRYPT == ("clevis", "decrypt")
    assert "-y" not in tang.make_encrypt_command("sss", "{}")


def test_each_key_has_its_own_jwe_in_the_state_dir() -> None:
    first = tang.jwe_path(Path("/s"), Path("/a/id"))
    second = tang.jwe_path(Path("/s"), Path("/b/id"))
    assert first.parent == Path("/s/unlock")
    assert first.name.startswith("id-")
    assert first.suffix == ".jwe"
    assert first != second


def test_waiting_on_tang_outranks_a_refusal_and_plain_outcomes_wait_on_nothing() -> None:
    assert waiting_status([]) == ("", "")
    assert waiting_status([KeyOutcome("loaded")]) == ("", "")
    refused = KeyOutcome("refused", REFUSED_TANG)
    down = KeyOutcome("no Tang answers: http://t", WAITING_TANG)
    assert waiting_status([refused]) == (REFUSED_TANG, "refused")
    assert waiting_status([refused, down, down]) == (WAITING_TANG, "no Tang answers: http://t")
