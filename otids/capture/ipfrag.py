"""Reassembly of fragmented IPv4 and IPv6 datagrams, with bounded memory.

A :class:`FragmentReassembler` collects the fragments of each datagram, keyed on
``(src, dst, identification, protocol)``, until every byte from 0 to the end announced by the
last fragment (the one without "more fragments") has arrived; it then returns the reassembled
payload, which the caller decodes like the payload of an unfragmented packet. The caller
gives it only what follows the IP header (IPv4) or the fragment header (IPv6): offsets here
are byte offsets into that payload.

Policy:

* Fragments may arrive in any order; holes are filled as they come.
* Overlapping fragments: *first-seen data wins*. A fragment only contributes the bytes that
  no earlier fragment of the same datagram covered; the rest of it is ignored, so a later
  fragment can never rewrite bytes already received. (Operating systems disagree on this,
  which is what overlap-based IDS evasion exploits; picking one policy and documenting it is
  the best an offline analyser can do. The TCP reassembler uses the same rule.)
* A datagram whose fragments contradict each other (two different ends, data past the end)
  or that would grow past :data:`MAX_DATAGRAM_BYTES` is dropped.
* Time is capture time (the timestamps passed in): a datagram still incomplete
  ``timeout`` seconds after its first fragment is dropped when a later fragment arrives.
* Bounds: at most ``max_datagrams`` datagrams and ``max_bytes`` payload bytes pending; when
  a new fragment would exceed them, the oldest pending datagrams are dropped to make room.

Whatever is dropped is counted in :attr:`FragmentReassembler.dropped` (fragments thrown away
without becoming part of a reassembled datagram).
"""

from __future__ import annotations

from collections.abc import Hashable

# The largest datagram payload an IP header can describe: the IPv4 total length and the IPv6
# payload length are 16-bit fields (IPv6 jumbograms cannot be fragmented).
MAX_DATAGRAM_BYTES = 65535
# Fragments kept per datagram. A 64 KiB datagram over the smallest common MTU (576) is ~120
# fragments; more than this means tiny fragments, an evasion technique, and each piece costs
# bookkeeping that the byte bound does not see.
MAX_FRAGMENTS_PER_DATAGRAM = 256
# Datagrams pending at once. Fragmentation is rare on OT networks (Modbus and DNP3 messages
# fit one frame); this covers legitimate bursts while bounding what a fragment flood can pin.
MAX_PENDING_DATAGRAMS = 1024
# Payload bytes pending at once, over all datagrams (64 full-size datagrams).
MAX_PENDING_BYTES = 4 * 1024 * 1024
# Seconds of capture time a datagram may wait for its missing fragments (Linux's
# ipfrag_time default).
FRAGMENT_TIMEOUT = 30.0


class _Datagram:
    """The fragments received so far of one datagram."""

    __slots__ = ("covered", "created", "fragments", "pieces", "total", "wirelen")

    def __init__(self, created: float) -> None:
        self.created = created  # capture time of the first fragment seen
        # (start, end, data) of the bytes received, sorted by start, never overlapping.
        self.pieces: list[tuple[int, int, bytes]] = []
        self.covered = 0  # sum of the pieces' lengths
        self.total = -1  # payload length, known once the last fragment arrived
        self.fragments = 0  # fragments accepted (for the drop counter)
        self.wirelen = 0  # wire bytes of those fragments (the reassembled packet's length)


class FragmentReassembler:
    """Bounded reassembly of IP fragments; see the module docstring for the policy."""

    def __init__(
        self,
        max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
        max_datagrams: int = MAX_PENDING_DATAGRAMS,
        max_bytes: int = MAX_PENDING_BYTES,
        timeout: float = FRAGMENT_TIMEOUT,
    ) -> None:
        self.max_datagram_bytes = max_datagram_bytes
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout = timeout
        # Insertion order is creation order: the oldest datagram is always first, which makes
        # both timeout expiry and eviction a pop from the front.
        self._pending: dict[Hashable, _Datagram] = {}
        self.pending_bytes = 0  # payload bytes held in pending datagrams
        self.reassembled = 0  # datagrams completed
        self.dropped = 0  # fragments discarded without becoming part of a datagram

    @property
    def pending_datagrams(self) -> int:
        """How many datagrams are waiting for fragments."""
        return len(self._pending)

    def add(
        self, ts: float, key: Hashable, offset: int, data: bytes, more: bool, wirelen: int
    ) -> tuple[bytes, int] | None:
        """Add one fragment; return ``(payload, wire_bytes)`` when it completes its datagram.

        ``offset`` is the fragment's byte offset in the datagram payload, ``more`` its "more
        fragments" flag, ``wirelen`` its length on the wire; ``wire_bytes`` sums the wire
        lengths of all the fragments of the completed datagram.
        """
        self._expire(ts)
        end = offset + len(data)
        dg = self._pending.get(key)
        if end > self.max_datagram_bytes:
            self._drop_fragment(key, dg)
            return None
        if dg is None:
            if len(data) > self.max_bytes:
                self.dropped += 1
                return None
            while len(self._pending) >= self.max_datagrams:
                self._evict_oldest()
            dg = self._pending[key] = _Datagram(ts)
        if not more:
            if dg.total >= 0 and dg.total != end:
                self._drop_fragment(key, dg)  # two different ends: inconsistent datagram
                return None
            dg.total = end
        if dg.total >= 0 and (end > dg.total or (dg.pieces and dg.pieces[-1][1] > dg.total)):
            self._drop_fragment(key, dg)  # data beyond the end of the datagram
            return None
        if len(dg.pieces) >= MAX_FRAGMENTS_PER_DATAGRAM:
            self._drop_fragment(key, dg)
            return None
        new = _uncovered(dg.pieces, offset, end)
        added = sum(e - s for s, e in new)
        # Make room before storing; this may evict the datagram itself if it is the oldest.
        while self.pending_bytes + added > self.max_bytes and key in self._pending:
            self._evict_oldest()
        if key not in self._pending:
            self.dropped += 1
            return None
        dg.fragments += 1
        dg.wirelen += wirelen
        if added:
            dg.pieces.extend((s, e, data[s - offset : e - offset]) for s, e in new)
            dg.pieces.sort()
            dg.covered += added
            self.pending_bytes += added
        if dg.covered != dg.total:
            return None
        del self._pending[key]
        self.pending_bytes -= dg.covered
        self.reassembled += 1
        return b"".join(piece[2] for piece in dg.pieces), dg.wirelen

    def _expire(self, now: float) -> None:
        """Drop the datagrams whose first fragment is more than ``timeout`` seconds old."""
        limit = now - self.timeout
        pending = self._pending
        while pending:
            oldest = pending[next(iter(pending))]
            if oldest.created >= limit:
                return
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        key = next(iter(self._pending))
        dg = self._pending.pop(key)
        self.pending_bytes -= dg.covered
        self.dropped += dg.fragments

    def _drop_fragment(self, key: Hashable, dg: _Datagram | None) -> None:
        """Discard this fragment and, when there is one, its whole datagram."""
        self.dropped += 1
        if dg is not None:
            del self._pending[key]
            self.pending_bytes -= dg.covered
            self.dropped += dg.fragments


def _uncovered(pieces: list[tuple[int, int, bytes]], start: int, end: int) -> list[tuple[int, int]]:
    """The sub-ranges of ``[start, end)`` that no piece covers (pieces sorted, disjoint)."""
    holes = []
    cur = start
    for p_start, p_end, _ in pieces:
        if p_end <= cur:
            continue
        if p_start >= end:
            break
        if p_start > cur:
            holes.append((cur, p_start))
        cur = p_end
        if cur >= end:
            break
    if cur < end:
        holes.append((cur, end))
    return holes
