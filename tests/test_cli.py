"""The installed ``otids`` console script, run as a user runs it: a subprocess, exit code,
stdout and stderr. Every run has a timeout.

Bad input must end with exit code 2 and one line that says what is wrong, never a traceback.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import otids
from otids.rules.loader import default_rules_dir, load_rules

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"
ATTACK = PCAPS / "modbus-attack.pcap"
FLOOD = PCAPS / "modbus-flood.pcap"
OTIDS = Path(sys.executable).parent / "otids"
# A sample takes well under a second; this only stops a hung run.
TIMEOUT_S = 60

PCAP_HEADER = 24
PCAP_RECORD = struct.Struct("<IIII")  # seconds, microseconds, captured length, wire length
ALERT_LINE = re.compile(r"\[(\d+)\] ")  # "... HIGH     [9101101] Modbus: force listen only ..."


def otids_run(*args: Any, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OTIDS), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        check=False,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# Rules that need a site variable (--vars) load disabled, and every run says so on stderr.
# That line is about the configuration, not the input: the checks below leave it out, and
# test_bad_input_prints_only_its_error_line holds the stricter contract.
DISABLED_RULES_WARNING = re.compile(r"^otids: warning: .* rule\(s\) disabled")


def problem_lines(stderr: str) -> list[str]:
    """The lines of stderr that describe a problem: click's usage reminder and the
    disabled-rules warning left out."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip()
        and not line.startswith(("Usage:", "Try '"))
        and not DISABLED_RULES_WARNING.match(line)
    ]


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout
    lines = problem_lines(result.stderr)
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0]


def records_of(path: Path) -> list[tuple[int, int, bytes]]:
    """(offset, size, bytes) of each record of a little-endian pcap."""
    data = path.read_bytes()
    out, offset = [], PCAP_HEADER
    while offset < len(data):  # each turn consumes one record
        size = PCAP_RECORD.size + PCAP_RECORD.unpack_from(data, offset)[2]
        out.append((offset, size, data[offset : offset + size]))
        offset += size
    return out


def without_stats(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["event_type"] != "stats"]


# --- normal runs ---------------------------------------------------------------------------


def test_alert_lines_on_the_attack_sample(tmp_path: Path) -> None:
    out = tmp_path / "eve.json"
    result = otids_run("read", ATTACK, "--json", out)
    assert result.returncode == 0, result.stderr
    assert problem_lines(result.stderr) == []
    shown = Counter(int(m[1]) for m in map(ALERT_LINE.search, result.stdout.splitlines()) if m)
    alerts = Counter(
        r["alert"]["signature_id"]
        for r in json_lines(out.read_text())
        if r["event_type"] == "alert"
    )
    assert shown == alerts  # one console line per alert
    assert {9101101, 9101102, 9101103, 9101104, 9101105} <= set(shown)
    assert "Summary" in result.stdout  # the summary table follows the alerts


def test_json_on_stdout_is_only_json() -> None:
    result = otids_run("read", ATTACK, "--json", "-", "--transactions")
    assert result.returncode == 0
    records = json_lines(result.stdout)  # raises on any line that is not JSON
    assert records[-1]["event_type"] == "stats"
    assert {r["event_type"] for r in records} == {"alert", "modbus", "stats"}
    # The console output moved to stderr: the same alerts, one line each.
    shown = [m for m in map(ALERT_LINE.search, result.stderr.splitlines()) if m]
    assert len(shown) == sum(r["event_type"] == "alert" for r in records)


def test_json_file_with_transactions(tmp_path: Path) -> None:
    out = tmp_path / "eve.json"
    result = otids_run("read", ATTACK, "--json", out, "--transactions", "--quiet")
    assert (result.returncode, result.stdout, problem_lines(result.stderr)) == (0, "", [])
    records = json_lines(out.read_text())
    stats = records[-1]["stats"]
    transactions = [r for r in records if r["event_type"] == "modbus"]
    assert len(transactions) == stats["app_layer"]["modbus"]["transactions"] > 0
    for record in records[:-1]:
        for key in (
            "timestamp",
            "flow_id",
            "src_ip",
            "src_port",
            "dest_ip",
            "dest_port",
            "proto",
            "app_proto",
        ):
            assert key in record, (key, record)
    for record in transactions:
        assert {"transaction_id", "unit_id", "function_code", "function"} <= set(record["modbus"])
    # Without --transactions: the same alerts, no transaction records.
    plain = tmp_path / "plain.json"
    otids_run("read", ATTACK, "--json", plain, "--quiet")
    assert without_stats(json_lines(plain.read_text())) == [
        r for r in records if r["event_type"] == "alert"
    ]


def test_quiet_prints_nothing() -> None:
    result = otids_run("read", ATTACK, "--quiet")
    assert (result.returncode, result.stdout, problem_lines(result.stderr)) == (0, "", [])


def test_several_captures_in_one_call(tmp_path: Path) -> None:
    out = tmp_path / "eve.json"
    result = otids_run("read", ATTACK, FLOOD, "--json", out, "--quiet")
    assert result.returncode == 0
    records = json_lines(out.read_text())
    stats = records[-1]["stats"]
    assert stats["capture"]["files"] == 2
    assert stats["capture"]["packets"] == len(records_of(ATTACK)) + len(records_of(FLOOD))
    rules = {r["alert"]["rule_id"] for r in records if r["event_type"] == "alert"}
    assert {"otids-modbus-force-listen-only", "otids-modbus-event-flooded"} <= rules


def test_gzip_capture_gives_the_same_records(tmp_path: Path) -> None:
    compressed = tmp_path / "attack.pcap.gz"
    compressed.write_bytes(gzip.compress(ATTACK.read_bytes()))
    outputs = []
    for capture in (ATTACK, compressed):
        out = tmp_path / f"{capture.name}.json"
        result = otids_run("read", capture, "--json", out, "--transactions", "--quiet")
        assert result.returncode == 0
        outputs.append(without_stats(json_lines(out.read_text())))
    assert outputs[0] == outputs[1] != []


def test_capture_truncated_in_its_last_record(tmp_path: Path) -> None:
    """Exit 0, one warning line, and every complete record analysed: the output equals that
    of the same capture with its last record cleanly removed."""
    data = ATTACK.read_bytes()
    offset, size, _ = records_of(ATTACK)[-1]
    truncated, complete = tmp_path / "truncated.pcap", tmp_path / "complete.pcap"
    truncated.write_bytes(data[: offset + size // 2])
    complete.write_bytes(data[:offset])
    outputs = []
    for capture in (truncated, complete):
        out = tmp_path / f"{capture.stem}.json"
        result = otids_run("read", capture, "--json", out, "--transactions", "--quiet")
        assert result.returncode == 0
        outputs.append(json_lines(out.read_text()))
        if capture is truncated:
            assert_one_clear_line(result, "truncated.pcap", "truncated")
        else:
            assert problem_lines(result.stderr) == []
    assert without_stats(outputs[0]) == without_stats(outputs[1])
    assert sum(r["event_type"] == "alert" for r in outputs[0]) > 0
    assert outputs[0][-1]["stats"]["capture"]["packets"] == len(records_of(ATTACK)) - 1
    assert len(outputs[0][-1]["stats"]["capture"]["warnings"]) == 1


# --- bad input ------------------------------------------------------------------------------


def pcap_header() -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # magic ... linktype 1


# name -> (file content, or None for no file; fragment the error line must contain)
BAD_CAPTURES: dict[str, tuple[bytes | None, str]] = {
    "missing.pcap": (None, "cannot open"),
    "empty.pcap": (b"", "empty"),
    "notes.txt": (b"capture the traffic on Monday\n", "not a pcap or pcapng file"),
    "bad-magic.pcap": (b"\xde\xad\xbe\xef" + bytes(20), "magic 0xdeadbeef"),
    "short-header.pcap": (pcap_header()[:10], "truncated pcap file header"),
}


@pytest.mark.parametrize("name", BAD_CAPTURES)
def test_bad_capture_exits_2_with_one_line(name: str, tmp_path: Path) -> None:
    content, fragment = BAD_CAPTURES[name]
    if content is not None:
        (tmp_path / name).write_bytes(content)
    result = otids_run("read", name, "--quiet", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_clear_line(result, name, fragment)


def test_bad_input_prints_only_its_error_line(tmp_path: Path) -> None:
    result = otids_run("read", "missing.pcap", "--quiet", cwd=tmp_path)
    assert result.stderr.splitlines() == [
        "otids: warning: missing.pcap: cannot open: No such file or directory"
    ]


def test_directory_exits_2_with_one_line(tmp_path: Path) -> None:
    result = otids_run("read", tmp_path)
    assert result.returncode == 2
    assert_one_clear_line(result, "is a directory")


def absurd_capture(tmp_path: Path) -> Path:
    path = tmp_path / "absurd.pcap"
    # One record header claiming 2 GiB of captured bytes, then a little data.
    path.write_bytes(pcap_header() + PCAP_RECORD.pack(0, 0, 0x7FFF_FFFF, 60) + bytes(100))
    return path


def test_absurd_record_length_gives_one_line(tmp_path: Path) -> None:
    result = otids_run("read", absurd_capture(tmp_path), "--quiet")
    assert_one_clear_line(result, "absurd.pcap", "absurd record length 2147483647")


def test_absurd_record_length_exits_2(tmp_path: Path) -> None:
    assert otids_run("read", absurd_capture(tmp_path), "--quiet").returncode == 2


def test_unknown_option_exits_2_with_one_line() -> None:
    result = otids_run("read", ATTACK, "--bogus")
    assert result.returncode == 2
    assert_one_clear_line(result, "--bogus")


# A rule file with a tab where YAML wants spaces (line 6), and one with a bad severity (line 4).
BROKEN_YAML = (
    "id: t-broken\nsid: 9999001\ntitle: broken\nseverity: high\ndetection:\n\tselection:\n"
)
BAD_SEVERITY = (
    "id: t-severity\nsid: 9999002\ntitle: bad severity\nseverity: extreme\n"
    "detection:\n  selection:\n    modbus.function: 8\n  condition: selection\n"
)
GOOD_RULE = (
    "id: t-read-holding\nsid: 9999003\ntitle: read holding registers\nseverity: low\n"
    "detection:\n  selection:\n    modbus.function: 3\n  condition: selection\n"
)


def rule_dir(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder


def test_bad_rules_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    rules = rule_dir(tmp_path, broken=BROKEN_YAML, severity=BAD_SEVERITY)
    result = otids_run("read", ATTACK, "--rules", rules, "--quiet")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing was analysed
    lines = problem_lines(result.stderr)
    assert any(re.search(r"broken\.yaml:6: not valid YAML", line) for line in lines), lines
    assert any(re.search(r"severity\.yaml:4: severity must be one of", line) for line in lines), (
        lines
    )
    assert "2 rule error(s)" in lines[-1]


def test_extra_rules_fire(tmp_path: Path) -> None:
    rules = rule_dir(tmp_path, good=GOOD_RULE)
    result = otids_run("read", ATTACK, "--rules", rules, "--json", "-", "--quiet")
    assert result.returncode == 0
    sids = Counter(
        r["alert"]["signature_id"] for r in json_lines(result.stdout) if r["event_type"] == "alert"
    )
    assert sids[9999003] > 0 and sids[9101101] == 1  # the default rules are still loaded


def test_vars_file_that_is_not_a_map_exits_2(tmp_path: Path) -> None:
    variables = tmp_path / "vars.yaml"
    variables.write_text("- 10.0.0.1\n", encoding="utf-8")
    result = otids_run("read", ATTACK, "--vars", variables, "--quiet")
    assert result.returncode == 2
    assert_one_clear_line(result, "vars.yaml", "must map names to lists")


def test_missing_vars_file_exits_2(tmp_path: Path) -> None:
    result = otids_run("read", ATTACK, "--vars", tmp_path / "nope.yaml", "--quiet")
    assert result.returncode == 2
    assert_one_clear_line(result, "nope.yaml")


def bad_yaml_vars(tmp_path: Path) -> Path:
    variables = tmp_path / "vars.yaml"
    variables.write_text("modbus_clients: [10.0.0.1,\n", encoding="utf-8")  # unclosed list
    return variables


def test_vars_file_that_is_not_yaml_exits_2(tmp_path: Path) -> None:
    result = otids_run("read", ATTACK, "--vars", bad_yaml_vars(tmp_path), "--quiet")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "vars.yaml:2: not valid YAML" in result.stderr  # file:line, then the reason


def test_vars_file_that_is_not_yaml_gives_one_line(tmp_path: Path) -> None:
    result = otids_run("read", ATTACK, "--vars", bad_yaml_vars(tmp_path), "--quiet")
    assert_one_clear_line(result, "vars.yaml:2")


# --- rules subcommands, version, help -------------------------------------------------------


def shipped_rules() -> set[int]:
    """Sids of the embedded rules that load enabled without a variables file."""
    return {rule.sid for rule in load_rules([default_rules_dir()]).rules}


def test_rules_list_shows_every_shipped_rule(tmp_path: Path) -> None:
    result = otids_run("rules", "list")
    assert result.returncode == 0
    listed = {int(s) for s in re.findall(r"\b(9\d{6})\b", result.stdout)}
    assert listed == shipped_rules()
    assert f"{len(shipped_rules())} rules" in result.stdout
    extra = otids_run("rules", "list", "--rules", rule_dir(tmp_path, good=GOOD_RULE))
    assert "9999003" in extra.stdout
    assert f"{len(shipped_rules()) + 1} rules" in extra.stdout


def test_rules_validate_good(tmp_path: Path) -> None:
    result = otids_run("rules", "validate", rule_dir(tmp_path, good=GOOD_RULE))
    assert (result.returncode, result.stdout.strip()) == (0, "1 rule(s) OK")


def test_rules_validate_shipped_rules() -> None:
    result = otids_run("rules", "validate", default_rules_dir())
    assert result.returncode == 0
    assert result.stdout.strip() == f"{len(shipped_rules())} rule(s) OK"


def test_rules_validate_bad(tmp_path: Path) -> None:
    rules = rule_dir(tmp_path, broken=BROKEN_YAML, severity=BAD_SEVERITY, good=GOOD_RULE)
    result = otids_run("rules", "validate", rules)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(result.stdout.splitlines()) == [
        f"{rules / 'broken.yaml'}:6: not valid YAML: "
        "found character '\\t' that cannot start any token",
        f"{rules / 'severity.yaml'}:4: "
        "severity must be one of critical, high, medium, low, info, got 'extreme'",
    ]
    assert problem_lines(result.stderr) == ["otids: error: 2 error(s)"]


def test_version() -> None:
    result = otids_run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"otids, version {otids.__version__}")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--help",), ["read", "rules"]),
        (("read", "--help"), ["--rules", "--json", "--transactions", "--quiet", "--vars"]),
        (("rules", "--help"), ["list", "validate"]),
    ],
)
def test_help(args: tuple[str, ...], words: list[str]) -> None:
    result = otids_run(*args)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: otids")
    for word in words:
        assert word in result.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_pcap_out_keeps_only_alerting_flows(tmp_path: Path, workers: int) -> None:
    """--pcap-out: the frames of the flows that raised alerts (their earlier frames too), none
    of the others; a capture without alerts leaves a valid, empty pcap."""
    from otids.capture.pcapwriter import flow_key
    from otids.capture.readers import open_capture

    out = tmp_path / "alerting.pcap"
    result = otids_run(
        "read", PCAPS / "modbus-attack.pcap", PCAPS / "modbus-polling.pcap", "--quiet",
        "--pcap-out", out, "--workers", workers,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    def flows(path: Path) -> Counter[Any]:
        with open_capture(path) as reader:
            return Counter(flow_key(lt, frame) for _ts, lt, frame, _wl in reader)

    written, attack = flows(out), flows(PCAPS / "modbus-attack.pcap")
    assert written and set(written) <= set(attack)  # nothing of the polling capture
    assert sum(written.values()) == sum(n for k, n in attack.items() if k in written)

    empty = tmp_path / "none.pcap"
    result = otids_run("read", PCAPS / "modbus-polling.pcap", "--quiet", "--pcap-out", empty)
    assert result.returncode == 0
    assert flows(empty) == Counter()
