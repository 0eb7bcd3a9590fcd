"""DNP3 application messages, the transactions pairing them, and their JSON (EVE) form.

The application header (IEEE 1815-2012, 4.2.2)::

    request:   | APPLICATION CONTROL | FUNCTION CODE | objects ...
    response:  | APPLICATION CONTROL | FUNCTION CODE | IIN1 | IIN2 | objects ...

    APPLICATION CONTROL:   7     6     5     4     3..0
                         | FIR | FIN | CON | UNS | SEQUENCE |
"""

from __future__ import annotations

from typing import Any, ClassVar

from otids.decode.base import Direction, Transaction
from otids.decode.dnp3.functions import FunctionCode, function_name
from otids.decode.dnp3.iin import REQUEST_ERRORS, iin_names
from otids.decode.dnp3.link import DIR_BIT, FCB_BIT, FCV_BIT, FUNCTION_MASK, PRM_BIT
from otids.decode.dnp3.objects import Dnp3Object

APP_FIR = 0x80
APP_FIN = 0x40
APP_CON = 0x20
APP_UNS = 0x10
APP_SEQ = 0x0F


# EVE objects of the application and link control octets, for each of their 256 values.
_APP_CONTROL = tuple(
    {
        "fir": bool(v & APP_FIR),
        "fin": bool(v & APP_FIN),
        "con": bool(v & APP_CON),
        "uns": bool(v & APP_UNS),
        "sequence": v & APP_SEQ,
    }
    for v in range(256)
)
_LINK_CONTROL = tuple(
    {
        "dir": bool(v & DIR_BIT),
        "pri": bool(v & PRM_BIT),
        "fcb": bool(v & FCB_BIT),
        "fcv": bool(v & FCV_BIT),
        "function_code": v & FUNCTION_MASK,
    }
    for v in range(256)
)
_IIN_OBJECTS: dict[int, dict[str, list[str]]] = {}  # IIN value -> EVE object (65536 at most)
_LABELS: dict[int, str] = {}  # function code -> "1 read", for the statistics (256 at most)
# A plain int: IntFlag's "&" runs in Python, and summary() is called for every transaction.
_REQUEST_ERRORS = int(REQUEST_ERRORS)


class _EveCache:
    """EVE objects of fragments, by what they are a function of: polls and their answers
    repeat the same octets. Emptied when full: it holds ``_CACHE_WEIGHT`` units at most (an
    object, a point or 64 octets of the fragment each: about 10 MB), whatever the traffic."""

    __slots__ = ("entries", "weight")

    def __init__(self) -> None:
        self.entries: dict[tuple[Any, ...], Any] = {}
        self.weight = 0

    def put(self, key: tuple[Any, ...], value: Any, msg: Dnp3Message) -> None:
        """Keep ``value``, the EVE form of (part of) ``msg``, under ``key``."""
        weight = 1 + len(msg.objects) + msg.points + len(msg.data) // 64
        if self.weight + weight > _CACHE_WEIGHT:
            self.entries.clear()
            self.weight = 0
        self.entries[key] = value
        self.weight += weight


_CACHE_WEIGHT = 32768
# (is a response, function code, object octets) -> the EVE list of the objects parsed from them.
_OBJECTS_EVE = _EveCache()
# (fragment, link control, source, destination, is a request) -> the fragment's EVE record.
_MESSAGE_EVE = _EveCache()
# Where the objects start in a request and in a response (after the IIN).
_REQUEST_OBJECTS = 2
_RESPONSE_OBJECTS = 4


class Dnp3Message:
    """One application fragment, with the link header of the frame that started it."""

    __slots__ = (
        "app_control",
        "complete",
        "data",
        "dst",
        "function",
        "iin",
        "link_control",
        "objects",
        "points",
        "src",
        "ts",
    )

    def __init__(
        self,
        ts: float,
        link_control: int,
        src: int,
        dst: int,
        data: bytes,
        iin: int | None,
        objects: list[Dnp3Object],
        complete: bool,
        points: int,
    ) -> None:
        self.ts = ts
        self.link_control = link_control
        self.src = src
        self.dst = dst
        self.data = data  # the fragment: application header and objects, CRCs removed
        self.app_control = data[0]
        self.function = data[1]
        self.iin = iin  # 16-bit, IIN1 high; None for requests
        self.objects = objects
        self.complete = complete
        self.points = points  # points the object headers declare

    @property
    def fir(self) -> bool:
        """First fragment of a message."""
        return bool(self.app_control & APP_FIR)

    @property
    def fin(self) -> bool:
        """Final fragment of a message."""
        return bool(self.app_control & APP_FIN)

    @property
    def con(self) -> bool:
        """The sender asks for an application confirm."""
        return bool(self.app_control & APP_CON)

    @property
    def uns(self) -> bool:
        """Unsolicited response (or the confirm of one)."""
        return bool(self.app_control & APP_UNS)

    @property
    def seq(self) -> int:
        """Application sequence number, 0-15."""
        return self.app_control & APP_SEQ

    @property
    def is_response(self) -> bool:
        """True for messages with the response header (they carry the IIN)."""
        return self.iin is not None

    @property
    def kind(self) -> str:
        """``request``, ``response`` or ``unsolicited_response``: Suricata's EVE ``type``."""
        if self.iin is None:
            return "request"
        if self.function == FunctionCode.UNSOLICITED_RESPONSE:
            return "unsolicited_response"
        return "response"

    def eve(self) -> dict[str, Any]:
        """This fragment as one record of Suricata's EVE ``dnp3`` log.

        The record depends on the fragment's octets, its link header and whether it is a
        response alone: polls repeat them, so the record is built once and shared by every
        fragment alike (records are written, never changed). So are the control and IIN
        objects, which depend on one octet (two for the IIN) only.
        """
        key = (self.data, self.link_control, self.src, self.dst, self.iin is None)
        out = _MESSAGE_EVE.entries.get(key)
        if out is None:
            out = self._eve()
            _MESSAGE_EVE.put(key, out, self)
        return out

    def _eve(self) -> dict[str, Any]:
        app: dict[str, Any] = {
            "control": _APP_CONTROL[self.app_control],
            "function_code": self.function,
        }
        if self.objects:
            app["objects"] = _objects_eve(self)
        app["complete"] = self.complete
        out: dict[str, Any] = {
            "type": self.kind,
            "control": _LINK_CONTROL[self.link_control],
            "src": self.src,
            "dst": self.dst,
            "application": app,
        }
        iin = self.iin
        if iin is not None:
            indicators = _IIN_OBJECTS.get(iin)
            if indicators is None:
                indicators = _IIN_OBJECTS[iin] = {"indicators": iin_names(iin)}
            out["iin"] = indicators
        return out


def _objects_eve(msg: Dnp3Message) -> list[dict[str, Any]]:
    """The EVE list of ``msg``'s objects, shared by every fragment with the same objects
    (records are written, never changed)."""
    response = msg.iin is not None
    key = (
        response,
        msg.function,
        msg.data[_RESPONSE_OBJECTS if response else _REQUEST_OBJECTS :],
    )
    objects = _OBJECTS_EVE.entries.get(key)
    if objects is None:
        objects = [obj.eve() for obj in msg.objects]
        _OBJECTS_EVE.put(key, objects, msg)
    return objects


class Dnp3Transaction(Transaction):
    """A request and the response fragments answering it.

    Pairing: a response goes to the pending request with the same application sequence
    number whose link addresses are its own, reversed; later fragments of a multi-fragment
    message (FIR clear) follow the previous one with the next sequence number. A response
    with no such request, and every unsolicited response, is a transaction of its own. A
    CONFIRM is a transaction of its own too, done at once: it answers a response rather than
    asking for one, and Suricata logs no record for it (:meth:`eve_records` is empty).
    """

    protocol: ClassVar[str] = "dnp3"

    __slots__ = ("broadcast", "requests", "responses", "unanswered", "unsolicited")

    def __init__(self, tx_id: int, ts: float, direction: Direction) -> None:
        # Transaction.__init__ written out: one transaction per request, and the call costs
        # as much as the assignments (keep in step with the base class).
        self.tx_id = tx_id
        self.ts = ts
        self.direction = direction
        self.done = False
        self.events: list[str] = []
        self.alerted: set[int] = set()
        self.requests: list[Dnp3Message] = []  # request fragments, in order (usually one)
        self.responses: list[Dnp3Message] = []  # response fragments, in order
        self.unsolicited = False
        self.broadcast = False  # request sent to a broadcast address (0xFFFC-0xFFFF)
        self.unanswered = False  # given up (flow end, flood, retry) without its response

    @property
    def request(self) -> Dnp3Message | None:
        """The first request fragment, if any."""
        return self.requests[0] if self.requests else None

    @property
    def response(self) -> Dnp3Message | None:
        """The first response fragment, if any."""
        return self.responses[0] if self.responses else None

    @property
    def messages(self) -> list[Dnp3Message]:
        """Request fragments then response fragments."""
        return self.requests + self.responses

    @property
    def first(self) -> Dnp3Message:
        """The message that opened the transaction (request, else first response)."""
        return self.requests[0] if self.requests else self.responses[0]

    @property
    def func(self) -> int:
        """Function code of the opening message (the request's, or the response's)."""
        return self.first.function

    @property
    def func_name(self) -> str:
        """snake_case name of :attr:`func`."""
        return function_name(self.first.function)

    @property
    def response_func(self) -> int | None:
        """Function code of the response, None before it arrives."""
        return self.responses[0].function if self.responses else None

    @property
    def iin(self) -> int | None:
        """IIN of the last response fragment (16-bit, IIN1 high), None without response."""
        return self.responses[-1].iin if self.responses else None

    @property
    def objects(self) -> list[Dnp3Object]:
        """Objects of every request then every response fragment."""
        return [obj for msg in self.requests + self.responses for obj in msg.objects]

    def summary(self) -> tuple[str, str | None]:
        """``("1 read", None)``; the error is the first IIN2 bit by which the outstation
        rejected the request (``no_func_code_support``, ``object_unknown``,
        ``parameter_error``), the nearest DNP3 has to an exception response."""
        function = (self.requests or self.responses)[0].function  # self.func, inlined
        label = _LABELS.get(function)
        if label is None:
            label = _LABELS[function] = f"{function} {function_name(function)}"
        responses = self.responses
        iin = responses[-1].iin if responses else None  # self.iin, inlined
        if iin is None or not iin & _REQUEST_ERRORS:
            return label, None
        return label, iin_names(iin & _REQUEST_ERRORS)[0]

    def eve_records(self) -> list[tuple[float, dict[str, Any]]]:
        """``(timestamp, record)`` for each message, as Suricata's EVE log writes ``dnp3``
        records: one per request or response fragment, none for a CONFIRM."""
        if self.requests and self.requests[0].function == FunctionCode.CONFIRM:
            return []
        return [(msg.ts, msg.eve()) for msg in self.requests + self.responses]

    def eve(self) -> dict[str, Any]:
        """``{"request": {...}, "response": {...}}``, each present when seen.

        A message in several fragments is written as its first fragment with the objects of
        all, ``complete`` only if each was and the last had FIN, and ``fragments``.
        """
        out: dict[str, Any] = {}
        if self.requests:
            out["request"] = _merged(self.requests)
        if self.responses:
            out["response"] = _merged(self.responses)
        if self.unanswered:
            out["unanswered"] = True
        if self.broadcast:
            out["broadcast"] = True
        return out


def _merged(fragments: list[Dnp3Message]) -> dict[str, Any]:
    record = fragments[0].eve()
    if len(fragments) > 1:
        # The first fragment's record is shared (see Dnp3Message.eve): what changes is copied.
        app = {**record["application"]}
        record = {**record, "application": app}
        objects = [obj.eve() for msg in fragments for obj in msg.objects]
        if objects:
            app["objects"] = objects
        app["complete"] = all(msg.complete for msg in fragments) and fragments[-1].fin
        record["fragments"] = len(fragments)
    return record
