"""The DNP3 dissector of one flow: link frames -> transport reassembly -> transactions."""

from __future__ import annotations

from otids.decode.base import AppParser, DecoderEvent, Direction, ProbeResult, Record
from otids.decode.dnp3.events import Dnp3Event
from otids.decode.dnp3.functions import (
    HEADER_ONLY_CODES,
    NO_RESPONSE_CODES,
    REQUEST_CODES,
    RESPONSE_CODES,
    FunctionCode,
)
from otids.decode.dnp3.link import (
    BROADCAST_FIRST,
    HEADER_SIZE,
    RESERVED_FIRST,
    START,
    USER_DATA_CONTROLS,
    LinkDecoder,
    LinkFrame,
    header_ok,
)
from otids.decode.dnp3.objects import ParsedObjects, parse_objects
from otids.decode.dnp3.transaction import APP_FIN, APP_FIR, APP_SEQ, Dnp3Message, Dnp3Transaction
from otids.decode.dnp3.transport import Events, Reassembler

# Requests in a row without any response before the flow counts as flooded (and requests
# kept waiting for their response at most). A master has one request outstanding per
# outstation and an outstation answers each at once, so a few unanswered ones mean lost
# packets and dozens a one-sided flood; Suricata raises its flooded event past 32 as well.
MAX_PENDING = 32

# Plain ints for the per-fragment comparisons: reading an enum member costs far more.
_UNSOLICITED_RESPONSE = int(FunctionCode.UNSOLICITED_RESPONSE)
_TO_CLIENT = Direction.TO_CLIENT

# Parsed objects of recent fragments, keyed by the fragment from its function code on (the
# application control octet before it carries the sequence number): a master repeats the same
# few polls and an outstation often answers them alike, so most fragments were parsed before.
# A result is shared by every message with those octets and never changed. Only short
# fragments that declare few points are kept (points, once decoded, stay with the entry) and a
# full cache starts afresh: that bounds its memory.
OBJECTS_CACHE_SIZE = 128  # fragments per cache (one for requests, one for responses)
OBJECTS_CACHE_OCTETS = 256
OBJECTS_CACHE_POINTS = 32
_request_objects: dict[bytes, ParsedObjects] = {}
_response_objects: dict[bytes, ParsedObjects] = {}

# Key of a request awaiting its response: (link source, link destination, sequence).
_PendingKey = tuple[int, int, int]
# Key of a message whose next fragment is awaited: (direction, link source, destination).
_StreamKey = tuple[int, int, int]


def probe(data: bytes, direction: Direction) -> ProbeResult:
    """Does a flow start with DNP3 link frames?

    It must start with the start octets, and one of the link headers found from there on
    (at each start-octet pair) must have a matching header CRC. Not just the first one: an
    outstation silently discards a frame with a bad CRC, so a first frame spoiled on purpose
    would otherwise hide the rest of the flow from the dissector. The CRC is evidence enough
    (a LENGTH below 5 under a valid CRC is a malformed DNP3 frame, which the dissector
    reports). Until a valid header turns up the answer is "need more"; the pipeline bounds
    how long it waits.
    """
    if not START.startswith(data[:2]):
        return ProbeResult.NO_MATCH
    pos = 0
    # Each pass moves to a later start-octet pair: bounded by the data length.
    while 0 <= pos <= len(data) - HEADER_SIZE:
        if header_ok(data, pos):
            return ProbeResult.MATCH
        pos = data.find(START, pos + 1)
    return ProbeResult.NEED_MORE


class Dnp3Parser(AppParser):
    """Per-flow DNP3 state: link buffers, transport reassembly, pending transactions.

    ``datagram``: True on UDP, where each :meth:`feed` is one datagram (possibly several
    frames, never a partial one kept for the next call); transport reassembly still spans
    datagrams.
    """

    protocol = "dnp3"

    __slots__ = ("_continuing", "_links", "_next_id", "_pending", "_transport", "_unanswered")

    def __init__(self, datagram: bool = False) -> None:
        self._links = (LinkDecoder(datagram), LinkDecoder(datagram))
        self._transport = Reassembler()
        self._pending: dict[_PendingKey, Dnp3Transaction] = {}
        self._continuing: dict[_StreamKey, tuple[Dnp3Transaction, int]] = {}
        self._next_id = 0
        self._unanswered = 0  # requests expecting a response since the last response

    # -- AppParser ------------------------------------------------------------------------

    def feed(self, direction: Direction, data: bytes, ts: float) -> list[Record]:
        """Consume bytes travelling in ``direction``; return new records."""
        out: list[Record] = []
        events: Events = []
        for item in self._links[direction].feed(data):
            if isinstance(item, LinkFrame):
                self._frame(direction, item, ts, out, events)
            else:
                events.append(item)
            if events:
                for name, detail in events:
                    out.append(DecoderEvent(name, direction, ts, detail))
                events.clear()
        return out

    def gap(self, direction: Direction, ts: float) -> list[Record]:
        """Bytes were lost in ``direction``: drop partial frames and fragments."""
        self._links[direction].reset()
        self._transport.drop(direction)
        out: list[Record] = [DecoderEvent(Dnp3Event.GAP, direction, ts, "stream gap")]
        for key in [k for k in self._continuing if k[0] == direction]:
            tx, _ = self._continuing.pop(key)
            if not tx.done:
                self._finish(tx, out)
        return out

    def close(self, ts: float) -> list[Record]:
        """The flow ended: every pending transaction is returned as ``done``."""
        out: list[Record] = []
        for tx, _ in self._continuing.values():
            if not tx.done:
                self._finish(tx, out)
        for tx in self._pending.values():
            if not tx.done:
                tx.unanswered = not tx.responses
                self._finish(tx, out)
        self._continuing.clear()
        self._pending.clear()
        return out

    # -- link and transport ---------------------------------------------------------------

    def _frame(
        self, direction: Direction, frame: LinkFrame, ts: float, out: list[Record], events: Events
    ) -> None:
        dst = frame.dst
        if RESERVED_FIRST <= dst < BROADCAST_FIRST:
            events.append((Dnp3Event.RESERVED_ADDRESS, f"destination {dst:#06x}"))
        if frame.src >= RESERVED_FIRST:
            events.append((Dnp3Event.RESERVED_ADDRESS, f"source {frame.src:#06x}"))
        if frame.control not in USER_DATA_CONTROLS:
            return  # link-only frame: link status, reset, ack...
        if not frame.user_data:
            events.append((Dnp3Event.LEN_TOO_SMALL, "user data frame without transport header"))
            return
        fragment = self._transport.push((direction, frame.src, dst), frame.user_data, events)
        if fragment is not None:
            self._fragment(direction, frame, fragment, ts, out, events)

    # -- application ----------------------------------------------------------------------

    def _fragment(
        self,
        direction: Direction,
        frame: LinkFrame,
        data: bytes,
        ts: float,
        out: list[Record],
        events: Events,
    ) -> None:
        if len(data) < 2:
            events.append((Dnp3Event.LEN_TOO_SMALL, f"fragment of {len(data)} octets"))
            return
        function = data[1]
        if function in RESPONSE_CODES:
            is_response = True
        elif function in REQUEST_CODES:
            is_response = False
        else:
            events.append((Dnp3Event.RESERVED_FUNCTION, f"function code {function:#04x}"))
            is_response = direction == _TO_CLIENT
        if is_response:
            if len(data) < 4:
                events.append((Dnp3Event.LEN_TOO_SMALL, f"response of {len(data)} octets"))
                return
            iin: int | None = (data[2] << 8) | data[3]
            parsed = _objects(_response_objects, data, 4, False)
        else:
            iin = None
            parsed = _objects(_request_objects, data, 2, function in HEADER_ONLY_CODES)
        if parsed.events:
            events.extend(parsed.events)
        msg = Dnp3Message(
            ts,
            frame.control,
            frame.src,
            frame.dst,
            data,
            iin,
            parsed.objects,
            parsed.complete,
            parsed.points,
        )
        tx = self._place(direction, msg, out, events)
        if events:
            self._attach(tx, events, out, direction, ts)
        out.append(tx)

    def _place(
        self, direction: Direction, msg: Dnp3Message, out: list[Record], events: Events
    ) -> Dnp3Transaction:
        """Find or open the transaction ``msg`` belongs to."""
        stream = (direction, msg.src, msg.dst)
        seq = msg.app_control & APP_SEQ
        follow = self._continuing.pop(stream, None)
        if follow is not None:
            tx, expected = follow
            if not msg.app_control & APP_FIR and expected == seq and not tx.done:
                (tx.requests if msg.iin is None else tx.responses).append(msg)
                self._after(tx, stream, msg, seq)
                return tx
            if not tx.done:  # the message it was part of ended without its last fragment
                self._finish(tx, out)
        if msg.iin is None:
            tx = self._open(msg.ts, direction)
            tx.requests.append(msg)
            tx.broadcast = msg.dst >= BROADCAST_FIRST
            if msg.function not in NO_RESPONSE_CODES and not tx.broadcast:
                self._expect_response(tx, (msg.src, msg.dst, seq), out, events)
        else:
            found = None
            if msg.function != _UNSOLICITED_RESPONSE:
                found = self._pending.pop((msg.dst, msg.src, seq), None)
            if found is None or found.done:
                tx = self._open(msg.ts, direction)
                tx.unsolicited = msg.function == _UNSOLICITED_RESPONSE
            else:
                tx = found
            self._unanswered = 0
            tx.responses.append(msg)
        self._after(tx, stream, msg, seq)
        return tx

    def _expect_response(
        self, tx: Dnp3Transaction, key: _PendingKey, out: list[Record], events: Events
    ) -> None:
        """Register a request as pending under ``key``; give up the oldest ones past the
        flood bound."""
        previous = self._pending.pop(key, None)
        if previous is not None and not previous.done:
            # Same addresses and sequence: a retry, or a request whose answer never came.
            previous.unanswered = True
            self._finish(previous, out)
        self._pending[key] = tx
        if len(self._pending) > MAX_PENDING:
            oldest = self._pending.pop(next(iter(self._pending)))
            if not oldest.done:
                oldest.unanswered = True
                self._finish(oldest, out)
        self._unanswered += 1
        if self._unanswered == MAX_PENDING + 1:  # once per run of unanswered requests
            events.append((Dnp3Event.FLOODED, f"more than {MAX_PENDING} requests without response"))

    def _after(self, tx: Dnp3Transaction, stream: _StreamKey, msg: Dnp3Message, seq: int) -> None:
        """Expect the next fragment (after sequence ``seq``), or close the transaction when
        nothing more will come."""
        if not msg.app_control & APP_FIN:
            self._continuing[stream] = (tx, (seq + 1) & APP_SEQ)
        elif msg.iin is not None or msg.function in NO_RESPONSE_CODES or tx.broadcast:
            tx.done = True

    # -- helpers --------------------------------------------------------------------------

    def _open(self, ts: float, direction: Direction) -> Dnp3Transaction:
        tx = Dnp3Transaction(self._next_id, ts, direction)
        self._next_id += 1
        return tx

    @staticmethod
    def _attach(
        tx: Dnp3Transaction, events: Events, out: list[Record], direction: Direction, ts: float
    ) -> None:
        """Turn the pending (event, detail) pairs into events concerning ``tx``."""
        for name, detail in events:
            tx.events.append(name)
            out.append(DecoderEvent(name, direction, ts, detail, tx))
        events.clear()

    @staticmethod
    def _finish(tx: Dnp3Transaction, out: list[Record]) -> None:
        tx.done = True
        out.append(tx)


def _objects(
    cache: dict[bytes, ParsedObjects], data: bytes, pos: int, header_only: bool
) -> ParsedObjects:
    """:func:`parse_objects` of the fragment ``data`` from ``pos``, from ``cache`` when the
    same octets from the function code on were parsed before (``header_only`` follows from
    the function code, so it needs no place in the key)."""
    if len(data) > OBJECTS_CACHE_OCTETS:
        return parse_objects(data, pos, header_only)
    body = data[1:]
    parsed = cache.get(body)
    if parsed is None:
        parsed = parse_objects(body, pos - 1, header_only)
        if parsed.points <= OBJECTS_CACHE_POINTS:
            if len(cache) >= OBJECTS_CACHE_SIZE:
                cache.clear()
            cache[body] = parsed
    return parsed
