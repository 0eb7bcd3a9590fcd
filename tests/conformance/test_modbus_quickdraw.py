"""Digital Bond Quickdraw's Modbus test captures through the pipeline with the shipped rules.

Quickdraw's Snort rules were written to fire on these captures but the repository ships no
expected-alert list, so the alert counts per shipped rule are otids' own, pinned, with the
request counts tshark finds for the rules that test a function (tshark -r FILE -Y modbus).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
QUICKDRAW = CORPUS / "public" / "digitalbond-quickdraw"
ZEEK_LOGS = CORPUS / "public" / "automayt-ics-pcap-zeeklogs"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent"),
]

Analyse = Callable[..., Any]

FORCE_LISTEN_ONLY = 9101101
RESTART_COMMUNICATIONS = 9101102
CLEAR_COUNTERS = 9101103
READ_DEVICE_IDENTIFICATION = 9101104
REPORT_SERVER_ID = 9101105
INVALID_PROTOCOL_ID = 9101001
INVALID_LENGTH = 9101002
INVALID_FUNCTION_CODE = 9101003
INVALID_VALUE = 9101005
UNSOLICITED_RESPONSE = 9101007
NON_MODBUS_TRAFFIC = 9101009
POINT_SCAN = 9101110
FUNCTION_CODE_SCAN = 9101111
NO_RESPONSE = 9101112
WRITE_READBACK_CHANGED = 9101113


def alerts_by_sid(sink: Any) -> Counter[int]:
    return Counter(alert["alert"]["signature_id"] for alert in sink.of("alert"))


def test_part1_alerts_per_rule(run_analysis: Analyse) -> None:
    sink = run_analysis([QUICKDRAW / "modbus_test_data_part1.pcap"])
    assert alerts_by_sid(sink) == {
        # tshark: 3 requests 8/4, 3 requests 8/1, 2 requests 8/10, 2 requests 43/14 and
        # 2 requests 17, all from 10.0.0.57.
        FORCE_LISTEN_ONLY: 3,
        RESTART_COMMUNICATIONS: 3,
        CLEAR_COUNTERS: 2,
        READ_DEVICE_IDENTIFICATION: 2,
        REPORT_SERVER_ID: 2,
        # The two read device identification requests carry one byte too many.
        INVALID_LENGTH: 2,
        # 10.0.0.57:2585 sends garbage to 502 (MBAP length 0x8804: Quickdraw's "illegal
        # packet size"); 10.0.0.8:502 itself opens a connection to 10.0.0.57:4446 and sends
        # exception responses, which fail the request probe (see test_modbus_arkime.py).
        NON_MODBUS_TRAFFIC: 2,
        # That reversed connection idles out while bypassed and is picked up again midstream:
        # its later responses have no request and one of them a protocol id of 8960.
        UNSOLICITED_RESPONSE: 2,
        INVALID_PROTOCOL_ID: 1,
        # A read device identification request (43/14) at 12:05:58 is never answered.
        NO_RESPONSE: 1,
    }


def test_part2_function_code_scan_is_decoded(run_analysis: Analyse) -> None:
    """Each function code 0..127 is requested once by 192.168.66.235:2582; Zeek logged 141
    Modbus messages of that session (automayt logs), one per transaction of ours."""
    sink = run_analysis([QUICKDRAW / "modbus_test_data_part2.pcap"])
    requested = {
        r["modbus"]["function_code"] for r in sink.of("modbus") if "request" in r["modbus"]
    }
    assert requested == set(range(128))
    zeek = [
        line
        for line in (ZEEK_LOGS / "MODBUS-TestDataPart2" / "modbus.log").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(sink.of("modbus")) == len(zeek) == 141
    assert [a for a in sink.of("alert") if a["alert"]["signature_id"] == NON_MODBUS_TRAFFIC] == []


def test_part2_alerts_per_rule(run_analysis: Analyse) -> None:
    """The counts a probe that accepts function 0 gives (checked by patching the probe)."""
    sink = run_analysis([QUICKDRAW / "modbus_test_data_part2.pcap"])
    assert alerts_by_sid(sink) == {
        # The scan sends every function with four zero bytes of data: function 0 is invalid,
        # quantity 0 is invalid for 1-4, 15 and 16, and 6, 11, 12, 17 and 20-24 do not
        # take a 4-byte body.
        INVALID_FUNCTION_CODE: 1,
        INVALID_VALUE: 6,
        INVALID_LENGTH: 9,
        REPORT_SERVER_ID: 1,
        # Quickdraw's "function code scan" and "points list scan": the threshold rules
        # (3 and 5 exceptions a minute, once per window) over a scan of 94 s.
        FUNCTION_CODE_SCAN: 2,
        POINT_SCAN: 1,
        # The scan writes coil 0 with 0 (function 5), then reads it back as 1 (function 1).
        WRITE_READBACK_CHANGED: 1,
    }


def test_modicon_umas_is_classified_not_dropped(run_analysis: Analyse) -> None:
    """Function 90 (Schneider UMAS) is reserved by the Modbus spec (annex A): every request
    is kept as a transaction of its own; only the two with an MBAP length of 255 (over the
    254 maximum) raise an event."""
    sink = run_analysis([QUICKDRAW / "modicon_test.pcap"])
    functions = Counter(
        (r["modbus"]["function_code"], r["modbus"]["category"]) for r in sink.of("modbus")
    )
    assert functions == {(90, "reserved"): 89}
    assert alerts_by_sid(sink) == {INVALID_LENGTH: 2}
