"""The dissector against public captures and other tools' logs (../shared/corpus).

The real pipeline (capture, reassembly) is not used here: TCP payloads are extracted with
scapy in order, retransmissions dropped, a hole in sequence numbers reported as a gap.
"""

from __future__ import annotations

import ast
import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zeek_baselines import zeek_log, zeek_value

from otids.decode.base import DecoderEvent, Direction, ProbeResult, Record
from otids.decode.modbus import ModbusParser, ModbusTransaction, probe

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
ZEEK = CORPUS / "zeek"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent"),
]

Segment = tuple[tuple[str, int], Direction, bytes, float, bool]  # client, dir, data, ts, gap


def tcp_segments(path: Path, port: int = 502) -> Iterator[Segment]:
    """TCP payloads to or from ``port`` in capture order, keyed by the client's address."""
    scapy_all = pytest.importorskip("scapy.all")
    ip_layer, ipv6_layer, tcp_layer = scapy_all.IP, scapy_all.IPv6, scapy_all.TCP
    expected: dict[tuple[tuple[str, int], Direction], int] = {}
    for packet in scapy_all.PcapReader(str(path)):
        if tcp_layer not in packet:
            continue
        tcp = packet[tcp_layer]
        if port not in (tcp.sport, tcp.dport):
            continue
        ip = packet[ip_layer] if ip_layer in packet else packet[ipv6_layer]
        direction = Direction.TO_SERVER if tcp.dport == port else Direction.TO_CLIENT
        client = (ip.src, tcp.sport) if direction == Direction.TO_SERVER else (ip.dst, tcp.dport)
        # The IP length excludes Ethernet padding, which scapy would leave in the payload.
        segment_length = ip.len - ip.ihl * 4 if ip_layer in packet else ip.plen
        data = bytes(tcp)[tcp.dataofs * 4 : segment_length]
        key = (client, direction)
        if tcp.flags & 0x02:  # SYN
            expected[key] = tcp.seq + 1
            continue
        if not data:
            continue
        seq, gap = tcp.seq, False
        if key in expected:
            if seq + len(data) <= expected[key]:  # retransmission
                continue
            if seq < expected[key]:
                data = data[expected[key] - seq :]
                seq = expected[key]
            gap = seq > expected[key]
        expected[key] = seq + len(data)
        yield client, direction, data, float(packet.time), gap


def dissect(path: Path) -> dict[tuple[str, int], list[Record]]:
    """Every record of every Modbus flow of a capture, closed at the end."""
    parsers: dict[tuple[str, int], ModbusParser] = {}
    records: dict[tuple[str, int], list[Record]] = collections.defaultdict(list)
    for client, direction, data, ts, gap in tcp_segments(path):
        parser = parsers.setdefault(client, ModbusParser())
        if gap:
            records[client] += parser.gap(direction, ts)
        records[client] += parser.feed(direction, data, ts)
    for client, parser in parsers.items():
        records[client] += parser.close(0.0)
    return records


def finished(records: list[Record]) -> list[ModbusTransaction]:
    """Each transaction once, in the order it was finished."""
    seen: dict[int, ModbusTransaction] = {}
    for record in records:
        if isinstance(record, ModbusTransaction) and record.done:
            seen.setdefault(id(record), record)
    return list(seen.values())


# Zeek / ICSNPP spell two function names the old way.
ZEEK_FUNCTION_NAMES = {
    "report_server_id": "REPORT_SLAVE_ID",
    "encapsulated_interface_transport": "ENCAP_INTERFACE_TRANSPORT",
}


def zeek_function(tx: ModbusTransaction) -> str:
    return ZEEK_FUNCTION_NAMES.get(tx.function, tx.function.upper())


ICSNPP = ZEEK / "icsnpp-modbus.analyzer.basic"


def icsnpp_transactions() -> dict[tuple[str, int, int], ModbusTransaction]:
    """Our transactions of the ICSNPP trace by (client host, transaction id, unit)."""
    found = {}
    for (host, _), records in dissect(ICSNPP / "trace.pcap").items():
        for tx in finished(records):
            found[(host, tx.transaction_id, tx.unit_id)] = tx
    return found


def test_icsnpp_modbus_detailed_log() -> None:
    """tid, unit, func, address, quantity, request_values, response_values, exception and
    the diagnostics / MEI columns agree with ICSNPP's modbus_detailed.log, except:

    * READ_WRITE_MULTIPLE_REGISTERS: ICSNPP leaves address/quantity/values unset there and
      logs them in modbus_read_write_multiple_registers.log (checked below);
    * READ_FILE_RECORD / WRITE_FILE_RECORD: ICSNPP's quantity 0 counts sub-requests (there
      are none in this trace); our quantity stays unset and the records are in
      ``request_file_records``;
    * response_data of READ_COILS / READ_DISCRETE_INPUTS: ICSNPP puts the padding bits after
      the requested quantity there; we trim them (the spec says they are zero-filled);
    * modbus_detailed_link_id / matched are ICSNPP bookkeeping (its duplicated rows for
      transactions 11 and 15, unmatched, are the same transactions).
    """
    ours = icsnpp_transactions()
    rows = zeek_log(ICSNPP / "baseline.modbus_detailed.log")
    assert len(rows) == 26
    checked = set()
    for row in rows:
        key = (row["id.orig_h"], int(row["tid"]), int(row["unit"]))
        tx = ours[key]
        checked.add(key)
        assert zeek_function(tx) == row["func"]
        assert tx.exception == (
            None if row["exception_code"] == "-" else row["exception_code"].lower()
        )
        if tx.function == "read_write_multiple_registers":
            continue
        file_function = tx.function in ("read_file_record", "write_file_record")
        assert tx.address == zeek_value(row["address"])
        if not file_function:
            assert tx.quantity == zeek_value(row["quantity"])
        assert tx.request_values == _as_list(zeek_value(row["request_values"]))
        if tx.function == "read_fifo_queue":
            assert (tx.response_values, row["response_values"]) == ([], "-")
        else:
            assert tx.response_values == _as_list(zeek_value(row["response_values"]))
        if tx.function == "diagnostics":
            assert _spaced(tx.subfunction_name) == row["request_subfunction_code"].lower()
            assert _spaced(tx.subfunction_name) == row["response_subfunction_code"].lower()
            assert tx.request_data == _zeek_bytes(row["request_data"])
            assert tx.response_data == _zeek_bytes(row["response_data"])
        if tx.mei_type is not None:
            assert row["mei_type"] == "Read Device Identification" and tx.mei_type == 14
    assert checked == set(ours)  # every transaction of ours is in the log


def test_icsnpp_mask_write_and_read_write_logs() -> None:
    ours = icsnpp_transactions()
    for row in zeek_log(ICSNPP / "baseline.modbus_mask_write_register.log"):
        tx = ours[(row["id.orig_h"], int(row["tid"]), int(row["unit"]))]
        assert (tx.address, tx.and_mask, tx.or_mask) == (
            int(row["address"]),
            int(row["and_mask"]),
            int(row["or_mask"]),
        )
    log = zeek_log(ICSNPP / "baseline.modbus_read_write_multiple_registers.log")
    for row in log:
        tx = ours[(row["id.orig_h"], int(row["tid"]), int(row["unit"]))]
        if row["request_response"] == "REQUEST":
            assert tx.address == int(row["read_start_address"])
            assert tx.quantity == int(row["read_quantity"])
            assert tx.write_address == int(row["write_start_address"])
            assert tx.request_values == _as_list(zeek_value(row["write_registers"]))
        else:
            assert tx.response_values == _as_list(zeek_value(row["read_registers"]))


def test_icsnpp_device_identification() -> None:
    (tx,) = (tx for tx in icsnpp_transactions().values() if tx.mei_type == 14)
    assert tx.objects == {
        0: {"name": "VendorName", "value": "Zeek Modbus Test"},
        1: {"name": "ProductCode", "value": "Protocol Parsing is fun!"},
        2: {"name": "MajorMinorRevision", "value": "1.2.3.6"},
    }
    assert (tx.read_device_id_code, tx.conformity_level, tx.more_follows) == (1, 0x83, 0)


def test_non_modbus_traffic_on_port_502_is_rejected_by_the_probe() -> None:
    """Zeek's trace of DCE/RPC, NFS, TLS, HTTP, Magellan and RDP on port 502: only the one
    Modbus flow (10.0.0.9) matches; its transactions are those of Zeek's modbus.log."""
    trace = ZEEK / "modbus.modbus_and_non_modbus_on_port_502"
    first: dict[tuple[tuple[str, int], Direction], bytes] = {}
    for client, direction, data, _, _ in tcp_segments(trace / "trace.pcap"):
        first.setdefault((client, direction), data)
    verdicts = {key: probe(data, key[1]) for key, data in first.items()}
    matched = {key[0][0] for key, verdict in verdicts.items() if verdict is ProbeResult.MATCH}
    assert matched == {"10.0.0.9"}
    assert len({key[0] for key in verdicts}) == 7  # seven flows, six of them not Modbus

    records = dissect(trace / "trace.pcap")[("10.0.0.9", 3082)]
    assert [r for r in records if isinstance(r, DecoderEvent)] == []
    expected = [
        (int(row["tid"]), int(row["unit"]), row["func"])
        for row in zeek_log(trace / "baseline.modbus.log")
        if row["pdu_type"] == "REQ"
    ]
    assert [(tx.transaction_id, tx.unit_id, zeek_function(tx)) for tx in finished(records)] == (
        expected
    )


def test_zeek_register_parsing_values() -> None:
    """Register values of the fuzzed read-input-registers responses match Zeek's events."""
    trace = ZEEK / "modbus.register_parsing"
    expected = []
    for line in (trace / "baseline.output").read_text().splitlines():
        if line.startswith("modbus_read_input_registers_response"):
            header = line.split("[tid=")[1]
            transaction_id = int(header.split(",")[0])
            values = ast.literal_eval("[" + line.split("], [")[-1].rsplit("]", 1)[0] + "]")
            expected.append((transaction_id, values))
    (records,) = dissect(trace / "trace.pcap").values()
    responses = [
        (tx.transaction_id, tx.response_values)
        for tx in finished(records)
        if tx.response_ts is not None
    ]
    assert responses == expected


MODBUS_CAPTURES = sorted(
    path
    for pattern in ("zeek/modbus*/*.pcap", "zeek/icsnpp-modbus*/*.pcap", "arkime/modbus/*.pcap")
    for path in CORPUS.glob(pattern)
) + sorted(
    {*(CORPUS / "public").glob("**/*modbus*.pcap"), *(CORPUS / "public").glob("**/modbus/*.pcap")}
)


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=str(p.relative_to(CORPUS))) for p in MODBUS_CAPTURES]
)
def test_public_captures_decode_cleanly(path: Path) -> None:
    """Every Modbus capture of the corpus decodes without raising, every transaction ends
    done, and events come only from the event table."""
    if path.stat().st_size > 600_000:
        pytest.skip("large capture: covered by the smaller ones")
    for records in dissect(path).values():
        for record in records:
            if isinstance(record, DecoderEvent):
                assert record.name.startswith("modbus.")
        assert all(tx.done for tx in finished(records))


def _as_list(value: Any) -> list[int] | None:
    """Zeek writes a one-element vector as a bare count."""
    return [value] if isinstance(value, int) else value


def _spaced(name: str | None) -> str:
    return (name or "").replace("_", " ")


def _zeek_bytes(text: str) -> bytes:
    """Undo Zeek's \\xNN escaping of a string column."""
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")
