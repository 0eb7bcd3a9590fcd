"""Live capture on Linux: AF_PACKET sockets with a TPACKET_V3 memory-mapped ring.

The kernel writes packets into a ring of blocks shared with this process (``mmap``), runs
the BPF filter before copying anything, and counts what it had to drop when the ring was
full (``PACKET_STATISTICS``). A block is handed over when full or after
:data:`BLOCK_TIMEOUT_MS`; reading it costs one ``struct`` unpack and one slice per packet and
no system call, which is what lets pure Python keep up with a busy SPAN port.

Several sockets on one interface can share its traffic through ``PACKET_FANOUT`` in hash
mode: the kernel's flow hash is symmetric, so both directions of a flow reach the same
socket, and with the defragmentation flag IP fragments are reassembled before hashing.
Sockets join a group in the order they are opened, and the hash picks a member by position,
so opening worker ``k``'s socket k-th on every interface sends a flow seen on two
interfaces (a tap's two directions) to the same worker.

Filters are compiled by libpcap (``pcap_compile`` on a dead handle, through ctypes): the
same expressions as tcpdump. Nothing here knows about industrial protocols.

Needs root or ``CAP_NET_RAW``; :func:`drop_privileges` gives them up once the sockets are
open (the ring and the filter stay usable).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from otids.capture.link import LinkType

# <linux/if_packet.h> and <linux/if_ether.h>: Python's socket module does not export these.
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
TPACKET_V3 = 2
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ETH_P_8021Q = 0x8100
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
# sll_pkttype of the struct sockaddr_ll after each tpacket3_hdr (48 bytes, aligned).
_PKTTYPE_OFFSET = 48 + 10

# ARPHRD_ (device hardware type) -> the link type of the frames a packet socket delivers.
# The loopback device carries Ethernet headers with zero addresses.
_LINKTYPE_OF_HATYPE = {
    1: LinkType.ETHERNET,
    ARPHRD_LOOPBACK: LinkType.ETHERNET,
    65534: LinkType.RAW,
}

# libpcap compiles for a DLT_ value, which differs from the LINKTYPE_ value for raw IP.
_DLT_OF_LINKTYPE: dict[int, int] = {LinkType.RAW: 12}

DEFAULT_SNAPLEN = 65535  # bytes kept per packet: whole frames, as tcpdump does
# Ring geometry. A block is the unit handed between kernel and reader; 1 MiB holds about
# 6,500 small Modbus/DNP3 frames (each with its 48-byte header, 16-byte aligned), and 64 of
# them (64 MiB) absorb a burst of 400,000 packets while the reader is busy.
BLOCK_SIZE = 1 << 20
DEFAULT_RING_MB = 64
# A block is handed over after this long even if not full: the latency of an alert on a
# quiet network.
BLOCK_TIMEOUT_MS = 50
STOP_WAIT_FACTOR = 2  # block timeouts waited at a stop: the kernel's timer is not exact
FRAME_SIZE = 2048  # only checked by the kernel for TPACKET_V3 (it packs frames tightly)
# How long a read waits for a block before the caller gets control back (to notice a stop
# request, print statistics, reload rules).
POLL_TIMEOUT_MS = 100

# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1 from block_status:
#   0      4      8             12        16                   20
#   +------+------+-------------+---------+--------------------+---------+--------+...
#   |ver   |priv  |block_status |num_pkts |offset_to_first_pkt |blk_len  |seq_num |
#   +------+------+-------------+---------+--------------------+---------+--------+...
_BLOCK_STATUS_OFFSET = 8
_BLOCK = struct.Struct("<III")  # block_status, num_pkts, offset_to_first_pkt
_U32 = struct.Struct("<I")

# struct tpacket3_hdr (40 bytes before the padding to the MAC header):
#   +--------------+--------+---------+-----------+--------+-----------+
#   |tp_next_offset|tp_sec  |tp_nsec  |tp_snaplen |tp_len  |tp_status  |  6 x u32
#   +--------+--------+-------------+--------------+-------------+-----+
#   |tp_mac  |tp_net  |tp_rxhash    |tp_vlan_tci   |tp_vlan_tpid |pad  |  u16 u16 u32 u32 u16 u16
#   +--------+--------+-------------+--------------+-------------+-----+
_PKT = struct.Struct("<IIIIIIHHIIHH")
_VLAN_TAG = struct.Struct(">HH")  # TPID, TCI: the 802.1Q tag the kernel took off the frame
_STATS_V3 = struct.Struct("<III")  # tp_packets (with drops), tp_drops, tp_freeze_q_cnt
_REQ3 = struct.Struct("<7I")  # struct tpacket_req3
_MREQ = struct.Struct("<iHH8s")  # struct packet_mreq
_SOCK_FILTER = struct.Struct("<HBBI")  # struct sock_filter (= libpcap's struct bpf_insn)
_SOCK_FPROG = struct.Struct("@HP")  # struct sock_fprog: length, pointer (native layout)

Frame = tuple[float, int, bytes, int]  # (timestamp, linktype, frame, wire length)


class LiveError(Exception):
    """A live capture cannot start: unknown interface, bad filter, not Linux..."""


class CapturePermissionError(LiveError):
    """Neither root nor ``CAP_NET_RAW``."""


# --- BPF -----------------------------------------------------------------------------------


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


def _libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap")
    if name is None:
        raise LiveError("libpcap is needed to compile capture filters (apt install libpcap0.8)")
    lib = ctypes.CDLL(name)
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(_BpfProgram),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    ]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    return lib


def compile_bpf(expression: str, linktype: int, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    """Compile a tcpdump filter expression to classic BPF: the array of ``struct
    sock_filter`` that ``SO_ATTACH_FILTER`` takes. The program's accept value is
    ``snaplen``, so the kernel also truncates packets. Raises :class:`LiveError` with
    libpcap's message on a bad expression."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(_DLT_OF_LINKTYPE.get(linktype, linktype), snaplen)
    if not handle:
        raise LiveError("libpcap could not open a handle to compile the filter")
    prog = _BpfProgram()
    try:
        # Netmask 0xffffffff (PCAP_NETMASK_UNKNOWN): "ip broadcast" is then an error.
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, 0xFFFFFFFF):
            raise LiveError(
                f"bad capture filter {expression!r}: {lib.pcap_geterr(handle).decode()}"
            )
        code = ctypes.string_at(prog.bf_insns, prog.bf_len * _SOCK_FILTER.size)
        lib.pcap_freecode(ctypes.byref(prog))
        return code
    finally:
        lib.pcap_close(handle)


# --- one socket ----------------------------------------------------------------------------


@dataclass(slots=True)
class KernelCounters:
    """What the kernel saw for one socket since it was opened."""

    packets: int = 0  # passed the filter, dropped ones included
    drops: int = 0  # passed the filter but found the ring full
    freezes: int = 0  # times the ring was full (TPACKET_V3 freezes the queue)


class RingSocket:
    """One AF_PACKET socket on one interface, with its receive ring.

    ``fanout``: a group id to join in flow-hash mode (``None``: no fanout). The filter is
    compiled for the interface's link type; ``linktype`` says what :meth:`take` returns.
    """

    def __init__(
        self,
        interface: str,
        bpf: str,
        snaplen: int = DEFAULT_SNAPLEN,
        promiscuous: bool = True,
        ring_mb: int = DEFAULT_RING_MB,
        fanout: int | None = None,
    ) -> None:
        if not hasattr(socket, "AF_PACKET"):
            raise LiveError("live capture needs Linux (AF_PACKET sockets)")
        self.interface = interface
        self.counters = KernelCounters()
        try:
            # Protocol 0: the socket receives nothing until the last bind, so no packet
            # escapes the filter or lands outside the ring.
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise CapturePermissionError(
                "live capture needs root or the CAP_NET_RAW capability "
                "(e.g. systemd AmbientCapabilities=CAP_NET_RAW, or setcap cap_net_raw+eip "
                "on the Python interpreter)"
            ) from None
        self._map: mmap.mmap | None = None
        try:
            self._setup(bpf, snaplen, promiscuous, ring_mb, fanout)
        except OSError as exc:
            self.close()
            raise LiveError(f"interface {interface}: cannot capture: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _setup(
        self, bpf: str, snaplen: int, promiscuous: bool, ring_mb: int, fanout: int | None
    ) -> None:
        sock = self.sock
        try:
            sock.bind((self.interface, 0))
        except OSError as exc:
            raise LiveError(f"interface {self.interface}: {exc.strerror or exc}") from None
        hatype = sock.getsockname()[3]
        linktype = _LINKTYPE_OF_HATYPE.get(hatype)
        if linktype is None:
            raise LiveError(f"interface {self.interface}: unsupported hardware type {hatype}")
        self.linktype = int(linktype)
        self._vlan = linktype == LinkType.ETHERNET
        # On the loopback every packet passes twice, out then in: keep it once, as tcpdump.
        self._skip_outgoing = hatype == ARPHRD_LOOPBACK
        code = compile_bpf(bpf, self.linktype, snaplen)
        # The kernel copies the program at attach time, so the buffer may go afterwards.
        insns = ctypes.create_string_buffer(code, len(code))
        fprog = _SOCK_FPROG.pack(len(code) // _SOCK_FILTER.size, ctypes.addressof(insns))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        self.block_count = max(2, ring_mb * (1 << 20) // BLOCK_SIZE)
        frames = BLOCK_SIZE // FRAME_SIZE * self.block_count
        req = _REQ3.pack(BLOCK_SIZE, self.block_count, FRAME_SIZE, frames, BLOCK_TIMEOUT_MS, 0, 0)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        except OSError as exc:
            raise LiveError(f"cannot set up a {ring_mb} MiB capture ring: {exc}") from None
        self._map = mmap.mmap(sock.fileno(), BLOCK_SIZE * self.block_count)
        self._current = 0
        if promiscuous:
            ifindex = socket.if_nametoindex(self.interface)
            mreq = _MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.bind((self.interface, ETH_P_ALL))
        if fanout is not None:
            mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, _U32.pack((fanout & 0xFFFF) | mode << 16))

    def fileno(self) -> int:
        """The socket's descriptor (to poll)."""
        return self.sock.fileno()

    def take(self) -> list[Frame] | None:
        """The packets of the next block if the kernel has handed it over (the block goes
        back to the kernel at once: frames are copied), else ``None``."""
        mm = self._map
        if mm is None:
            return None
        base = self._current * BLOCK_SIZE
        status, count, offset = _BLOCK.unpack_from(mm, base + _BLOCK_STATUS_OFFSET)
        if not status & TP_STATUS_USER:
            return None
        linktype = self.linktype
        vlan = self._vlan
        skip_outgoing = self._skip_outgoing
        unpack = _PKT.unpack_from
        out: list[Frame] = []
        append = out.append
        pos = base + offset
        for _ in range(count):
            nxt, sec, nsec, caplen, wirelen, pstatus, mac, _net, _hash, tci, tpid, _pad = unpack(
                mm, pos
            )
            if skip_outgoing and mm[pos + _PKTTYPE_OFFSET] == PACKET_OUTGOING:
                pos += nxt
                continue
            start = pos + mac
            frame = mm[start : start + caplen]
            if pstatus & TP_STATUS_VLAN_VALID and vlan:
                # The kernel strips 802.1Q tags into the metadata: put the tag back where it
                # was, as libpcap does, so the VLAN is part of the flow as in a pcap.
                if not pstatus & TP_STATUS_VLAN_TPID_VALID:
                    tpid = ETH_P_8021Q
                frame = frame[:12] + _VLAN_TAG.pack(tpid, tci & 0xFFFF) + frame[12:]
                wirelen += 4
            append((sec + nsec * 1e-9, linktype, frame, wirelen))
            pos += nxt
        _U32.pack_into(mm, base + _BLOCK_STATUS_OFFSET, TP_STATUS_KERNEL)
        self._current = (self._current + 1) % self.block_count
        return out

    def update_counters(self) -> KernelCounters:
        """Add the kernel's counts since the last call (it resets them on each read)."""
        if self._map is not None:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS_V3.size)
            packets, drops, freezes = _STATS_V3.unpack(raw)
            self.counters.packets += packets
            self.counters.drops += drops
            self.counters.freezes += freezes
        return self.counters

    def close(self) -> None:
        """Release the ring and the socket (idempotent)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        self.sock.close()


# --- several sockets -----------------------------------------------------------------------


class LiveCapture:
    """The packets of one or more :class:`RingSocket` (one per interface), block by block.

    :meth:`stop` (e.g. from a signal handler) ends :meth:`blocks` within
    :data:`POLL_TIMEOUT_MS`, after the blocks already handed over are read.
    """

    def __init__(self, sockets: list[RingSocket]) -> None:
        self.sockets = sockets
        self.stopping = False

    def stop(self) -> None:
        """Ask :meth:`blocks` to finish."""
        self.stopping = True

    def blocks(self) -> Iterator[list[Frame]]:
        """Yield each block's packets as it is handed over; yield an empty list when
        :data:`POLL_TIMEOUT_MS` passes without one, so the caller gets control regularly."""
        poller = select.poll()
        for s in self.sockets:
            poller.register(s.fileno(), select.POLLIN | select.POLLERR)
        while not self.stopping:
            got = False
            for s in self.sockets:
                block = s.take()
                if block is not None:
                    got = True
                    yield block
            if not got:
                poller.poll(POLL_TIMEOUT_MS)
                yield []
        # Stopping: the block the kernel is filling is handed over within BLOCK_TIMEOUT_MS;
        # wait that long once, so that every packet that arrived before the stop is read.
        # Bounded by the ring size: later packets are not waited for.
        time.sleep(BLOCK_TIMEOUT_MS * STOP_WAIT_FACTOR / 1000)
        for s in self.sockets:
            for _ in range(s.block_count):
                block = s.take()
                if block is None:
                    break
                yield block

    def counters(self) -> dict[str, KernelCounters]:
        """Kernel counters per interface, updated now."""
        out: dict[str, KernelCounters] = {}
        for s in self.sockets:
            c = s.update_counters()
            have = out.setdefault(s.interface, KernelCounters())
            have.packets += c.packets
            have.drops += c.drops
            have.freezes += c.freezes
        return out

    def close(self) -> None:
        """Close every socket."""
        for s in self.sockets:
            s.close()


def fanout_group(index: int) -> int:
    """A fanout group id for the ``index``-th interface of this process, unlikely to clash
    with another capture's in the same network namespace (ids are per namespace)."""
    return (os.getpid() * 8 + index) & 0xFFFF


# --- privileges ----------------------------------------------------------------------------


def drop_privileges(user: str) -> None:
    """Become ``user`` (name or numeric uid) and its groups, for good: once the capture
    sockets are open they need no privilege. Raises :class:`LiveError` if impossible."""
    import pwd

    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise LiveError(f"no such user: {user}") from None
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as exc:
        raise LiveError(f"cannot become {user}: {exc.strerror or exc}") from None
    if os.getuid() != entry.pw_uid or os.geteuid() != entry.pw_uid:
        raise LiveError(f"cannot become {user}")
