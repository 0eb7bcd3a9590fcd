"""The JSON output of the whole pipeline against Zeek's and CISA ICSNPP's logs of the same traces.

tests/decode/modbus/test_modbus_corpus.py holds the dissector to the same baselines with
scapy-extracted payloads; here the captures go through the real reader, flow table and
reassembly, and what is compared is what a user reads: the ``modbus`` and ``alert`` records
of ``otids read --json --transactions``.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from zeek_baselines import zeek_log, zeek_value

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
ZEEK = CORPUS / "zeek"
ICSNPP = ZEEK / "icsnpp-modbus.analyzer.basic"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent"),
]

Analyse = Callable[..., Any]
Key = tuple[str, int, int]  # client address, transaction id, unit id


def zeek_vector(text: str) -> list[int] | None:
    """A ``vector[count]`` cell: Zeek writes a one-element vector as a bare count."""
    value = zeek_value(text)
    return [value] if isinstance(value, int) else value


def zeek_bytes(text: str) -> str:
    """A Zeek string cell holding bytes (``\\x00\\x00``) as our hex form (``0000``)."""
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1").hex()


# Zeek and ICSNPP spell these two functions by their old names; the rest is our name upper-case.
ZEEK_FUNCTION_NAMES = {
    "report_server_id": "REPORT_SLAVE_ID",
    "encapsulated_interface_transport": "ENCAP_INTERFACE_TRANSPORT",
}


def zeek_function(modbus: dict[str, Any]) -> str:
    name = modbus["function"]
    return ZEEK_FUNCTION_NAMES.get(name, name.upper())


def by_key(records: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """``modbus`` objects of transaction records by client, transaction id and unit."""
    found: dict[Key, dict[str, Any]] = {}
    for record in records:
        modbus = record["modbus"]
        key = (record["src_ip"], modbus["transaction_id"], modbus["unit_id"])
        assert key not in found, key
        found[key] = modbus
    return found


@pytest.fixture
def icsnpp(run_analysis: Analyse) -> Any:
    """The records of the ICSNPP trace."""
    return run_analysis([ICSNPP / "trace.pcap"])


# --- CISA ICSNPP: one exchange of nearly every public function ---------------------------


def test_icsnpp_modbus_detailed_log(icsnpp: Any) -> None:
    """Each ``modbus`` record agrees with its row(s) of ICSNPP's modbus_detailed.log on tid,
    unit, func, address, quantity, request/response values, exception, diagnostics
    sub-function and data, and MEI type. What cannot agree, and why:

    * read_write_multiple_registers: ICSNPP leaves address, quantity and values unset here
      and logs them in modbus_read_write_multiple_registers.log (next test);
    * read_file_record / write_file_record: ICSNPP's quantity 0 counts sub-requests; our
      ``quantity`` is absent and the (here empty) sub-requests are ``file_records``;
    * read_fifo_queue: ICSNPP leaves response_values unset for the empty queue; we write the
      empty list ``values: []`` that the response carried;
    * response_data (7 zero bits after one coil or input read): the padding of the last
      byte, which we trim to the requested quantity (the spec zero-fills it);
    * modbus_detailed_link_id / matched: ICSNPP bookkeeping. Its two unmatched duplicate
      rows (tids 11 and 15) describe the same transactions as their matched twins.
    """
    ours = by_key(icsnpp.of("modbus"))
    rows = zeek_log(ICSNPP / "baseline.modbus_detailed.log")
    assert len(rows) == 26
    for row in rows:
        modbus = ours[(row["id.orig_h"], int(row["tid"]), int(row["unit"]))]
        request, response = modbus.get("request", {}), modbus.get("response", {})
        assert zeek_function(modbus) == row["func"]
        exception = response.get("exception")
        assert (exception.upper() if exception else "-") == row["exception_code"]
        if modbus["function"] == "read_write_multiple_registers":
            continue
        assert modbus.get("address") == zeek_value(row["address"])
        if modbus["function"] not in ("read_file_record", "write_file_record"):
            assert modbus.get("quantity") == zeek_value(row["quantity"])
        assert request.get("values") == zeek_vector(row["request_values"])
        if modbus["function"] == "read_fifo_queue":
            assert (response["values"], row["response_values"]) == ([], "-")
        else:
            assert response.get("values") == zeek_vector(row["response_values"])
        if modbus["function"] == "diagnostics":
            spelled = modbus["subfunction_name"].replace("_", " ")
            assert spelled == row["request_subfunction_code"].lower()
            assert spelled == row["response_subfunction_code"].lower()
            assert request["data"] == zeek_bytes(row["request_data"])
            assert response["data"] == zeek_bytes(row["response_data"])
        assert modbus.get("mei_type") == (
            14 if row["mei_type"] == "Read Device Identification" else None
        )
    # Every record of ours is in the log: 24 transactions, 26 rows.
    assert {(row["id.orig_h"], int(row["tid"]), int(row["unit"])) for row in rows} == set(ours)


def test_icsnpp_modbus_log(icsnpp: Any) -> None:
    """ICSNPP's modbus.log, in order: function, with ``_EXCEPTION`` for an exception
    response, and the exception name. Its btest kept the response lines and cut the tid,
    unit and pdu_type columns (``zeek-cut -n``), header included: func and exception are the
    last two cells of each line."""
    expected = [
        tuple(line.split("\t")[-2:])
        for line in (ICSNPP / "baseline.modbus.log").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(expected) == 24
    ours = []
    for record in sorted(icsnpp.of("modbus"), key=lambda r: r["timestamp"]):
        modbus = record["modbus"]
        exception = modbus["response"].get("exception")
        suffix = "_EXCEPTION" if exception else ""
        ours.append((zeek_function(modbus) + suffix, exception.upper() if exception else "-"))
    assert ours == expected


def test_icsnpp_mask_write_register_log(icsnpp: Any) -> None:
    ours = by_key(icsnpp.of("modbus"))
    rows = zeek_log(ICSNPP / "baseline.modbus_mask_write_register.log")
    assert [row["request_response"] for row in rows] == ["REQUEST", "RESPONSE"] * 2
    for row in rows:
        modbus = ours[(row["id.orig_h"], int(row["tid"]), int(row["unit"]))]
        assert modbus["function_code"] == 22
        assert modbus["address"] == int(row["address"])
        # The response echoes the request: ICSNPP logs the same masks on both rows, we log
        # them once, and an echo that differed would raise modbus.value_mismatch.
        assert (modbus["request"]["and_mask"], modbus["request"]["or_mask"]) == (
            int(row["and_mask"]),
            int(row["or_mask"]),
        )
        assert modbus["response"] == {}
    mismatches = [
        a
        for a in icsnpp.of("alert")
        if a.get("decoder_event", {}).get("name") == "modbus.value_mismatch"
    ]
    assert mismatches == []


def test_icsnpp_read_write_multiple_registers_log(icsnpp: Any) -> None:
    ours = by_key(icsnpp.of("modbus"))
    rows = zeek_log(ICSNPP / "baseline.modbus_read_write_multiple_registers.log")
    assert len(rows) == 4
    for row in rows:
        modbus = ours[(row["id.orig_h"], int(row["tid"]), int(row["unit"]))]
        if row["request_response"] == "REQUEST":
            written = zeek_vector(row["write_registers"])
            assert modbus["address"] == int(row["read_start_address"])
            assert modbus["quantity"] == int(row["read_quantity"])
            assert modbus["request"]["write_address"] == int(row["write_start_address"])
            assert modbus["request"]["values"] == written
            assert modbus["request"]["write_quantity"] == len(written or [])
        else:
            assert modbus["response"]["values"] == zeek_vector(row["read_registers"])


# --- Zeek: non-Modbus protocols on port 502 ----------------------------------------------

NON_MODBUS = ZEEK / "modbus.modbus_and_non_modbus_on_port_502"


def test_only_the_modbus_session_on_port_502_is_decoded(run_analysis: Analyse) -> None:
    """DCE/RPC, NFS, TLS, HTTP, Magellan and RDP on port 502 give no Modbus transaction and
    one ``modbus.non_modbus_traffic`` alert per session; the one Modbus session gives the
    transactions of Zeek's modbus.log."""
    sink = run_analysis([NON_MODBUS / "trace.pcap"])
    records = sink.of("modbus")
    assert {(r["src_ip"], r["src_port"]) for r in records} == {("10.0.0.9", 3082)}
    expected = [
        (int(row["tid"]), int(row["unit"]), row["func"])
        for row in zeek_log(NON_MODBUS / "baseline.modbus.log")
        if row["pdu_type"] == "REQ"
    ]
    assert [
        (r["modbus"]["transaction_id"], r["modbus"]["unit_id"], zeek_function(r["modbus"]))
        for r in records
    ] == expected
    # conn.log: the non-Modbus sessions that carried payload (198.74.56.135:60293 appears
    # twice: a first connection reset before any byte, then one with an HTTP request).
    sessions = {
        (row["id.orig_h"], int(row["id.orig_p"]))
        for row in zeek_log(NON_MODBUS / "baseline.conn.log")
        if row["service"] != "modbus" and int(row["orig_bytes"]) > 0
    }
    assert len(sessions) == 6
    alerts = sink.of("alert")
    assert Counter((a["src_ip"], a["src_port"]) for a in alerts) == dict.fromkeys(sessions, 1)
    for alert in alerts:
        assert alert["decoder_event"]["name"] == "modbus.non_modbus_traffic"
        assert alert["alert"]["rule_id"] == "otids-modbus-event-non-modbus-traffic"
        assert alert["app_proto"] == "failed"
        assert alert["dest_port"] == 502
        assert "modbus" not in alert
    (stats,) = sink.of("stats")
    assert stats["stats"]["app_layer"]["modbus"]["flows"] == 1


# --- Zeek: the fuzz traces give events, not crashes ---------------------------------------
# Their decoder-event counts are pinned in test_modbus_captures.py; here the transactions are
# held to what Zeek logged from the same bytes.


def test_exception_handling_fuzz_trace(run_analysis: Analyse) -> None:
    """fuzz-72: unassigned function codes and ILLEGAL_FUNCTION exceptions, with fuzzed
    sequence numbers. Every exchange Zeek logged is one of our transactions but one: the
    request of unit 0, function 38 declares an MBAP length of 37 bytes and carries 6; we read
    a stream (Zeek parses each segment alone) and the rest of it falls into a gap."""
    trace = ZEEK / "modbus.exception_handling"
    sink = run_analysis([trace / "trace.pcap"])
    requests, exceptions = set(), set()
    for record in sink.of("modbus"):
        modbus = record["modbus"]
        key = (modbus["transaction_id"], modbus["unit_id"], modbus["function_code"])
        if "request" in modbus:
            requests.add(key)
        if "exception" in modbus.get("response", {}):
            exceptions.add((*key, modbus["response"]["exception"].upper()))
    missing = []
    for row in zeek_log(trace / "baseline.modbus.log"):
        code = int(row["func"].removeprefix("unknown-"))
        key = (int(row["tid"]), int(row["unit"]), code & 0x7F)
        if row["pdu_type"] == "REQ" and key not in requests:
            missing.append(key)
        if row["pdu_type"] == "RESP" and (*key, row["exception"]) not in exceptions:
            missing.append(key)
    assert missing == [(0, 0, 38)]


def test_register_parsing_fuzz_trace(run_analysis: Analyse) -> None:
    """fuzz-1011: read input registers with odd sizes. Both requests keep their address and
    quantity, and both responses Zeek decoded carry the same register values in our JSON."""
    trace = ZEEK / "modbus.register_parsing"
    sink = run_analysis([trace / "trace.pcap"])
    ours = {r["modbus"]["transaction_id"]: r["modbus"] for r in sink.of("modbus")}
    for line in (trace / "baseline.output").read_text().splitlines():
        if not line.startswith("modbus_read_input_registers"):
            continue
        transaction_id = int(line.split("[tid=")[1].split(",")[0])
        modbus = ours[transaction_id]
        assert modbus["function_code"] == 4
        if "_request" in line:
            address, quantity = (int(v) for v in line.rsplit("], ", 1)[1].split(", "))
            assert (modbus["address"], modbus["quantity"]) == (address, quantity)
        else:
            values = ast.literal_eval("[" + line.split("], [")[-1].rsplit("]", 1)[0] + "]")
            assert modbus["response"]["values"] == values


def test_length_mismatch_fuzz_trace(run_analysis: Analyse) -> None:
    """4SICS excerpt: function 23 whose write quantity (8466) disagrees with its byte count
    (191). Zeek once read past the buffer on it; we raise invalid_value and invalid_length,
    keep no write values, and still pair the exception response."""
    sink = run_analysis([ZEEK / "modbus.length_mismatch" / "trace.pcap"])
    (record,) = sink.of("modbus")
    modbus = record["modbus"]
    assert modbus["function_code"] == 23
    assert modbus["request"] == {"write_address": 223, "write_quantity": 8466}
    assert modbus["response"] == {"exception_code": 10, "exception": "gateway_path_unavailable"}
    events = Counter(a["decoder_event"]["name"] for a in sink.of("alert"))
    assert events == {"modbus.invalid_value": 3, "modbus.invalid_length": 1}
