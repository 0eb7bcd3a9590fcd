"""The command line: ``otids read --suricata-rules``, ``.rules`` files in a ``--rules``
directory, and ``otids rules add-source`` / ``otids rules update`` on local sources."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from otids.cli import main

REPO = Path(__file__).resolve().parents[3]
CAPTURE = REPO / "pcaps" / "modbus-attack.pcap"
RULES = (
    'alert modbus any any -> any any (msg:"Modbus diagnostics"; modbus: function 8; '
    "classtype:attempted-dos; sid:4000001; rev:2;)\n"
    'alert modbus any any -> any any (msg:"needs Lua"; lua:x.lua; sid:4000002;)\n'
)


def alerts(output: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [r for r in records if r["event_type"] == "alert"]


@pytest.mark.parametrize("option", ["--suricata-rules", "--rules"])
def test_read_with_suricata_rules(tmp_path: Path, option: str) -> None:
    rules = tmp_path / "site.rules"
    rules.write_text(RULES)
    where = rules if option == "--suricata-rules" else tmp_path
    out = tmp_path / "eve.json"
    result = CliRunner().invoke(
        main,
        ["read", "--no-default-rules", option, str(where), "--json", str(out), str(CAPTURE)],
    )
    assert result.exit_code == 0, result.output
    got = alerts(out.read_text())
    assert got and {a["alert"]["signature_id"] for a in got} == {4000001}  # type: ignore[index]
    alert = got[0]["alert"]
    assert alert["rev"] == 2 and alert["category"] == "Attempted Denial of Service"  # type: ignore[index]
    assert f"{rules}:2: sid 4000002 skipped: unsupported option 'lua'" in result.stderr


def suricata_update_missing() -> bool:
    here = Path(sys.executable).parent / "suricata-update"
    return not here.is_file() and shutil.which("suricata-update") is None


@pytest.mark.skipif(suricata_update_missing(), reason="suricata-update is not installed")
def test_rule_sources_offline(tmp_path: Path) -> None:
    source = tmp_path / "vendor.rules"
    source.write_text(
        RULES + 'alert http any any -> any any (msg:"web"; content:"GET"; sid:4000003;)\n'
    )
    data = tmp_path / "data"
    runner = CliRunner()
    added = runner.invoke(main, ["rules", "add-source", "--data-dir", str(data), "v", str(source)])
    assert added.exit_code == 0, added.output
    result = runner.invoke(main, ["rules", "update", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "3 rules from 1 source(s); 2 Modbus/DNP3 rules: 1 loaded, 1 skipped" in result.stdout
    assert "skipped 1: unsupported option 'lua'" in result.stdout
    kept = (data / "rules" / "otids.rules").read_text()
    assert "sid:4000001;" in kept and "sid:4000002" not in kept


def test_update_without_source_refuses(tmp_path: Path) -> None:
    """With no source suricata-update would download ET Open: otids asks for a source."""
    result = CliRunner().invoke(main, ["rules", "update", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no rule source" in result.stderr


def test_add_source_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["rules", "add-source", "--data-dir", str(tmp_path), "x", str(tmp_path / "none")]
    )
    assert result.exit_code != 0
    assert "no such file" in result.stderr
