"""Balancing the flows between worker processes: which worker takes which flow bucket.

Workers split the flows by a hash into :data:`~otids.capture.link.SHARD_BUCKETS` buckets
(:func:`~otids.capture.link.shard_of`), and a bucket table gives each bucket's worker.
Dealing the buckets in turn spreads flows evenly by number, but on an OT network a handful
of long polling connections make most of the work: when more of them hash to one worker,
the others finish early and wait. So before the workers start, :func:`balanced_buckets`
weighs the buckets over samples of the capture (packets, each weighted by what a packet of
its protocol costs to analyse) and deals the heaviest buckets first, each to the least
loaded worker (the greedy longest-processing-time rule); buckets not seen in the samples
are dealt in turn. Whatever the table, every flow stays whole in one worker, so the output
is the same records.

The weighing counts Ethernet frames carrying IPv4 without options, not fragments: the
frames the decoder's fast path hashes from the raw header, nearly all of a real capture.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from otids.capture import readers
from otids.capture.link import SHARD_BUCKETS, LinkType, frame_bucket, round_robin_buckets
from otids.capture.readers import (
    MAX_RECORD_BYTES,
    PCAP_HEADER,
    PCAP_LINKTYPE_MASK,
    PCAP_RECORD_HEADER,
    CaptureError,
    open_capture,
)
from otids.decode.base import ProtocolSpec
from otids.decode.registry import PROTOCOLS

# How much of a classic pcap file is weighed: SAMPLES stretches spread evenly over the file
# (the first at its start), so that flows starting late weigh too; a few milliseconds of
# reading. Many short stretches follow the traffic over time better than a few long ones
# (32 x 128 KiB, on the benchmark mixes with 2 to 4 workers: the busiest worker's share
# 1.5% over even on average, 6% at worst; dealt in turn, 12% to 68%).
SAMPLE_BYTES = 128 * 1024
SAMPLES = 32
# Of another format (pcapng, gzip), read record by record in Python: the head only.
OTHER_FORMAT_BYTES = 1024 * 1024
# A stretch starts at the first offset where this many record headers in a row look right,
SYNC_RECORDS = 4
# their seconds within this long of the capture's first record.
SYNC_MAX_SPAN = 366 * 86400
# Relative cost of one packet in a worker, by the protocol its port belongs to (callgrind on
# the benchmark mix split by port: Modbus about 63k instructions a packet, DNP3 about 87k,
# traffic of other ports about 6k, most of it dropped unseen once its flow is bypassed).
# Re-measure when a dissector's cost changes much: the weights only steer the balance.
PROTOCOL_COSTS = {"modbus": 10, "dnp3": 14}
DEFAULT_PROTOCOL_COST = 10  # a protocol not measured above
OTHER_COST = 1
PORTS = 65536
MIN_PORTS_FRAME = 38  # Ethernet 14 + IPv4 20 + the two ports
_IPV4_PLAIN = b"\x08\x00\x45"  # EtherType IPv4, version 4 with a 20-byte header
_PORTS = struct.Struct("!HH")  # at offset 34: source and destination ports
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
    sport, dport = _PORTS.unpack_from(frame, 34)
    weights[frame_bucket(frame)] += max(costs[sport], costs[dport]) or OTHER_COST


def weigh_capture(path: str, tcp_costs: bytes, udp_costs: bytes) -> list[int]:
    """The weight of each flow bucket over samples of a capture file (all zero when it
    cannot be read): :data:`SAMPLES` stretches of :data:`SAMPLE_BYTES` spread over a
    classic pcap file, the first :data:`OTHER_FORMAT_BYTES` of another format."""
    weights = [0] * SHARD_BUCKETS
    try:
        with open(path, "rb") as raw:
            header = raw.read(PCAP_HEADER)
            magic = readers._PCAP_MAGICS.get(header[:4])
            if magic is None or len(header) < PCAP_HEADER:
                return _weigh_records(path, tcp_costs, udp_costs)
            order, ticks = magic
            linktype = struct.unpack_from(order + "I", header, 20)[0]
            if linktype & PCAP_LINKTYPE_MASK != LinkType.ETHERNET:
                return weights
            fast = readers._fastpcap  # None without the C accelerator (or with it disabled)
            for buf, pos in _stretches(raw, order, ticks):
                if fast is not None:
                    args = (order == ">", tcp_costs, udp_costs, OTHER_COST)
                    part = fast.bucket_weights(buf, pos, *args)
                else:
                    part = _weigh_buffer(buf, pos, order, tcp_costs, udp_costs)
                weights = [a + b for a, b in zip(weights, part, strict=True)]
    except OSError:
        pass
    return weights


def _stretches(raw: BinaryIO, order: str, ticks: int) -> Iterator[tuple[bytes, int]]:
    """The stretches of a classic pcap file (read past its header) to weigh, each with the
    offset of its first whole record; a stretch where :func:`_sync` finds none is left out."""
    size = os.fstat(raw.fileno()).st_size
    if size <= PCAP_HEADER + SAMPLES * SAMPLE_BYTES:
        yield raw.read(), 0  # small enough to weigh whole
        return
    head = raw.read(SAMPLE_BYTES)
    yield head, 0
    first = struct.unpack_from(order + "I", head)[0]  # the first record's seconds
    span = size - PCAP_HEADER - SAMPLE_BYTES
    for n in range(1, SAMPLES):
        raw.seek(PCAP_HEADER + span * n // (SAMPLES - 1))
        buf = raw.read(SAMPLE_BYTES)
        pos = _sync(buf, order, ticks, first)
        if pos >= 0:
            yield buf, pos


def _sync(buf: bytes, order: str, ticks: int, first: int) -> int:
    """The first offset of ``buf`` where :data:`SYNC_RECORDS` record headers in a row look
    right (fraction below a second, captured length within bounds and the wire length,
    seconds within :data:`SYNC_MAX_SPAN` of ``first``), or -1."""
    fast = readers._fastpcap
    if fast is not None:
        args = (order == ">", ticks, first, SYNC_MAX_SPAN, SYNC_RECORDS, MAX_RECORD_BYTES)
        found: int = fast.find_record(buf, *args)
        return found
    unpack = struct.Struct(order + "IIII").unpack_from
    for start in range(len(buf) - PCAP_RECORD_HEADER + 1):
        pos, n = start, 0
        while n < SYNC_RECORDS and pos + PCAP_RECORD_HEADER <= len(buf):
            sec, frac, caplen, wirelen = unpack(buf, pos)
            if not (
                frac < ticks
                and caplen <= MAX_RECORD_BYTES
                and caplen <= wirelen
                and abs(sec - first) <= SYNC_MAX_SPAN
            ):
                break
            pos += PCAP_RECORD_HEADER + caplen
            n += 1
        if n == SYNC_RECORDS:
            return start
    return -1


def _weigh_buffer(
    buf: bytes, pos: int, order: str, tcp_costs: bytes, udp_costs: bytes
) -> list[int]:
    """The C accelerator's ``bucket_weights`` in Python: the complete records of ``buf``
    from ``pos``, weighed."""
    weights = [0] * SHARD_BUCKETS
    unpack = struct.Struct(order + "IIII").unpack_from
    while pos + PCAP_RECORD_HEADER <= len(buf):
        start = pos + PCAP_RECORD_HEADER
        pos = start + unpack(buf, pos)[2]
        if pos > len(buf):
            break  # cut by the end of the stretch
        weigh_frame(weights, buf[start:pos], tcp_costs, udp_costs)
    return weights


def _weigh_records(path: str, tcp_costs: bytes, udp_costs: bytes) -> list[int]:
    """:func:`weigh_capture` for another format than classic pcap (pcapng, gzip), with the
    reader: the records that would fill the first :data:`OTHER_FORMAT_BYTES` of a pcap
    file."""
    weights = [0] * SHARD_BUCKETS
    used = PCAP_HEADER
    try:
        with open_capture(path) as reader:
            for _ts, linktype, frame, _wirelen in reader:
                used += PCAP_RECORD_HEADER + len(frame)
                if used > OTHER_FORMAT_BYTES:
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
    ``path`` (:func:`plan` over :func:`weigh_capture`)."""
    tcp_costs, udp_costs = port_costs()
    return plan(weigh_capture(os.fspath(path), tcp_costs, udp_costs), count)
