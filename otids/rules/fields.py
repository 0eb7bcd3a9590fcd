"""The field vocabulary rules are written in.

Three families of names:

* flow fields (``src_ip``, ``dest_port``, ...), valid on every record. For a transaction the
  source is the client (master) that sent the request; for a decoder event it is the sender
  of the bytes that raised it;
* event fields (``event``, ``event.detail``), valid on decoder events;
* protocol fields (``modbus.function``, ``dnp3.func``, ...), declared by each dissector in its
  :class:`~otids.decode.base.ProtocolSpec`. On a decoder event they read the transaction the
  event concerns, when there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otids.capture.flow import Flow
from otids.capture.packet import PROTO_TCP
from otids.capture.tcp import STREAM_EVENTS
from otids.decode.base import DecoderEvent, Direction, FieldSpec, ProtocolSpec, Transaction
from otids.decode.registry import PROTOCOLS


class EvalContext:
    """What a rule sees: one record, its flow and the direction it travelled."""

    __slots__ = ("direction", "event", "flow", "record", "tx")

    def __init__(self, record: Transaction | DecoderEvent, flow: Flow) -> None:
        self.record = record
        self.flow = flow
        if isinstance(record, DecoderEvent):
            self.event: DecoderEvent | None = record
            self.tx: Transaction | None = record.tx
            self.direction = record.direction
        else:
            self.event = None
            self.tx = record
            self.direction = record.direction


_new_object = object.__new__


def transaction_context(tx: Transaction, flow: Flow) -> EvalContext:
    """``EvalContext(tx, flow)`` for a transaction, built without ``__init__``: the engine
    builds one for most transactions, and a function call costs less than instantiating a
    class through its Python ``__init__``."""
    ctx: EvalContext = _new_object(EvalContext)
    ctx.record = ctx.tx = tx
    ctx.flow = flow
    ctx.event = None
    ctx.direction = tx.direction
    return ctx


def _src(ctx: EvalContext) -> tuple[str, int]:
    f = ctx.flow
    if ctx.event is not None and ctx.direction == Direction.TO_CLIENT:
        return f.server_str, f.server_port
    return f.client_str, f.client_port


def _dst(ctx: EvalContext) -> tuple[str, int]:
    f = ctx.flow
    if ctx.event is not None and ctx.direction == Direction.TO_CLIENT:
        return f.client_str, f.client_port
    return f.server_str, f.server_port


def _app_proto(ctx: EvalContext) -> str | None:
    rec = ctx.tx if ctx.tx is not None else None
    if rec is not None:
        return rec.protocol
    return ctx.event.protocol if ctx.event is not None else None


FLOW_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec(
            "src_ip", "ip", "Sender's address (the client for a transaction)", lambda c: _src(c)[0]
        ),
        FieldSpec("src_port", "int", "Sender's port", lambda c: _src(c)[1]),
        FieldSpec(
            "dest_ip",
            "ip",
            "Receiver's address (the server for a transaction)",
            lambda c: _dst(c)[0],
        ),
        FieldSpec("dest_port", "int", "Receiver's port", lambda c: _dst(c)[1]),
        FieldSpec(
            "client_ip", "ip", "Address of the flow's client (master)", lambda c: c.flow.client_str
        ),
        FieldSpec(
            "server_ip",
            "ip",
            "Address of the flow's server (PLC, outstation)",
            lambda c: c.flow.server_str,
        ),
        FieldSpec(
            "proto",
            "str",
            "Transport: tcp or udp",
            lambda c: "tcp" if c.flow.proto == PROTO_TCP else "udp",
        ),
        FieldSpec("app_proto", "str", "Application protocol: modbus, dnp3", _app_proto),
        FieldSpec("direction", "str", "to_server or to_client", lambda c: c.direction.label),
    )
}

EVENT_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec(
            "event",
            "str",
            "Decoder event name, e.g. modbus.invalid_length",
            lambda c: c.event.name if c.event is not None else None,
        ),
        FieldSpec(
            "event.detail",
            "str",
            "Decoder event explanation",
            lambda c: c.event.detail if c.event is not None else None,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ResolvedField:
    """A field name bound to a getter over :class:`EvalContext`."""

    spec: FieldSpec
    protocol: str | None  # owning protocol for protocol fields, else None
    get: Callable[[EvalContext], Any]


def _protocol_getter(proto: str, get: Callable[[Any], Any]) -> Callable[[EvalContext], Any]:
    def getter(ctx: EvalContext) -> Any:
        tx = ctx.tx
        if tx is None or tx.protocol != proto:
            return None
        return get(tx)

    return getter


def _build_vocabulary(protocols: tuple[ProtocolSpec, ...]) -> dict[str, ResolvedField]:
    vocab: dict[str, ResolvedField] = {}
    for spec in (*FLOW_FIELDS.values(), *EVENT_FIELDS.values()):
        vocab[spec.name] = ResolvedField(spec, None, spec.get)
    for proto in protocols:
        for spec in proto.fields.values():
            vocab[spec.name] = ResolvedField(
                spec, proto.name, _protocol_getter(proto.name, spec.get)
            )
    return vocab


VOCABULARY: dict[str, ResolvedField] = _build_vocabulary(PROTOCOLS)
"""Every field name a rule may use."""

EVENT_NAMES: dict[str, str] = {
    **STREAM_EVENTS,
    # Dissectors may key their tables with str enums: keep the plain names.
    **{
        str(getattr(name, "value", name)): doc
        for proto in PROTOCOLS
        for name, doc in proto.events.items()
    },
}
"""Every event name the capture layer (``stream.*``) or a dissector can raise, described."""
