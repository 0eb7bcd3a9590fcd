"""DNP3 data link layer: frames, their control octet, CRC-checked user data.

A link frame (IEEE 1815-2012, 9.2.4)::

    +------+------+--------+---------+-------------+-------------+------------+
    | 0x05 | 0x64 | LENGTH | CONTROL | DESTINATION |   SOURCE    | HEADER CRC |
    +------+------+--------+---------+-------------+-------------+------------+
    |  1   |  1   |   1    |    1    |   2 (LE)    |   2 (LE)    |   2 (LE)   |

    then the user data, in blocks of 16 octets (the last one 1-16), each followed by its CRC:

    +--------------+-----+--------------+-----+-- ... --+------------------+-----+
    | data (16)    | CRC | data (16)    | CRC |         | data (1-16)      | CRC |
    +--------------+-----+--------------+-----+-- ... --+------------------+-----+

LENGTH counts CONTROL, DESTINATION, SOURCE and the user data, not the CRCs: 5 to 255.

The control octet::

      7     6      5      4      3..0
    | DIR | PRM |  FCB  |  FCV  | FUNCTION |    primary frames (PRM = 1)
    | DIR | PRM | (res) |  DFC  | FUNCTION |    secondary frames (PRM = 0)

DIR is 1 for frames sent by a master. Only primary frames with function 3 or 4 carry user
data (a transport segment); the others are link-only (reset, test, link status, ack...).
"""

from __future__ import annotations

import enum
import struct

from otids.decode.dnp3.crc import append_crc, crc16_dnp
from otids.decode.dnp3.events import Dnp3Event

START = b"\x05\x64"
HEADER_SIZE = 10  # start (2) + length + control + destination (2) + source (2) + CRC (2)
MIN_LENGTH = 5  # control + destination + source: a frame without user data
BLOCK_SIZE = 16  # user data octets per CRC block
MAX_USER_DATA = 250  # 255 - 5: the LENGTH octet bounds a frame's user data
# Largest frame on the wire (250 octets of user data in 16 blocks, 292 octets): the stream
# buffer never holds more than one such frame, which bounds a flow's memory.
MAX_FRAME_SIZE = HEADER_SIZE + MAX_USER_DATA + 2 * -(-MAX_USER_DATA // BLOCK_SIZE)

# Destination addresses (IEEE 1815-2012, 9.2.5.3 / table 9-3).
RESERVED_FIRST = 0xFFF0  # 0xFFF0-0xFFFB are reserved
BROADCAST_FIRST = 0xFFFC  # 0xFFFC-0xFFFF are the three broadcast addresses and "self"

_HEADER = struct.Struct("<HBBHHH")  # start, length, control, destination, source, CRC
_START_WORD = 0x6405  # the start octets read as a little-endian word

DIR_BIT = 0x80
PRM_BIT = 0x40
FCB_BIT = 0x20
FCV_BIT = 0x10  # DFC on secondary frames
FUNCTION_MASK = 0x0F


class PrimaryFunction(enum.IntEnum):
    """Link function codes of primary frames (PRM = 1), IEEE 1815-2012 table 9-1."""

    RESET_LINK_STATES = 0
    TEST_LINK_STATES = 2
    CONFIRMED_USER_DATA = 3
    UNCONFIRMED_USER_DATA = 4
    REQUEST_LINK_STATUS = 9


class SecondaryFunction(enum.IntEnum):
    """Link function codes of secondary frames (PRM = 0), IEEE 1815-2012 table 9-2."""

    ACK = 0
    NACK = 1
    LINK_STATUS = 11
    NOT_SUPPORTED = 15


USER_DATA_CONTROLS = frozenset(
    c
    for c in range(256)
    if c & PRM_BIT
    and c & FUNCTION_MASK
    in (PrimaryFunction.CONFIRMED_USER_DATA, PrimaryFunction.UNCONFIRMED_USER_DATA)
)
"""Control octets of frames that carry user data (a transport segment)."""


class LinkFrame:
    """One CRC-checked link frame; ``user_data`` has the block CRCs removed."""

    __slots__ = ("control", "dst", "length", "src", "user_data")

    def __init__(self, length: int, control: int, dst: int, src: int, user_data: bytes) -> None:
        self.length = length
        self.control = control
        self.dst = dst
        self.src = src
        self.user_data = user_data

    @property
    def dir(self) -> bool:
        """DIR bit: set on frames a master sends."""
        return bool(self.control & DIR_BIT)

    @property
    def prm(self) -> bool:
        """PRM bit: set on primary (initiating) frames."""
        return bool(self.control & PRM_BIT)

    @property
    def fcb(self) -> bool:
        """Frame count bit (primary frames)."""
        return bool(self.control & FCB_BIT)

    @property
    def fcv(self) -> bool:
        """Frame count valid bit (primary frames); DFC, data flow control, on secondary ones."""
        return bool(self.control & FCV_BIT)

    @property
    def function(self) -> int:
        """Link function code (:class:`PrimaryFunction` or :class:`SecondaryFunction`)."""
        return self.control & FUNCTION_MASK

    @property
    def function_name(self) -> str:
        """snake_case name of the link function, ``unknown_<n>`` when undefined."""
        table = PrimaryFunction if self.control & PRM_BIT else SecondaryFunction
        try:
            return table(self.control & FUNCTION_MASK).name.lower()
        except ValueError:
            return f"unknown_{self.control & FUNCTION_MASK}"

    @property
    def is_user_data(self) -> bool:
        """True for confirmed/unconfirmed user data frames (they carry a transport segment)."""
        return self.control in USER_DATA_CONTROLS


def frame_size(length: int) -> int:
    """Octets on the wire of a frame whose LENGTH octet is ``length`` (>= 5)."""
    user = length - MIN_LENGTH
    return HEADER_SIZE + user + 2 * -(-user // BLOCK_SIZE)


# frame_size of every LENGTH octet (0 below the minimum), looked up on the hot path.
_FRAME_SIZES = tuple(frame_size(n) if n >= MIN_LENGTH else 0 for n in range(256))


# CRCs of blocks seen lately: a link's headers and polls repeat (three checks in four on a
# polled network), and a lookup costs a tenth of crcmod's call. Emptied when full: bounded
# whatever the traffic.
_CRC_CACHE_SIZE = 4096
_crcs: dict[bytes, int] = {}


def _crc(data: bytes) -> int:
    """``crc16_dnp(data)``, remembered."""
    crc = _crcs.get(data)
    if crc is None:
        if len(_crcs) >= _CRC_CACHE_SIZE:
            _crcs.clear()
        crc = _crcs[bytes(data)] = crc16_dnp(data)  # bytes(): never keep a view's buffer
    return crc


def header_ok(buf: bytes, pos: int) -> bool:
    """True when the 10 octets at ``pos`` are a link header with a valid CRC."""
    crc = _crc(buf[pos : pos + 8])
    return buf[pos + 8] == (crc & 0xFF) and buf[pos + 9] == (crc >> 8)


def strip_crcs(buf: bytes, start: int, end: int) -> bytes | None:
    """User data of ``buf[start:end]`` (blocks of 16 + CRC) without CRCs; None if one is bad."""
    if end - start <= BLOCK_SIZE + 2:  # one block: most requests and short responses
        data = buf[start : end - 2]
        crc = _crc(data)
        if buf[end - 2] != (crc & 0xFF) or buf[end - 1] != (crc >> 8):
            return None
        return data
    chunks = []
    for block in range(start, end, BLOCK_SIZE + 2):
        stop = min(block + BLOCK_SIZE, end - 2)
        data = buf[block:stop]
        crc = _crc(data)
        if buf[stop] != (crc & 0xFF) or buf[stop + 1] != (crc >> 8):
            return None
        chunks.append(data)
    return b"".join(chunks)


def build_frame(control: int, dst: int, src: int, user_data: bytes = b"") -> bytes:
    """Encode a link frame with its CRCs (for tests and sample generation)."""
    if len(user_data) > MAX_USER_DATA:
        raise ValueError(f"user data of {len(user_data)} octets exceeds {MAX_USER_DATA}")
    header = START + bytes((MIN_LENGTH + len(user_data), control))
    header += dst.to_bytes(2, "little") + src.to_bytes(2, "little")
    blocks = (
        append_crc(user_data[i : i + BLOCK_SIZE]) for i in range(0, len(user_data), BLOCK_SIZE)
    )
    return append_crc(header) + b"".join(blocks)


# What LinkDecoder.feed yields: a frame, or an event (name, detail).
LinkItem = LinkFrame | tuple[Dnp3Event, str]


class LinkDecoder:
    """Splits one direction's bytes into link frames, resynchronising after errors.

    On a stream (``datagram=False``) an incomplete frame is kept for the next call; the kept
    bytes never exceed :data:`MAX_FRAME_SIZE`. On datagrams every call stands alone.
    """

    __slots__ = ("_buf", "_datagram", "_lost")

    def __init__(self, datagram: bool) -> None:
        self._datagram = datagram
        self._buf = b""
        # True while skipping bytes after an error already reported, so that one bad frame
        # (or one run of junk) gives one event, not one per octet scanned.
        self._lost = False

    def reset(self) -> None:
        """Forget buffered bytes (after a gap in the stream)."""
        self._buf = b""
        self._lost = False

    def feed(self, data: bytes) -> list[LinkItem]:
        """Consume ``data``; return the complete frames and the events, in stream order."""
        buf = self._buf + data if self._buf else data
        if self._datagram:
            self._lost = False
        out: list[LinkItem] = []
        n = len(buf)
        pos = 0
        # Every pass advances pos or breaks: the loop is bounded by len(buf).
        while n - pos >= HEADER_SIZE:
            start, length, control, dst, src, crc = _HEADER.unpack_from(buf, pos)
            if start != _START_WORD:
                if not self._lost:
                    self._lost = True
                    out.append((Dnp3Event.NON_DNP3_TRAFFIC, f"no link frame start at {pos}"))
                nxt = buf.find(START, pos + 1)
                pos = nxt if nxt >= 0 else (n - 1 if buf[n - 1] == 0x05 else n)
                continue
            if _crc(buf[pos : pos + 8]) != crc:
                if not self._lost:
                    self._lost = True
                    out.append((Dnp3Event.BAD_LINK_CRC, f"link header CRC at {pos}"))
                nxt = buf.find(START, pos + 1)
                pos = nxt if nxt >= 0 else (n - 1 if buf[n - 1] == 0x05 else n)
                continue
            self._lost = False
            size = _FRAME_SIZES[length]
            if not size:
                out.append((Dnp3Event.LEN_TOO_SMALL, f"link length {length}"))
                pos += HEADER_SIZE
                continue
            if n - pos < size:
                break
            if length == MIN_LENGTH:
                out.append(LinkFrame(length, control, dst, src, b""))
            else:
                user = strip_crcs(buf, pos + HEADER_SIZE, pos + size)
                if user is None:
                    out.append((Dnp3Event.BAD_TRANSPORT_CRC, f"data block CRC, frame {src}->{dst}"))
                else:
                    out.append(LinkFrame(length, control, dst, src, user))
            pos += size
        if self._datagram:
            if pos < n and not self._lost:
                if buf.startswith(START, pos):
                    out.append(
                        (Dnp3Event.MALFORMED, f"datagram ends {n - pos} octets into a frame")
                    )
                else:
                    out.append((Dnp3Event.NON_DNP3_TRAFFIC, f"{n - pos} trailing octets"))
            self._buf = b""
        else:
            self._buf = buf[pos:] if pos < n else b""
        return out
