"""Damaged captures end-to-end: whatever is wrong with the file, the packets before the
damage are analysed exactly as if the file had ended there, ``otids read`` says what was
wrong in one line (never a traceback), and exits 2 for damage (0 for a file merely cut
short, as an interrupted capture leaves it).

tests/capture/test_readers.py covers the reader alone on synthetic files; this module runs
the whole analysis on real attack captures.
"""

from __future__ import annotations

import itertools
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from otids.capture.readers import open_capture
from otids.pipeline import Pipeline
from otids.rules.engine import RuleSet
from otids.rules.loader import default_rules_dir, load_rules

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO / "pcaps"
SMALL = PCAPS / "dnp3-attack.pcap"  # 3 KB: every byte offset stays cheap
ATTACK = PCAPS / "modbus-attack.pcap"
OTIDS = Path(sys.executable).parent / "otids"
TIMEOUT_S = 60  # one small capture takes well under a second: this only stops a hang

PCAP_HEADER = 24
PCAP_RECORD = struct.Struct("<IIII")  # seconds, microseconds, captured length, wire length


class _Alerts:
    """A sink keeping the signature ids of the alerts."""

    def __init__(self) -> None:
        self.sids: Counter[int] = Counter()

    def handle(self, record: dict[str, object]) -> None:
        if record["event_type"] == "alert":
            alert = record["alert"]
            assert isinstance(alert, dict)
            self.sids[alert["signature_id"]] += 1


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules([default_rules_dir()])


def analyse(path: Path, ruleset: RuleSet) -> tuple[Counter[int], int, str | None, bool]:
    """(alert sids, packets analysed, reader warning, damaged) of one capture."""
    sink = _Alerts()
    pipeline = Pipeline(ruleset, sink)
    with open_capture(path) as reader:
        pipeline.run(reader)
    pipeline.finish(emit_stats=False)
    return sink.sids, pipeline.packets, reader.warning, reader.damaged


def record_offsets(data: bytes) -> list[int]:
    """Start offset of each record of a little-endian pcap, then the file's end."""
    out, offset = [], PCAP_HEADER
    while offset < len(data):  # each turn consumes one record
        out.append(offset)
        offset += PCAP_RECORD.size + PCAP_RECORD.unpack_from(data, offset)[2]
    return [*out, len(data)]


def otids_read(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OTIDS), "read", str(path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def problem_lines(stderr: str) -> list[str]:
    """stderr without the configuration warning about rules disabled for lack of --vars."""
    return [line for line in stderr.splitlines() if "rule(s) disabled" not in line]


def test_truncated_at_every_offset_analyses_the_complete_records(
    tmp_path: Path, ruleset: RuleSet
) -> None:
    """Cut at every byte: the alerts are those of the complete records before the cut."""
    data = SMALL.read_bytes()
    offsets = record_offsets(data)
    path = tmp_path / "cut.pcap"
    clean: dict[int, tuple[Counter[int], int]] = {}  # record count -> (alerts, packets)
    for count, end in enumerate(offsets):
        path.write_bytes(data[:end])
        sids, packets, warning, _ = analyse(path, ruleset)
        assert warning is None and packets == count
        clean[count] = (sids, packets)
    assert clean[len(offsets) - 1][0], "the intact capture raises alerts"
    complete = 0
    for cut in range(PCAP_HEADER, len(data)):
        while offsets[complete + 1] <= cut:
            complete += 1
        if cut == offsets[complete]:
            continue  # a clean end, checked above
        path.write_bytes(data[:cut])
        sids, packets, warning, damaged = analyse(path, ruleset)
        assert (sids, packets) == clean[complete], cut
        assert warning is not None and "truncated record" in warning
        assert not damaged


def with_record_length(data: bytes, index: int, caplen: int) -> bytes:
    """``data`` with the captured length of record ``index`` replaced."""
    offset = record_offsets(data)[index]
    _, _, _, wirelen = PCAP_RECORD.unpack_from(data, offset)
    sec_usec = data[offset : offset + 8]
    return data[:offset] + sec_usec + struct.pack("<II", caplen, wirelen) + data[offset + 16 :]


@pytest.mark.parametrize("caplen", [0x7FFF_FFFF, 0xFFFF_FFFF, 20 * 1024 * 1024])
def test_absurd_record_length_midway(tmp_path: Path, ruleset: RuleSet, caplen: int) -> None:
    """An absurd length halfway: the records before it are analysed, then exit 2."""
    data = ATTACK.read_bytes()
    middle = len(record_offsets(data)) // 2
    damaged_path, prefix_path = tmp_path / "absurd.pcap", tmp_path / "prefix.pcap"
    damaged_path.write_bytes(with_record_length(data, middle, caplen))
    prefix_path.write_bytes(data[: record_offsets(data)[middle]])
    sids, packets, warning, damaged = analyse(damaged_path, ruleset)
    assert (sids, packets) == analyse(prefix_path, ruleset)[:2]
    assert damaged and warning is not None and f"absurd record length {caplen}" in warning
    result = otids_read(damaged_path)
    assert result.returncode == 2
    lines = problem_lines(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, lines
    assert "absurd.pcap" in lines[0] and f"{middle} records before it were analysed" in lines[0]


# --- pcapng ---------------------------------------------------------------------------------


def block(kind: int, body: bytes) -> bytes:
    """A little-endian pcapng block: type, total length, body padded to 4, total length."""
    body += b"\0" * (-len(body) % 4)
    size = len(body) + 12
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
IDB = block(1, struct.pack("<HHI", 1, 0, 0))  # Ethernet, no snap length, no options


def to_pcapng(data: bytes, insert: Callable[[int], bytes] = lambda i: b"") -> list[bytes]:
    """The blocks of a pcapng holding ``data``'s records (SHB, IDB, one EPB each);
    ``insert(i)`` gives bytes to put before the i-th packet block."""
    blocks = [SHB, IDB]
    offsets = record_offsets(data)
    for i, (start, end) in enumerate(itertools.pairwise(offsets)):
        sec, usec, caplen, wirelen = PCAP_RECORD.unpack_from(data, start)
        ticks = sec * 1_000_000 + usec
        frame = data[start + PCAP_RECORD.size : end]
        blocks.append(insert(i))
        header = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, caplen, wirelen)
        blocks.append(block(6, header + frame))
    return blocks


def test_pcapng_with_unknown_blocks_reads_everything(tmp_path: Path, ruleset: RuleSet) -> None:
    """Unknown block types (custom, vendor) are skipped: the analysis equals the pcap's."""
    data = ATTACK.read_bytes()
    path = tmp_path / "unknown.pcapng"
    path.write_bytes(
        b"".join(to_pcapng(data, lambda i: block(0x0BAD + i % 3, b"vendor data" * (i % 4))))
    )
    expected = analyse(ATTACK, ruleset)
    assert analyse(path, ruleset) == expected
    result = otids_read(path)
    assert result.returncode == 0 and problem_lines(result.stderr) == []


# name -> (function damaging the block list at index i, fragment of the warning)
PCAPNG_DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "trailing length differs": (lambda b: b[:-4] + struct.pack("<I", len(b) + 4), "length"),
    "length not a multiple of 4": (
        lambda b: b[:4] + struct.pack("<I", len(b) + 1) + b[8:],
        "length",
    ),
    "absurd block length": (
        lambda b: b[:4] + struct.pack("<I", 0x7FFF_FFF0) + b[8:],
        "length",
    ),
    "length below the minimum": (lambda b: b[:4] + struct.pack("<I", 8) + b[8:], "length"),
    "captured length past the block": (
        lambda b: b[:20] + struct.pack("<I", 60_000) + b[24:],
        "",
    ),
}


@pytest.mark.parametrize("damage", PCAPNG_DAMAGE)
def test_pcapng_damaged_block_midway(tmp_path: Path, ruleset: RuleSet, damage: str) -> None:
    """A broken packet block halfway: the packets before it are analysed, one clear line,
    exit 2."""
    spoil, fragment = PCAPNG_DAMAGE[damage]
    blocks = [b for b in to_pcapng(ATTACK.read_bytes()) if b]
    middle = len(blocks) // 2
    path, prefix = tmp_path / "damaged.pcapng", tmp_path / "prefix.pcapng"
    path.write_bytes(b"".join([*blocks[:middle], spoil(blocks[middle]), *blocks[middle + 1 :]]))
    prefix.write_bytes(b"".join(blocks[:middle]))
    sids, packets, warning, damaged = analyse(path, ruleset)
    assert (sids, packets) == analyse(prefix, ruleset)[:2]
    assert packets == middle - 2  # the SHB and IDB are not packets
    assert damaged and warning is not None and fragment in warning, warning
    result = otids_read(path)
    assert result.returncode == 2, result.stderr
    lines = problem_lines(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, lines
    assert "damaged.pcapng" in lines[0] and "records before it were analysed" in lines[0]


def test_bad_magic_after_a_good_section(tmp_path: Path, ruleset: RuleSet) -> None:
    """Garbage where the next block should start: what came before is analysed, exit 2."""
    blocks = [b for b in to_pcapng(ATTACK.read_bytes()) if b]
    path = tmp_path / "garbage.pcapng"
    path.write_bytes(b"".join(blocks) + b"\xde\xad\xbe\xef" * 64)
    assert analyse(path, ruleset)[:2] == analyse(ATTACK, ruleset)[:2]
    result = otids_read(path)
    assert result.returncode == 2
    assert len(problem_lines(result.stderr)) == 1
