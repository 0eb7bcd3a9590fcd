"""otids.capture.live (AF_PACKET ring, filters, fanout) and otids.capture.pcapwriter."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otids.capture.link import LinkType
from otids.capture.live import (
    Frame,
    LiveCapture,
    LiveError,
    RingSocket,
    compile_bpf,
)
from otids.capture.pcapwriter import FlowRecorder, alert_key, create_pcap, flow_key
from otids.capture.readers import open_capture

LOOPBACK = "127.0.0.1"
WAIT = 5.0  # seconds to wait for looped-back packets to be handed over
RING_MB = 4

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="packet capture needs root")


def _frame_v4(proto: int, src: str, sport: int, dst: str, dport: int, vlan: bool = False) -> bytes:
    eth = bytes([
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02,  # destination MAC
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  # source MAC
    ])  # fmt: skip
    if vlan:
        eth += bytes([0x81, 0x00, 0x00, 0x07])  # 802.1Q tag, VLAN 7
    eth += bytes([0x08, 0x00])  # EtherType IPv4
    ip = bytes([
        0x45, 0x00, 0x00, 0x20,  # version/IHL, DSCP, total length
        0x00, 0x00, 0x40, 0x00,  # id, flags DF, fragment offset 0
        0x40, proto, 0x00, 0x00,  # TTL, protocol, checksum
    ]) + socket.inet_aton(src) + socket.inet_aton(dst)  # fmt: skip
    return eth + ip + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes(8)


# --- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "linktype"),
    [
        ("tcp port 502", LinkType.ETHERNET),
        ("", LinkType.ETHERNET),  # everything: one "accept snaplen" instruction
        ("udp port 20000", LinkType.RAW),
    ],
)
def test_compile_bpf(expression: str, linktype: int) -> None:
    code = compile_bpf(expression, linktype, snaplen=1500)
    assert code and len(code) % 8 == 0
    # Accepting returns the snap length: the kernel truncates to it.
    accept = bytes([0x06, 0x00, 0x00, 0x00]) + (1500).to_bytes(4, "little")  # BPF_RET|BPF_K
    assert accept in [code[i : i + 8] for i in range(0, len(code), 8)]


def test_compile_bpf_rejects_a_bad_expression() -> None:
    with pytest.raises(LiveError, match="bad capture filter"):
        compile_bpf("tcp port banana and", LinkType.ETHERNET)


def test_default_filter_compiles() -> None:
    from otids.cli.live import default_filter

    expression = default_filter()
    assert "tcp port 502" in expression and "udp port 20000" in expression
    assert compile_bpf(expression, LinkType.ETHERNET)


# --- sockets on the loopback ---------------------------------------------------------------


def _udp_burst(port: int, count: int, sport_base: int = 40000) -> None:
    """``count`` datagrams to ``port``, each from its own source port (its own flow)."""
    for i in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, sport_base + i))
            s.sendto(b"otids", (LOOPBACK, port))


def _collect(capture: LiveCapture, want: int) -> list[Frame]:
    out: list[Frame] = []
    deadline = time.monotonic() + WAIT
    for block in capture.blocks():
        out.extend(block)
        if len(out) >= want or time.monotonic() > deadline:
            capture.stop()
    return out


@root_only
def test_ring_socket_captures_filtered_packets() -> None:
    sock = RingSocket("lo", "udp dst port 47001", ring_mb=RING_MB)
    capture = LiveCapture([sock])
    try:
        assert sock.linktype == LinkType.ETHERNET
        _udp_burst(47002, 3)  # filtered out in the kernel
        _udp_burst(47001, 5)
        frames = _collect(capture, 5)
        counters = capture.counters()["lo"]
    finally:
        capture.close()
    # Each datagram once (the loopback's outgoing copy is skipped), with its wire length.
    assert len(frames) == 5
    for ts, linktype, frame, wirelen in frames:
        assert linktype == LinkType.ETHERNET and wirelen == len(frame) == 14 + 20 + 8 + 5
        assert frame[36:38] == (47001).to_bytes(2, "big")
        assert abs(ts - time.time()) < 60
    assert counters.drops == 0 and counters.packets == 10  # out and in, as the kernel sees them


@root_only
def test_stop_reads_what_arrived_before() -> None:
    capture = LiveCapture([RingSocket("lo", "udp dst port 47004", ring_mb=RING_MB)])
    try:
        _udp_burst(47004, 3)
        capture.stop()  # before the kernel's block timeout: the block is still being filled
        frames = [f for block in capture.blocks() for f in block]
    finally:
        capture.close()
    assert len(frames) == 3


@root_only
def test_fanout_keeps_each_flow_on_one_socket() -> None:
    from otids.capture.live import fanout_group

    group = fanout_group(7)
    socks = [RingSocket("lo", "udp port 47003", ring_mb=RING_MB, fanout=group) for _ in range(2)]
    captures = [LiveCapture([s]) for s in socks]
    flows = 16
    try:
        # Both directions of each flow: a request to 47003 and the reply from it.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
            server.bind((LOOPBACK, 47003))
            server.settimeout(WAIT)
            for i in range(flows):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    client.bind((LOOPBACK, 41000 + i))
                    client.sendto(b"ping", (LOOPBACK, 47003))
                    _, peer = server.recvfrom(64)
                    server.sendto(b"pong", peer)
        seen = [_collect(c, 0) for c in captures]
    finally:
        for c in captures:
            c.close()
    assert sum(len(frames) for frames in seen) == 2 * flows
    # The client's port of each frame: the one that is not the server's.
    client_ports = [
        {p for f in frames for p in (int.from_bytes(f[2][34:36], "big"),
                                     int.from_bytes(f[2][36:38], "big")) if p != 47003}
        for frames in seen
    ]  # fmt: skip
    assert not client_ports[0] & client_ports[1]  # no flow split between the sockets
    assert len(client_ports[0] | client_ports[1]) == flows


@root_only
def test_unknown_interface() -> None:
    with pytest.raises(LiveError, match="no-such-if0"):
        RingSocket("no-such-if0", "", ring_mb=RING_MB)


@root_only
def test_without_privileges_the_message_is_clear() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    code = (
        "from otids.capture.live import RingSocket, CapturePermissionError\n"
        "try:\n    RingSocket('lo', '')\n"
        "except CapturePermissionError as exc:\n    print(exc)\n"
    )
    # Root without CAP_NET_RAW: the capability, not the uid, is what counts.
    run = subprocess.run(
        ["setpriv", "--bounding-set=-net_raw", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "CAP_NET_RAW" in run.stdout, run.stderr


# --- --pcap-out ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "linktype", "key"),
    [
        (
            _frame_v4(6, "10.0.0.1", 40000, "10.0.0.2", 502),
            LinkType.ETHERNET,
            (6, bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 502),
        ),
        (  # the reply: the same key
            _frame_v4(6, "10.0.0.2", 502, "10.0.0.1", 40000),
            LinkType.ETHERNET,
            (6, bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 502),
        ),
        (
            _frame_v4(17, "10.0.0.1", 20000, "10.0.0.2", 20000, vlan=True),
            LinkType.ETHERNET,
            (17, bytes([10, 0, 0, 1]), 20000, bytes([10, 0, 0, 2]), 20000),
        ),
        (
            _frame_v4(6, "10.0.0.1", 40000, "10.0.0.2", 502)[14:],
            LinkType.RAW,
            (6, bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 502),
        ),
        (_frame_v4(1, "10.0.0.1", 0, "10.0.0.2", 0), LinkType.ETHERNET, None),  # ICMP
        (_frame_v4(6, "10.0.0.1", 1, "10.0.0.2", 2)[:30], LinkType.ETHERNET, None),  # cut
        (b"", LinkType.ETHERNET, None),
        (_frame_v4(6, "10.0.0.1", 1, "10.0.0.2", 2), LinkType.LINUX_SLL, None),
    ],
)
def test_flow_key(frame: bytes, linktype: int, key: tuple[object, ...] | None) -> None:
    assert flow_key(linktype, frame) == key


def test_alert_key_matches_flow_key() -> None:
    record = {"proto": "TCP", "src_ip": "10.0.0.2", "src_port": 502,
              "dest_ip": "10.0.0.1", "dest_port": 40000}  # fmt: skip
    assert alert_key(record) == flow_key(
        LinkType.ETHERNET, _frame_v4(6, "10.0.0.1", 40000, "10.0.0.2", 502)
    )
    assert alert_key({"proto": "TCP"}) is None


def test_flow_recorder_writes_alerting_flows(tmp_path: Path) -> None:
    out = tmp_path / "alerts.pcap"
    create_pcap(str(out), LinkType.ETHERNET, 65535)
    recorder = FlowRecorder(str(out), LinkType.ETHERNET)
    bad = _frame_v4(6, "10.0.0.9", 40001, "10.0.0.2", 502)
    good = _frame_v4(6, "10.0.0.1", 40000, "10.0.0.2", 502)
    packets = [(1.0 + i, int(LinkType.ETHERNET), f, len(f)) for i, f in enumerate([good, bad])]
    assert list(recorder.record(packets)) == packets
    recorder.handle({"event_type": "alert", "proto": "TCP", "src_ip": "10.0.0.9",
                     "src_port": 40001, "dest_ip": "10.0.0.2", "dest_port": 502})  # fmt: skip
    # After the alert the flow is followed; the other flow is not written.
    list(recorder.record([(5.0, int(LinkType.ETHERNET), bad, len(bad))]))
    list(recorder.record([(6.0, int(LinkType.ETHERNET), good, len(good))]))
    recorder.close()
    with open_capture(out) as reader:
        got = [(ts, frame) for ts, _, frame, _ in reader]
    assert got == [(2.0, bad), (5.0, bad)]


VLAN_CAPTURE = """
import sys, time
from otids.capture.live import LiveCapture, RingSocket
capture = LiveCapture([RingSocket("vb", "udp port 20000", ring_mb=4)])
print("ready", flush=True)
deadline = time.monotonic() + float(sys.argv[1])
for block in capture.blocks():
    for _, _, frame, wirelen in block:
        print(frame[12:16].hex(), wirelen - len(frame), flush=True)
        capture.stop()
    if time.monotonic() > deadline:
        capture.stop()
"""


@root_only
def test_vlan_tag_is_put_back() -> None:
    """The kernel takes 802.1Q tags off received frames (and filters them untagged: no
    ``vlan`` keyword needed); the ring reader restores them."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    ns = f"otids-vlan-{os.getpid()}"
    ip = ["ip", "-n", ns]
    try:
        try:
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
            for argv in (
                ["link", "add", "va", "type", "veth", "peer", "name", "vb"],
                ["link", "set", "va", "up"],
                ["link", "set", "vb", "up"],
            ):
                subprocess.run([*ip, *argv], check=True, capture_output=True, timeout=10)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot build a veth pair in a network namespace: {exc}")
        capture = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", VLAN_CAPTURE, str(WAIT)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert capture.stdout is not None
        assert capture.stdout.readline().strip() == "ready"
        frame = _frame_v4(17, "10.88.0.1", 20000, "10.88.0.2", 20000, vlan=True)
        send = f"import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); " \
               f"s.bind(('va', 0)); s.send(bytes.fromhex('{frame.hex()}'))"  # fmt: skip
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", send], timeout=10,
                       check=True)  # fmt: skip
        out, _ = capture.communicate(timeout=WAIT + 10)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
    tag, growth = out.split()[:2]
    assert tag == "81000007"  # TPID 0x8100, priority 0, VLAN id 7
    assert growth == "0"  # the wire length counts the tag too
