"""``otids rules test``: every rule's captures give the expected alert counts."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from otids.cli import main
from otids.rules.loader import resolve_test_path
from tests.conftest import REPO

RULE = """\
id: t-report-server-id
sid: 9900001
title: report server id
severity: low
detection:
  selection:
    modbus.function: 17
tests:
  - capture: {capture}
    alerts: {alerts}
"""


def test_shipped_rule_tests_pass() -> None:
    result = CliRunner().invoke(main, ["rules", "test"])
    assert result.exit_code == 0, result.output
    assert " 0 failed, 0 skipped" in result.output
    assert "otids-modbus-function-code-scan" in result.output


def write_rule(tmp_path: Path, capture: str, alerts: int) -> Path:
    path = tmp_path / "rule.yaml"
    path.write_text(RULE.format(capture=capture, alerts=alerts), encoding="utf-8")
    return path


def test_failing_test_exits_1(tmp_path: Path) -> None:
    attack = str(REPO / "pcaps" / "modbus-attack.pcap")
    ok = CliRunner().invoke(
        main, ["rules", "test", "--no-default-rules", "--rules", write_rule(tmp_path, attack, 2)]
    )
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(
        main, ["rules", "test", "--no-default-rules", "--rules", write_rule(tmp_path, attack, 5)]
    )
    assert bad.exit_code == 1
    assert "FAIL" in bad.output and "1 failed" in bad.output


def test_missing_capture_is_skipped(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "no/such.pcap", 1)
    result = CliRunner().invoke(main, ["rules", "test", "--no-default-rules", "--rules", path])
    assert result.exit_code == 0
    assert "1 skipped" in result.output


def test_paths_resolve_from_the_rule_file_or_a_parent(tmp_path: Path) -> None:
    rule = REPO / "rules" / "modbus" / "point-scan.yaml"
    assert resolve_test_path(str(rule), "pcaps/modbus-attack.pcap") == (
        REPO / "pcaps" / "modbus-attack.pcap"
    )
    assert resolve_test_path(str(rule), "point-scan.yaml") == rule
    assert resolve_test_path(str(rule), "nothing.pcap") is None
