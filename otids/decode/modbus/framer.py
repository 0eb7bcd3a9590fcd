"""MBAP framing: splitting one direction's byte stream into Modbus ADUs, and the probe.

Modbus Messaging on TCP/IP Implementation Guide V1.0b, section 3.1.3, the MBAP header::

    +--------------------+---------------------+------------+-------------+
    | transaction id (2) | protocol id (2) = 0 | length (2) | unit id (1) |
    +--------------------+---------------------+------------+-------------+
    followed by the PDU: | function code (1) | data (0..252) |

``length`` counts the unit id and the PDU, so it lies in 2..254 and a whole ADU in 8..260
bytes. A stream that is short of a whole ADU waits for more ("need more"); a header that
cannot be right is malformed: it raises an event and the framer resynchronises by scanning
for the next plausible header.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct

from otids.decode.base import DecoderEvent, Direction, ProbeResult, Record
from otids.decode.modbus.events import ModbusEvent

MBAP_SIZE = 7  # the header above
MIN_LENGTH = 2  # unit id + function code
MAX_LENGTH = 254  # unit id + the 253-byte maximum PDU (serial-line heritage)
MAX_ADU = MBAP_SIZE - 1 + MAX_LENGTH  # 260: the most a framer ever buffers
# MBAP header plus the function code: what a plausible header needs to be judged.
_HEADER = Struct(">HHHBB")
HEADER_SIZE = _HEADER.size  # 8

# Function codes that may start a PDU in each direction: a request never has the exception
# bit (0x80) set, a response may; 0 is never valid.
REQUEST_CODES = frozenset(range(1, 128))
RESPONSE_CODES = REQUEST_CODES | frozenset(code | 0x80 for code in REQUEST_CODES)
VALID_CODES = (REQUEST_CODES, RESPONSE_CODES)  # indexed by Direction

# Invalid function codes a probe still accepts when the frame chains: a function-code scan
# starts at 0, and an honest server answers it with 0x80 (exception bit on function 0).
_SCAN_START = frozenset({0x00, 0x80})

# What a plausible header looks like at offset +2: protocol id 0 and a length below 256.
_ZERO_PROTOCOL = b"\x00\x00\x00"

# Receives each ADU: (transaction id, unit id, function code, PDU, ts, records out).
AduHandler = Callable[[int, int, int, bytes, float, list[Record]], None]


def plausible(data: bytes, offset: int, direction: Direction) -> bool:
    """Whether ``data[offset:offset + 8]`` can be an MBAP header and function code."""
    _, protocol, length, _, function = _HEADER.unpack_from(data, offset)
    return (
        protocol == 0 and MIN_LENGTH <= length <= MAX_LENGTH and function in VALID_CODES[direction]
    )


def chained(data: bytes, offset: int, direction: Direction) -> bool | None:
    """Whether the frame whose header is at ``offset`` is confirmed by what follows it.

    True when its length ends exactly at the end of ``data`` or lands on another plausible
    header; False when it lands on bytes that cannot start a header; None when the data ends
    too early to tell. Eight bytes of header alone are weak evidence (a random binary
    protocol matches them now and then); a frame that chains to the next is strong.
    """
    end = offset + 6 + _HEADER.unpack_from(data, offset)[2]
    if end == len(data):
        return True
    if end + HEADER_SIZE > len(data):
        return None
    return plausible(data, end, direction)


def find_header(data: bytes, start: int, direction: Direction) -> int:
    """Offset of the best plausible header at or after ``start``, or -1.

    The first candidate whose frame is confirmed (:func:`chained` is True) wins; failing
    that, the first that cannot be judged yet (None); candidates whose frame lands on
    garbage are skipped. Looks only where the protocol id and the length's high byte are
    zero (``bytes.find`` runs in C), so the scan is linear in the data and cheap on
    non-Modbus bytes.
    """
    codes = VALID_CODES[direction]
    end = len(data)
    fallback = -1
    position = data.find(_ZERO_PROTOCOL, start + 2)
    while 0 <= position <= end - 6:  # the function code is at position + 5
        if MIN_LENGTH <= data[position + 3] <= MAX_LENGTH and data[position + 5] in codes:
            verdict = chained(data, position - 2, direction)
            if verdict:
                return position - 2
            if verdict is None and fallback < 0:
                fallback = position - 2
        position = data.find(_ZERO_PROTOCOL, position + 1)
    return fallback


def probe(data: bytes, direction: Direction) -> ProbeResult:
    """Recognise Modbus/TCP from the first bytes of one direction of a flow.

    MATCH when the first 8 bytes are a plausible header (protocol id 0, length 2..254, a
    function code valid for the direction); NEED_MORE under 8 bytes. A header whose function
    code is invalid (0 starts the usual function-code scan) matches only when its frame
    chains (:func:`chained`), so a scan is recognised without taking every binary protocol
    with two zero bytes for Modbus.
    """
    if len(data) < HEADER_SIZE:
        return ProbeResult.NEED_MORE
    if plausible(data, 0, direction):
        return ProbeResult.MATCH
    _, protocol, length, _, function = _HEADER.unpack_from(data, 0)
    if protocol != 0 or not MIN_LENGTH <= length <= MAX_LENGTH or function not in _SCAN_START:
        return ProbeResult.NO_MATCH
    verdict = chained(data, 0, direction)
    if verdict is None:
        return ProbeResult.NEED_MORE
    return ProbeResult.MATCH if verdict else ProbeResult.NO_MATCH


class Framer:
    """Splits the bytes of one direction into ADUs.

    On a stream, bytes that do not yet make a whole ADU are kept for the next call; the
    buffer never exceeds one maximum ADU because a header is validated before its frame is
    awaited. On datagrams (``datagram``) every call is self-contained.
    """

    __slots__ = ("_buffer", "_datagram", "_direction", "_syncing")

    def __init__(self, direction: Direction, datagram: bool = False) -> None:
        self._direction = direction
        self._datagram = datagram
        self._buffer = b""
        self._syncing = False  # scanning for a plausible header after a gap or bad header

    def split(self, data: bytes, ts: float, out: list[Record], handle: AduHandler) -> None:
        """Pass every whole ADU in the buffer plus ``data`` to ``handle``, in stream order;
        framing events are added to ``out``.

        A callback rather than a returned list: most segments hold one ADU, and handing it on
        at once saves building a tuple and a list per segment.
        """
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        offset = 0
        if self._syncing and not self._datagram:
            offset = self._resync(data, 0)
            if offset < 0:
                return
        size = len(data)
        while size - offset >= HEADER_SIZE:  # each turn consumes a frame or leaves the loop
            transaction_id, protocol, length, unit, function = _HEADER.unpack_from(data, offset)
            if MIN_LENGTH <= length <= MAX_LENGTH:
                end = offset + 6 + length
                if end > size:
                    break
                if protocol == 0:
                    handle(transaction_id, unit, function, data[offset + 7 : end], ts, out)
                else:
                    # The length still delimits the frame: skip it and stay in step.
                    self._event(out, ModbusEvent.INVALID_PROTOCOL_ID, ts, f"protocol id {protocol}")
                offset = end
                continue
            if protocol:
                self._event(out, ModbusEvent.INVALID_PROTOCOL_ID, ts, f"protocol id {protocol}")
            else:
                self._event(out, ModbusEvent.INVALID_LENGTH, ts, f"MBAP length {length}")
            if self._datagram:
                return
            offset = self._resync(data, offset + 1)
            if offset < 0:
                return
        if offset < size:
            if self._datagram:
                self._event(
                    out, ModbusEvent.INVALID_LENGTH, ts, f"{size - offset} bytes after the last ADU"
                )
            else:
                self._buffer = data[offset:]

    def reset(self, syncing: bool) -> int:
        """Drop the buffered bytes (returning how many); ``syncing`` rescans for a header."""
        dropped = len(self._buffer)
        self._buffer = b""
        self._syncing = syncing and not self._datagram
        return dropped

    def _resync(self, data: bytes, start: int) -> int:
        """Offset of the next plausible header from ``start``, or -1 after keeping the tail.

        The last 7 bytes are kept when no header is found: a header may begin there.
        """
        offset = find_header(data, start, self._direction)
        if offset >= 0:
            self._syncing = False
            return offset
        self._syncing = True
        self._buffer = data[max(start, len(data) - (HEADER_SIZE - 1)) :]
        return -1

    def _event(self, out: list[Record], name: str, ts: float, detail: str) -> None:
        out.append(DecoderEvent(name, self._direction, ts, detail))
