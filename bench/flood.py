"""Floods against otids' memory bounds (``make bench-flood``).

Each flood is crafted with :mod:`struct` (no scapy: a million packets in seconds) into a
pcap under ``bench/out/``, at several sizes, and analysed by a child ``otids read``; the
report gives the child's peak RSS (``os.wait4``: that child's own usage) against the
packet count, and what the statistics say was shed. Memory must stop growing once the
bounds are reached: the largest size's peak may exceed the middle one's by at most
:data:`MAX_RSS_GROWTH`.

Floods:

* ``syn``: SYNs to port 502 from ever new sources (a new flow each): the flow table stops
  at ``MAX_FLOWS`` (otids/capture/flow.py) and evicts the least recently seen;
* ``requests``: one Modbus/TCP connection whose client sends read requests the server
  never answers: ``modbus.flooded`` and at most ``REQUEST_FLOOD`` pending requests;
* ``dnp3-fragment``: one DNP3 connection whose master sends transport segments of one
  endless application fragment: ``dnp3.too_long_reassembly`` every ``MAX_FRAGMENT`` octets;
* ``ooo``: one Modbus connection whose client sends only segments past a hole:
  ``stream.ooo_overflow`` and at most ``MAX_OOO_BYTES`` buffered;
* ``ipfrag``: first fragments of ever new IPv4 datagrams, never completed: at most
  ``MAX_PENDING_DATAGRAMS`` waiting, the rest counted in ``ip_frag_dropped``.

The same builders serve tests/test_resource_bounds.py at small sizes (counters, not timing).

Usage: python bench/flood.py [--sizes 10000,100000,400000] [FLOOD ...]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
DEFAULT_SIZES = (10_000, 100_000, 400_000)
# Peak RSS allowed at the largest size over the middle one: the bounds must hold memory
# flat once reached (the middle size already exceeds every bound but MAX_FLOWS').
MAX_RSS_GROWTH = 1.5
RUN_TIMEOUT_S = 900  # one otids run on the largest flood takes well under a minute

ETH = struct.Struct("!6s6sH")
IPV4 = struct.Struct("!BBHHHBBH4s4s")  # version/IHL, TOS, length, id, flags/offset, TTL...
TCP = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, checksum, urgent
MAC_A, MAC_B = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"
SERVER = bytes((10, 0, 0, 1))
CLIENT = bytes((10, 0, 0, 2))
SYN, ACK, PSH_ACK, SYN_ACK = 0x02, 0x10, 0x18, 0x12
MF = 0x2000  # IPv4 "more fragments" flag
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet
PCAP_RECORD = struct.Struct("<IIII")

Frame = tuple[float, bytes]  # (timestamp, Ethernet frame)


def ipv4(
    src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 0, frag: int = 0
) -> bytes:
    """An Ethernet frame carrying an IPv4 packet (header checksum left 0: otids ignores it,
    as capture offload makes it unreliable)."""
    header = IPV4.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, frag, 64, proto, 0, src, dst)
    return ETH.pack(MAC_B, MAC_A, 0x0800) + header + payload


def tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
) -> bytes:
    """An Ethernet/IPv4/TCP frame (checksums 0)."""
    segment = TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    return ipv4(src, dst, 6, segment + payload)


def handshake(sport: int, dport: int, ts: float) -> Iterator[Frame]:
    """SYN, SYN+ACK, ACK between CLIENT:sport and SERVER:dport (ISNs 1000 and 5000)."""
    yield ts, tcp(CLIENT, SERVER, sport, dport, 1000, 0, SYN)
    yield ts, tcp(SERVER, CLIENT, dport, sport, 5000, 1001, SYN_ACK)
    yield ts, tcp(CLIENT, SERVER, sport, dport, 1001, 5001, ACK)


def syn_flood(count: int) -> Iterator[Frame]:
    """SYNs to 502 from ``count`` different (address, port) sources."""
    for i in range(count):
        src = bytes((172, 16 + (i >> 24 & 0x0F), i >> 16 & 0xFF, i >> 8 & 0xFF))
        yield i * 1e-5, tcp(src, SERVER, 1024 + (i & 0xFF) * 200, 502, i * 7919, 0, SYN)


def request_flood(count: int) -> Iterator[Frame]:
    """One Modbus connection: ``count - 3`` read requests, never answered."""
    yield from handshake(40000, 502, 0.0)
    seq = 1001
    for i in range(max(count - 3, 0)):
        adu = struct.pack(">HHHBBHH", i & 0xFFFF, 0, 6, 1, 3, 0, 10)
        yield 0.001 * i, tcp(CLIENT, SERVER, 40000, 502, seq, 5001, PSH_ACK, adu)
        seq += len(adu)


def dnp3_fragment_flood(count: int) -> Iterator[Frame]:
    """One DNP3 connection: transport segments of one endless fragment (FIR once, never FIN),
    a full link frame each."""
    from otids.decode.dnp3.link import build_frame

    yield from handshake(40001, 20000, 0.0)
    seq = 1001
    for i in range(max(count - 3, 0)):
        transport = (0x40 if i == 0 else 0) | (i & 0x3F)  # FIR on the first, FIN never
        frame = build_frame(0xC4, 10, 1, bytes((transport,)) + b"\x01" * 249)
        yield 0.001 * i, tcp(CLIENT, SERVER, 40001, 20000, seq, 5001, PSH_ACK, frame)
        seq += len(frame)


def ooo_flood(count: int) -> Iterator[Frame]:
    """One Modbus connection whose client sends only data past a 1-byte hole, never filled
    and never acknowledged."""
    yield from handshake(40002, 502, 0.0)
    payload = b"\0" * 1000
    for i in range(max(count - 3, 0)):
        seq = 1002 + (i % 4000) * len(payload)  # wraps inside the window: overlaps repeat
        yield 0.001 * i, tcp(CLIENT, SERVER, 40002, 502, seq, 5001, PSH_ACK, payload)


def ipfrag_flood(count: int) -> Iterator[Frame]:
    """First fragments (MF set, offset 0) of ``count`` different IPv4 datagrams."""
    segment = TCP.pack(40003, 502, 1, 0, 5 << 4, PSH_ACK, 65535, 0, 0) + b"\0" * 1000
    for i in range(count):
        yield i * 1e-5, ipv4(CLIENT, SERVER, 6, segment, ident=i, frag=MF)


FLOODS: dict[str, Callable[[int], Iterator[Frame]]] = {
    "syn": syn_flood,
    "requests": request_flood,
    "dnp3-fragment": dnp3_fragment_flood,
    "ooo": ooo_flood,
    "ipfrag": ipfrag_flood,
}


def write_pcap(path: Path, frames: Iterator[Frame]) -> int:
    """Write ``frames`` as a pcap; return the packet count."""
    count = 0
    with path.open("wb") as f:
        f.write(PCAP_HEADER)
        for ts, frame in frames:
            sec = int(ts)
            f.write(PCAP_RECORD.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            f.write(frame)
            count += 1
    return count


def run_otids(path: Path) -> tuple[float, int, dict[str, object]]:
    """(seconds, peak RSS in KiB, final stats record) of a child ``otids read``."""
    otids = Path(sys.executable).parent / "otids"
    stats_path = path.with_suffix(".json")
    cmd = [str(otids), "read", str(path), "--quiet", "--json", str(stats_path), "--workers", "1"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = started + RUN_TIMEOUT_S
    while True:  # bounded by the deadline
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    stats: dict[str, object] = {"exit": proc.returncode}
    if stats_path.exists():
        for line in stats_path.read_text().splitlines():
            record = json.loads(line)
            if record.get("event_type") == "stats":
                stats.update(record["stats"])
        stats_path.unlink()
    return elapsed, usage.ru_maxrss, stats


def shed(stats: dict[str, object]) -> str:
    """What the statistics say was shed: evictions, drops, decoder events."""
    flows = stats.get("flows", {})
    decoder = stats.get("decoder", {})
    events = stats.get("decoder_events", {})
    assert isinstance(flows, dict) and isinstance(decoder, dict) and isinstance(events, dict)
    parts = [] if stats.get("exit") == 0 else [f"otids exited {stats.get('exit')}"]
    parts.append(f"flows {flows.get('total', 0)} (evicted {flows.get('evicted', 0)})")
    if decoder.get("ip_frag_dropped"):
        parts.append(f"ip_frag_dropped {decoder['ip_frag_dropped']}")
    parts += [f"{name} {n}" for name, n in sorted(events.items())]
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description="Memory bounds under floods (peak RSS).")
    parser.add_argument("floods", nargs="*", help=f"default: all of {', '.join(FLOODS)}")
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="packet counts, comma-separated"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    OUT.mkdir(exist_ok=True)
    lines = ["| flood | packets | seconds | peak RSS (MiB) | shed |", "|---|---:|---:|---:|---|"]
    print("\n".join(lines), flush=True)
    bad: list[str] = []
    for name in args.floods or list(FLOODS):
        peaks: list[int] = []
        for size in sizes:
            path = OUT / f"flood-{name}-{size}.pcap"
            if not path.exists():
                write_pcap(path, FLOODS[name](size))
            elapsed, rss, stats = run_otids(path)
            peaks.append(rss)
            line = f"| {name} | {size:,} | {elapsed:.1f} | {rss / 1024:.0f} | {shed(stats)} |"
            lines.append(line)
            print(line, flush=True)
        if len(peaks) >= 3 and peaks[-1] > peaks[-2] * MAX_RSS_GROWTH:
            bad.append(f"{name}: peak RSS grew from {peaks[-2]} to {peaks[-1]} KiB")
    (OUT / "flood-results.md").write_text("\n".join(lines) + "\n")
    for problem in bad:
        print(f"FAIL {problem}", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
