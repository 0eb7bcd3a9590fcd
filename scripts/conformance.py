#!/usr/bin/env python3
"""suricata-verify conformance of otids' Suricata rule support (``make conformance``).

For every Modbus and DNP3 test of ../shared/corpus/suricata-verify: load its rules (the
``.rules`` files of the test directory) with otids' Suricata loader, apply the settings of
its suricata.yaml that otids understands (``app-layer.protocols.dnp3.max-objects``), run its
pcap through the pipeline and compare, check by check, the number of alerts test.yaml
expects with the number otids gives. Version conditions (``requires: min-version`` /
``lt-version``, on the test or on a check) are read as Suricata :data:`VERSION` would.

Prints a table (test, sid, expected, got, pass) and exits 1 when an applicable check fails.
Tests needing Lua are listed as unsupported, with the reason; so are tests without alert
expectations (their EVE records are checked by tests/conformance/test_dnp3_suricata_eve.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
VERIFY = REPO.parent / "shared" / "corpus" / "suricata-verify"
VERSION = (8, 0, 0)  # the Suricata version otids answers version conditions as

# Suricata's EVE Modbus names for fields otids logs differently (test.yaml filters use them).
MODBUS_FUNCTION_NAMES = {
    1: "RdCoils",
    2: "RdDiscInp",
    3: "RdHoldRegs",
    4: "RdInpRegs",
    5: "WrSingleCoil",
    6: "WrSingleReg",
    7: "RdExcStatus",
    8: "Diagnostic",
    11: "GetCommEventCounter",
    12: "GetCommEventLog",
    15: "WrMultCoils",
    16: "WrMultRegs",
    17: "ReportServerID",
    20: "RdFileRec",
    21: "WrFileRec",
    22: "MaskWrReg",
    23: "RdWrMultRegs",
    24: "RdFIFOQueue",
    43: "MEI",
}
MODBUS_CATEGORY_NAMES = {
    "public": "PUBLIC_ASSIGNED",
    "unassigned": "PUBLIC_UNASSIGNED",
    "user_defined": "USER_DEFINED",
    "reserved": "RESERVED",
}
# Filter fields every otids alert satisfies (one capture link type) or that cannot be
# compared (packet numbers are not logged): they are left out of the comparison.
IGNORED_FIELDS = {"event_type", "alert.signature_id", "packet_info.linktype_name", "pcap_cnt"}


def _modbus_access(modbus: dict[str, Any]) -> str | None:
    """Suricata's ``access_type`` (``READ | COILS``) of an otids ``modbus`` record."""
    from otids.decode.modbus.functions import FUNCTIONS

    code = modbus.get("function_code")
    if not isinstance(code, int) or not 0 <= code < len(FUNCTIONS):
        return None
    info = FUNCTIONS[code]
    if info.access is None or info.table is None:
        return None
    return f"{info.access.upper()} | {info.table.upper()}"


def _field(rec: dict[str, Any], path: str) -> Any:
    """A test.yaml field of an otids alert, Suricata's name mapped to otids' where needed."""
    modbus = rec.get("modbus") or {}
    mapped = {
        "modbus.request.function_code": lambda: MODBUS_FUNCTION_NAMES.get(
            modbus.get("function_code", -1)
        ),
        "modbus.response.category": lambda: MODBUS_CATEGORY_NAMES.get(modbus.get("category", "")),
        "modbus.request.access_type": lambda: _modbus_access(modbus),
    }
    if path in mapped:
        return mapped[path]()
    node: Any = rec
    for part in path.split("."):
        name, _, index = part.partition("[")  # "indicators[0]": a list element
        if not isinstance(node, dict) or name not in node:
            return None
        node = node[name]
        if index:
            position = int(index.rstrip("]"))
            if not isinstance(node, list) or position >= len(node):
                return None
            node = node[position]
    return node


def _version(text: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split(".") if p.isdigit())


def applicable(requires: dict[str, Any] | None) -> bool:
    """Does a ``requires`` block let Suricata :data:`VERSION` run the test or check?"""
    if not requires:
        return True
    if "min-version" in requires and _version(requires["min-version"]) > VERSION:
        return False
    return not ("lt-version" in requires and _version(requires["lt-version"]) <= VERSION)


@dataclass
class Row:
    """One alert check of a test and its outcome."""

    test: str
    sid: int | None
    expected: int | None
    got: int | None
    status: str  # pass, FAIL, skipped (version), unsupported
    note: str = ""


@dataclass
class Alerts:
    """A sink keeping the alert records."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def handle(self, record: dict[str, Any]) -> None:
        if record.get("event_type") == "alert":
            self.records.append(record)


@contextmanager
def dnp3_settings(config: dict[str, Any]) -> Iterator[None]:
    """Apply suricata.yaml's ``app-layer.protocols.dnp3.max-objects`` while running."""
    from otids.decode.dnp3 import objects

    dnp3 = (((config or {}).get("app-layer") or {}).get("protocols") or {}).get("dnp3") or {}
    saved = objects.MAX_OBJECTS
    if isinstance(dnp3.get("max-objects"), int):
        objects.MAX_OBJECTS = dnp3["max-objects"]
    try:
        yield
    finally:
        objects.MAX_OBJECTS = saved


def run_test(test_dir: Path, rule_files: list[Path], pcap: Path) -> list[dict[str, Any]]:
    """The alert records otids gives on ``pcap`` with the test's rules only."""
    from otids.capture.readers import open_capture
    from otids.pipeline import Pipeline
    from otids.rules.loader import load_rules

    config_path = test_dir / "suricata.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    sink = Alerts()
    with dnp3_settings(config):
        pipeline = Pipeline(load_rules(rule_files), sink)
        with open_capture(pcap) as reader:
            pipeline.run(reader)
        pipeline.finish(emit_stats=False)
    return sink.records


def check_test(test_dir: Path) -> list[Row]:
    """The rows of one suricata-verify test."""
    name = test_dir.name
    spec = yaml.safe_load((test_dir / "test.yaml").read_text()) or {}
    checks = [
        c["filter"]
        for c in spec.get("checks") or []
        if "filter" in c and "alert.signature_id" in (c["filter"].get("match") or {})
    ]
    if not checks:
        return [Row(name, None, None, None, "n/a", "no alert expectation (EVE records only)")]
    if not applicable(spec.get("requires")):
        req = spec["requires"]
        return [Row(name, None, None, None, "skipped", f"requires {req} (otids is Suricata 8)")]
    rule_files = sorted(test_dir.glob("*.rules"))
    if any("lua:" in f.read_text() for f in rule_files):
        return [Row(name, None, None, None, "unsupported", "needs Lua rule scripts")]
    pcap = (test_dir / spec["pcap"]) if "pcap" in spec else test_dir / "input.pcap"
    alerts = run_test(test_dir, rule_files, pcap)
    rows: list[Row] = []
    for check in checks:
        match = check["match"]
        sid = int(match["alert.signature_id"])
        if not applicable(check.get("requires")):
            rows.append(Row(name, sid, check["count"], None, "skipped", "version condition"))
            continue
        fields = {k: v for k, v in match.items() if k not in IGNORED_FIELDS}
        got = sum(
            1
            for a in alerts
            if a["alert"]["signature_id"] == sid
            and all(_field(a, k) == v for k, v in fields.items())
        )
        ignored = sorted(set(match) & IGNORED_FIELDS - {"event_type", "alert.signature_id"})
        note = f"not compared: {', '.join(ignored)}" if ignored else ""
        status = "pass" if got == check["count"] else "FAIL"
        rows.append(Row(name, sid, check["count"], got, status, note))
    return rows


def verify_dirs(root: Path = VERIFY) -> list[Path]:
    """The Modbus and DNP3 test directories."""
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and ("modbus" in d.name or "dnp3" in d.name) and (d / "test.yaml").is_file()
    )


def main() -> int:
    if not VERIFY.is_dir():
        print(f"conformance: {VERIFY} is absent; nothing to do")
        return 0
    sys.path.insert(0, str(REPO))
    rows = [row for d in verify_dirs() for row in check_test(d)]
    header = ("test", "sid", "expected", "got", "pass", "note")
    table = [header] + [
        (
            r.test,
            "" if r.sid is None else str(r.sid),
            "" if r.expected is None else str(r.expected),
            "" if r.got is None else str(r.got),
            r.status,
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    failed = [r for r in rows if r.status == "FAIL"]
    passed = sum(r.status == "pass" for r in rows)
    print(f"\n{passed} alert checks passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
