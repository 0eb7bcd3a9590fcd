"""The pipeline's Modbus sessions against Arkime's session documents of the same capture.

arkime/modbus/expected-sessions.json holds, per TCP session, what Arkime's Modbus parser
saw: unit id, function codes of the requests, exception codes of the responses, transaction
ids. expected-query-counts.txt holds the number of sessions each query of Arkime's test
matches. Both are rebuilt here from the ``modbus`` records of ``--transactions`` output.

One Arkime session is left out on purpose. 10.0.0.8:502 opens a connection *to*
10.0.0.57:4446 and sends only exception responses (Quickdraw's crafted "busy/ack exception
delay" traffic). Arkime calls it Modbus with exception codes 5 and 6; otids, like Zeek and
Suricata (neither logs it: see the automayt Zeek logs and suricata-verify/modbus), takes the
SYN sender as the client, whose first bytes are no Modbus request, and raises
``modbus.non_modbus_traffic``. otids looks at the bypassed flow again once it idles out and
then decodes a last, midstream part of it (function 42 responses): the session exists on
both sides, but with none of its exception codes.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
ARKIME = CORPUS / "arkime" / "modbus"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent"),
]

# The connection 10.0.0.8:502 opened: Arkime's key is its SYN sender, ours the other side.
ARKIME_REVERSED, REVERSED = ("10.0.0.8", 502), ("10.0.0.57", 4446)


@dataclass
class Session:
    """What Arkime records of one Modbus session, as sets of values."""

    unitid: set[int] = field(default_factory=set)
    funccode: set[int] = field(default_factory=set)  # requests only
    exccode: set[int] = field(default_factory=set)
    transactionid: set[int] = field(default_factory=set)  # requests only


def arkime_sessions() -> dict[tuple[str, int], Session]:
    """Arkime's Modbus sessions by client (SYN sender) address and port."""
    found = {}
    for document in json.loads((ARKIME / "expected-sessions.json").read_text())["sessions3"]:
        body = document["body"]
        modbus = body.get("modbus")
        if modbus is None:
            continue
        assert modbus["protocolid"] == 0
        found[(body["source"]["ip"], body["source"]["port"])] = Session(
            {int(modbus["unitid"])},
            {int(v) for v in modbus.get("funccode", [])},
            {int(v) for v in modbus.get("exccode", [])},
            {int(v) for v in modbus.get("transactionid", [])},
        )
    return found


def our_sessions(sink: Any) -> dict[tuple[str, int], Session]:
    """The same from our transaction records, by client address and port."""
    found: dict[tuple[str, int], Session] = {}
    for record in sink.of("modbus"):
        session = found.setdefault((record["src_ip"], record["src_port"]), Session())
        modbus = record["modbus"]
        session.unitid.add(modbus["unit_id"])
        if "request" in modbus:
            session.funccode.add(modbus["function_code"])
            session.transactionid.add(modbus["transaction_id"])
        exception = modbus.get("response", {}).get("exception_code")
        if exception is not None:
            session.exccode.add(exception)
    return found


@pytest.fixture
def ours(run_analysis: Callable[..., Any]) -> dict[tuple[str, int], Session]:
    return our_sessions(run_analysis([ARKIME / "input.pcap"]))


def test_the_same_sessions_are_modbus(ours: dict[tuple[str, int], Session]) -> None:
    assert set(ours) == {REVERSED if key == ARKIME_REVERSED else key for key in arkime_sessions()}


def session_params() -> list[Any]:
    if not CORPUS.is_dir():
        return []
    return [
        pytest.param(key, id=f"{key[0]}:{key[1]}")
        for key in sorted(arkime_sessions())
        if key != ARKIME_REVERSED
    ]


@pytest.mark.parametrize("client", session_params())
def test_session_agrees_with_arkime(
    client: tuple[str, int], ours: dict[tuple[str, int], Session]
) -> None:
    assert ours[client] == arkime_sessions()[client]


# countTest(N, "...$files&&<query>") lines of Arkime's tests/modbus.t
COUNT_TEST = re.compile(r'countTest\((\d+), .*"\$files&&([^"]+)"\)')
QUERY = re.compile(r"(protocols|modbus\.(\w+?)(\.cnt)?)(==|>)(\w+)$")
OPERATORS = {"==": operator.eq, ">": operator.gt}
# Queries the reversed session makes Arkime count once more than us (exception codes 5, 6).
REVERSED_QUERIES = {"modbus.exccode>0": 2, "modbus.exccode==5": 0}


def count_tests() -> list[Any]:
    if not CORPUS.is_dir():
        return []
    params = []
    for line in (ARKIME / "expected-query-counts.txt").read_text().splitlines():
        match = COUNT_TEST.search(line)
        if match is None:
            continue
        count, query = int(match[1]), match[2]
        params.append(pytest.param(query, REVERSED_QUERIES.get(query, count), id=query))
    return params


@pytest.mark.parametrize(("query", "count"), count_tests())
def test_query_count(query: str, count: int, ours: dict[tuple[str, int], Session]) -> None:
    """How many sessions Arkime's query matches; a multi-valued field matches when any of
    its values does, ``.cnt`` is the number of distinct values."""
    match = QUERY.fullmatch(query)
    assert match is not None, query
    _, name, cnt, op, value = match.groups()
    compare = OPERATORS[op]
    matched = 0
    for session in ours.values():
        if name is None:  # protocols==modbus: every session with Modbus records
            matched += 1
        elif name == "protocolid":  # a session with a non-zero protocol id is not decoded
            matched += compare(0, int(value))
        else:
            values: set[int] = getattr(session, name)
            if cnt:
                matched += compare(len(values), int(value))
            else:
                matched += any(compare(v, int(value)) for v in values)
    assert matched == count
