"""Cross-check otids' decoding against Wireshark's, message by message (``otids verify``).

Both sides reduce a capture to *messages*: one per Modbus ADU and one per DNP3 application
fragment, each placed at the frame (1-based record number, as Wireshark counts) of the
packet that completed it, with the fields both dissectors expose:

=========  ======================================================================
Modbus     ``transaction_id``, ``unit_id``, ``function`` (without the exception bit),
           ``exception_code`` (responses), ``address`` and ``quantity`` (requests; the
           read range for function 23)
DNP3       ``src`` and ``dst`` (link addresses), ``function`` (application),
           ``iin`` (responses, 16 bits, IIN1 high), ``objects`` (``g<group>v<variation>``
           of each object header, in order)
=========  ======================================================================

otids' side runs the normal pipeline (a subclass that notes the frame number of each new
message, so the normal path pays nothing); Wireshark's side runs tshark through pyshark,
imported only here: this is a cross-check tool, not the hot path. Messages are matched by
their order within each protocol (see :func:`compare`); a field with a value on one side
only, or with different values, is a :class:`Disagreement`, as is a message only one side
saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from otids.capture.readers import CaptureReader, Record, open_capture
from otids.decode.base import Record as AppRecord
from otids.decode.base import Transaction
from otids.decode.dnp3 import Dnp3Message, Dnp3Transaction
from otids.decode.modbus import ModbusTransaction
from otids.pipeline import Pipeline
from otids.rules.engine import RuleSet

# Fields compared per protocol and message kind; a field absent from a side counts as None.
MODBUS_REQUEST_FIELDS = ("transaction_id", "unit_id", "function", "address", "quantity")
MODBUS_RESPONSE_FIELDS = ("transaction_id", "unit_id", "function", "exception_code")
DNP3_FIELDS = ("src", "dst", "function", "iin", "objects")
# tshark display filter: only the packets either protocol's dissector claimed.
DISPLAY_FILTER = "mbtcp || dnp3"
EXCEPTION_BIT = 0x80  # Modbus: set in the function code of an exception response
MODBUS_PORT = 502
# Differences of definition, not of decoding, normalised on Wireshark's side:
# Write Single Coil/Register (5, 6) name one item, which otids reports as quantity 1 and
# Wireshark leaves implicit.
IMPLICIT_QUANTITY = {5: 1, 6: 1}
# Read/Write File Record (20, 21): the word counts Wireshark shows belong to the file record
# sub-requests (otids: ``file_records``), not to a register range.
NO_RANGE_FUNCTIONS = frozenset({20, 21})
# DNP3 octet strings and virtual terminal objects (groups 110-113): the variation is the string
# length; Wireshark reports variation 0 for all of them, so both sides show ``v*``.
LENGTH_VARIATION_GROUPS = frozenset({110, 111, 112, 113})
# Frames apart the two sides may complete one message: otids waits for the peer's next
# packet before trusting a midstream start (other conversations' packets come in between),
# and either side may finish reassembling a fragment a frame or so before the other. Small
# against a capture, it keeps a periodic poll from pairing with the next cycle's.
FRAME_LAG = 64
# The same, for two messages paired as one decoded differently (same transaction id or
# addresses, different function): only as close as one exchange, or unrelated messages of
# a long conversation would pair.
IDENTITY_LAG = 1


def object_name(group: int, variation: int) -> str:
    """``g<group>v<variation>``, with ``v*`` where the variation is a string length."""
    return f"g{group}v*" if group in LENGTH_VARIATION_GROUPS else f"g{group}v{variation}"


class VerifyError(Exception):
    """The check cannot run: unreadable capture, tshark missing or failing."""


@dataclass(slots=True)
class Message:
    """One decoded message, reduced to the compared fields."""

    frame: int
    protocol: str  # "modbus" or "dnp3"
    kind: str  # "request" or "response"
    fields: dict[str, Any]
    # The two endpoints, "address port" each, sorted: which conversation it belongs to.
    conversation: tuple[str, str] = ("", "")


@dataclass(slots=True)
class Disagreement:
    """A field the two decoders read differently (``field`` is ``"message"`` when one side
    has no message at all at that place)."""

    frame: int  # Wireshark's frame of the message (otids' when Wireshark has none)
    protocol: str
    otids_frame: int | None  # where otids completed it (None: otids has no such message)
    field: str
    otids: Any
    wireshark: Any

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "frame": self.frame,
            "protocol": self.protocol,
            "otids_frame": self.otids_frame,
            "field": self.field,
            "otids": self.otids,
            "wireshark": self.wireshark,
        }


@dataclass(slots=True)
class Report:
    """The outcome of one capture's check."""

    path: str
    otids_messages: int = 0
    wireshark_messages: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    warning: str | None = None  # the capture reader's, when the file is damaged

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "capture": self.path,
            "messages": {"otids": self.otids_messages, "wireshark": self.wireshark_messages},
            "agree": not self.disagreements,
            "disagreements": [d.as_dict() for d in self.disagreements],
            "warning": self.warning,
        }


# --- otids' side ------------------------------------------------------------------------------


class _NullSink:
    def handle(self, record: dict[str, Any]) -> None:
        """Alerts and statistics are not compared: drop them."""


def _endpoints(a: str, a_port: int, b: str, b_port: int) -> tuple[str, str]:
    first, second = sorted((f"{a} {a_port}", f"{b} {b_port}"))
    return first, second


def _modbus_message(frame: int, tx: ModbusTransaction, response: bool) -> Message:
    if response:
        values = {
            "transaction_id": tx.transaction_id,
            "unit_id": tx.unit_id,
            "function": tx.function_code,
            "exception_code": tx.exception_code,
        }
        return Message(frame, "modbus", "response", values)
    values = {
        "transaction_id": tx.transaction_id,
        "unit_id": tx.unit_id,
        "function": tx.function_code,
        "address": tx.address,
        "quantity": tx.quantity,
    }
    return Message(frame, "modbus", "request", values)


def _dnp3_message(frame: int, msg: Dnp3Message) -> Message:
    values = {
        "src": msg.src,
        "dst": msg.dst,
        "function": msg.function,
        "iin": msg.iin,
        "objects": [object_name(o.group, o.variation) for o in msg.objects],
    }
    return Message(frame, "dnp3", "response" if msg.is_response else "request", values)


class VerifyPipeline(Pipeline):
    """The normal pipeline, noting each message a transaction gains, with the frame number
    of the packet being processed (set by :meth:`numbered`)."""

    def __init__(self) -> None:
        super().__init__(RuleSet([]), _NullSink())
        self.frame = 0
        self.messages: list[Message] = []
        # transaction -> messages already noted ((request, response) for Modbus, counts of
        # request and response fragments for DNP3); the key keeps the object alive, so ids
        # are never reused.
        self._seen: dict[Transaction, tuple[int, int]] = {}

    def numbered(self, reader: Iterable[Record]) -> Iterator[Record]:
        """The reader's records, noting the frame number of each as it is handed on."""
        for self.frame, record in enumerate(reader, 1):
            yield record

    def _records(self, flow: Any, records: Iterable[AppRecord], ts: float) -> None:
        records = list(records)
        start = len(self.messages)
        for rec in records:
            if isinstance(rec, ModbusTransaction):
                self._modbus(rec)
            elif isinstance(rec, Dnp3Transaction):
                self._dnp3(rec)
        if len(self.messages) > start:
            pair = _endpoints(flow.client_str, flow.client_port, flow.server_str, flow.server_port)
            for msg in self.messages[start:]:
                msg.conversation = pair
        super()._records(flow, records, ts)

    def _modbus(self, tx: ModbusTransaction) -> None:
        req_seen, resp_seen = self._seen.get(tx, (0, 0))
        req = int(tx.request_ts is not None)
        resp = int(tx.response_ts is not None)
        if req > req_seen:
            self.messages.append(_modbus_message(self.frame, tx, False))
        if resp > resp_seen:
            self.messages.append(_modbus_message(self.frame, tx, True))
        self._seen[tx] = (req, resp)

    def _dnp3(self, tx: Dnp3Transaction) -> None:
        req_seen, resp_seen = self._seen.get(tx, (0, 0))
        for msg in tx.requests[req_seen:]:
            self.messages.append(_dnp3_message(self.frame, msg))
        for msg in tx.responses[resp_seen:]:
            self.messages.append(_dnp3_message(self.frame, msg))
        self._seen[tx] = (len(tx.requests), len(tx.responses))


def otids_messages(path: str | os.PathLike[str]) -> tuple[list[Message], str | None]:
    """otids' messages in ``path`` and the reader's warning (None when the file is intact).

    Raises :class:`VerifyError` when the capture cannot be opened.
    """
    from otids.capture.readers import CaptureError

    try:
        reader: CaptureReader = open_capture(path)
    except CaptureError as exc:
        raise VerifyError(str(exc)) from None
    pipeline = VerifyPipeline()
    with reader:
        pipeline.run(pipeline.numbered(reader))
    pipeline.finish(emit_stats=False)
    return pipeline.messages, reader.warning


# --- Wireshark's side -------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    """A pyshark field value as an int (decimal or 0x hex), None when absent."""
    if value is None:
        return None
    text = str(value.show if hasattr(value, "show") else value)
    try:
        return int(text, 0)
    except ValueError:
        return None


def _first(layer: Any, *names: str) -> int | None:
    for name in names:
        value = _int(layer.get_field(name))
        if value is not None:
            return value
    return None


def _all(layer: Any, name: str) -> list[Any]:
    found = layer.get_field(name)
    if found is None:
        return []
    return list(getattr(found, "all_fields", None) or [found])


def _wireshark_modbus(frame: int, pkt: Any, out: list[Message]) -> None:
    headers = pkt.get_multiple_layers("mbtcp")
    pdus = pkt.get_multiple_layers("modbus")
    transport = getattr(pkt, "tcp", None) or getattr(pkt, "udp", None)
    response = transport is not None and _int(transport.get_field("srcport")) == MODBUS_PORT
    for header, pdu in zip(headers, pdus, strict=False):
        function = _int(pdu.get_field("func_code"))
        values: dict[str, Any] = {
            "transaction_id": _int(header.get_field("trans_id")),
            "unit_id": _int(header.get_field("unit_id")),
            "function": function & ~EXCEPTION_BIT
            if response and function is not None
            else function,
        }
        if response:
            values["exception_code"] = _int(pdu.get_field("exception_code"))
        elif function in NO_RANGE_FUNCTIONS:
            values["address"] = values["quantity"] = None
        else:
            values["address"] = _first(pdu, "read_reference_num", "reference_num")
            quantity = _first(pdu, "read_word_cnt", "word_cnt", "bit_cnt")
            if quantity is None and function is not None:
                quantity = IMPLICIT_QUANTITY.get(function)
            values["quantity"] = quantity
        out.append(Message(frame, "modbus", "response" if response else "request", values))


def _wireshark_dnp3(frame: int, pkt: Any, out: list[Message]) -> None:
    for layer in pkt.get_multiple_layers("dnp3"):
        function = _int(layer.get_field("al_func"))
        if function is None:  # a link frame without (the end of) an application fragment
            continue
        objects = []
        for obj in _all(layer, "al_obj"):
            code = _int(obj)
            if code is not None:
                objects.append(object_name(code >> 8, code & 0xFF))
        response = function >= 0x81  # RESPONSE, UNSOLICITED_RESPONSE, AUTH_RESPONSE
        values = {
            "src": _int(layer.get_field("src")),
            "dst": _int(layer.get_field("dst")),
            "function": function,
            "iin": _int(layer.get_field("al_iin")) if response else None,
            "objects": objects,
        }
        out.append(Message(frame, "dnp3", "response" if response else "request", values))


def _conversation(pkt: Any) -> tuple[str, str]:
    ip = getattr(pkt, "ip", None) or getattr(pkt, "ipv6", None)
    transport = getattr(pkt, "tcp", None) or getattr(pkt, "udp", None)
    if ip is None or transport is None:
        return ("", "")
    src, dst = ip.get_field("src"), ip.get_field("dst")
    sport, dport = transport.get_field("srcport"), transport.get_field("dstport")
    return _endpoints(str(src), int(sport), str(dst), int(dport))


def wireshark_messages(path: str | os.PathLike[str]) -> list[Message]:
    """Wireshark's messages in ``path``, decoded by tshark through pyshark.

    Raises :class:`VerifyError` when tshark is missing or fails.
    """
    try:
        import pyshark
        from pyshark.tshark.tshark import TSharkNotFoundException
    except ImportError as exc:  # an optional dependency of this one command
        raise VerifyError(f"pyshark is not installed ({exc})") from None
    out: list[Message] = []
    try:
        capture = pyshark.FileCapture(
            os.fspath(path), display_filter=DISPLAY_FILTER, keep_packets=False
        )
    except TSharkNotFoundException:
        raise VerifyError("tshark is not installed (it comes with Wireshark)") from None
    try:
        for pkt in capture:  # ends with tshark's output
            frame = int(pkt.number)
            start = len(out)
            _wireshark_modbus(frame, pkt, out)
            _wireshark_dnp3(frame, pkt, out)
            if len(out) > start:
                pair = _conversation(pkt)
                for msg in out[start:]:
                    msg.conversation = pair
    except TSharkNotFoundException:
        raise VerifyError("tshark is not installed (it comes with Wireshark)") from None
    except Exception as exc:  # pyshark wraps tshark's failures in various exceptions
        raise VerifyError(f"{os.fspath(path)}: tshark failed: {exc}") from None
    finally:
        capture.close()
    return out


# --- comparison -------------------------------------------------------------------------------


def _key(msg: Message) -> tuple[Any, ...]:
    """What identifies a message when aligning the two sequences: kind, function, and the
    transaction id (Modbus) or link addresses (DNP3)."""
    return (*_identity(msg), msg.fields.get("function"))


def _identity(msg: Message) -> tuple[Any, ...]:
    """The coarser key paired within a changed run: :func:`_key` without the function, so
    that a message both sides saw but decoded differently is compared, not reported twice."""
    f = msg.fields
    if msg.protocol == "modbus":
        return (msg.kind, f.get("transaction_id"))
    return (msg.kind, f.get("src"), f.get("dst"))


def _fields(a: Message, b: Message, out: list[Disagreement]) -> None:
    x, y = a.fields, b.fields
    for name in sorted(x.keys() | y.keys()):
        if x.get(name) != y.get(name):
            out.append(Disagreement(b.frame, a.protocol, a.frame, name, x.get(name), y.get(name)))


def _alone(msg: Message, ours: bool) -> Disagreement:
    what = f"{msg.kind} {_describe(msg)}"
    return Disagreement(
        msg.frame,
        msg.protocol,
        msg.frame if ours else None,
        "message",
        what if ours else None,
        None if ours else what,
    )


def _align(a: list[Message], b: list[Message], out: list[Disagreement]) -> None:
    """Pair ``a`` (otids) with ``b`` (Wireshark), both in frame order, in three passes, each
    Wireshark message taking the unpaired otids message at its own frame, else the first
    unpaired one, that has: the same :func:`_key` within :data:`FRAME_LAG` frames; else the
    same :func:`_identity` within :data:`IDENTITY_LAG` (one message decoded differently);
    else the same key at any later frame (a midstream conversation whose start only settled
    at its end). The rest were seen by one side only. Preferring the same frame keeps a
    message only one side saw from shifting every later pair of a periodic poll (each would
    take its predecessor's partner, and the report would point at the last one)."""
    used = [False] * len(a)
    pending = list(b)
    for key, window in ((_key, FRAME_LAG), (_identity, IDENTITY_LAG), (_key, None)):
        left: list[Message] = []
        for y in pending:
            want = key(y)
            low = y.frame - window if window is not None else y.frame
            high = y.frame + window if window is not None else None
            best = None
            for i, x in enumerate(a):  # a is in frame order: stop past the window
                if high is not None and x.frame > high:
                    break
                if used[i] or x.frame < low or key(x) != want:
                    continue
                if best is None or x.frame == y.frame:
                    best = i
                if x.frame >= y.frame:  # at or past y's frame: nothing closer follows
                    break
            if best is None:
                left.append(y)
            else:
                used[best] = True
                _fields(a[best], y, out)
        pending = left
    out.extend(_alone(y, False) for y in pending)
    out.extend(_alone(x, True) for x, paired in zip(a, used, strict=True) if not paired)


def compare(ours: list[Message], theirs: list[Message]) -> list[Disagreement]:
    """Every difference between otids' and Wireshark's messages, in frame order.

    Each conversation's two message sequences (in capture order, per protocol: a message
    delayed in one conversation must not shift the others) are paired by :func:`_align`;
    paired messages are compared field by field, the rest were seen by one side only.
    Frames are not compared: otids may complete a message a packet later than Wireshark (a
    midstream start is only trusted once the peer answers); the report shows both.
    """
    out: list[Disagreement] = []
    mine: dict[tuple[str, tuple[str, str]], list[Message]] = {}
    wireshark: dict[tuple[str, tuple[str, str]], list[Message]] = {}
    for messages, by in ((ours, mine), (theirs, wireshark)):
        for msg in messages:
            by.setdefault((msg.protocol, msg.conversation), []).append(msg)
    for place in sorted(mine.keys() | wireshark.keys()):
        _align(mine.get(place, []), wireshark.get(place, []), out)
    out.sort(key=lambda d: (d.frame, d.protocol, d.field))
    return out


# Object lists longer than this are shown abbreviated.
SHOW_OBJECTS = 6


def show(value: Any) -> str:
    """A compared value for a human: None as ``-``, long object lists abbreviated."""
    if value is None:
        return "-"
    if isinstance(value, list):
        if len(value) > SHOW_OBJECTS:
            head = " ".join(map(str, value[:SHOW_OBJECTS]))
            return f"{head} ... ({len(value)} objects)"
        return " ".join(map(str, value)) or "(none)"
    return str(value)


def _describe(msg: Message) -> str:
    return " ".join(f"{k}={show(v)}" for k, v in msg.fields.items() if v not in (None, []))


def verify(path: str | os.PathLike[str]) -> Report:
    """Decode ``path`` with both otids and Wireshark and compare (see the module doc).

    Raises :class:`VerifyError` when the check cannot run.
    """
    ours, warning = otids_messages(path)
    theirs = wireshark_messages(path)
    report = Report(os.fspath(path), len(ours), len(theirs), compare(ours, theirs), warning)
    return report
