"""The per-flow Modbus/TCP dissector: framing, PDU decoding, request/response pairing."""

from __future__ import annotations

from otids.decode.base import AppParser, DecoderEvent, Direction, Record
from otids.decode.modbus.events import ModbusEvent
from otids.decode.modbus.framer import Framer
from otids.decode.modbus.functions import FUNCTIONS
from otids.decode.modbus.pdu import parse_exception_response
from otids.decode.modbus.transaction import ModbusTransaction

# Unanswered requests a flow may hold before it counts as flooded and the oldest are given
# up. Real clients keep a handful in flight (servers commonly accept 16 or fewer concurrent
# transactions, implementation guide section 4.2.1); 500 is the default Suricata ships for
# its Modbus ``request-flood`` setting, far above legitimate use, and it bounds per-flow
# memory.
REQUEST_FLOOD = 500

_TO_SERVER = Direction.TO_SERVER
_TO_CLIENT = Direction.TO_CLIENT
_EXCEPTION_BIT = 0x80
_INVALID = "invalid"


class ModbusParser(AppParser):
    """One Modbus/TCP flow's state (or a UDP flow's, with ``datagram``).

    Requests are paired with responses on (transaction id, unit id, function code); a
    transaction is returned when its request is decoded (``done`` False) and again when its
    response arrives or it is given up (``done`` True). A response that fits no pending
    request makes a transaction of its own (``modbus.unsolicited_response``).
    """

    protocol = "modbus"

    __slots__ = ("_flooded", "_framers", "_next_tx_id", "_pending")

    def __init__(self, datagram: bool = False) -> None:
        self._framers = (Framer(_TO_SERVER, datagram), Framer(_TO_CLIENT, datagram))
        # Requests awaiting a response, by transaction id, oldest first (dicts keep order).
        self._pending: dict[int, ModbusTransaction] = {}
        self._next_tx_id = 0
        self._flooded = False  # flooded event raised; re-armed once nothing is pending

    def feed(self, direction: Direction, data: bytes, ts: float) -> list[Record]:
        """Decode every whole ADU in ``data`` (plus what earlier calls left over)."""
        out: list[Record] = []
        handle = self._request if direction == _TO_SERVER else self._response
        self._framers[direction].split(data, ts, out, handle)
        return out

    def gap(self, direction: Direction, ts: float) -> list[Record]:
        """Forget the partial ADU of ``direction`` and rescan for the next header."""
        dropped = self._framers[direction].reset(syncing=True)
        detail = f"bytes lost, {dropped} buffered bytes dropped; resynchronising on the next header"
        return [DecoderEvent(ModbusEvent.GAP, direction, ts, detail)]

    def close(self, ts: float) -> list[Record]:
        """Give up every pending request: done, without a response."""
        out: list[Record] = []
        for tx in self._pending.values():
            tx.done = True
            out.append(tx)
        self._pending.clear()
        for framer in self._framers:
            framer.reset(syncing=False)
        return out

    def _request(
        self,
        transaction_id: int,
        unit: int,
        function: int,
        pdu: bytes,
        ts: float,
        out: list[Record],
    ) -> None:
        info = FUNCTIONS[function]
        tx = ModbusTransaction(
            self._next_tx_id,
            ts,
            _TO_SERVER,
            transaction_id,
            unit,
            function,
            info.name,
            info.category,
        )
        self._next_tx_id += 1
        tx.request_ts = ts
        tx.request_pdu = pdu
        if info.access is not None:
            tx.access = info.access
            tx.table = info.table
        problems = info.request(tx, pdu)
        pending = self._pending
        older = pending.pop(transaction_id, None)
        if older is not None:  # the client reused the id: the older request will not be answered
            older.done = True
            out.append(older)
        pending[transaction_id] = tx
        out.append(tx)
        if info.category == _INVALID:
            _event(
                out, ModbusEvent.INVALID_FUNCTION_CODE, _TO_SERVER, ts, f"function {function}", tx
            )
        if problems:
            for name, detail in problems:
                _event(out, name, _TO_SERVER, ts, detail, tx)
        if len(pending) > REQUEST_FLOOD:
            self._flood(tx, ts, out)

    def _response(
        self,
        transaction_id: int,
        unit: int,
        function: int,
        pdu: bytes,
        ts: float,
        out: list[Record],
    ) -> None:
        code = function & 0x7F
        info = FUNCTIONS[code]
        pending = self._pending
        tx = pending.get(transaction_id)
        if tx is not None and tx.function_code == code and tx.unit_id == unit:
            del pending[transaction_id]
            if not pending:
                self._flooded = False
            unsolicited = False
        else:
            tx = ModbusTransaction(
                self._next_tx_id,
                ts,
                _TO_CLIENT,
                transaction_id,
                unit,
                code,
                info.name,
                info.category,
            )
            self._next_tx_id += 1
            if info.access is not None:
                tx.access = info.access
                tx.table = info.table
            unsolicited = True
        tx.response_ts = ts
        tx.response_pdu = pdu
        tx.done = True
        if function & _EXCEPTION_BIT:
            problems = parse_exception_response(tx, pdu)
        else:
            problems = info.response(tx, pdu)
        out.append(tx)
        if unsolicited:
            detail = f"no pending request {transaction_id}, unit {unit}, function {code}"
            _event(out, ModbusEvent.UNSOLICITED_RESPONSE, _TO_CLIENT, ts, detail, tx)
        if info.category == _INVALID and ModbusEvent.INVALID_FUNCTION_CODE not in tx.events:
            _event(
                out, ModbusEvent.INVALID_FUNCTION_CODE, _TO_CLIENT, ts, f"function {function}", tx
            )
        if problems:
            for name, detail in problems:
                _event(out, name, _TO_CLIENT, ts, detail, tx)

    def _flood(self, tx: ModbusTransaction, ts: float, out: list[Record]) -> None:
        """Too many requests pending: say so once, give up the oldest."""
        if not self._flooded:
            self._flooded = True
            detail = f"more than {REQUEST_FLOOD} requests without a response"
            _event(out, ModbusEvent.FLOODED, _TO_SERVER, ts, detail, tx)
        pending = self._pending
        while len(pending) > REQUEST_FLOOD:  # one turn per request beyond the limit
            oldest = pending.pop(next(iter(pending)))
            oldest.done = True
            out.append(oldest)


def _event(
    out: list[Record],
    name: str,
    direction: Direction,
    ts: float,
    detail: str,
    tx: ModbusTransaction,
) -> None:
    """Record a decoder event about ``tx`` (also listed in ``tx.events``)."""
    tx.events.append(name)
    out.append(DecoderEvent(name, direction, ts, detail, tx))
