"""Tests of otids.capture.readers: pcap, pcapng, gzip, damage, and the public corpus."""

from __future__ import annotations

import gzip
import random
import shutil
import struct
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from otids.capture.link import PacketDecoder
from otids.capture.readers import (
    MAX_BLOCK_BYTES,
    MAX_RECORD_BYTES,
    CaptureError,
    open_capture,
)

from .conftest import (
    ng_block,
    ng_epb,
    ng_idb,
    ng_opb,
    ng_shb,
    ng_spb,
    pcap_file,
    pcap_header,
    pcap_record,
)

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

FRAMES = [bytes([i]) * (20 + 7 * i) for i in range(5)]  # lengths 20..48, not multiples of 4


def write(tmp_path: Path, data: bytes, name: str = "c.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path: Path):
    with open_capture(path) as reader:
        records = list(reader)
    return reader, records


# -- pcap ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(
    ("nanosecond", "frac", "expected"),
    [
        pytest.param(False, 250_000, 1_700_000_000.25, id="microsecond"),
        pytest.param(True, 250_000_001, 1_700_000_000.250000001, id="nanosecond"),
    ],
)
def test_pcap_byte_orders_and_resolutions(tmp_path, order, nanosecond, frac, expected):
    data = pcap_file(
        [(1_700_000_000, frac, frame) for frame in FRAMES], 113, order, nanosecond=nanosecond
    )
    reader, records = read_all(write(tmp_path, data))
    assert (reader.format, reader.compressed, reader.warning) == ("pcap", False, None)
    assert reader.records == len(FRAMES)
    assert [r[2] for r in records] == FRAMES
    assert {r[1] for r in records} == {113}
    assert [r[3] for r in records] == [len(f) for f in FRAMES]
    assert records[0][0] == pytest.approx(expected, abs=1e-6)
    assert all(type(r[2]) is bytes for r in records)


def test_pcap_wire_length_and_fcs_bits(tmp_path):
    # Link type field 0x1000_0001: Ethernet with the "FCS present" bit set (4-byte FCS).
    header = pcap_header(linktype=0x10000001)
    data = header + pcap_record(1, 0, b"x" * 40, wirelen=1514)
    _, records = read_all(write(tmp_path, data))
    assert records == [(1.0, 1, b"x" * 40, 1514)]


def test_pcap_header_only(tmp_path):
    reader, records = read_all(write(tmp_path, pcap_header()))
    assert (records, reader.warning, reader.records) == ([], None, 0)


def test_pcap_big_file_spanning_many_chunks(tmp_path):
    frames = [bytes([i % 251]) * (60 + i % 1400) for i in range(3000)]  # ~2.2 MB
    data = pcap_file([(i, 0, f) for i, f in enumerate(frames)])
    reader, records = read_all(write(tmp_path, data))
    assert reader.warning is None
    assert [r[2] for r in records] == frames
    assert records[-1][0] == 2999.0


def test_pcap_record_near_size_bound(tmp_path):
    big = b"j" * MAX_RECORD_BYTES
    reader, records = read_all(write(tmp_path, pcap_file([(1, 0, big)], snaplen=65535)))
    assert reader.warning is None
    assert records[0][2] == big


@pytest.mark.parametrize(
    ("snaplen", "caplen"),
    [
        pytest.param(65535, MAX_RECORD_BYTES + 1, id="above-256k"),
        pytest.param(0xFFFFFFFF, MAX_BLOCK_BYTES + 1, id="huge-snaplen-still-bounded"),
        pytest.param(65535, 0xFFFFFFF0, id="garbage"),
    ],
)
def test_pcap_absurd_record_length(tmp_path, snaplen, caplen):
    good = pcap_record(1, 0, FRAMES[0])
    bad = struct.pack("<IIII", 2, 0, caplen, caplen) + b"z" * 100
    data = pcap_header(snaplen=snaplen) + good + bad
    reader, records = read_all(write(tmp_path, data))
    assert [r[2] for r in records] == [FRAMES[0]]
    assert reader.warning == f"absurd record length {caplen} at byte offset {24 + len(good)}"


def test_pcap_large_snaplen_allows_larger_records(tmp_path):
    big = b"j" * (MAX_RECORD_BYTES + 100)
    reader, records = read_all(write(tmp_path, pcap_file([(1, 0, big)], snaplen=1 << 20)))
    assert reader.warning is None
    assert records[0][2] == big


def test_pcap_truncated_at_every_offset(tmp_path):
    data = pcap_file([(i, i, frame) for i, frame in enumerate(FRAMES)])
    ends = []  # byte offset where each record ends
    offset = 24
    for frame in FRAMES:
        offset += 16 + len(frame)
        ends.append(offset)
    for cut in range(len(data) + 1):
        path = write(tmp_path, data[:cut])
        if cut < 24:
            with pytest.raises(CaptureError):
                open_capture(path)
            continue
        reader, records = read_all(path)
        complete = sum(1 for end in ends if end <= cut)
        assert [r[2] for r in records] == FRAMES[:complete], cut
        if cut in ends or cut == 24:
            assert reader.warning is None, cut
        else:
            start = ([24, *ends])[complete]
            assert reader.warning == f"truncated record at byte offset {start}", cut


# -- pcapng --------------------------------------------------------------------------------


def two_interface_capture(order: str) -> bytes:
    """SHB, Ethernet IDB in ns, raw-IP IDB in 2^-20 s with an offset, packets on both."""
    return b"".join(
        [
            ng_shb(order),
            ng_idb(1, order, tsresol=9),
            ng_block(0x0BAD, b"custom block, skipped", order),
            ng_idb(101, order, snaplen=96, tsresol=0x80 | 20, tsoffset=1_000),
            ng_epb(0, 1_700_000_000_123_456_789, FRAMES[0], order),
            ng_epb(1, 5 << 20 | 1 << 19, FRAMES[1], order, wirelen=1500),  # 5.5 s
            ng_block(5, bytes(20), order),  # interface statistics: skipped
            ng_opb(0, 2_000_000_000, FRAMES[2], order),  # 2 s in ns
            ng_spb(FRAMES[3], order),
        ]
    )


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_block_types(tmp_path, order):
    reader, records = read_all(write(tmp_path, two_interface_capture(order), "c.pcapng"))
    assert (reader.format, reader.warning, reader.records) == ("pcapng", None, 4)
    assert [r[2] for r in records] == FRAMES[:4]
    assert [r[1] for r in records] == [1, 101, 1, 1]
    assert [r[3] for r in records] == [len(FRAMES[0]), 1500, len(FRAMES[2]), len(FRAMES[3])]
    assert records[0][0] == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    assert records[1][0] == 1_005.5
    assert records[2][0] == 2.0
    assert records[3][0] == 2.0  # simple packet block: the previous timestamp


def test_pcapng_sections_with_different_byte_orders(tmp_path):
    data = b"".join(
        [
            ng_shb("<"),
            ng_idb(1, "<"),
            ng_epb(0, 1_000_000, FRAMES[0], "<"),
            ng_shb(">"),
            ng_idb(228, ">", tsresol=3),
            ng_epb(0, 2_500, FRAMES[1], ">"),
        ]
    )
    reader, records = read_all(write(tmp_path, data, "c.pcapng"))
    assert reader.warning is None
    assert [(r[0], r[1], r[2]) for r in records] == [(1.0, 1, FRAMES[0]), (2.5, 228, FRAMES[1])]


def test_pcapng_new_section_forgets_interfaces(tmp_path):
    data = ng_shb() + ng_idb(1) + ng_shb() + ng_epb(0, 0, FRAMES[0])
    reader, records = read_all(write(tmp_path, data, "c.pcapng"))
    assert records == []
    assert reader.warning is not None
    assert "undeclared interface 0" in reader.warning


def test_spb_cut_to_snaplen(tmp_path):
    data = ng_shb() + ng_idb(1, snaplen=24) + ng_spb(b"s" * 24, wirelen=1000)
    _, records = read_all(write(tmp_path, data, "c.pcapng"))
    assert records == [(0.0, 1, b"s" * 24, 1000)]


GOOD_NG = ng_shb() + ng_idb(1) + ng_epb(0, 1, FRAMES[0])
BAD_OFFSET = len(GOOD_NG)


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        pytest.param(
            struct.pack("<II", 6, 30) + bytes(22), "block length 30", id="not-multiple-of-4"
        ),
        pytest.param(struct.pack("<II", 6, 8), "block length 8", id="too-short"),
        pytest.param(
            struct.pack("<II", 6, MAX_BLOCK_BYTES + 4),
            f"block length {MAX_BLOCK_BYTES + 4}",
            id="absurd",
        ),
        pytest.param(
            ng_epb(0, 1, FRAMES[1])[:-4] + struct.pack("<I", 4),
            "trailing block length",
            id="trailing-mismatch",
        ),
        pytest.param(ng_block(6, bytes(12)), "packet block too short", id="epb-too-short"),
        pytest.param(
            ng_block(6, struct.pack("<IIIII", 0, 0, 0, 500, 500) + bytes(8)),
            "captured length 500 exceeds its block",
            id="caplen-past-block",
        ),
        pytest.param(ng_epb(3, 1, FRAMES[1]), "undeclared interface 3", id="unknown-interface"),
        pytest.param(ng_block(1, bytes(4)), "interface description too short", id="idb-short"),
        pytest.param(
            ng_block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 40)),
            "option 9 overruns",
            id="option-overrun",
        ),
        pytest.param(ng_block(3, b""), "simple packet block too short", id="spb-short"),
        pytest.param(ng_shb(major=2), "unsupported pcapng version 2.0", id="version-2"),
        pytest.param(
            ng_block(0x0A0D0D0A, struct.pack("<I", 0x11223344) + bytes(12)),
            "bad byte-order magic",
            id="bad-second-shb",
        ),
        pytest.param(
            ng_block(0x0A0D0D0A, struct.pack("<I", 0x1A2B3C4D)),
            "section header too short",
            id="shb-short",
        ),
    ],
)
def test_pcapng_damaged_blocks(tmp_path, block, reason):
    data = GOOD_NG + block + ng_epb(0, 2, FRAMES[2])
    reader, records = read_all(write(tmp_path, data, "c.pcapng"))
    assert [r[2] for r in records] == [FRAMES[0]]
    assert reader.warning is not None
    assert reader.warning.startswith(f"damaged pcapng block at byte offset {BAD_OFFSET}: ")
    assert reason in reader.warning


def test_spb_before_any_interface_is_damage(tmp_path):
    reader, records = read_all(write(tmp_path, ng_shb() + ng_spb(b"x" * 8), "c.pcapng"))
    assert records == []
    assert reader.warning is not None
    assert "before any interface" in reader.warning


def test_pcapng_truncated_at_every_offset(tmp_path):
    data = two_interface_capture("<")
    for cut in range(len(data) + 1):
        path = write(tmp_path, data[:cut], "c.pcapng")
        if cut < 12:
            with pytest.raises(CaptureError):
                open_capture(path)
            continue
        reader, records = read_all(path)
        assert [r[2] for r in records] == FRAMES[: len(records)], cut
        if cut < len(data):
            assert len(records) < 4
    assert reader.warning is None


def test_pcapng_truncation_warning_offset(tmp_path):
    data = GOOD_NG + ng_epb(0, 2, FRAMES[1])
    reader, records = read_all(write(tmp_path, data[:-3], "c.pcapng"))
    assert len(records) == 1
    assert reader.warning == f"truncated record at byte offset {len(GOOD_NG)}"


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_random_damage_never_raises(tmp_path, fmt):
    """Random byte changes anywhere: CaptureError at open or a clean (possibly short) read."""
    if fmt == "pcap":
        data = pcap_file([(i, 0, frame) for i, frame in enumerate(FRAMES)])
    else:
        data = two_interface_capture("<") + two_interface_capture(">")
    rng = random.Random(9)
    path = tmp_path / "fuzz"
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randrange(1, 5)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        path.write_bytes(bytes(mutated))
        try:
            reader = open_capture(path)
        except CaptureError:
            continue
        with reader:
            count = sum(1 for _ in reader)
        assert count == reader.records


# -- gzip ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        pytest.param(pcap_file([(1, 0, f) for f in FRAMES]), "pcap", id="pcap"),
        pytest.param(two_interface_capture(">")[: -len(ng_spb(FRAMES[3], ">"))], "pcapng", id="ng"),
    ],
)
def test_gzip(tmp_path, data, fmt):
    reader, records = read_all(write(tmp_path, gzip.compress(data), "c.pcap.gz"))
    assert (reader.format, reader.compressed, reader.warning) == (fmt, True, None)
    assert [r[2] for r in records] == FRAMES[: len(records)]
    assert len(records) >= 3


def test_gzip_truncated_stream(tmp_path):
    frames = [bytes([i % 256]) * 1000 for i in range(400)]
    compressed = gzip.compress(pcap_file([(i, 0, f) for i, f in enumerate(frames)]), 1)
    reader, records = read_all(write(tmp_path, compressed[: len(compressed) * 2 // 3]))
    assert 0 < len(records) < len(frames)
    assert [r[2] for r in records] == frames[: len(records)]
    assert reader.warning is not None
    assert "gzip" in reader.warning


def test_gzip_corrupt_tail(tmp_path):
    """Garbage in the compressed stream ends reading cleanly, whatever it decodes to."""
    rng = random.Random(4)
    frames = [bytes(rng.choice(b"abcdefgh") for _ in range(500)) for _ in range(2000)]
    compressed = bytearray(gzip.compress(pcap_file([(1, 0, f) for f in frames])))
    cut = len(compressed) * 2 // 3
    compressed[cut:] = b"\xff" * (len(compressed) - cut)
    reader, records = read_all(write(tmp_path, bytes(compressed)))
    assert reader.warning is not None
    assert 0 < len(records) < len(frames)
    # Every record but the last is intact (the last may hold the first garbage bytes).
    assert [r[2] for r in records[:-1]] == frames[: len(records) - 1]


# -- files that cannot be opened -----------------------------------------------------------


PCAPNG_BAD_BOM = bytes(
    [
        0x0A, 0x0D, 0x0D, 0x0A,  # section header block
        0x1C, 0x00, 0x00, 0x00,  # length 28
        0x11, 0x22, 0x33, 0x44,  # byte-order magic: neither 1A2B3C4D nor 4D3C2B1A
    ]
)  # fmt: skip


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "empty file", id="empty"),
        pytest.param(
            b"\x7fELF" + bytes(60),
            "not a pcap or pcapng file (magic 0x7f454c46)",
            id="elf",
        ),
        pytest.param(b"\xd4\xc3", "too short (2 bytes)", id="two-bytes"),
        pytest.param(pcap_header()[:20], "truncated pcap file header (20 bytes)", id="pcap-hdr"),
        pytest.param(PCAPNG_BAD_BOM, "bad pcapng byte-order", id="bom"),
        pytest.param(gzip.compress(b""), "empty file (gzip-compressed)", id="empty-gzip"),
        pytest.param(b"\x1f\x8b\x08\x00garbage", "damaged gzip stream", id="bad-gzip"),
        pytest.param(gzip.compress(b"hello world"), "not a pcap or pcapng file", id="gzip-text"),
    ],
)
def test_open_errors(tmp_path, data, message):
    path = write(tmp_path, data, "x.bin")
    with pytest.raises(CaptureError) as err:
        open_capture(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "nope.pcap")


def test_directory(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path)


@pytest.mark.parametrize("compress", [False, True])
def test_position_reaches_file_size(tmp_path, compress):
    data = pcap_file([(1, 0, bytes(1000)) for _ in range(3000)])
    path = write(tmp_path, gzip.compress(data) if compress else data)
    with open_capture(path) as reader:
        assert 0 < reader.position <= path.stat().st_size
        for _ in reader:
            pass
        assert reader.position == path.stat().st_size
    assert reader.position == 0


def test_close_stops_iteration(tmp_path):
    reader = open_capture(write(tmp_path, pcap_file([(1, 0, f) for f in FRAMES])))
    it = iter(reader)
    next(it)
    reader.close()
    assert list(it) == []
    assert reader.records == 1


def test_constant_memory(tmp_path):
    """A 16 MB capture is read with a few MB at most in use."""
    frame = b"m" * 1000
    path = tmp_path / "big.pcap"
    with path.open("wb") as out:
        out.write(pcap_header())
        out.write(pcap_record(1, 0, frame) * 16_000)
    tracemalloc.start()
    try:
        with open_capture(path) as reader:
            count = sum(1 for _ in reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 16_000
    assert peak < 4 * 1024 * 1024


# -- public corpus -------------------------------------------------------------------------


def corpus_captures() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    suffixes = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".cap")
    return sorted(p for p in CORPUS.rglob("*") if p.name.endswith(suffixes) and p.is_file())


@pytest.mark.corpus
def test_corpus_reads_and_decodes():
    captures = corpus_captures()
    if not captures:
        pytest.skip(f"no corpus at {CORPUS}")
    dec = PacketDecoder()
    records = 0
    transport = 0
    for path in captures:
        with open_capture(path) as reader:
            for ts, linktype, frame, wirelen in reader:
                records += 1
                if dec.decode(ts, linktype, frame, wirelen) is not None:
                    transport += 1
        assert reader.warning is None, reader.warning
    print(
        f"\ncorpus: {len(captures)} files, {records} records, {transport} TCP/UDP packets, "
        f"malformed {dec.malformed}, truncated {dec.truncated}, non-IP {dec.non_ip}, "
        f"not TCP/UDP {dec.not_tcp_udp}, unsupported link {dec.unsupported_linktype}, "
        f"fragments {dec.ip_fragments}"
    )
    assert transport > 0.9 * records


CORPUS_SAMPLES = [  # one file per link type in the corpus: Ethernet, BSD loopback, IPv4
    "public/iti-ics-security-tools/modbus/modbus_test.pcap",
    "public/iti-ics-security-tools/dnp3-opendnp3-conformance/6.1.2/dump.pcap",
    "suricata-verify/dnp3-flood/input.pcap",
]


@pytest.mark.corpus
def test_wireshark_conversions_read_the_same(tmp_path):
    """editcap/mergecap (an independent writer) re-encode corpus files as pcapng and ns pcap;
    both must read back as the same records, two interfaces of different link types included."""
    samples = [CORPUS / name for name in CORPUS_SAMPLES]
    if not all(p.is_file() for p in samples) or not (
        shutil.which("editcap") and shutil.which("mergecap")
    ):
        pytest.skip("needs the corpus and Wireshark's editcap/mergecap")
    original = [read_all(p)[1] for p in samples]
    for sample, records in zip(samples, original, strict=True):
        for fmt in ("pcapng", "nsecpcap"):
            out = tmp_path / f"{sample.parent.name}.{fmt}"
            subprocess.run(["editcap", "-F", fmt, str(sample), str(out)], check=True)
            reader, converted = read_all(out)
            assert reader.warning is None
            assert [r[1:] for r in converted] == [r[1:] for r in records]
            assert [r[0] for r in converted] == pytest.approx([r[0] for r in records], abs=1e-6)
    merged = tmp_path / "merged.pcapng"
    subprocess.run(["mergecap", "-w", str(merged), *map(str, samples)], check=True)
    reader, records = read_all(merged)
    assert reader.warning is None
    assert sorted(r[1:] for r in records) == sorted(r[1:] for recs in original for r in recs)
    assert {r[1] for r in records} == {0, 1, 228}
