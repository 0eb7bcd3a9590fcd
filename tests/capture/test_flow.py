"""Tests of the flow table and per-flow TCP handling (otids.capture.flow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from otids.capture.flow import (
    EXPIRE_INTERVAL,
    FLOW_ID_MASK,
    TO_CLIENT,
    TO_SERVER,
    Flow,
    FlowTable,
)
from otids.capture.packet import (
    PROTO_TCP,
    PROTO_UDP,
    TH_ACK,
    TH_FIN,
    TH_PSH,
    TH_RST,
    TH_SYN,
    Packet,
)
from otids.capture.tcp import Gap, StreamAnomaly

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

MASTER = bytes([10, 0, 0, 1])  # 10.0.0.1, the client in most cases
PLC = bytes([10, 0, 0, 2])  # 10.0.0.2
MASTER6 = bytes.fromhex("20010db8000000000000000000000001")  # 2001:db8::1
PLC6 = bytes.fromhex("20010db8000000000000000000000002")  # 2001:db8::2
PA = TH_PSH | TH_ACK
ICS_PORTS = {(PROTO_TCP, 502), (PROTO_TCP, 20000), (PROTO_UDP, 20000)}


def ics_hint(proto: int, port: int) -> bool:
    return (proto, port) in ICS_PORTS


def tcp(
    src: bytes,
    sport: int,
    dst: bytes,
    dport: int,
    flags: int = PA,
    seq: int = 0,
    ack: int = 0,
    payload: bytes = b"",
    ts: float = 0.0,
) -> Packet:
    return Packet(
        ts, 4 if len(src) == 4 else 6, src, dst, PROTO_TCP, sport, dport, payload,
        54 + len(payload), flags, seq, ack,
    )  # fmt: skip


def udp(src: bytes, sport: int, dst: bytes, dport: int, payload: bytes = b"", ts: float = 0.0):
    return Packet(ts, 4, src, dst, PROTO_UDP, sport, dport, payload, 42 + len(payload))


# -- client/server decision --------------------------------------------------------------------

# (name, first packet, hint, expected (client, client_port, server, server_port), direction)
ROLE_CASES: list[tuple[str, Packet, Any, tuple[bytes, int, bytes, int], int]] = [
    ("syn_sender_is_client", tcp(MASTER, 40000, PLC, 502, TH_SYN), None,
     (MASTER, 40000, PLC, 502), TO_SERVER),
    ("syn_beats_hint_and_ports", tcp(PLC, 502, MASTER, 40000, TH_SYN), ics_hint,
     (PLC, 502, MASTER, 40000), TO_SERVER),
    ("syn_ack_sender_is_server", tcp(PLC, 502, MASTER, 40000, TH_SYN | TH_ACK), None,
     (MASTER, 40000, PLC, 502), TO_CLIENT),
    ("midstream_server_first_hinted", tcp(PLC, 20000, MASTER, 1024), ics_hint,
     (MASTER, 1024, PLC, 20000), TO_CLIENT),
    ("midstream_hint_beats_lower_port", tcp(MASTER, 1000, PLC, 20000), ics_hint,
     (MASTER, 1000, PLC, 20000), TO_SERVER),
    ("midstream_no_hint_lower_port_is_server", tcp(PLC, 502, MASTER, 49152), None,
     (MASTER, 49152, PLC, 502), TO_CLIENT),
    ("midstream_unhinted_ports_lower_is_server", tcp(MASTER, 5000, PLC, 6000), ics_hint,
     (PLC, 6000, MASTER, 5000), TO_CLIENT),
    ("both_ports_hinted_lower_is_server", tcp(PLC, 20000, MASTER, 502), ics_hint,
     (PLC, 20000, MASTER, 502), TO_SERVER),
    ("port_tie_destination_is_server", udp(MASTER, 20000, PLC, 20000), ics_hint,
     (MASTER, 20000, PLC, 20000), TO_SERVER),
    ("udp_hinted", udp(PLC, 20000, MASTER, 33000), ics_hint,
     (MASTER, 33000, PLC, 20000), TO_CLIENT),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pkt", "hint", "roles", "direction"),
    [pytest.param(*case[1:], id=case[0]) for case in ROLE_CASES],
)
def test_client_server_decision(
    pkt: Packet, hint: Any, roles: tuple[bytes, int, bytes, int], direction: int
) -> None:
    table = FlowTable(server_port_hint=hint)
    flow, got = table.lookup(pkt)
    assert (flow.client, flow.client_port, flow.server, flow.server_port) == roles
    assert got == direction


def test_both_directions_map_to_one_flow() -> None:
    table = FlowTable()
    flow, d0 = table.lookup(tcp(MASTER, 40000, PLC, 502, ts=1.0, payload=b"abc"))
    again, d1 = table.lookup(tcp(PLC, 502, MASTER, 40000, ts=2.0, payload=b"defgh"))
    assert again is flow and (d0, d1) == (TO_SERVER, TO_CLIENT)
    assert len(table) == 1 and table.created == 1
    assert flow.pkts == [1, 1]
    assert flow.bytes == [54 + 3, 54 + 5]
    assert (flow.first_ts, flow.last_ts) == (1.0, 2.0)
    assert (flow.client_str, flow.server_str) == ("10.0.0.1", "10.0.0.2")


def test_other_ports_and_protocols_are_other_flows() -> None:
    table = FlowTable()
    a, _ = table.lookup(tcp(MASTER, 40000, PLC, 502))
    b, _ = table.lookup(tcp(MASTER, 40001, PLC, 502))
    c, _ = table.lookup(udp(MASTER, 40000, PLC, 502))
    assert len({id(a), id(b), id(c)}) == 3 and len(table) == 3
    assert a.streams is not None and c.streams is None


def test_ipv6_flow() -> None:
    table = FlowTable(server_port_hint=ics_hint)
    flow, d = table.lookup(tcp(PLC6, 502, MASTER6, 50000))
    again, d2 = table.lookup(tcp(MASTER6, 50000, PLC6, 502))
    assert again is flow and (d, d2) == (TO_CLIENT, TO_SERVER)
    assert flow.ip_version == 6
    assert (flow.client_str, flow.server_str) == ("2001:db8::1", "2001:db8::2")


def test_packet_to_itself_is_one_flow_one_direction() -> None:
    table = FlowTable()
    pkt = tcp(MASTER, 502, MASTER, 502)
    assert table.lookup(pkt) == table.lookup(pkt)
    assert len(table) == 1 and len(table.drain()) == 1


def test_flow_id_is_stable_and_fits_a_json_double() -> None:
    ids = [
        FlowTable().lookup(tcp(MASTER, 40000, PLC, 502, ts=ts))[0].flow_id for ts in (1.0, 1.0, 2.0)
    ]
    assert ids[0] == ids[1] != ids[2]
    assert all(0 < i <= FLOW_ID_MASK < 2**53 for i in ids)


# -- TCP through the flow ----------------------------------------------------------------------

C_ISN = 1000  # client data starts at 1001
S_ISN = 5000  # server data starts at 5001


def feed(table: FlowTable, packets: list[Packet]) -> list[tuple[int, Any]]:
    """Look up and feed each packet; every stream item with its direction, anomalies by name."""
    out: list[tuple[int, Any]] = []
    for pkt in packets:
        flow, direction = table.lookup(pkt)
        for d, item in flow.tcp_packet(direction, pkt):
            out.append((d, item.name if isinstance(item, StreamAnomaly) else item))
    return out


def c2s(flags: int, seq: int, ack: int = 0, payload: bytes = b"") -> Packet:
    return tcp(MASTER, 40000, PLC, 502, flags, seq, ack, payload)


def s2c(flags: int, seq: int, ack: int = 0, payload: bytes = b"") -> Packet:
    return tcp(PLC, 502, MASTER, 40000, flags, seq, ack, payload)


HANDSHAKE = [
    c2s(TH_SYN, C_ISN),
    s2c(TH_SYN | TH_ACK, S_ISN, C_ISN + 1),
    c2s(TH_ACK, C_ISN + 1, S_ISN + 1),
]

# (name, packets, expected items, flow closed afterwards)
TCP_CASES: list[tuple[str, list[Packet], list[tuple[int, Any]], bool]] = [
    ("request_response", [*HANDSHAKE,
        c2s(PA, 1001, 5001, b"req"),
        s2c(PA, 5001, 1004, b"resp"),
        c2s(TH_ACK, 1004, 5005),
    ], [(TO_SERVER, b"req"), (TO_CLIENT, b"resp")], False),
    ("fin_both_ways_closes", [*HANDSHAKE,
        c2s(PA | TH_FIN, 1001, 5001, b"req"),
        s2c(TH_ACK | TH_FIN, 5001, 1005),
        c2s(TH_ACK, 1005, 5002),
    ], [(TO_SERVER, b"req")], True),
    ("fin_one_way_stays_open", [*HANDSHAKE,
        c2s(TH_ACK | TH_FIN, 1001, 5001),
    ], [], False),
    ("fin_reveals_lost_tail", [*HANDSHAKE,
        c2s(PA, 1001, 5001, b"ab"),
        c2s(TH_ACK | TH_FIN, 1010, 5001),
    ], [(TO_SERVER, b"ab"), (TO_SERVER, Gap(7))], False),
    ("rst_flushes_both_directions", [*HANDSHAKE,
        c2s(PA, 1004, 5001, b"def"),
        s2c(PA, 5003, 1001, b"cd"),
        s2c(TH_RST, 5005),
    ], [(TO_CLIENT, Gap(2)), (TO_CLIENT, b"cd"), (TO_SERVER, Gap(3)), (TO_SERVER, b"def")],
     True),
    ("server_ack_reveals_lost_request", [*HANDSHAKE,
        # The capture missed the client's 6-byte request; the server's ACK gives it away,
        # before the response is handed over.
        s2c(PA, 5001, 1007, b"resp"),
    ], [(TO_SERVER, Gap(6)), (TO_CLIENT, b"resp")], False),
    ("ack_releases_buffered_request_tail", [*HANDSHAKE,
        c2s(PA, 1004, 5001, b"def"),
        s2c(PA, 5001, 1007, b"resp"),
    ], [(TO_SERVER, Gap(3)), (TO_SERVER, b"def"), (TO_CLIENT, b"resp")], False),
    ("out_of_order_across_packets", [*HANDSHAKE,
        c2s(PA, 1004, 5001, b"def"),
        c2s(PA, 1001, 5001, b"abc"),
        c2s(PA, 1001, 5001, b"abc"),
    ], [(TO_SERVER, b"abc"), (TO_SERVER, b"def")], False),
    ("syn_with_data", [
        c2s(TH_SYN, C_ISN, 0, b"tfo"),
        s2c(TH_SYN | TH_ACK, S_ISN, C_ISN + 4),
        c2s(PA, 1004, 5001, b"more"),
    ], [(TO_SERVER, b"tfo"), (TO_SERVER, b"more")], False),
    ("midstream_both_ways", [
        # No handshake: each side's first segment (or the peer's ACK) sets its sequence.
        s2c(PA, 5001, 1001, b"unsolicited"),
        c2s(PA, 1001, 5012, b"req"),
        s2c(PA, 5012, 1004, b"resp"),
    ], [(TO_CLIENT, b"unsolicited"), (TO_SERVER, b"req"), (TO_CLIENT, b"resp")], False),
    ("midstream_peer_ack_then_retransmission", [
        c2s(PA, 1001, 5010, b"req"),
        s2c(PA, 5001, 1004, b"old"),  # before what the client already acknowledged
        s2c(PA, 5010, 1004, b"new"),
    ], [(TO_SERVER, b"req"), (TO_CLIENT, b"new")], False),
    ("conflicting_overlap", [*HANDSHAKE,
        c2s(PA, 1004, 5001, b"defg"),
        c2s(PA, 1005, 5001, b"XYZh"),
        c2s(PA, 1001, 5001, b"abc"),
    ], [(TO_SERVER, "stream.overlap_mismatch"), (TO_SERVER, b"abc"), (TO_SERVER, b"defg"),
        (TO_SERVER, b"h")], False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("packets", "expected", "closed"),
    [pytest.param(*case[1:], id=case[0]) for case in TCP_CASES],
)
def test_tcp_through_flow(
    packets: list[Packet], expected: list[tuple[int, Any]], closed: bool
) -> None:
    table = FlowTable(server_port_hint=ics_hint)
    items = feed(table, packets)
    assert items == expected
    (flow,) = table.drain()
    assert flow.closed is closed
    assert flow.syn_seen is (packets[0].tcp_flags & TH_SYN != 0)
    # The reassemblers' counters agree with what came out (tcp_packet inlines the fast path).
    assert flow.streams is not None
    for direction, stream in enumerate(flow.streams):
        chunks = [item for d, item in items if d == direction and isinstance(item, bytes)]
        gaps = [item for d, item in items if d == direction and isinstance(item, Gap)]
        assert (stream.bytes, stream.gaps) == (sum(map(len, chunks)), len(gaps))


def test_udp_flow_has_no_stream() -> None:
    table = FlowTable()
    pkt = udp(MASTER, 33000, PLC, 20000, b"\x05\x64")
    flow, direction = table.lookup(pkt)
    assert flow.streams is None and flow.tcp_packet(direction, pkt) == []


def test_new_syn_on_closed_flow_starts_a_new_flow() -> None:
    table = FlowTable()
    feed(table, [*HANDSHAKE, c2s(TH_RST | TH_ACK, 1001, 5001)])
    old, _ = table.lookup(c2s(TH_ACK, 1001, 5001))
    assert old.closed
    new, direction = table.lookup(c2s(TH_SYN, 7000))
    assert new is not old and direction == TO_SERVER and not new.closed
    assert table.evicted() == [old] and table.evicted() == []
    assert (table.reused, len(table)) == (1, 1)
    # A SYN on a flow that is still open is not a new connection.
    assert table.lookup(c2s(TH_SYN, 9000))[0] is new


# -- expiry, eviction, drain -------------------------------------------------------------------


def make_flows(table: FlowTable) -> dict[str, Flow]:
    """Three flows last seen at t=0: open TCP, UDP, closed TCP."""
    flows = {
        "tcp": table.lookup(tcp(MASTER, 40000, PLC, 502))[0],
        "udp": table.lookup(udp(MASTER, 40000, PLC, 20000))[0],
        "closed": table.lookup(tcp(MASTER, 40001, PLC, 502, TH_RST))[0],
    }
    flows["closed"].closed = True
    return flows


# (now, names expected to expire at that call) — calls made in order on one table.
EXPIRY_STEPS: list[tuple[float, list[str]]] = [
    (5.0, []),
    (31.0, ["closed"]),
    (35.0, []),  # scan not due (and nothing else timed out)
    (121.0, ["udp"]),
    (595.0, []),
    (605.0, ["tcp"]),
]


def test_idle_expiry() -> None:
    table = FlowTable()
    flows = make_flows(table)
    names = {id(flow): name for name, flow in flows.items()}
    for now, expected in EXPIRY_STEPS:
        assert [names[id(f)] for f in table.expire(now)] == expected, now
    assert len(table) == 0 and table.expired == 3


def test_expiry_scan_is_rate_limited_and_activity_keeps_flows() -> None:
    table = FlowTable(idle_timeout=10.0)
    flow, _ = table.lookup(tcp(MASTER, 40000, PLC, 502, ts=0.0))
    assert table.expire(5.0) == []
    table.lookup(tcp(PLC, 502, MASTER, 40000, ts=9.0))
    assert table.expire(5.0 + EXPIRE_INTERVAL + 1) == []  # seen at 9: idle 7 s only
    assert table.expire(5.0 + EXPIRE_INTERVAL + 5) == []  # idle long enough, scan not due
    assert table.expire(9.0 + 2 * EXPIRE_INTERVAL + 1) == [flow]


@pytest.mark.parametrize(("max_flows", "batch"), [(3, 1), (32, 2)])
def test_eviction_when_full_takes_least_recently_seen(max_flows: int, batch: int) -> None:
    table = FlowTable(max_flows=max_flows)
    flows = [
        table.lookup(tcp(MASTER, 40000 + i, PLC, 502, ts=float(i)))[0] for i in range(max_flows)
    ]
    table.lookup(tcp(PLC, 502, MASTER, 40000, ts=100.0))  # flow 0 becomes the most recent
    assert table.evicted() == []
    newcomer, _ = table.lookup(tcp(MASTER, 50000, PLC, 502, ts=101.0))
    assert table.evicted() == flows[1 : 1 + batch]
    assert table.evicted() == []
    assert table.evicted_count == batch
    assert len(table) == max_flows - batch + 1
    assert table.lookup(tcp(MASTER, 40000, PLC, 502, ts=102.0))[0] is flows[0]
    assert table.lookup(tcp(MASTER, 50000, PLC, 502, ts=102.0))[0] is newcomer


def test_table_never_exceeds_max_flows() -> None:
    table = FlowTable(max_flows=100)
    for i in range(1000):
        table.lookup(udp(MASTER, 1024 + i, PLC, 20000, ts=float(i)))
        assert len(table) <= 100
    assert table.created == 1000
    assert table.evicted_count == len(table.evicted()) == 1000 - len(table)


def test_raw_key_index_mirrors_the_ipv4_tcp_flows() -> None:
    """FlowTable.tcp4 (the pipeline's fast-path index) holds exactly the live IPv4 TCP flows'
    two raw keys, each with the direction of that orientation."""
    table = FlowTable(max_flows=4, server_port_hint=ics_hint)

    def expected() -> dict[bytes, tuple[Flow, int]]:
        out: dict[bytes, tuple[Flow, int]] = {}
        for flow in table._flows():
            if flow.proto == PROTO_TCP and flow.ip_version == 4:
                c = flow.client + flow.server + flow.client_port.to_bytes(2, "big")
                c += flow.server_port.to_bytes(2, "big")
                s = flow.server + flow.client + flow.server_port.to_bytes(2, "big")
                s += flow.client_port.to_bytes(2, "big")
                out[s] = (flow, TO_CLIENT)
                out[c] = (flow, TO_SERVER)  # a flow to itself has one key: TO_SERVER wins
        return out

    table.lookup(tcp(MASTER, 40000, PLC, 502, ts=1.0))
    table.lookup(udp(MASTER, 40000, PLC, 20000, ts=2.0))
    table.lookup(tcp(MASTER6, 40000, PLC6, 502, ts=3.0))
    table.lookup(tcp(MASTER, 502, MASTER, 502, ts=4.0))  # to itself: one key, TO_SERVER
    assert table.tcp4 == expected() and len(table.tcp4) == 3
    table.lookup(tcp(MASTER, 40001, PLC, 502, ts=5.0))  # full: evicts the oldest
    assert table.evicted() and table.tcp4 == expected()
    assert table.expire(1000.0) and table.tcp4 == expected() == {}
    table.lookup(tcp(MASTER, 40002, PLC, 502, ts=1001.0))
    table.drain()
    assert table.tcp4 == {}


def test_drain_returns_every_flow_oldest_first() -> None:
    table = FlowTable()
    flows = [table.lookup(tcp(MASTER, 40000 + i, PLC, 502, ts=float(i)))[0] for i in range(5)]
    table.lookup(tcp(PLC, 502, MASTER, 40002, ts=9.0))
    assert table.drain() == flows
    assert len(table) == 0 and table.drain() == []
    assert table.lookup(tcp(MASTER, 40000, PLC, 502))[0] is not flows[0]


# -- corpus ------------------------------------------------------------------------------------


def corpus_packets(rel: str) -> list[Packet]:
    """The TCP/UDP packets of a corpus pcap, decoded with scapy (tests only)."""
    path = CORPUS / rel
    if not path.exists():
        pytest.skip(f"corpus file {rel} not available")
    scapy_all = pytest.importorskip("scapy.all")
    out = []
    for frame in scapy_all.rdpcap(str(path)):
        ip = frame.getlayer(scapy_all.IP)
        if ip is None or not (ip.haslayer(scapy_all.TCP) or ip.haslayer(scapy_all.UDP)):
            continue
        l4 = ip.payload
        tcp_layer = ip.haslayer(scapy_all.TCP)
        out.append(
            Packet(
                float(frame.time), 4, scapy_all.inet_aton(ip.src), scapy_all.inet_aton(ip.dst),
                ip.proto, l4.sport, l4.dport, bytes(l4.payload), len(frame),
                int(l4.flags) if tcp_layer else 0, l4.seq if tcp_layer else 0,
                l4.ack if tcp_layer else 0,
            )
        )  # fmt: skip
    return out


@pytest.mark.corpus
def test_corpus_midstream_server_first() -> None:
    # suricata-verify dnp3-toclient-start: expects one flow, 2 packets to_server and 3
    # to_client, dest_port 20000, although the first packet is the outstation's.
    table = FlowTable(server_port_hint=ics_hint)
    items = feed(table, corpus_packets("suricata-verify/dnp3-toclient-start/input.pcap"))
    (flow,) = table.drain()
    assert flow.pkts == [2, 3] and flow.server_port == 20000
    assert [d for d, _ in items] == [TO_CLIENT, TO_CLIENT, TO_SERVER]
    assert all(isinstance(item, bytes) for _, item in items)


@pytest.mark.corpus
def test_corpus_session_reassembles_cleanly() -> None:
    # suricata-verify dnp3-eve: a clean opendnp3 session; the streams must come out whole.
    packets = corpus_packets("suricata-verify/dnp3-eve/input.pcap")
    table = FlowTable(server_port_hint=ics_hint)
    items = feed(table, packets)
    assert all(isinstance(item, bytes) for _, item in items)
    for direction in (TO_SERVER, TO_CLIENT):
        delivered = sum(len(item) for d, item in items if d == direction)
        assert delivered > 0
    flows = table.drain()
    assert all(f.server_port == 20000 and f.syn_seen for f in flows)
    for flow in flows:
        assert flow.streams is not None
        assert all(s.gaps == 0 and s.ooo == [] for s in flow.streams)
