"""Streaming readers for pcap and pcapng capture files, plain or gzip-compressed.

:func:`open_capture` recognises the format by its magic bytes and returns a
:class:`CaptureReader`, whose iteration yields one ``(timestamp, linktype, frame, wirelen)``
tuple per captured packet. Memory stays constant whatever the file size: the file is read in
chunks of :data:`CHUNK_BYTES` into one buffer that never holds more than a chunk plus one
record.

Damage never raises: iteration stops cleanly after the last intact record and
:attr:`CaptureReader.warning` says what was wrong and where (byte offsets count from the
start of the uncompressed stream). Only a file that cannot be opened at all (missing,
unreadable, empty, not a capture, header cut short) raises :class:`CaptureError`.
"""

from __future__ import annotations

import array
import contextlib
import gzip
import importlib
import io
import os
import struct
import zlib
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import Any, NoReturn, Protocol

# The optional C accelerator of the pcap loop (otids/capture/_fastpcap.c), built with the
# package when a compiler is there; the pure-Python loop does the same work without it.
# OTIDS_PURE_PYTHON=1 disables it (tests compare the two).
_fastpcap: Any = None
if not os.environ.get("OTIDS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        _fastpcap = importlib.import_module("otids.capture._fastpcap")

# Bytes read per refill: big enough that the refill cost vanishes per record, small enough
# to be irrelevant for memory.
CHUNK_BYTES = 1 << 20
# Records up to this size are always accepted: it is libpcap's largest snap length for IP
# link types (MAXIMUM_SNAPLEN), and some writers understate the snap length in the header.
MAX_RECORD_BYTES = 256 * 1024
# Tolerance over the header's snap length for files that announce bigger records, since
# some writers count a pseudo-header or FCS outside the snap length.
SNAPLEN_SLACK = 256
# Nothing larger is ever buffered: a pcap record or any pcapng block above this is damage
# (a random length read from garbage), and the bound keeps memory constant.
MAX_BLOCK_BYTES = 16 * 1024 * 1024

GZIP_MAGIC = b"\x1f\x8b"

# pcap global header (https://www.tcpdump.org/manpages/pcap-savefile.5.html):
#   0                   1                   2                   3
#  | magic number                                                  |
#  | major version                 | minor version                 |
#  | reserved (thiszone)                                           |
#  | reserved (sigfigs)                                            |
#  | snap length                                                   |
#  | FCS |f|0 0 0 0 0|          link type                           |
# The magic's byte order is the file's; its value says the timestamp resolution.
PCAP_HEADER = 24
_PCAP_MAGICS: dict[bytes, tuple[str, int]] = {  # magic bytes -> (byte order, ticks per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
# libpcap's LT_LINKTYPE(): the upper bits carry the FCS length and its presence flag.
PCAP_LINKTYPE_MASK = 0x03FFFFFF
# pcap record header: | seconds | microseconds or nanoseconds | captured length | wire length |
PCAP_RECORD_HEADER = 16

# pcapng (draft-ietf-opsawg-pcapng): every block is
#  | block type | block total length | body ... | block total length |
# with the total length a multiple of 4 counting both length fields.
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"  # also the file magic; a palindrome, so order-free
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 1
BLOCK_OPB = 2  # obsolete Packet Block
BLOCK_SPB = 3
BLOCK_EPB = 6
_PACKET_BLOCKS = frozenset((BLOCK_EPB, BLOCK_OPB))  # same layout but for the interface id
MIN_BLOCK = 12  # type, length, trailing length
# Option codes in an Interface Description Block.
OPT_END = 0
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14
DEFAULT_TICKS_PER_SECOND = 1_000_000  # pcapng's default if_tsresol: microseconds

# pcapng structures, per byte order.
#
# Section Header Block:
#  | 0x0A0D0D0A | length | byte-order magic | major (2) | minor (2) | section length (8) |
#  | options ... | length |
SHB_MIN = 28
SUPPORTED_PCAPNG_MAJOR = 1
# Interface Description Block:
#  | 1 | length | link type (2) | reserved (2) | snap length (4) | options ... | length |
IDB_MIN = 20
IDB_OPTIONS = 16  # offset of the first option
# Enhanced Packet Block:
#  | 6 | length | interface id | timestamp high | timestamp low | captured len | original len |
#  | packet data, padded to 4 ... | options ... | length |
# Obsolete Packet Block: the same with a 2-byte interface id and a 2-byte drop count.
PACKET_BLOCK_HEADER = 28
# Simple Packet Block:
#  | 3 | length | original len | packet data, padded to 4 ... | length |
SPB_HEADER = 12


class _PcapngLayout:
    """Precompiled structs for one pcapng byte order."""

    def __init__(self, order: str) -> None:
        self.u16 = struct.Struct(order + "H")
        self.u32 = struct.Struct(order + "I")
        self.i64 = struct.Struct(order + "q")
        self.block = struct.Struct(order + "II")  # type, total length
        self.shb = struct.Struct(order + "IHH")  # byte-order magic, major, minor
        self.idb = struct.Struct(order + "HxxI")  # link type, snap length
        self.option = struct.Struct(order + "HH")  # code, length
        self.epb = struct.Struct(order + "IIIII")  # iface, ts high, ts low, caplen, wirelen
        self.opb = struct.Struct(order + "HxxIIII")  # iface, (drops), ts high, ts low, ...


_LAYOUTS = {"<": _PcapngLayout("<"), ">": _PcapngLayout(">")}

# One pcapng interface: (link type, timestamp ticks per second, timestamp offset, snap length)
_Interface = tuple[int, int, int, int]
Record = tuple[float, int, bytes, int]
_Records = Generator[Record, None, None]


class CaptureError(Exception):
    """A capture file that cannot be read at all; the message is one line naming the file."""


class _DamagedBlock(Exception):
    """Internal: a pcapng block is inconsistent; the message says how."""


def open_capture(path: str | os.PathLike[str]) -> CaptureReader:
    """Open a pcap or pcapng file (optionally gzip-compressed) for streaming.

    Raises :class:`CaptureError` when the file is missing, unreadable, empty, not a capture
    file, or too short to hold its file header.
    """
    return CaptureReader(path)


class Prefilter(Protocol):
    """What the C pcap loop needs of the packet decoder to drop records it would drop."""

    bypass_tcp: set[bytes]
    bypass_udp: set[bytes]
    shard_index: int
    shard_count: int
    shard_buckets: bytes  # the worker of each flow bucket (see link.SHARD_BUCKETS)
    # array('d', [t]): records at or after capture time t are not dropped (the consumer's
    # periodic work is due and must see them)
    housekeeping_due: array.array[float]

    def count_prefiltered(
        self, bypassed: int, other_shard: int, wire_bytes: int, last_ts: float
    ) -> None:
        """Records dropped before decoding: count them as if decoded."""


class CaptureReader:
    """A capture file being read; iterate to get ``(ts, linktype, frame, wirelen)`` tuples.

    ``ts`` is seconds since the epoch as a float, ``frame`` the captured bytes (possibly
    shorter than ``wirelen``, the length on the wire). Iteration is a single pass; the
    reader is a context manager that closes the file.

    Attributes: ``path``; ``format`` (``"pcap"`` or ``"pcapng"``); ``compressed`` (gzip);
    ``records`` read so far; ``warning``, None unless the file ended damaged;
    ``position``, how far into the file reading has got.

    ``prefilter``: a :class:`Prefilter` (the packet decoder) set before iteration starts.
    With the optional C accelerator, the pcap loop then drops, unseen, the Ethernet/IPv4
    records the decoder would drop first (other shards' and bypassed flows'), and reports
    them to it with ``count_prefiltered``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.records = 0
        self.warning: str | None = None
        self.damaged = False  # the file is corrupt (not just cut short): see _stop
        self._buf = b""
        self._pos = 0  # next unread byte of _buf
        self._base = 0  # stream offset of _buf[0]
        self._eof = False
        self._stream_error: str | None = None  # why reading stopped early, if it did
        self._order = "<"  # pcapng: byte order of the current section
        self.prefilter: Prefilter | None = None
        try:
            self._raw: io.BufferedReader = open(self.path, "rb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        try:
            self._file, self.compressed = self._wrap_gzip()
            self.format, self._records = self._read_file_header()
        except BaseException:
            self._raw.close()
            raise

    # -- public interface ------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        return self._records

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def position(self) -> int:
        """Bytes of the file read so far (compressed bytes for gzip), to within one chunk.

        Meant for progress reporting against the file size; 0 once the reader is closed.
        """
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        """Close the file; iteration then yields nothing more."""
        self._records.close()
        if self._file is not self._raw:
            self._file.close()
        self._raw.close()

    # -- opening ---------------------------------------------------------------------------

    def _wrap_gzip(self) -> tuple[io.BufferedReader | gzip.GzipFile, bool]:
        try:
            head = self._raw.peek(len(GZIP_MAGIC))[: len(GZIP_MAGIC)]
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        if head == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=self._raw, mode="rb"), True
        return self._raw, False

    def _read_file_header(self) -> tuple[str, _Records]:
        """Check the magic and file header; return the format and the record generator."""
        self._fill(4)
        magic = self._buf[:4]
        if len(magic) < 4:
            self._fail_open("empty file" if not magic else f"too short ({len(magic)} bytes)")
        if magic in _PCAP_MAGICS:
            return "pcap", self._pcap_records(magic)
        if magic == PCAPNG_SHB:
            self._fill(MIN_BLOCK)
            if len(self._buf) < MIN_BLOCK:
                self._fail_open("truncated pcapng section header")
            bom = self._buf[8:12]
            for order, layout in _LAYOUTS.items():
                if layout.u32.unpack(bom)[0] == PCAPNG_BYTE_ORDER_MAGIC:
                    self._order = order
                    return "pcapng", self._pcapng_records()
            self._fail_open(f"bad pcapng byte-order magic 0x{bom.hex()}")
        self._fail_open(f"not a pcap or pcapng file (magic 0x{magic.hex()})")

    def _fail_open(self, reason: str) -> NoReturn:
        if self._stream_error:
            reason = self._stream_error
        elif self.compressed:
            reason += " (gzip-compressed)"
        raise CaptureError(f"{self.path}: {reason}")

    # -- buffering -------------------------------------------------------------------------

    def _fill(self, need: int) -> bool:
        """Make ``need`` unread bytes available from ``_pos``; False at end of stream.

        Keeps only the unread tail of the buffer, so memory is one chunk plus one record.
        """
        have = len(self._buf) - self._pos
        if have >= need:
            return True
        chunks = [self._buf[self._pos :]]
        self._base += self._pos
        self._pos = 0
        want = max(CHUNK_BYTES, need - have)
        while have < need and not self._eof:
            try:
                # read1: one underlying read, so a damaged gzip stream loses no data that
                # decompressed before the damage.
                data = self._file.read1(want)
            except (OSError, EOFError, zlib.error) as exc:
                what = "damaged gzip stream" if self.compressed else "read error"
                self._stream_error = f"{what} at byte offset {self._base + have}: {exc}"
                data = b""
            if not data:
                self._eof = True
                break
            chunks.append(data)
            have += len(data)
        self._buf = b"".join(chunks)
        return have >= need

    def _refill(self, pos: int, need: int) -> bool:
        """Continue from ``pos`` with at least ``need`` bytes buffered; at the end of the file
        stop (cleanly, or as truncated when a partial record is left) and return False."""
        self._pos = pos
        if self._fill(need):
            return True
        if len(self._buf) > self._pos:
            self._truncated()
        else:
            self._stop(None)
        return False

    def _stop(self, reason: str | None, damaged: bool | None = None) -> None:
        """End iteration: record why (a read error takes precedence). ``damaged``: the file
        is corrupt, not merely cut short (a truncated tail is what an interrupted capture
        leaves; an absurd length or a broken block is bad input)."""
        self.warning = self._stream_error or reason
        if damaged is None:
            damaged = reason is not None  # None: the normal end of the file
        self.damaged = self.damaged or damaged or self._stream_error is not None

    def _truncated(self) -> None:
        self._stop(f"truncated record at byte offset {self._base + self._pos}", damaged=False)

    # -- pcap ------------------------------------------------------------------------------

    def _pcap_records(self, magic: bytes) -> _Records:
        order, ticks = _PCAP_MAGICS[magic]
        if not self._fill(PCAP_HEADER):
            self._fail_open(f"truncated pcap file header ({len(self._buf)} bytes)")
        snaplen, network = struct.unpack_from(order + "II", self._buf, 16)
        self._pos = PCAP_HEADER
        return self._pcap_loop(order, ticks, network & PCAP_LINKTYPE_MASK, snaplen)

    def _pcap_loop(self, order: str, ticks: int, linktype: int, snaplen: int) -> _Records:
        """The hot loop: one unpack, one slice and one tuple per record.

        With the C accelerator and a prefilter, the complete records of each buffer go
        through its cursor first; this loop then handles only the record the cursor stopped
        at (cut by the buffer's end, or too long)."""
        unpack = struct.Struct(order + "IIII").unpack_from
        limit = min(MAX_BLOCK_BYTES, max(MAX_RECORD_BYTES, snaplen + SNAPLEN_SLACK))
        target = self.prefilter
        cursor = None
        if _fastpcap is not None and target is not None:
            cursor = _fastpcap.Cursor(
                big_endian=order == ">",
                ticks=float(ticks),
                linktype=linktype,
                limit=limit,
                bypass_tcp=target.bypass_tcp,
                bypass_udp=target.bypass_udp,
                shard_index=target.shard_index,
                shard_count=target.shard_count,
                buckets=target.shard_buckets,
                due=target.housekeeping_due,
            )
        buf = self._buf
        pos = self._pos
        size = len(buf)
        while True:
            if cursor is not None and target is not None:
                cursor.reset(buf, pos)
                try:
                    yield from cursor
                finally:
                    pos, records, bypassed, other_shard, skipped_bytes, skipped_ts = (
                        cursor.counters()
                    )
                    self.records += records
                    target.count_prefiltered(bypassed, other_shard, skipped_bytes, skipped_ts)
            if pos + PCAP_RECORD_HEADER > size:
                if not self._refill(pos, PCAP_RECORD_HEADER):
                    return
                buf = self._buf
                pos = self._pos
                size = len(buf)
            sec, frac, caplen, wirelen = unpack(buf, pos)
            if caplen > limit:
                self._pos = pos
                self._stop(f"absurd record length {caplen} at byte offset {self._base + pos}")
                return
            start = pos + PCAP_RECORD_HEADER
            end = start + caplen
            if end > size:
                self._pos = pos
                if not self._fill(PCAP_RECORD_HEADER + caplen):
                    self._truncated()
                    return
                buf = self._buf
                pos = self._pos
                size = len(buf)
                start = pos + PCAP_RECORD_HEADER
                end = start + caplen
            self.records += 1
            yield sec + frac / ticks, linktype, buf[start:end], wirelen
            pos = end

    # -- pcapng ----------------------------------------------------------------------------

    def _pcapng_records(self) -> _Records:
        """Walk the blocks; each section (SHB) sets a byte order and restarts interfaces.

        Like the pcap loop, the buffer and position live in locals, written back to ``_pos``
        before anything that reads it (refills, block handlers, warnings).
        """
        layout = _LAYOUTS[self._order]
        interfaces: list[_Interface] = []
        last_ts = 0.0  # Simple Packet Blocks carry no timestamp: they get the previous one
        # Blocks that describe rather than carry packets; any other type is skipped.
        descriptors: dict[int, Callable[[int, int, _PcapngLayout, list[_Interface]], None]] = {
            BLOCK_SHB: self._shb,
            BLOCK_IDB: self._idb,
        }
        buf = self._buf
        pos = self._pos
        size = len(buf)
        while True:
            if pos + MIN_BLOCK > size:
                if not self._refill(pos, MIN_BLOCK):
                    return
                buf = self._buf
                pos = self._pos
                size = len(buf)
            btype, blen = layout.block.unpack_from(buf, pos)
            if btype == BLOCK_SHB:  # the same value in either byte order
                # A new section may switch byte order: its magic says which.
                for order, candidate in _LAYOUTS.items():
                    if candidate.u32.unpack_from(buf, pos + 8)[0] == PCAPNG_BYTE_ORDER_MAGIC:
                        layout = candidate
                        self._order = order
                        break
                else:
                    self._pos = pos
                    self._damaged("bad byte-order magic in section header")
                    return
                blen = layout.u32.unpack_from(buf, pos + 4)[0]
            if blen % 4 or blen < MIN_BLOCK or blen > MAX_BLOCK_BYTES:
                self._pos = pos
                self._damaged(f"block length {blen}")
                return
            if pos + blen > size:
                self._pos = pos
                if not self._fill(blen):
                    self._truncated()
                    return
                buf = self._buf
                pos = self._pos
                size = len(buf)
            self._pos = pos
            if layout.u32.unpack_from(buf, pos + blen - 4)[0] != blen:
                self._damaged("trailing block length differs from leading one")
                return
            try:
                if btype in _PACKET_BLOCKS:
                    if blen < PACKET_BLOCK_HEADER + 4:
                        raise _DamagedBlock(f"packet block too short ({blen} bytes)")
                    iface, ts_high, ts_low, caplen, wirelen = (
                        layout.epb if btype == BLOCK_EPB else layout.opb
                    ).unpack_from(buf, pos + 8)
                    if iface >= len(interfaces):
                        raise _DamagedBlock(f"packet for undeclared interface {iface}")
                    if PACKET_BLOCK_HEADER + ((caplen + 3) & ~3) + 4 > blen:
                        raise _DamagedBlock(f"captured length {caplen} exceeds its block")
                    linktype, ticks, offset, _ = interfaces[iface]
                    last_ts = ((ts_high << 32) | ts_low) / ticks + offset
                    start = pos + PACKET_BLOCK_HEADER
                    pos += blen
                    self.records += 1
                    yield last_ts, linktype, buf[start : start + caplen], wirelen
                    continue
                if btype == BLOCK_SPB:
                    record = self._spb(pos, blen, layout, interfaces, last_ts)
                    pos += blen
                    self.records += 1
                    yield record
                    continue
                handler = descriptors.get(btype)
                if handler is not None:
                    handler(pos, blen, layout, interfaces)
            except _DamagedBlock as exc:
                self._damaged(str(exc))
                return
            pos += blen

    def _damaged(self, reason: str) -> None:
        self._stop(f"damaged pcapng block at byte offset {self._base + self._pos}: {reason}")

    def _shb(
        self, pos: int, blen: int, layout: _PcapngLayout, interfaces: list[_Interface]
    ) -> None:
        """Section Header Block: check the version; the section's interfaces start afresh."""
        if blen < SHB_MIN:
            raise _DamagedBlock(f"section header too short ({blen} bytes)")
        _, major, minor = layout.shb.unpack_from(self._buf, pos + 8)
        if major != SUPPORTED_PCAPNG_MAJOR:
            raise _DamagedBlock(f"unsupported pcapng version {major}.{minor}")
        interfaces.clear()

    def _idb(
        self, pos: int, blen: int, layout: _PcapngLayout, interfaces: list[_Interface]
    ) -> None:
        """Interface Description Block: link type, snap length, timestamp resolution/offset."""
        if blen < IDB_MIN:
            raise _DamagedBlock(f"interface description too short ({blen} bytes)")
        buf = self._buf
        linktype, snaplen = layout.idb.unpack_from(buf, pos + 8)
        ticks = DEFAULT_TICKS_PER_SECOND
        offset = 0
        opt = pos + IDB_OPTIONS
        end = pos + blen - 4
        # Each option advances by at least 4 bytes, so the loop ends within the block.
        while opt + 4 <= end:
            code, length = layout.option.unpack_from(buf, opt)
            if code == OPT_END:
                break
            value = opt + 4
            if value + length > end:
                raise _DamagedBlock(f"option {code} overruns its block")
            if code == OPT_IF_TSRESOL and length >= 1:
                resol = buf[value]
                # High bit set: the rest is a power of 2, otherwise a power of 10.
                ticks = 1 << (resol & 0x7F) if resol & 0x80 else 10**resol
            elif code == OPT_IF_TSOFFSET and length >= 8:
                offset = layout.i64.unpack_from(buf, value)[0]
            opt = value + ((length + 3) & ~3)
        interfaces.append((linktype, ticks, offset, snaplen))

    def _spb(
        self,
        pos: int,
        blen: int,
        layout: _PcapngLayout,
        interfaces: list[_Interface],
        ts: float,
    ) -> Record:
        """Simple Packet Block: interface 0, no timestamp, captured length implied."""
        if not interfaces:
            raise _DamagedBlock("simple packet block before any interface")
        if blen < SPB_HEADER + 4:
            raise _DamagedBlock(f"simple packet block too short ({blen} bytes)")
        linktype, _, _, snaplen = interfaces[0]
        wirelen = layout.u32.unpack_from(self._buf, pos + 8)[0]
        # The captured length is the original length, cut to the snap length (0: none) and
        # to what the block holds.
        caplen = min(wirelen, blen - SPB_HEADER - 4)
        if snaplen:
            caplen = min(caplen, snaplen)
        start = pos + SPB_HEADER
        return ts, linktype, self._buf[start : start + caplen], wirelen
