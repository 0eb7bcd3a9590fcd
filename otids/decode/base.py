"""The contract between the capture layer and the protocol dissectors.

A dissector is a per-flow :class:`AppParser`. The pipeline feeds it the reassembled bytes of
each direction (TCP) or each datagram (UDP) and gets back a list of *records*:

* a :class:`Transaction` whenever one gains information: once when its request is parsed
  (``done`` is False), again when its response arrives or when it is given up (``done`` is
  True). The same object is returned each time, so a rule engine can remember which rules
  already fired on it and a logger can write it once, when ``done``;
* a :class:`DecoderEvent` for every anomaly, named ``<protocol>.<event>`` (for example
  ``modbus.invalid_length``). Event names are stable: rules match on them.

Each protocol package exposes a :class:`ProtocolSpec` that says which ports it owns, how to
recognise it elsewhere (``probe``) and how to build a parser.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Direction(enum.IntEnum):
    """Which way bytes travel within a flow."""

    TO_SERVER = 0  # client (master) -> server (outstation, PLC)
    TO_CLIENT = 1  # server -> client

    @property
    def label(self) -> str:
        """``to_server`` / ``to_client``, as Suricata spells flow directions."""
        return "to_server" if self is Direction.TO_SERVER else "to_client"


class ProbeResult(enum.Enum):
    """What a protocol probe concluded from the first bytes of a flow."""

    MATCH = "match"
    NO_MATCH = "no_match"
    NEED_MORE = "need_more"


@dataclass(slots=True)
class DecoderEvent:
    """A named anomaly seen by a dissector (or by the capture layer, prefix ``stream.``).

    ``name`` is the stable dotted name rules match, ``detail`` a human explanation of this
    occurrence, ``tx`` the transaction it concerns when there is one.
    """

    name: str
    direction: Direction
    ts: float
    detail: str = ""
    tx: Transaction | None = None

    @property
    def protocol(self) -> str:
        """The part of ``name`` before the first dot (``modbus``, ``dnp3``, ``stream``)."""
        return self.name.partition(".")[0]


class Transaction:
    """Base of every protocol's request/response unit.

    Subclasses add their fields and implement :meth:`eve` (the protocol object of the JSON
    log). ``alerted`` belongs to the rule engine: the ids of rules that already fired on this
    transaction, so that a rule fires once per transaction however often it is updated.
    """

    protocol: ClassVar[str] = ""

    __slots__ = ("alerted", "direction", "done", "events", "ts", "tx_id")

    def __init__(self, tx_id: int, ts: float, direction: Direction = Direction.TO_SERVER) -> None:
        self.tx_id = tx_id  # per-flow counter, from 0
        self.ts = ts  # time of the first message of the transaction
        self.direction = direction  # direction of the first message (TO_CLIENT: unsolicited)
        self.done = False  # complete, or given up: no further update will come
        self.events: list[str] = []  # names of decoder events raised on this transaction
        self.alerted: set[int] = set()

    def eve(self) -> dict[str, Any]:
        """The protocol object written under ``event_type`` in the JSON log."""
        raise NotImplementedError

    def eve_records(self) -> list[tuple[float, dict[str, Any]]]:
        """This transaction's records in the ``event_type: <protocol>`` log, as
        ``(timestamp, protocol object)`` pairs: one, ``(ts, eve())``, unless the protocol's
        reference log has a record per message (DNP3: Suricata logs requests and responses
        apart)."""
        return [(self.ts, self.eve())]

    def summary(self) -> tuple[str, str | None]:
        """``(function, error)`` for statistics and the console: what the transaction did
        (e.g. ``"3 read_holding_registers"``) and the error the server answered, if any
        (e.g. ``"illegal_data_address"``)."""
        raise NotImplementedError


Record = Transaction | DecoderEvent


class AppParser:
    """One flow's dissector state. Subclasses override the three methods.

    ``feed`` receives contiguous bytes of one direction. On TCP those are a stream (a message
    may be split across calls, several may arrive in one); on UDP each call is one datagram.
    """

    protocol: ClassVar[str] = ""

    def feed(self, direction: Direction, data: bytes, ts: float) -> list[Record]:
        """Consume bytes travelling in ``direction``; return new records."""
        raise NotImplementedError

    def gap(self, direction: Direction, ts: float) -> list[Record]:
        """Bytes were lost in ``direction``: drop partial state and resynchronise."""
        raise NotImplementedError

    def close(self, ts: float) -> list[Record]:
        """The flow ended: return every pending transaction as ``done``."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One name of the rule field vocabulary.

    ``get`` maps a record to the value (``None`` when absent); a list value matches a rule
    when any element does. ``doc`` is one line for the rule-writing guide.
    """

    name: str
    type: str
    doc: str
    get: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """How the pipeline finds and builds one protocol's dissector."""

    name: str  # "modbus", also the JSON event_type and app_proto
    tcp_ports: frozenset[int]
    udp_ports: frozenset[int]
    probe: Callable[[bytes, Direction], ProbeResult]
    parser_factory: Callable[[bool], AppParser]  # argument: True for a UDP (datagram) flow
    # Event raised when traffic on one of the ports above fails the probe.
    port_mismatch_event: str
    # Rule vocabulary over this protocol's transactions, by field name.
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    # Every event name this dissector can raise, with a one-line description.
    events: Mapping[str, str] = field(default_factory=dict)
    # The field rules most often test for equality (the function code): the rule engine
    # indexes rules on it so that a transaction is only checked against rules that can match.
    index_field: str = ""
