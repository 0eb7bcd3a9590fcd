"""suricata-verify's Modbus test, with its rules written in otids' rule language.

suricata-verify/modbus/test.rules holds seven Suricata ``modbus:`` keyword rules and
test.yaml the number of alerts each gives on input.pcap (a trimmed Quickdraw capture).
The same rules, translated field for field, must give the same counts through otids'
pipeline and rule engine; so must the ``modbus`` records test.yaml counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
SURICATA = CORPUS / "suricata-verify" / "modbus"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent"),
]

# Suricata's "access" is access to the four data-model tables; otids also calls a read of
# device identification (43/14) a read, hence the table in the selections below.
TABLES = "\n    modbus.table: [coils, discretes, input, holding]"

# sid: (Suricata keyword as in test.rules, otids selection, alerts test.yaml expects)
RULES: dict[int, tuple[str, str, int]] = {
    1: ("function 1", "modbus.function: 1", 2),
    # "assigned": a function code the spec assigns, i.e. our category "public".
    2: ("function assigned", "modbus.category: public", 18),
    # Suricata counts function 23 as both a read and a write.
    3: ("access read", "modbus.access: [read, read_write]" + TABLES, 3),
    4: ("unit 10", "modbus.unit: 10", 18),
    # "address 0<>2" on a read: Suricata matches a request whose range starts below 2
    # (rust/src/modbus/detect.rs: a range starting at 0 is open below).
    5: (
        "unit >9, access read coils, address 0<>2",
        "modbus.unit|gt: 9\n    modbus.access: [read, read_write]\n    modbus.table: coils\n"
        "    modbus.address|lt: 2",
        1,
    ),
    6: ("access write", "modbus.access: [write, read_write]" + TABLES, 3),
    7: ("function 8", "modbus.function: 8", 8),
}


def write_rules(folder: Path) -> None:
    for sid, (keyword, selection, _) in RULES.items():
        (folder / f"sid{sid}.yaml").write_text(
            f"id: suricata-verify-modbus-{sid}\n"
            f"sid: {sid}\n"
            f"title: 'modbus: {keyword}'\n"
            "severity: info\n"
            "detection:\n"
            "  selection:\n"
            f"    {selection}\n"
            "  condition: selection\n",
            encoding="utf-8",
        )


def test_rules_give_suricata_verify_counts(
    run_analysis: Callable[..., Any], tmp_path: Path
) -> None:
    rules = (SURICATA / "test.rules").read_text()
    for sid, (keyword, _, _) in RULES.items():
        assert f"modbus: {keyword}; sid:{sid};" in rules  # the translation is of this file
    write_rules(tmp_path)
    sink = run_analysis([SURICATA / "input.pcap"], rules=[tmp_path], default_rules=False)
    counts = Counter(alert["alert"]["signature_id"] for alert in sink.of("alert"))
    assert counts == {sid: count for sid, (_, _, count) in RULES.items()}


def test_modbus_records_of_test_yaml(run_analysis: Callable[..., Any]) -> None:
    """test.yaml: two ``modbus`` records of function RdCoils, and both sid-4 alerts on MEI
    requests (function 43), here counted on the records themselves."""
    sink = run_analysis([SURICATA / "input.pcap"])
    functions = Counter(record["modbus"]["function"] for record in sink.of("modbus"))
    assert functions["read_coils"] == 2
    assert functions["encapsulated_interface_transport"] == 2
    assert {record["modbus"]["unit_id"] for record in sink.of("modbus")} == {10}
