"""Balancing the flows between worker processes: which worker takes which flow bucket.

Workers split the flows by a hash into :data:`~otids.capture.link.SHARD_BUCKETS` buckets
(:func:`~otids.capture.link.shard_of`), and a bucket table gives each bucket's worker.
Dealing the buckets in turn spreads flows evenly by number, but on an OT network a handful
of long polling connections make most of the work: when more of them hash to one worker,
the others finish early and wait. So before the workers start, :func:`balanced_buckets`
weighs the buckets over the head of the capture (packets, each weighted by what a packet of
its protocol costs to analyse) and deals the heaviest buckets first, each to the least
loaded worker (the greedy longest-processing-time rule); buckets not seen in the head, such
as flows that start later, are dealt in turn. Whatever the table, every flow stays whole in
one worker, so the output is the same records.

The weighing counts Ethernet frames carrying IPv4 without options, not fragments: the
frames the decoder's fast path hashes from the raw header, nearly all of a real capture.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from otids.capture import readers
from otids.capture.link import SHARD_BUCKETS, LinkType, _mix, round_robin_buckets
from otids.capture.readers import PCAP_HEADER, PCAP_LINKTYPE_MASK, CaptureError, open_capture
from otids.decode.base import ProtocolSpec
from otids.decode.registry import PROTOCOLS

# How much of the capture is weighed: a few seconds of a busy network, long enough for
# every polling connection to show its rate, read in a few milliseconds.
HEAD_BYTES = 4 * 1024 * 1024
PCAP_RECORD_HEADER = 16
# Relative cost of one packet in a worker, by the protocol its port belongs to (callgrind on
# the benchmark mix: Modbus about 86k instructions a packet, DNP3 about 150k, traffic of
# other ports about 8k, most of it dropped unseen once its flow is bypassed).
PROTOCOL_COSTS = {"modbus": 10, "dnp3": 18}
DEFAULT_PROTOCOL_COST = 10  # a protocol not measured above
OTHER_COST = 1
PORTS = 65536
MIN_PORTS_FRAME = 38  # Ethernet 14 + IPv4 20 + the two ports
_IPV4_PLAIN = b"\x08\x00\x45"  # EtherType IPv4, version 4 with a 20-byte header
_FLOW_KEY = struct.Struct("!IIHH")  # at offset 26: source, destination, ports
_TCP, _UDP = 6, 17


def port_costs(protocols: Iterable[ProtocolSpec] = PROTOCOLS) -> tuple[bytes, bytes]:
    """Tables (65,536 bytes, by port) of the cost of a TCP and of a UDP packet to or from
    each protocol's ports; 0 for other ports."""
    tcp, udp = bytearray(PORTS), bytearray(PORTS)
    for spec in protocols:
        cost = PROTOCOL_COSTS.get(spec.name, DEFAULT_PROTOCOL_COST)
        for table, ports in ((tcp, spec.tcp_ports), (udp, spec.udp_ports)):
            for port in ports:
                table[port] = max(table[port], cost)
    return bytes(tcp), bytes(udp)


def weigh_frame(weights: list[int], frame: bytes, tcp_costs: bytes, udp_costs: bytes) -> None:
    """Add one Ethernet frame's weight to its flow bucket (the C accelerator's
    ``bucket_weights`` does the same for a buffer of pcap records)."""
    if len(frame) < MIN_PORTS_FRAME or frame[12:15] != _IPV4_PLAIN or frame[20] & 0x3F:
        return
    if frame[21]:
        return  # a fragment
    proto = frame[23]
    costs = tcp_costs if proto == _TCP else udp_costs if proto == _UDP else None
    if costs is None:
        return
    src, dst, sport, dport = _FLOW_KEY.unpack_from(frame, 26)
    cost = max(costs[sport], costs[dport]) or OTHER_COST
    weights[_mix(src ^ dst, sport ^ dport, SHARD_BUCKETS)] += cost


def weigh_head(path: str, tcp_costs: bytes, udp_costs: bytes) -> list[int]:
    """The weight of each flow bucket over the records in the first :data:`HEAD_BYTES` of
    a capture file (all zero when it cannot be read)."""
    fast = readers._fastpcap  # None without the C accelerator (or with it disabled)
    try:
        with open(path, "rb") as raw:
            head = raw.read(HEAD_BYTES)
    except OSError:
        return [0] * SHARD_BUCKETS
    magic = readers._PCAP_MAGICS.get(head[:4])
    if fast is not None and magic is not None and len(head) >= PCAP_HEADER:
        order = magic[0]
        linktype = int.from_bytes(head[20:24], "big" if order == ">" else "little")
        if linktype & PCAP_LINKTYPE_MASK != LinkType.ETHERNET:
            return [0] * SHARD_BUCKETS
        weights: list[int] = fast.bucket_weights(
            head, PCAP_HEADER, order == ">", tcp_costs, udp_costs, OTHER_COST
        )
        return weights
    return _weigh_records(path, tcp_costs, udp_costs)


def _weigh_records(path: str, tcp_costs: bytes, udp_costs: bytes) -> list[int]:
    """:func:`weigh_head` for any capture format, in Python: records up to
    :data:`HEAD_BYTES` as they would lie in a classic pcap file."""
    weights = [0] * SHARD_BUCKETS
    used = PCAP_HEADER
    try:
        with open_capture(path) as reader:
            for _ts, linktype, frame, _wirelen in reader:
                used += PCAP_RECORD_HEADER + len(frame)
                if used > HEAD_BYTES:
                    break
                if linktype == LinkType.ETHERNET:
                    weigh_frame(weights, frame, tcp_costs, udp_costs)
    except CaptureError:
        pass
    return weights


def plan(weights: list[int], count: int) -> bytes:
    """The bucket table for ``count`` workers: weighed buckets heaviest first, each to the
    least loaded worker (the lowest index on a tie); the others in turn."""
    table = bytearray(round_robin_buckets(count))
    loads = [0] * count
    weighed = sorted((b for b in range(SHARD_BUCKETS) if weights[b]), key=lambda b: -weights[b])
    for bucket in weighed:
        worker = loads.index(min(loads))
        table[bucket] = worker
        loads[worker] += weights[bucket]
    return bytes(table)


def balanced_buckets(path: str | os.PathLike[str], count: int) -> bytes:
    """The bucket table that evens out the work of ``count`` workers on the capture at
    ``path`` (:func:`plan` over :func:`weigh_head`)."""
    tcp_costs, udp_costs = port_costs()
    return plan(weigh_head(os.fspath(path), tcp_costs, udp_costs), count)
