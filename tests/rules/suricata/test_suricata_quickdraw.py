"""Digital Bond Quickdraw's Snort rules, loaded as Suricata rules, on their trigger captures.

The repository ships no expected-alert list: the counts per sid are otids' own, pinned, and
compared with otids' native rules in the README (Suricata and Snort rules). The site
variables name the captures' Modbus and DNP3 clients and servers; 10.0.0.9, which reads and
writes the PLC 10.0.0.3 in modbus_test_data_part1.pcap, is left out on purpose (an
"unauthorized" client).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from otids.rules.loader import load_rules

QUICKDRAW = "public/digitalbond-quickdraw"
VARIABLES = {
    "MODBUS_CLIENT": ["10.0.0.57", "192.168.66.235", "192.168.63.100"],
    "MODBUS_SERVER": ["10.0.0.3", "10.0.0.8", "166.161.16.230", "192.168.63.253"],
    "DNP3_CLIENT": ["10.0.0.8", "192.168.66.33"],
    "DNP3_SERVER": ["10.0.0.3", "192.168.66.34"],
}

CAPTURES = [
    (
        "modbus.rules",
        "modbus_test_data_part1.pcap",
        {
            1111001: 3,  # force listen only mode (8/4)
            1111002: 3,  # restart communications (8/1)
            1111003: 2,  # clear counters (8/10)
            1111004: 2,  # read device identification (43)
            1111005: 2,  # report server id (17)
            1111006: 3,  # reads from 10.0.0.9, not a declared client
            1111007: 3,  # writes from 10.0.0.9
            1111008: 2,  # segments over 300 bytes
            1111009: 2,  # segments not starting with a protocol id of 0
            1111010: 1,  # server busy exceptions: 3 in a minute
            1111011: 1,  # acknowledge exceptions: 3 in a minute
            1111012: 2,  # MBAP length not the segment's length
        },
    ),
    (
        "modbus.rules",
        "modbus_test_data_part2.pcap",
        {
            1111004: 1,  # the scan's function 43 ...
            1111005: 1,  # ... and 17
            1111013: 1,  # illegal data address exceptions: 5 in a minute
            1111014: 34,  # illegal function exceptions: every 3rd of a minute (type threshold)
        },
    ),
    (
        "dnp3.rules",
        "dnp3_test_data_part1.pcap",
        {
            1111201: 7,  # disable unsolicited
            1111202: 2,  # segments not starting with 05 64
            1111203: 1,  # unsolicited responses: 5 in 10 s
            11112031: 1,  # the same rule again under another sid
            1111204: 1,  # cold restart from a declared client
            1111205: 1,  # ... and from another
            1111206: 2,  # reads from an undeclared client
            1111207: 3,  # writes from an undeclared client
            1111208: 3,  # other requests from an undeclared client
            1111209: 4,  # stop application
            1111210: 2,  # warm restart
            1111211: 2,  # broadcast from a declared client
            1111212: 2,  # ... and from another
        },
    ),
    ("dnp3.rules", "dnp3_test_data_part2.pcap", {1111213: 2}),  # point scan: 5 in 30 s
    ("modicon.rules", "modicon_test.pcap", {1111015: 1}),
]


@pytest.mark.corpus
@pytest.mark.parametrize(("rules", "capture", "expected"), CAPTURES)
def test_quickdraw_rules_on_their_captures(
    corpus: Path, run_analysis: Any, rules: str, capture: str, expected: dict[int, int]
) -> None:
    sink = run_analysis(
        [corpus / QUICKDRAW / capture],
        rules=[corpus / QUICKDRAW / rules],
        default_rules=False,
        transactions=False,
        variables=VARIABLES,
    )
    got = Counter(a["alert"]["signature_id"] for a in sink.of("alert"))
    assert dict(got) == expected


@pytest.mark.corpus
def test_quickdraw_files_load(corpus: Path) -> None:
    """Every rule of the three files loads; only dnp3.rules' repeated sids are warned of."""
    ruleset = load_rules(
        [corpus / QUICKDRAW / f for f in ("modbus.rules", "dnp3.rules", "modicon.rules")],
        VARIABLES,
    )
    assert len(ruleset.packet_rules) == len(ruleset.rules) == 14 + 15 + 2
    # modicon.rules' third rule names $MODICON_CLIENT, which the site did not define
    assert ruleset.missing_vars() == {"MODICON_CLIENT": ["suricata-1-1111017"]}
    assert all("duplicates line" in w for w in ruleset.warnings)
    assert len(ruleset.warnings) == 7
