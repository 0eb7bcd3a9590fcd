"""The rule field vocabulary over DNP3 transactions.

Object fields cover the request's and the response's objects alike (as Suricata's
``dnp3_obj``); list-valued fields match a rule when any element does.
"""

from __future__ import annotations

from otids.decode.base import FieldSpec
from otids.decode.dnp3.iin import iin_names
from otids.decode.dnp3.transaction import Dnp3Transaction


def _iin(tx: Dnp3Transaction) -> list[str] | None:
    iin = tx.iin
    return None if iin is None else iin_names(iin)


def _points_index(tx: Dnp3Transaction) -> list[int]:
    return [index for obj in tx.objects for index in obj.indexes]


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec(
            "dnp3.func",
            "int",
            "Application function code of the request (of the response when there is none)",
            lambda tx: tx.func,
        ),
        FieldSpec(
            "dnp3.func_name", "str", "Its name: read, direct_operate, ...", lambda tx: tx.func_name
        ),
        FieldSpec(
            "dnp3.response_func",
            "int",
            "Function code of the response: 129 response, 130 unsolicited, 131 authenticate",
            lambda tx: tx.response_func,
        ),
        FieldSpec(
            "dnp3.iin",
            "list[str]",
            "Internal indications set in the response: device_restart, need_time, ...",
            _iin,
        ),
        FieldSpec(
            "dnp3.src", "int", "Link source address of the opening message", lambda tx: tx.first.src
        ),
        FieldSpec(
            "dnp3.dst",
            "int",
            "Link destination address of the opening message",
            lambda tx: tx.first.dst,
        ),
        FieldSpec("dnp3.uns", "bool", "Unsolicited response", lambda tx: tx.unsolicited),
        FieldSpec(
            "dnp3.broadcast",
            "bool",
            "Request sent to a broadcast address (0xFFFC-0xFFFF)",
            lambda tx: tx.broadcast,
        ),
        FieldSpec(
            "dnp3.unanswered",
            "bool",
            "Request given up without response (flow end, flood, retry)",
            lambda tx: tx.unanswered,
        ),
        FieldSpec(
            "dnp3.objects.group",
            "list[int]",
            "Object groups of request and response",
            lambda tx: [obj.group for obj in tx.objects],
        ),
        FieldSpec(
            "dnp3.objects.variation",
            "list[int]",
            "Object variations",
            lambda tx: [obj.variation for obj in tx.objects],
        ),
        FieldSpec(
            "dnp3.objects.gv",
            "list[str]",
            'Objects as "g<group>v<variation>", e.g. g12v1 (control relay output block)',
            lambda tx: [obj.gv for obj in tx.objects],
        ),
        FieldSpec(
            "dnp3.objects.qualifier",
            "list[int]",
            "Object qualifiers (0x00 start-stop, 0x06 all, 0x17/0x28 indexed, 0x5b free-format)",
            lambda tx: [obj.qualifier for obj in tx.objects],
        ),
        FieldSpec(
            "dnp3.objects.count",
            "int",
            "Points the object headers declare, request and response together",
            lambda tx: sum(msg.points for msg in tx.messages),
        ),
        FieldSpec("dnp3.points.index", "list[int]", "Indexes of the decoded points", _points_index),
        FieldSpec(
            "dnp3.data",
            "list[bytes]",
            "Each application fragment (headers and objects, link CRCs removed)",
            lambda tx: [msg.data for msg in tx.messages],
        ),
    )
}
