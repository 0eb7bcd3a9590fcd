"""DNP3 transport function: reassembles application fragments from link frames' user data.

Every user data frame carries one transport segment: a one-octet header, then 1-249 octets of
the application fragment (IEEE 1815-2012, clause 8)::

    +-----+-----+----------------+---------------------------+
    | FIN | FIR |  SEQUENCE (6)  |  fragment data (1..249)   |
    +-----+-----+----------------+---------------------------+
       7     6        5..0

A fragment starts with a FIR segment and ends with a FIN segment; the sequence number goes up
by one (modulo 64) from one segment to the next. Reassembly state is kept per direction and
link address pair, so interleaved conversations through one connection stay apart; on UDP it
spans datagrams.
"""

from __future__ import annotations

from otids.decode.dnp3.events import Dnp3Event
from otids.decode.dnp3.link import build_frame

FIN_BIT = 0x80
FIR_BIT = 0x40
SEQ_MASK = 0x3F
MAX_SEGMENT_DATA = 249  # 250 octets of link user data minus the transport header
# Longest fragment reassembled: 64 full segments. The 6-bit sequence number tells apart at
# most 64 consecutive segments; a longer fragment would reuse numbers, so a lost run of 64
# could no longer be detected. Real outstations send 2048-4096 octets; Suricata's bound for
# its too_long_reassembly event (63 * 255 = 16065) is of the same order.
MAX_FRAGMENT = 64 * MAX_SEGMENT_DATA
# Fragments in progress at once in one flow (one per direction and address pair): a handful
# in practice; the bound keeps a flow spraying address pairs from growing memory.
MAX_PARTIALS = 32

# (event, detail) pairs accumulate here while a segment is pushed.
Events = list[tuple[Dnp3Event, str]]
# Reassembly key: (direction, link source, link destination).
Key = tuple[int, int, int]


class _Partial:
    """A fragment being reassembled; ``data`` is None while discarding an oversized one."""

    __slots__ = ("data", "next_seq")

    def __init__(self, data: bytearray | None, next_seq: int) -> None:
        self.data = data
        self.next_seq = next_seq


class Reassembler:
    """Transport reassembly for one flow, keyed by (direction, source, destination)."""

    __slots__ = ("_partials",)

    def __init__(self) -> None:
        self._partials: dict[Key, _Partial] = {}

    def push(self, key: Key, segment: bytes, events: Events) -> bytes | None:
        """Add one segment (transport header included); return the fragment it completes."""
        th = segment[0]
        partial = self._partials.get(key)
        if th & FIR_BIT:
            if partial is not None:
                del self._partials[key]
                if partial.data is not None:
                    events.append(
                        (
                            Dnp3Event.DROPPED_SEGMENT,
                            f"first segment while {len(partial.data)} octets were pending",
                        )
                    )
            if th & FIN_BIT:  # the usual case: a fragment in one segment
                return segment[1:]
            if len(self._partials) >= MAX_PARTIALS:
                oldest = next(iter(self._partials))
                del self._partials[oldest]
                events.append((Dnp3Event.DROPPED_SEGMENT, "too many fragments in progress"))
            self._partials[key] = _Partial(bytearray(segment[1:]), (th + 1) & SEQ_MASK)
            return None
        if partial is None:
            events.append(
                (Dnp3Event.DROPPED_SEGMENT, f"segment {th & SEQ_MASK} without a first one")
            )
            return None
        data = partial.data
        if data is None:  # discarding the rest of an oversized fragment
            if th & FIN_BIT:
                del self._partials[key]
            return None
        seq = th & SEQ_MASK
        if seq != partial.next_seq:
            del self._partials[key]
            events.append(
                (
                    Dnp3Event.DROPPED_SEGMENT,
                    f"segment {seq} where {partial.next_seq} was expected; "
                    f"{len(data)} octets discarded",
                )
            )
            return None
        data += memoryview(segment)[1:]
        if len(data) > MAX_FRAGMENT:
            events.append(
                (Dnp3Event.TOO_LONG_REASSEMBLY, f"fragment exceeds {MAX_FRAGMENT} octets")
            )
            if th & FIN_BIT:
                del self._partials[key]
            else:
                partial.data = None
            return None
        if th & FIN_BIT:
            del self._partials[key]
            return bytes(data)
        partial.next_seq = (seq + 1) & SEQ_MASK
        return None

    def drop(self, direction: int) -> None:
        """Forget the fragments in progress whose key starts with ``direction`` (a gap)."""
        for key in [k for k in self._partials if k[0] == direction]:
            del self._partials[key]


def encode_fragment(fragment: bytes, control: int, dst: int, src: int, seq: int = 0) -> bytes:
    """Link frames carrying ``fragment`` in transport segments from sequence ``seq``.

    The inverse of reassembly, for tests and sample generation.
    """
    chunks = [
        fragment[i : i + MAX_SEGMENT_DATA] for i in range(0, len(fragment), MAX_SEGMENT_DATA)
    ] or [b""]
    frames = []
    for n, chunk in enumerate(chunks):
        th = ((seq + n) & SEQ_MASK) | (FIR_BIT if n == 0 else 0)
        th |= FIN_BIT if n == len(chunks) - 1 else 0
        frames.append(build_frame(control, dst, src, bytes((th,)) + chunk))
    return b"".join(frames)
