"""The C pcap loop (otids.capture._fastpcap) against the pure-Python one: same records, same
decisions, same counters, same damage reports; and the whole analysis the same either way."""

from __future__ import annotations

import functools
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from otids.capture import readers
from otids.capture.link import PacketDecoder
from otids.capture.readers import open_capture
from otids.rules.engine import RuleSet
from otids.rules.loader import default_rules_dir, load_rules

from .conftest import pcap_file, pcap_header, pcap_record

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"

pytestmark = pytest.mark.skipif(
    readers._fastpcap is None, reason="the C accelerator is not built (no compiler)"
)


def ipv4_tcp(src: int, dst: int, sport: int, dport: int, flags: int = 0x18) -> bytes:
    """An Ethernet frame with a plain IPv4 header and a TCP header with 4 payload bytes."""
    ip_tcp = struct.pack(
        "!BBHHHBBH4s4sHHIIBBHHH",
        0x45,  # version 4, header length 5 words
        0,  # DSCP/ECN
        44,  # total length
        1,  # identification
        0x4000,  # flags DF, fragment offset 0
        64,  # TTL
        6,  # protocol TCP
        0,  # header checksum (not checked)
        src.to_bytes(4, "big"),
        dst.to_bytes(4, "big"),
        sport,
        dport,
        1000,  # sequence
        0,  # acknowledgement
        0x50,  # data offset 5 words
        flags,  # PSH+ACK by default
        8192,  # window
        0,  # checksum
        0,  # urgent pointer
    )
    ethernet = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00"
    return ethernet + ip_tcp + b"\x00\x01\x00\x00"


def read_all(path: Path, decoder: PacketDecoder | None) -> tuple[list[Any], dict[str, Any]]:
    """Every record the reader yields (with ``decoder`` as its prefilter) and its state.
    No housekeeping is due unless the test set a time."""
    if decoder is not None and decoder.housekeeping_due[0] == 0.0:
        decoder.housekeeping_due[0] = math.inf
    with open_capture(path) as reader:
        reader.prefilter = decoder
        records = list(reader)
        state = {"records": reader.records, "warning": reader.warning, "damaged": reader.damaged}
    return records, state


def counters(decoder: PacketDecoder) -> dict[str, Any]:
    """What the decoder counted, dropped frames included."""
    names = ("packets", "bypassed", "other_shard", "prefiltered", "prefiltered_bytes")
    return {name: getattr(decoder, name) for name in names}


FLOWS = [(0x0A000001 + i, 0x0A000100, 40000 + i, 502) for i in range(12)]


def mixed_capture(tmp_path: Path, order: str = "<", nanosecond: bool = False) -> Path:
    """Twelve flows, three packets each, one of them a SYN, interleaved."""
    records = [
        (1_700_000_000 + n, 123_456 + n, ipv4_tcp(*flow, flags=0x02 if n == 1 else 0x18))
        for n in range(3)
        for flow in FLOWS
    ]
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap_file(records, order=order, nanosecond=nanosecond))
    return path


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_same_records_without_drops(tmp_path: Path, order: str, nanosecond: bool) -> None:
    path = mixed_capture(tmp_path, order, nanosecond)
    fast, fast_state = read_all(path, PacketDecoder())
    readers._fastpcap, saved = None, readers._fastpcap
    try:
        slow, slow_state = read_all(path, PacketDecoder())
    finally:
        readers._fastpcap = saved
    assert fast == slow  # timestamps equal to the last bit
    assert fast_state == slow_state == {"records": 36, "warning": None, "damaged": False}


@pytest.mark.parametrize("shard", [(0, 2), (1, 2), (2, 3)])
def test_other_shards_dropped_and_counted(tmp_path: Path, shard: tuple[int, int]) -> None:
    path = mixed_capture(tmp_path)
    decoder = PacketDecoder(shard=shard)
    records, state = read_all(path, decoder)
    kept = [decoder.decode(*r) for r in records]
    # Exactly the flows the decoder itself would keep come through, every packet of them.
    reference = PacketDecoder(shard=shard)
    with open_capture(path) as reader:
        expected = [p for p in (reference.decode(*r) for r in reader) if p is not None]
    assert [(p.src, p.sport, p.ts) for p in kept if p] == [(p.src, p.sport, p.ts) for p in expected]
    assert all(p is not None for p in kept)
    assert state["records"] == 36
    assert decoder.other_shard == reference.other_shard > 0
    assert decoder.packets == reference.packets == 36
    assert decoder.prefiltered == decoder.other_shard
    assert decoder.prefiltered_bytes == decoder.other_shard * len(ipv4_tcp(*FLOWS[0]))


def test_bypassed_flows_dropped_but_never_a_syn(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path)
    decoder = PacketDecoder()
    src, dst, sport, dport = FLOWS[3]
    decoder.bypass_tcp.add(
        src.to_bytes(4, "big") + dst.to_bytes(4, "big") + struct.pack("!HH", sport, dport)
    )
    records, state = read_all(path, decoder)
    assert state["records"] == 36
    assert len(records) == 34  # the flow's SYN still comes through: it may open a new flow
    assert counters(decoder) == {
        "packets": 2,
        "bypassed": 2,
        "other_shard": 0,
        "prefiltered": 2,
        "prefiltered_bytes": 2 * len(ipv4_tcp(*FLOWS[3])),
    }
    assert decoder.prefiltered_ts == pytest.approx(1_700_000_002.123458)


def test_records_due_for_housekeeping_are_kept(tmp_path: Path) -> None:
    """From the pipeline's next housekeeping time on, nothing is skipped: it must see time
    pass (flow expiry, bypass timeouts) as it would without the C loop."""
    path = mixed_capture(tmp_path)
    decoder = PacketDecoder(shard=(0, 2))
    decoder.housekeeping_due[0] = 1_700_000_001.0  # the second of the three rounds
    records, _ = read_all(path, decoder)
    reference = PacketDecoder(shard=(0, 2))
    own = sum(1 for flow in FLOWS if reference.decode(0.0, 1, ipv4_tcp(*flow), 58) is not None)
    assert 0 < own < len(FLOWS)
    assert decoder.other_shard == len(FLOWS) - own  # skipped in the first round only
    assert len(records) == own + 2 * len(FLOWS)


@pytest.mark.parametrize("cut", [1, 5, 15, 16, 17, 40, 57, 58])
def test_truncated_file_reported_alike(tmp_path: Path, cut: int) -> None:
    data = mixed_capture(tmp_path).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-cut])
    fast, fast_state = read_all(path, PacketDecoder(shard=(0, 2)))
    readers._fastpcap, saved = None, readers._fastpcap
    try:
        slow, slow_state = read_all(path, PacketDecoder(shard=(0, 2)))
    finally:
        readers._fastpcap = saved
    assert fast_state == slow_state
    assert fast_state["warning"] is not None and "truncated record" in fast_state["warning"]
    decoder = PacketDecoder(shard=(0, 2))
    assert [r for r in slow if decoder.decode(*r) is not None] == fast


def test_absurd_length_reported_alike(tmp_path: Path) -> None:
    frame = ipv4_tcp(*FLOWS[0])
    data = (
        pcap_header(snaplen=1500)
        + pcap_record(1, 0, frame)
        + struct.pack("<IIII", 2, 0, 0x7FFFFFFF, 60)  # a record claiming 2 GiB
        + frame
    )
    path = tmp_path / "absurd.pcap"
    path.write_bytes(data)
    fast, fast_state = read_all(path, PacketDecoder())
    readers._fastpcap, saved = None, readers._fastpcap
    try:
        slow, slow_state = read_all(path, PacketDecoder())
    finally:
        readers._fastpcap = saved
    assert fast == slow and len(fast) == 1
    assert fast_state == slow_state
    assert fast_state["damaged"] and "absurd record length" in fast_state["warning"]


@functools.cache
def default_rules() -> RuleSet:
    """The embedded rule set, loaded once for every analysis of this module."""
    return load_rules([default_rules_dir()])


def analysis(paths: list[Path], shard: tuple[int, int]) -> tuple[list[Any], dict[str, Any]]:
    """Records and final statistics of one shard, the way ``otids read`` runs it."""
    from otids.pipeline import Pipeline
    from tests.conftest import ListSink

    sink = ListSink()
    pipeline = Pipeline(default_rules(), sink, log_transactions=True, shard=shard)
    for path in paths:
        with open_capture(path) as reader:
            reader.prefilter = pipeline.decoder
            pipeline.run(reader)
    stats = pipeline.finish(emit_stats=False)
    for volatile in ("elapsed_s", "packets_per_s"):
        stats.pop(volatile)
    return sink.records, stats


@pytest.mark.parametrize("shard", [(0, 1), (0, 2), (1, 2)])
def test_whole_analysis_the_same(shard: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sample capture: the same records and statistics with the C loop or without."""
    paths = sorted(PCAPS.glob("*.pcap"))
    assert paths
    fast = analysis(paths, shard)
    monkeypatch.setattr(readers, "_fastpcap", None)
    slow = analysis(paths, shard)
    assert fast == slow


@pytest.mark.corpus
def test_whole_corpus_the_same(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every small pcap of the public corpus (real, odd and broken captures): the same records
    and statistics with the C loop or without, in one process and in a worker's shard."""
    paths = sorted(p for p in corpus.rglob("*.pcap") if p.stat().st_size < 5_000_000)
    assert paths
    for shard in ((0, 1), (1, 2)):
        fast = [analysis([p], shard) for p in paths]
        monkeypatch.setattr(readers, "_fastpcap", None)
        slow = [analysis([p], shard) for p in paths]
        monkeypatch.undo()
        for path, one, other in zip(paths, fast, slow, strict=True):
            assert one == other, path
