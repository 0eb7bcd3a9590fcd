"""Worker processes: the plan of which worker takes which flows (otids.balance), the
decoder and the C loop following it, the parent collecting reports, and ``otids read
--workers`` giving the records of one process."""

from __future__ import annotations

import importlib
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from otids import balance
from otids.capture import readers
from otids.capture.link import (
    SHARD_BUCKETS,
    PacketDecoder,
    frame_bucket,
    round_robin_buckets,
    shard_of,
)
from otids.workers import run_workers

from .capture.conftest import pcap_file
from .capture.test_fastpcap import ipv4_tcp, read_all

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
OTIDS = Path(sys.executable).parent / "otids"
MODBUS, DNP3, OTHER = 502, 20000, 443


def udp_frame(src: int, dst: int, sport: int, dport: int) -> bytes:
    """An Ethernet frame with a plain IPv4 header and a UDP header with 4 payload bytes."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 32, 1, 0, 64, 17, 0, src.to_bytes(4, "big"),
                     dst.to_bytes(4, "big"))  # fmt: skip
    ethernet = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00"
    return ethernet + ip + struct.pack("!HHHH", sport, dport, 12, 0) + b"\x00\x01\x02\x03"


def flows_capture(tmp_path: Path, flows: list[tuple[int, int, int, int, int]]) -> Path:
    """A capture of TCP flows (source, destination, ports, then ``n``) sending ``n`` packets
    each, in turns; then a UDP packet from the DNP3 port and an IP fragment (not weighed)."""
    records = []
    for turn in range(max(f[4] for f in flows)):
        for src, dst, sport, dport, n in flows:
            if turn < n:
                records.append(
                    (1_700_000_000 + turn, len(records), ipv4_tcp(src, dst, sport, dport))
                )
    records.append((1_700_000_100, 0, udp_frame(1, 2, 20000, 3000)))
    fragment = bytearray(ipv4_tcp(1, 2, 3, 4))
    fragment[20] = 0x20  # more fragments
    records.append((1_700_000_101, 0, bytes(fragment)))
    path = tmp_path / "flows.pcap"
    path.write_bytes(pcap_file(records))
    return path


def bucket(src: int, dst: int, sport: int, dport: int) -> int:
    """The flow bucket of a TCP flow, as the decoder finds it."""
    pkt = PacketDecoder().decode(0.0, 1, ipv4_tcp(src, dst, sport, dport), 58)
    assert pkt is not None
    return shard_of(pkt, SHARD_BUCKETS)


# -- the plan ----------------------------------------------------------------------------


def test_round_robin_is_the_plain_hash_for_two_workers() -> None:
    """Without weights two workers split the flows as a hash modulo 2 did."""
    table = balance.plan([0] * SHARD_BUCKETS, 2)
    assert table == round_robin_buckets(2) == bytes(b % 2 for b in range(SHARD_BUCKETS))


def test_heaviest_buckets_spread_first() -> None:
    """Greedy longest-processing-time: heavy buckets go to different workers, lighter ones
    fill the gaps; every worker's load ends close to the others'."""
    weights = [0] * SHARD_BUCKETS
    # Four heavy buckets of the same parity: dealt in turn, one worker would get them all.
    for b, w in zip((10, 12, 14, 16, 3, 5), (100, 90, 80, 70, 50, 50), strict=True):
        weights[b] = w
    table = balance.plan(weights, 2)
    loads = [sum(w for b, w in enumerate(weights) if table[b] == k) for k in range(2)]
    assert loads == [220, 220]
    assert table[10] != table[12]
    unweighed = [b for b in range(SHARD_BUCKETS) if not weights[b]]
    assert all(table[b] == b % 2 for b in unweighed)


@pytest.mark.parametrize("count", [1, 3, 7])
def test_every_bucket_has_a_worker(count: int) -> None:
    weights = [(b * 7919) % 13 for b in range(SHARD_BUCKETS)]
    table = balance.plan(weights, count)
    assert len(table) == SHARD_BUCKETS and max(table) < count
    loads = [sum(w for b, w in enumerate(weights) if table[b] == k) for k in range(count)]
    assert max(loads) - min(loads) <= max(weights)


def test_port_costs() -> None:
    tcp, udp = balance.port_costs()
    assert len(tcp) == len(udp) == 65536
    assert tcp[MODBUS] == balance.PROTOCOL_COSTS["modbus"]
    assert tcp[DNP3] == udp[DNP3] == balance.PROTOCOL_COSTS["dnp3"]
    assert tcp[OTHER] == udp[OTHER] == 0


def test_weigh_head_counts_packets_by_protocol(tmp_path: Path) -> None:
    flows = [
        (0x0A000001, 0x0A000101, 40001, MODBUS, 30),
        (0x0A000002, 0x0A000102, 40002, DNP3, 20),
        (0x0A000003, 0x0A000103, 40003, OTHER, 50),
    ]
    path = flows_capture(tmp_path, flows)
    tcp, udp = balance.port_costs()
    weights = balance.weigh_capture(str(path), tcp, udp)
    expected = [0] * SHARD_BUCKETS
    costs = (balance.PROTOCOL_COSTS["modbus"], balance.PROTOCOL_COSTS["dnp3"], balance.OTHER_COST)
    for (src, dst, sport, dport, n), cost in zip(flows, costs, strict=True):
        expected[bucket(src, dst, sport, dport)] += n * cost
    udp_pkt = PacketDecoder().decode(0.0, 1, udp_frame(1, 2, 20000, 3000), 46)
    assert udp_pkt is not None
    expected[shard_of(udp_pkt, SHARD_BUCKETS)] += balance.PROTOCOL_COSTS["dnp3"]
    assert weights == expected
    assert balance._weigh_records(str(path), tcp, udp) == expected


def weigh_without_c(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    tcp, udp = balance.port_costs()
    with monkeypatch.context() as patch:
        patch.setattr(readers, "_fastpcap", None)
        return balance.weigh_capture(str(path), tcp, udp)


@pytest.mark.skipif(readers._fastpcap is None, reason="the C accelerator is not built")
@pytest.mark.parametrize("sampled", [False, True])
def test_weighing_in_c_and_in_python_agree(sampled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C walk and the Python one over every sample capture: whole, and in short
    stretches that start and end inside records."""
    if sampled:
        monkeypatch.setattr(balance, "SAMPLE_BYTES", 3001)
        monkeypatch.setattr(balance, "SAMPLES", 5)
    tcp, udp = balance.port_costs()
    for path in sorted(PCAPS.glob("*.pcap")):
        fast = balance.weigh_capture(str(path), tcp, udp)
        assert fast == weigh_without_c(path, monkeypatch), path


@pytest.mark.parametrize("order", ["<", ">"])
def test_stretches_start_at_a_record(
    tmp_path: Path, order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stretch read from the middle of the file is weighed from its first whole record:
    sampled, every flow weighs in proportion to its packets, even one that starts late."""
    modbus_flow = (0x0A000001, 0x0A000101, 40001, MODBUS)
    dnp3_flow = (0x0A000002, 0x0A000102, 40002, DNP3)
    frames = [ipv4_tcp(*modbus_flow)] * 400 + [ipv4_tcp(*dnp3_flow)] * 400  # DNP3 starts late
    records = [(1_700_000_000 + n, n * 7, f) for n, f in enumerate(frames)]
    path = tmp_path / "long.pcap"
    path.write_bytes(pcap_file(records, order=order))
    tcp, udp = balance.port_costs()
    modbus, dnp3 = bucket(*modbus_flow), bucket(*dnp3_flow)
    modbus_cost, dnp3_cost = balance.PROTOCOL_COSTS["modbus"], balance.PROTOCOL_COSTS["dnp3"]
    whole = balance.weigh_capture(str(path), tcp, udp)
    assert (whole[modbus], whole[dnp3]) == (400 * modbus_cost, 400 * dnp3_cost)
    monkeypatch.setattr(balance, "SAMPLE_BYTES", (16 + len(frames[0])) * 20 + 17)  # cuts records
    monkeypatch.setattr(balance, "SAMPLES", 10)
    sampled = balance.weigh_capture(str(path), tcp, udp)
    assert sampled == weigh_without_c(path, monkeypatch)
    assert sum(sampled) == sampled[modbus] + sampled[dnp3] < sum(whole)
    assert 0.8 < (sampled[dnp3] / dnp3_cost) / (sampled[modbus] / modbus_cost) < 1.25


@pytest.mark.parametrize("accelerated", [True, False])
def test_sync_finds_the_first_whole_record(
    accelerated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not accelerated:
        monkeypatch.setattr(readers, "_fastpcap", None)
    elif readers._fastpcap is None:
        pytest.skip("the C accelerator is not built")
    frame = ipv4_tcp(1, 2, 3, 4)
    records = pcap_file([(1_700_000_000 + n, 0, frame) for n in range(6)])[24:]
    cut = records[25:]  # from inside the first record
    expected = 16 + len(frame) - 25
    assert balance._sync(cut, "<", 1_000_000, 1_700_000_000) == expected
    too_late = 1_700_000_000 + balance.SYNC_MAX_SPAN + 10
    assert balance._sync(cut, "<", 1_000_000, too_late) == -1
    short = cut[: expected + (16 + len(frame)) * 3 + 10]  # the fourth header cut
    assert balance._sync(short, "<", 1_000_000, 1_700_000_000) == -1


# -- following the plan ------------------------------------------------------------------


@pytest.mark.parametrize("accelerated", [True, False])
def test_decoder_keeps_the_flows_its_table_gives_it(
    tmp_path: Path, accelerated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a planned table (C loop or not) each flow is kept whole by exactly the worker
    the table names, and the workers together keep every packet once."""
    if not accelerated:
        monkeypatch.setattr(readers, "_fastpcap", None)
    flows = [(0x0A000001 + i, 0x0A000100, 40000 + i, MODBUS, 3 + i) for i in range(12)]
    path = flows_capture(tmp_path, flows)
    # Not round robin: every bucket goes to another worker than b % 3.
    table = bytes((b + 1) % 3 for b in range(SHARD_BUCKETS))
    kept: dict[int, list[tuple[bytes, int]]] = {}
    for index in range(3):
        decoder = PacketDecoder(shard=(index, 3))
        decoder.shard_buckets = table
        records, _ = read_all(path, decoder)
        pkts = [decoder.decode(*r) for r in records]
        kept[index] = [(p.src, p.sport) for p in pkts if p is not None]
        assert decoder.packets == sum(f[4] for f in flows) + 2
    for src, dst, sport, dport, n in flows:
        owner = table[bucket(src, dst, sport, dport)]
        for index in range(3):
            got = kept[index].count((src.to_bytes(4, "big"), sport))
            assert got == (n if index == owner else 0)


# -- the parent --------------------------------------------------------------------------


def test_reports_of_every_worker_collected() -> None:
    def analysis(shard: tuple[int, int], first: bool) -> tuple[dict[str, Any], int]:
        return {"index": shard[0], "first": first}, shard[0]

    parts, worst = run_workers(3, analysis)
    assert parts == [{"index": i, "first": i == 0} for i in range(3)]
    assert worst == 2


def test_a_worker_dying_without_a_word_is_an_error() -> None:
    def analysis(shard: tuple[int, int], first: bool) -> tuple[dict[str, Any], int]:
        if shard[0] == 1:
            os._exit(0)
        return {"index": shard[0]}, 0

    parts, worst = run_workers(2, analysis)
    assert parts == [{"index": 0}]
    assert worst == 1


# -- the whole command -------------------------------------------------------------------


def records(path: Path) -> list[str]:
    """A JSON log's lines but the final statistics, sorted (workers interleave flows)."""
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["event_type"] == "stats"
    return sorted(lines[:-1])


def test_workers_give_the_records_of_one_process(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        gen_mix = importlib.import_module("gen_mix")
    finally:
        sys.path.remove(str(ROOT / "bench"))
    mix = tmp_path / "mix.pcap"
    gen_mix.generate(6000, mix, seed=5, dnp3=True)
    outs = {}
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}.json"
        result = subprocess.run(
            [str(OTIDS), "read", str(mix), "--json", str(out), "--transactions", "--quiet",
             "--workers", str(workers)],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outs[workers] = records(out)
    assert outs[1] and outs[1] == outs[2] == outs[3]


def test_frame_bucket_in_c_is_the_python_one() -> None:
    """The decoder's shard check uses the C accelerator's frame_bucket when it is built."""
    if readers._fastpcap is None:
        pytest.skip("the C accelerator is not built")
    rng = random.Random(7)
    for _ in range(2000):
        frame = ipv4_tcp(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                         rng.getrandbits(16))  # fmt: skip
        assert readers._fastpcap.frame_bucket(frame) == frame_bucket(frame)
        pkt = PacketDecoder().decode(0.0, 1, frame, len(frame))
        assert pkt is not None and shard_of(pkt, SHARD_BUCKETS) == frame_bucket(frame)
    with pytest.raises(ValueError):
        readers._fastpcap.frame_bucket(b"\x00" * 37)
