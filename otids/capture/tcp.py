"""Reassembly of one direction of a TCP connection.

A :class:`TcpReassembler` turns the segments one side sent, as the capture saw them (lost,
duplicated, reordered, overlapping), into the ordered byte stream the receiver's
application read. Its output is a list of *stream items*:

* ``bytes``: the next contiguous chunk of the stream;
* :class:`Gap`: the capture missed bytes before the next chunk (the receiver did get them,
  or they will never come): the dissector must resynchronise;
* :class:`StreamAnomaly`: something suspicious about the segments themselves, named
  ``stream.<event>`` (see :data:`STREAM_EVENTS`).

Policy, in the order of the questions an IDS has to answer:

* Data is delivered as soon as it is in order: an IDS must not wait for the receiver's ACK.
* Without a SYN, the peer's first ACK sets the expected sequence number ("midstream
  pick-up"). Data seen before it is held back (at most :data:`MIDSTREAM_HOLD_SEGMENTS`
  segments) until the start of the stream shows: the peer's next packet (whatever was
  reordered before it has arrived), two or more held segments that tile one contiguous run
  without overlap, or the end of the stream; the lowest held sequence number is then the
  start. Taking the
  first segment seen as the start would let a reordered first segment (byte 1 before byte
  0) shift the whole stream by a byte.
* Overlaps: *first-seen data wins*. Bytes already delivered are never replaced; a segment
  that starts before the expected sequence number only contributes its new tail, and a
  segment that overlaps buffered out-of-order data only fills the holes around it. Bytes
  already delivered are not kept, so a retransmission that differs from them goes unnoticed
  (it is only counted); buffered bytes are still here, so a conflicting overlap among them
  raises ``stream.overlap_mismatch``.
* Out-of-order data waits in a bounded buffer until the hole before it is filled. When the
  peer acknowledges data we never saw, or the buffer bounds are reached, or the stream ends,
  the hole is declared lost: a :class:`Gap` then the buffered data are delivered.

Sequence numbers are compared modulo 2**32 (RFC 9293 section 3.4, serial arithmetic as in
RFC 1982): a number less than 2**31 ahead of the expected one is "after" it. Internally,
buffered segments are kept as offsets relative to the next expected byte, so wrap-around is
handled in one place.
"""

from __future__ import annotations

from operator import itemgetter

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
SEQ_HALF = 1 << 31  # serial arithmetic: up to 2**31 - 1 ahead means "after"
# Largest receive window RFC 7323 allows (65535 << 14, rounded up to 2**30): data starting
# further ahead than this cannot be inside the receiver's window, so it is not stream data.
MAX_WINDOW = 1 << 30
# Out-of-order buffer bounds, per direction. Reordering on an OT LAN is rare and shallow, and
# a hole left by capture loss is normally resolved by the peer's next ACK; Modbus and DNP3
# messages are a few hundred bytes. 64 KiB (one full unscaled window) and 64 segments cover
# any real reordering while bounding what a flood of out-of-window holes can pin in memory.
MAX_OOO_BYTES = 64 * 1024
MAX_OOO_SEGMENTS = 64
# Midstream pick-up: data segments held back while the stream start is unknown, at most.
# The peer's next packet (its ACK) or a second contiguous segment nearly always settles it
# first; the bound only matters for one-way captures, whose first segments then wait for
# this many before the lowest sequence number is taken as the start.
MIDSTREAM_HOLD_SEGMENTS = 8

STREAM_EVENTS: dict[str, str] = {
    "stream.overlap_mismatch": (
        "overlapping out-of-order TCP segments carry different bytes (first-seen bytes kept)"
    ),
    "stream.ooo_overflow": (
        "out-of-order buffer bounds reached: the missing data before it was declared lost"
    ),
    "stream.bad_window": (
        "TCP segment starts more than a maximum window past the expected sequence number; dropped"
    ),
    "stream.bad_ack": (
        "ACK acknowledges data more than a maximum window past the data seen; ignored"
    ),
}


class Gap:
    """Bytes of the stream the capture missed, just before the next delivered chunk.

    ``size`` is the number of bytes lost, 0 when unknown.
    """

    __slots__ = ("size",)

    def __init__(self, size: int = 0) -> None:
        self.size = size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Gap) and other.size == self.size

    def __hash__(self) -> int:
        return hash((Gap, self.size))

    def __repr__(self) -> str:
        return f"Gap({self.size})"


class StreamAnomaly:
    """A named anomaly of the TCP stream (``name`` is a key of :data:`STREAM_EVENTS`)."""

    __slots__ = ("detail", "name")

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StreamAnomaly)
            and other.name == self.name
            and other.detail == self.detail
        )

    def __hash__(self) -> int:
        return hash((StreamAnomaly, self.name, self.detail))

    def __repr__(self) -> str:
        return f"StreamAnomaly({self.name!r}, {self.detail!r})"


StreamItem = bytes | Gap | StreamAnomaly

_rel = itemgetter(0)


class TcpReassembler:
    """Reassembles the bytes one side of a TCP connection sent.

    ``next_seq`` is the sequence number of the next byte to deliver (-1 until known).
    ``ooo`` holds the out-of-order data: ``(offset, bytes)`` pairs sorted by offset, the
    offset counted from ``next_seq`` (always > 0), never overlapping one another.

    Counters: ``segments`` (data segments received), ``bytes`` (bytes delivered),
    ``retransmissions`` (segments entirely made of already delivered bytes), ``overlaps``
    (segments partly covering known bytes), ``overlap_conflicts`` (overlaps with different
    bytes), ``ooo_buffered`` (segments buffered out of order), ``gaps`` and ``gap_bytes``
    (holes declared lost).
    """

    __slots__ = (
        "bytes",
        "gap_bytes",
        "gaps",
        "held",
        "max_ooo_bytes",
        "max_ooo_segments",
        "next_seq",
        "ooo",
        "ooo_buffered",
        "ooo_size",
        "overlap_conflicts",
        "overlaps",
        "retransmissions",
        "segments",
    )

    def __init__(
        self, max_ooo_bytes: int = MAX_OOO_BYTES, max_ooo_segments: int = MAX_OOO_SEGMENTS
    ) -> None:
        self.max_ooo_bytes = max_ooo_bytes
        self.max_ooo_segments = max_ooo_segments
        self.next_seq = -1
        # Midstream: (seq, payload) segments seen before the stream start is known.
        self.held: list[tuple[int, bytes]] = []
        self.ooo: list[tuple[int, bytes]] = []
        self.ooo_size = 0  # bytes held in ooo
        self.segments = 0
        self.bytes = 0
        self.retransmissions = 0
        self.overlaps = 0
        self.overlap_conflicts = 0
        self.ooo_buffered = 0
        self.gaps = 0
        self.gap_bytes = 0

    def set_isn(self, isn: int) -> None:
        """Record the initial sequence number from a SYN: the first data byte is ``isn + 1``.

        Ignored once data has been seen in this direction (a late or repeated SYN does not
        move a stream that is already flowing).
        """
        if not self.segments and not self.held:
            self.next_seq = (isn + 1) & SEQ_MASK

    def segment(self, seq: int, payload: bytes) -> list[StreamItem]:
        """Take one segment's payload starting at sequence number ``seq``."""
        # Fast path, taken by nearly every data packet: the expected segment, nothing waiting.
        if seq == self.next_seq and not self.ooo and payload:
            n = len(payload)
            self.next_seq = (seq + n) & SEQ_MASK
            self.segments += 1
            self.bytes += n
            return [payload]
        return self._segment_slow(seq, payload)

    def _segment_slow(self, seq: int, payload: bytes) -> list[StreamItem]:
        n = len(payload)
        if not n:
            return []
        self.segments += 1
        nxt = self.next_seq
        if nxt < 0:  # midstream pick-up: hold until the stream start shows
            self.segments -= 1  # counted when replayed
            return self._hold(seq, payload)
        rel = (seq - nxt) & SEQ_MASK
        if rel >= SEQ_HALF:  # starts before the next expected byte
            rel -= SEQ_MOD
            if rel + n <= 0:
                self.retransmissions += 1
                return []
            # Partial overlap with delivered bytes: first-seen wins, keep the new tail only.
            self.overlaps += 1
            payload = payload[-rel:]
            rel = 0
        elif rel >= MAX_WINDOW:
            return [
                StreamAnomaly("stream.bad_window", f"seq {seq} is {rel} bytes past expected {nxt}")
            ]
        out: list[StreamItem] = []
        if self._insert(rel, payload, out) and rel:
            self.ooo_buffered += 1
        self._drain(out)
        if len(self.ooo) > self.max_ooo_segments or self.ooo_size > self.max_ooo_bytes:
            out.append(
                StreamAnomaly(
                    "stream.ooo_overflow",
                    f"{len(self.ooo)} segments, {self.ooo_size} bytes waiting for a hole",
                )
            )
            while len(self.ooo) > self.max_ooo_segments or self.ooo_size > self.max_ooo_bytes:
                self._skip_hole(self.ooo[0][0], out)
        return out

    def peer_ack(self, ack: int) -> list[StreamItem]:
        """The other side acknowledged everything before ``ack``.

        Bytes before ``ack`` that were never captured are declared lost (a :class:`Gap`), and
        the buffered data they were holding back is delivered.
        """
        nxt = self.next_seq
        if nxt < 0:  # midstream: the peer tells us where this side's stream stands
            if not self.held:
                self.next_seq = ack & SEQ_MASK
                return []
            # The peer has answered: whatever was reordered before it has arrived, so the
            # lowest held byte is the start; the ACK itself then counts as usual.
            return self._start_at(self._held_start()) + self.peer_ack(ack)
        rel = (ack - nxt) & SEQ_MASK
        if not rel or rel >= SEQ_HALF:  # acknowledges bytes already delivered
            return []
        if rel >= MAX_WINDOW:
            return [StreamAnomaly("stream.bad_ack", f"ack {ack} is {rel} bytes past {nxt}")]
        out: list[StreamItem] = []
        self._release(rel, out)
        return out

    def fin(self, seq: int) -> list[StreamItem]:
        """This side sent FIN at sequence number ``seq``: the stream ends there.

        Everything buffered is delivered, with a :class:`Gap` for each hole, including one
        for bytes between the last data seen and the FIN.
        """
        out: list[StreamItem] = self._start_at(self._held_start()) if self.held else []
        nxt = self.next_seq
        if nxt >= 0:
            rel = (seq - nxt) & SEQ_MASK
            if rel < MAX_WINDOW:
                self._release(rel, out)
        self._flush(out)
        if self.next_seq == seq & SEQ_MASK or nxt < 0:
            self.next_seq = (seq + 1) & SEQ_MASK  # the FIN occupies one sequence number
        return out

    def flush(self) -> list[StreamItem]:
        """End of stream (RST, flow expired): deliver what is buffered, Gaps for the holes."""
        out: list[StreamItem] = self._start_at(self._held_start()) if self.held else []
        self._flush(out)
        return out

    # -- midstream pick-up ------------------------------------------------------------------

    def _hold(self, seq: int, payload: bytes) -> list[StreamItem]:
        """Keep a segment seen before the stream start is known; start the stream once the
        held segments form one contiguous run, or once there are too many to hold."""
        held = self.held
        held.append((seq, payload))
        if len(held) >= MIDSTREAM_HOLD_SEGMENTS:
            return self._start_at(self._held_start())
        if len(held) < 2:
            return []
        base = held[0][0]
        spans = sorted(((s - base + SEQ_HALF) & SEQ_MASK, len(p)) for s, p in held)
        end = spans[0][0]
        for rel, n in spans:  # at most MIDSTREAM_HOLD_SEGMENTS entries
            if rel != end:
                # A hole, or an overlap: segments sent again (perhaps with other bytes)
                # prove nothing about where the stream starts.
                return []
            end = rel + n
        return self._start_at((spans[0][0] - SEQ_HALF + base) & SEQ_MASK)

    def _held_start(self) -> int:
        """The lowest sequence number among the held segments (serial arithmetic)."""
        base = self.held[0][0]
        low = min((s - base + SEQ_HALF) & SEQ_MASK for s, _ in self.held)
        return (low - SEQ_HALF + base) & SEQ_MASK

    def _start_at(self, seq: int) -> list[StreamItem]:
        """The stream starts at ``seq``: replay the held segments from there."""
        held = self.held
        self.held = []
        self.next_seq = seq
        out: list[StreamItem] = []
        for start, payload in held:
            out += self._segment_slow(start, payload)
        return out

    # -- helpers: each keeps ``ooo`` relative to ``next_seq`` -------------------------------

    def _insert(self, rel: int, data: bytes, out: list[StreamItem]) -> int:
        """Add ``data`` at offset ``rel`` where no buffered byte is; return bytes added."""
        end = rel + len(data)
        ooo = self.ooo
        pieces: list[tuple[int, bytes]] = []
        cur = rel  # first byte of data not yet placed or found buffered
        overlapped = conflict = False
        for start, chunk in ooo:  # at most max_ooo_segments + 1 entries
            stop = start + len(chunk)
            if stop <= cur:
                continue
            if start >= end:
                break
            overlapped = True
            if start > cur:
                pieces.append((cur, data[cur - rel : start - rel]))
                cur = start
            top = min(stop, end)
            if chunk[cur - start : top - start] != data[cur - rel : top - rel]:
                conflict = True
            cur = top
            if cur >= end:
                break
        if cur < end:
            pieces.append((cur, data[cur - rel :]))
        if overlapped:
            self.overlaps += 1
            if conflict:
                self.overlap_conflicts += 1
                out.append(
                    StreamAnomaly(
                        "stream.overlap_mismatch",
                        f"{len(data)} bytes at offset {rel} differ from buffered bytes",
                    )
                )
        added = 0
        for piece in pieces:
            added += len(piece[1])
        if pieces:
            ooo.extend(pieces)
            ooo.sort(key=_rel)
            self.ooo_size += added
        return added

    def _drain(self, out: list[StreamItem]) -> None:
        """Deliver the buffered data contiguous with ``next_seq``."""
        ooo = self.ooo
        pos = 0
        taken = 0
        while taken < len(ooo) and ooo[taken][0] == pos:
            chunk = ooo[taken][1]
            out.append(chunk)
            pos += len(chunk)
            taken += 1
        if taken:
            del ooo[:taken]
            self.ooo_size -= pos
            self.bytes += pos
            self._advance(pos)

    def _skip_hole(self, size: int, out: list[StreamItem]) -> None:
        """Declare the next ``size`` bytes lost, then deliver what became contiguous."""
        out.append(Gap(size))
        self.gaps += 1
        self.gap_bytes += size
        self._advance(size)
        self._drain(out)

    def _advance(self, shift: int) -> None:
        self.next_seq = (self.next_seq + shift) & SEQ_MASK
        if self.ooo:
            self.ooo = [(start - shift, chunk) for start, chunk in self.ooo]

    def _release(self, upto: int, out: list[StreamItem]) -> None:
        """Deliver every byte before offset ``upto``, declaring the holes among them lost."""
        while upto > 0:  # each turn delivers a buffered chunk or ends the loop
            before = self.next_seq
            hole = min(self.ooo[0][0], upto) if self.ooo else upto
            self._skip_hole(hole, out)
            upto -= (self.next_seq - before) & SEQ_MASK

    def _flush(self, out: list[StreamItem]) -> None:
        while self.ooo:  # each turn delivers at least one buffered chunk
            self._skip_hole(self.ooo[0][0], out)
