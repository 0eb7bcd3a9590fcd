"""``--pcap-out``: the packets of alerting flows, written to a pcap file.

:class:`FlowRecorder` sits on the packet iterator: it keeps the last
:data:`RECENT_PER_FLOW` frames of every flow (keyed on the 5-tuple, both directions alike)
and, as a sink, watches the alerts. When an alert names a flow, the flow's recent frames
are written, and its next :data:`AFTER_ALERT` frames follow as they come. Memory is bounded
by :data:`MAX_FLOWS` x :data:`RECENT_PER_FLOW` frames.

The key is read from the frame by a small decoder of its own (Ethernet with up to two VLAN
tags, or raw IP; IPv4 first fragments and IPv6 without extension headers): the recorder is
optional, and the pipeline's decoder keeps its fast path free of it. Frames it cannot key
(rare on a Modbus/DNP3 port) are not recorded.

Several processes may append to one file: the header is written by :func:`create_pcap`
once, then every frame is one ``write`` on a descriptor opened with ``O_APPEND``.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from otids.capture.link import LinkType

RECENT_PER_FLOW = 32  # frames kept per flow before an alert: the handshake and the lead-up
MAX_FLOWS = 4096  # flows remembered; the oldest is forgotten first (a SPAN port is bounded)
AFTER_ALERT = 1000  # frames of an alerting flow written after the alert, then it stops

# Classic pcap file header (microsecond timestamps):
#   +-----------+-------+-------+----------+---------+---------+----------+
#   |magic      |major  |minor  |thiszone  |sigfigs  |snaplen  |linktype  |
#   |a1b2c3d4   |2      |4      |0         |0        |u32      |u32       |
#   +-----------+-------+-------+----------+---------+---------+----------+
_FILE_HEADER = struct.Struct("<IHHiIII")
# Record header: ts_sec, ts_usec, incl_len, orig_len.
_RECORD = struct.Struct("<IIII")
PCAP_MAGIC = 0xA1B2C3D4

_ETHERTYPE = struct.Struct(">H")
_PORTS = struct.Struct(">HH")
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
_MAX_VLAN_TAGS = 2  # customer and service tag (QinQ)
_PROTO_OF_NAME = {"TCP": 6, "UDP": 17}

Frame = tuple[float, int, bytes, int]  # (timestamp, linktype, frame, wire length)
FlowKey = tuple[int, bytes, int, bytes, int]  # proto, lower (addr, port), higher (addr, port)


def create_pcap(path: str, linktype: int, snaplen: int) -> None:
    """Create (or truncate) ``path`` with a pcap file header. Raises ``OSError``."""
    with open(path, "wb") as f:
        f.write(_FILE_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype))


def flow_key(linktype: int, frame: bytes) -> FlowKey | None:
    """The 5-tuple of a TCP/UDP frame, the same for both directions; ``None`` if none."""
    if linktype == LinkType.ETHERNET:
        pos = 12
        ethertype = _ETHERTYPE.unpack_from(frame, pos)[0] if len(frame) >= 14 else 0
        for _ in range(_MAX_VLAN_TAGS):
            if ethertype not in _VLAN_TPIDS or len(frame) < pos + 8:
                break
            pos += 4
            ethertype = _ETHERTYPE.unpack_from(frame, pos)[0]
        pos += 2
    elif linktype == LinkType.RAW:
        pos = 0
        ethertype = _ETH_IPV4 if frame[:1] and frame[0] >> 4 == 4 else _ETH_IPV6
    else:
        return None
    if ethertype == _ETH_IPV4 and len(frame) >= pos + 20:
        if frame[pos + 6] & 0x1F or frame[pos + 7]:
            return None  # a later fragment: no ports
        proto = frame[pos + 9]
        src, dst = frame[pos + 12 : pos + 16], frame[pos + 16 : pos + 20]
        pos += (frame[pos] & 0x0F) * 4
    elif ethertype == _ETH_IPV6 and len(frame) >= pos + 40:
        proto = frame[pos + 6]
        src, dst = frame[pos + 8 : pos + 24], frame[pos + 24 : pos + 40]
        pos += 40
    else:
        return None
    if proto not in (6, 17) or len(frame) < pos + 4:
        return None
    sport, dport = _PORTS.unpack_from(frame, pos)
    if (src, sport) <= (dst, dport):
        return proto, src, sport, dst, dport
    return proto, dst, dport, src, sport


def alert_key(record: dict[str, Any]) -> FlowKey | None:
    """The :func:`flow_key` of the flow an EVE alert record names."""
    try:
        proto = _PROTO_OF_NAME[record["proto"]]
        src = ipaddress.ip_address(record["src_ip"]).packed
        dst = ipaddress.ip_address(record["dest_ip"]).packed
        sport, dport = int(record["src_port"]), int(record["dest_port"])
    except (KeyError, ValueError, TypeError):
        return None
    if (src, sport) <= (dst, dport):
        return proto, src, sport, dst, dport
    return proto, dst, dport, src, sport


class FlowRecorder:
    """Recent frames per flow, written to a pcap when an alert names the flow.

    Wrap the pipeline's packet iterable in :meth:`record` and register the recorder as a
    sink (:meth:`handle`): ``pipeline.run(recorder.record(packets))``. Only frames of
    ``linktype`` are recorded: a pcap has one link type.
    """

    def __init__(self, path: str, linktype: int) -> None:
        self.linktype = linktype
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._recent: dict[FlowKey, deque[tuple[float, bytes, int]]] = {}
        self._following: dict[FlowKey, int] = {}  # alerting flow -> frames still to write
        self.error: str | None = None  # why writing stopped (disk full...), if it did

    def record(self, packets: Iterable[Frame]) -> Iterator[Frame]:
        """Yield ``packets`` unchanged, remembering each (or writing it, for a flow that
        alerted) just before the pipeline sees it."""
        recent = self._recent
        following = self._following
        linktype = self.linktype
        for packet in packets:
            ts, lt, frame, wirelen = packet
            key = flow_key(lt, frame) if lt == linktype else None
            if key is not None:
                if following and key in following:
                    self._write(ts, frame, wirelen)
                    left = following[key] - 1
                    if left:
                        following[key] = left
                    else:
                        del following[key]
                else:
                    ring = recent.get(key)
                    if ring is None:
                        if len(recent) >= MAX_FLOWS:
                            del recent[next(iter(recent))]
                        ring = recent[key] = deque(maxlen=RECENT_PER_FLOW)
                    ring.append((ts, frame, wirelen))
            yield packet

    def handle(self, record: dict[str, Any]) -> None:
        """Sink side: on an alert, write the flow's recent frames and follow it."""
        if record.get("event_type") != "alert":
            return
        key = alert_key(record)
        if key is None or key in self._following:
            return
        for ts, frame, wirelen in self._recent.pop(key, ()):
            self._write(ts, frame, wirelen)
        if len(self._following) >= MAX_FLOWS:
            del self._following[next(iter(self._following))]
        self._following[key] = AFTER_ALERT

    def _write(self, ts: float, frame: bytes, wirelen: int) -> None:
        if self._fd < 0:
            return
        sec = int(ts)
        usec = min(int((ts - sec) * 1_000_000), 999_999)
        try:
            os.write(self._fd, _RECORD.pack(sec, usec, len(frame), wirelen) + frame)
        except OSError as exc:  # the analysis goes on without the pcap
            self.error = exc.strerror or str(exc)
            self.close()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
