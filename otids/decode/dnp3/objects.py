"""DNP3 object headers and the points they carry.

After the application header a fragment holds object headers, each followed by its points
(IEEE 1815-2012, 4.2.2.7 and clause 11)::

    +-------+-----------+-----------+------------------------+------------------------+
    | GROUP | VARIATION | QUALIFIER | RANGE (0/1/2/4/8 oct.) | points (prefix + data) |
    +-------+-----------+-----------+------------------------+------------------------+

    QUALIFIER:    7    |        6..4          |          3..0
               reserved| object prefix code   | range specifier code

    prefix code 0 none, 1/2/3 an index of 1/2/4 octets, 4/5/6 an object size of 1/2/4
    octets, 7 reserved.
    range code 0/1/2 start and stop indexes of 1/2/4 octets, 3/4/5 start and stop virtual
    addresses (same sizes), 6 none ("all points"), 7/8/9 a count of 1/2/4 octets, 11 a
    one-octet count of size-prefixed free-format objects; 10 and 12-15 reserved.

Point sizes are not in the data: they come from a table indexed by (group, variation). Parsing
walks the headers eagerly (so malformed data is found at once) but decodes point values lazily,
on the first access to :attr:`Dnp3Object.points`: rules mostly test function codes and object
groups, and building a dict per point would dominate the cost of a large response.

Point field names follow Suricata's EVE ``dnp3`` records (``online``, ``restart``, ...,
``state``, ``value``, ``count``, ``timestamp``); counter flags use one naming for every
variation (``rollover``, ``discontinuity``, ``reserved0``).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from otids.decode.dnp3.events import Dnp3Event

Point = dict[str, Any]

# Limits per application fragment. A 2048-octet fragment (the size most outstations use)
# holds at most 682 three-octet headers and 16384 single-bit points; a 15936-octet fragment
# (the reassembly bound) more, but no legitimate one comes near these.
MAX_OBJECTS = 2048  # object headers kept; parsing stops after this many
MAX_POINTS = 16384  # points decoded; headers and counts go on beyond it

# Octets of the prefix, by prefix code; 4-6 are sizes, 1-3 indexes.
PREFIX_SIZES = (0, 1, 2, 4, 1, 2, 4)
SIZE_PREFIX_FIRST = 4
_UINT = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I")}

RANGE_NONE = 0x06
RANGE_FREE_FORMAT = 0x0B
# Range specifier codes: (struct of the range field, True when it is start/stop).
_RANGES: dict[int, tuple[struct.Struct, bool]] = {
    0x00: (struct.Struct("<BB"), True),
    0x01: (struct.Struct("<HH"), True),
    0x02: (struct.Struct("<II"), True),
    0x03: (struct.Struct("<BB"), True),
    0x04: (struct.Struct("<HH"), True),
    0x05: (struct.Struct("<II"), True),
    0x07: (struct.Struct("<B"), False),
    0x08: (struct.Struct("<H"), False),
    0x09: (struct.Struct("<I"), False),
    0x0B: (struct.Struct("<B"), False),
}


class _Stop(Exception):
    """Parsing of the fragment's objects ends here with this event."""

    def __init__(self, event: Dnp3Event, detail: str) -> None:
        super().__init__(detail)
        self.event = event
        self.detail = detail


# ---------------------------------------------------------------------------------------
# Point layouts
# ---------------------------------------------------------------------------------------

# A bit field octet: (name, width in bits), least significant bits first.
BitField = tuple[tuple[str, int], ...]

_COMMON = (("online", 1), ("restart", 1), ("comm_lost", 1), ("remote_forced", 1))
BINARY_FLAGS: BitField = (
    *_COMMON,
    ("local_forced", 1),
    ("chatter_filter", 1),
    ("reserved", 1),
    ("state", 1),
)
DOUBLE_BIT_FLAGS: BitField = (*_COMMON, ("local_forced", 1), ("chatter_filter", 1), ("state", 2))
OUTPUT_FLAGS: BitField = (
    *_COMMON,
    ("local_forced", 1),
    ("reserved0", 1),
    ("reserved1", 1),
    ("state", 1),
)
COUNTER_FLAGS: BitField = (
    *_COMMON,
    ("local_forced", 1),
    ("rollover", 1),
    ("discontinuity", 1),
    ("reserved0", 1),
)
ANALOG_FLAGS: BitField = (
    *_COMMON,
    ("local_forced", 1),
    ("over_range", 1),
    ("reference_err", 1),
    ("reserved0", 1),
)
CONTROL_CODE: BitField = (("op_type", 4), ("qu", 1), ("cr", 1), ("tcc", 2))
COMMAND_STATUS: BitField = (("status_code", 7), ("reserved", 1))
BINARY_COMMAND_STATUS: BitField = (("status_code", 7), ("commanded_state", 1))
ANALOG_COMMAND_STATUS: BitField = (("status_code", 7), ("reserved0", 1))

# Every octet value expanded once per bit field: decoding a flags octet is then a lookup.
_BIT_TABLES: dict[BitField, tuple[tuple[tuple[str, int], ...], ...]] = {}


def _bit_table(field: BitField) -> tuple[tuple[tuple[str, int], ...], ...]:
    table = _BIT_TABLES.get(field)
    if table is None:
        # Built by itertools.product, not a loop per octet and field (a start-up cost):
        # the first field holds the low bits, so the last varies slowest, as product wants
        # the first iterable to; each row is then reversed back into field order.
        choices = [[(name, v) for v in range(1 << width)] for name, width in reversed(field)]
        rows = tuple(map(tuple, map(reversed, itertools.product(*choices))))
        # Octet bits above the fields are ignored: the rows repeat.
        table = _BIT_TABLES[field] = rows * (256 // len(rows))
    return table


# A field of a fixed layout: (struct code, name) or ("B", bit field); "T" is the 48-bit
# DNP3 time (milliseconds since 1970-01-01 UTC, little-endian).
Field = tuple[str, str | BitField]
Decoder = Callable[[bytes, int, int], Point]  # (data, offset, size) -> fields
Measure = Callable[[bytes, int, int], int]  # (data, offset, end) -> size, -1 if unknowable


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """How to size and decode the points of one (group, variation).

    ``size`` > 0: fixed octets per point. ``bits`` > 0: packed points of that many bits.
    ``measure``: variable-size points, sized from their own content (-1 when only a size
    prefix can tell). ``data`` False: the object never carries data (class data, g60).
    """

    name: str
    size: int = 0
    bits: int = 0
    decode: Decoder | None = None
    measure: Measure | None = None
    min_size: int = 0  # variable-size objects: smallest valid point
    field: str = "state"  # packed objects: name of the point's value
    data: bool = True  # False for objects that never carry point data (class data)


def _fixed(name: str, *fields: Field) -> ObjectSpec:
    """A fixed-size layout decoded with one precompiled struct."""
    layout = struct.Struct("<" + "".join("IH" if code == "T" else code for code, _ in fields))
    plan: list[tuple[int, Any]] = []  # (kind, payload): 0 plain, 1 time, 2 bit field
    for code, what in fields:
        if code == "T":
            plan.append((1, what))
        elif isinstance(what, tuple):
            plan.append((2, _bit_table(what)))
        else:
            plan.append((0, what))
    steps = tuple(plan)

    def decode(data: bytes, offset: int, size: int) -> Point:
        values = layout.unpack_from(data, offset)
        point: Point = {}
        i = 0
        for kind, what in steps:
            if kind == 0:
                point[what] = values[i]
            elif kind == 1:
                point[what] = values[i] | (values[i + 1] << 32)
                i += 1
            else:
                point.update(what[values[i]])
            i += 1
        return point

    return ObjectSpec(name, size=layout.size, decode=decode)


def _packed(name: str, bits: int, field: str = "state") -> ObjectSpec:
    return ObjectSpec(name, bits=bits, field=field)


def _text(raw: bytes) -> str:
    """Names and file contents as JSON-friendly text (invalid UTF-8 escaped, not lost)."""
    return raw.decode("utf-8", "backslashreplace")


def _octets(name: str, size: int) -> ObjectSpec:
    """Octet strings and virtual terminal blocks: the variation is the length."""

    def decode(data: bytes, offset: int, size: int) -> Point:
        return {"value": _text(data[offset : offset + size])}

    return ObjectSpec(name, size=size, decode=decode)


# -- g0: device attributes (IEEE 1815-2012, 11.9.1): data type, length, value ------------
ATTRIBUTE_TYPES = {1: "vstr", 2: "uint", 3: "int", 4: "flt", 5: "ostr", 6: "bstr", 254: "list"}
_FLOATS = {4: struct.Struct("<f"), 8: struct.Struct("<d")}


def _attribute_value(data_type: int, raw: bytes) -> Any:
    if data_type == 1:
        return _text(raw)
    if data_type in (2, 6) and raw:
        return int.from_bytes(raw, "little")
    if data_type == 3 and raw:
        return int.from_bytes(raw, "little", signed=True)
    if data_type == 4 and len(raw) in _FLOATS:
        return _FLOATS[len(raw)].unpack(raw)[0]
    return raw.hex()


def _attribute(data: bytes, offset: int, size: int) -> Point:
    data_type, length = data[offset], data[offset + 1]
    raw = data[offset + 2 : offset + 2 + length]
    return {
        "data_type": ATTRIBUTE_TYPES.get(data_type, f"unknown_{data_type}"),
        "length": length,
        "value": _attribute_value(data_type, raw),
    }


def _attribute_size(data: bytes, offset: int, end: int) -> int:
    return 2 + data[offset + 1] if end - offset >= 2 else end - offset + 1


# -- g70: file transfer (IEEE 1815-2012, 11.9.20): fixed fields, then names or data --------
_G70V2 = struct.Struct("<HHHHI")
_G70V3 = struct.Struct("<HHIHHIIHHH")
_G70V4 = struct.Struct("<IIHHB")
_G70V5 = struct.Struct("<II")
_G70V6 = struct.Struct("<IIB")
_G70V7 = struct.Struct("<HHHIIHHH")


def _g70v2(data: bytes, offset: int, size: int) -> Point:
    user_off, user_size, pass_off, pass_size, key = _G70V2.unpack_from(data, offset)
    names = offset + _G70V2.size
    return {
        "username_offset": user_off,
        "username_size": user_size,
        "password_offset": pass_off,
        "password_size": pass_size,
        "authentication_key": key,
        "username": _text(data[names : names + user_size]),
        "password": _text(data[names + user_size : names + user_size + pass_size]),
    }


def _g70v2_size(data: bytes, offset: int, end: int) -> int:
    if end - offset < _G70V2.size:
        return _G70V2.size
    _, user_size, _, pass_size, _ = _G70V2.unpack_from(data, offset)
    return _G70V2.size + user_size + pass_size


def _g70v3(data: bytes, offset: int, size: int) -> Point:
    (name_off, name_size, t_lo, t_hi, perms, key, file_size, mode, block, request) = (
        _G70V3.unpack_from(data, offset)
    )
    name = offset + _G70V3.size
    return {
        "filename_offset": name_off,
        "filename_size": name_size,
        "created": t_lo | (t_hi << 32),
        "permissions": perms,
        "authentication_key": key,
        "file_size": file_size,
        "operational_mode": mode,
        "maximum_block_size": block,
        "request_id": request,
        "filename": _text(data[name : name + name_size]),
    }


def _g70v3_size(data: bytes, offset: int, end: int) -> int:
    if end - offset < 4:
        return _G70V3.size
    return _G70V3.size + _UINT[2].unpack_from(data, offset + 2)[0]


def _g70v4(data: bytes, offset: int, size: int) -> Point:
    handle, file_size, block, request, status = _G70V4.unpack_from(data, offset)
    return {
        "file_handle": handle,
        "file_size": file_size,
        "maximum_block_size": block,
        "request_id": request,
        "status_code": status,
        "optional_text": _text(data[offset + _G70V4.size : offset + size]),
    }


def _g70v5(data: bytes, offset: int, size: int) -> Point:
    handle, block = _G70V5.unpack_from(data, offset)
    return {
        "file_handle": handle,
        "block_number": block,
        "file_data": _text(data[offset + _G70V5.size : offset + size]),
    }


def _g70v6(data: bytes, offset: int, size: int) -> Point:
    handle, block, status = _G70V6.unpack_from(data, offset)
    return {
        "file_handle": handle,
        "block_number": block,
        "status_code": status,
        "optional_text": _text(data[offset + _G70V6.size : offset + size]),
    }


def _g70v7(data: bytes, offset: int, size: int) -> Point:
    name_off, name_size, file_type, file_size, t_lo, t_hi, perms, request = _G70V7.unpack_from(
        data, offset
    )
    name = offset + _G70V7.size
    return {
        "filename_offset": name_off,
        "filename_size": name_size,
        "file_type": file_type,
        "file_size": file_size,
        "created_timestamp": t_lo | (t_hi << 32),
        "permissions": perms,
        "request_id": request,
        "filename": _text(data[name : name + name_size]),
    }


def _g70v7_size(data: bytes, offset: int, end: int) -> int:
    if end - offset < 4:
        return _G70V7.size
    return _G70V7.size + _UINT[2].unpack_from(data, offset + 2)[0]


def _g70v8(data: bytes, offset: int, size: int) -> Point:
    return {"file_specification": _text(data[offset : offset + size])}


# -- g90: application identifier: the application's name, sized by the prefix ----------------
def _g90v1(data: bytes, offset: int, size: int) -> Point:
    return {"application_id": _text(data[offset : offset + size])}


def _needs_prefix(data: bytes, offset: int, end: int) -> int:
    return -1


# -- the table --------------------------------------------------------------------------
_B = BINARY_FLAGS
_D = DOUBLE_BIT_FLAGS
_O = OUTPUT_FLAGS
_C = COUNTER_FLAGS
_A = ANALOG_FLAGS
_T = ("T", "timestamp")

_CROB = (
    ("B", CONTROL_CODE),
    ("B", "count"),
    ("I", "ontime"),
    ("I", "offtime"),
    ("B", COMMAND_STATUS),
)


def _counters(group: int, with_time: bool) -> dict[tuple[int, int], ObjectSpec]:
    """Counter groups 20-23: 32/16-bit, delta (obsolete) variants, with/without flag."""
    kind = {20: "counter", 21: "frozen counter", 22: "counter event", 23: "frozen counter event"}
    name = kind[group]
    specs = {
        1: _fixed(f"{name}, 32-bit with flag", ("B", _C), ("I", "count")),
        2: _fixed(f"{name}, 16-bit with flag", ("B", _C), ("H", "count")),
        3: _fixed(f"{name}, 32-bit delta with flag", ("B", _C), ("I", "count")),
        4: _fixed(f"{name}, 16-bit delta with flag", ("B", _C), ("H", "count")),
    }
    if group == 20:
        specs |= {
            5: _fixed(f"{name}, 32-bit without flag", ("I", "count")),
            6: _fixed(f"{name}, 16-bit without flag", ("H", "count")),
            7: _fixed(f"{name}, 32-bit delta without flag", ("I", "count")),
            8: _fixed(f"{name}, 16-bit delta without flag", ("H", "count")),
        }
    if with_time:
        specs |= {
            5: _fixed(f"{name}, 32-bit with flag and time", ("B", _C), ("I", "count"), _T),
            6: _fixed(f"{name}, 16-bit with flag and time", ("B", _C), ("H", "count"), _T),
            7: _fixed(f"{name}, 32-bit delta with flag and time", ("B", _C), ("I", "count"), _T),
            8: _fixed(f"{name}, 16-bit delta with flag and time", ("B", _C), ("H", "count"), _T),
        }
    if group == 21:
        specs |= {
            9: _fixed(f"{name}, 32-bit without flag", ("I", "count")),
            10: _fixed(f"{name}, 16-bit without flag", ("H", "count")),
            11: _fixed(f"{name}, 32-bit delta without flag", ("I", "count")),
            12: _fixed(f"{name}, 16-bit delta without flag", ("H", "count")),
        }
    return {(group, v): spec for v, spec in specs.items()}


def _analog_events(group: int, name: str) -> dict[tuple[int, int], ObjectSpec]:
    """Groups 32, 33, 42: int32/int16/float32/float64 with flag, with or without time."""
    a = ("B", _A)
    value = "value"
    specs = {
        1: _fixed(f"{name}, 32-bit", a, ("i", value)),
        2: _fixed(f"{name}, 16-bit", a, ("h", value)),
        3: _fixed(f"{name}, 32-bit with time", a, ("i", value), _T),
        4: _fixed(f"{name}, 16-bit with time", a, ("h", value), _T),
        5: _fixed(f"{name}, single-precision", a, ("f", value)),
        6: _fixed(f"{name}, double-precision", a, ("d", value)),
        7: _fixed(f"{name}, single-precision with time", a, ("f", value), _T),
        8: _fixed(f"{name}, double-precision with time", a, ("d", value), _T),
    }
    return {(group, v): spec for v, spec in specs.items()}


def _analog_commands(group: int, name: str) -> dict[tuple[int, int], ObjectSpec]:
    """Group 43: analog command events, status then commanded value, with or without time."""
    s = ("B", ANALOG_COMMAND_STATUS)
    value = "commanded_value"
    specs = {
        1: _fixed(f"{name}, 32-bit", s, ("i", value)),
        2: _fixed(f"{name}, 16-bit", s, ("h", value)),
        3: _fixed(f"{name}, 32-bit with time", s, ("i", value), _T),
        4: _fixed(f"{name}, 16-bit with time", s, ("h", value), _T),
        5: _fixed(f"{name}, single-precision", s, ("f", value)),
        6: _fixed(f"{name}, double-precision", s, ("d", value)),
        7: _fixed(f"{name}, single-precision with time", s, ("f", value), _T),
        8: _fixed(f"{name}, double-precision with time", s, ("d", value), _T),
    }
    return {(group, v): spec for v, spec in specs.items()}


SPECS: dict[tuple[int, int], ObjectSpec] = {
    # Binary inputs and their events.
    (1, 1): _packed("binary input, packed", 1),
    (1, 2): _fixed("binary input with flags", ("B", _B)),
    (2, 1): _fixed("binary input event", ("B", _B)),
    (2, 2): _fixed("binary input event with absolute time", ("B", _B), _T),
    (2, 3): _fixed("binary input event with relative time", ("B", _B), ("H", "timestamp")),
    # Double-bit binary inputs and their events.
    (3, 1): _packed("double-bit binary input, packed", 2),
    (3, 2): _fixed("double-bit binary input with flags", ("B", _D)),
    (4, 1): _fixed("double-bit binary input event", ("B", _D)),
    (4, 2): _fixed("double-bit binary input event with absolute time", ("B", _D), _T),
    (4, 3): _fixed(
        "double-bit binary input event with relative time", ("B", _D), ("H", "relative_time_ms")
    ),
    # Binary outputs, their events and commands.
    (10, 1): _packed("binary output, packed", 1),
    (10, 2): _fixed("binary output status with flags", ("B", _O)),
    (11, 1): _fixed("binary output event", ("B", _O)),
    (11, 2): _fixed("binary output event with time", ("B", _O), _T),
    (12, 1): _fixed("control relay output block", *_CROB),
    (12, 2): _fixed("pattern control block", *_CROB),
    (12, 3): _packed("pattern mask", 1, field="point"),
    (13, 1): _fixed("binary output command event", ("B", BINARY_COMMAND_STATUS)),
    (13, 2): _fixed("binary output command event with time", ("B", BINARY_COMMAND_STATUS), _T),
    # Counters.
    **_counters(20, with_time=False),
    **_counters(21, with_time=True),
    **_counters(22, with_time=True),
    **_counters(23, with_time=True),
    # Analog inputs.
    (30, 1): _fixed("analog input, 32-bit with flag", ("B", _A), ("i", "value")),
    (30, 2): _fixed("analog input, 16-bit with flag", ("B", _A), ("h", "value")),
    (30, 3): _fixed("analog input, 32-bit without flag", ("i", "value")),
    (30, 4): _fixed("analog input, 16-bit without flag", ("h", "value")),
    (30, 5): _fixed("analog input, single-precision with flag", ("B", _A), ("f", "value")),
    (30, 6): _fixed("analog input, double-precision with flag", ("B", _A), ("d", "value")),
    (31, 1): _fixed("frozen analog input, 32-bit with flag", ("B", _A), ("i", "value")),
    (31, 2): _fixed("frozen analog input, 16-bit with flag", ("B", _A), ("h", "value")),
    (31, 3): _fixed("frozen analog input, 32-bit with time", ("B", _A), ("i", "value"), _T),
    (31, 4): _fixed("frozen analog input, 16-bit with time", ("B", _A), ("h", "value"), _T),
    (31, 5): _fixed("frozen analog input, 32-bit without flag", ("i", "value")),
    (31, 6): _fixed("frozen analog input, 16-bit without flag", ("h", "value")),
    (31, 7): _fixed("frozen analog input, single-precision", ("B", _A), ("f", "value")),
    (31, 8): _fixed("frozen analog input, double-precision", ("B", _A), ("d", "value")),
    **_analog_events(32, "analog input event"),
    **_analog_events(33, "frozen analog input event"),
    (34, 1): _fixed("analog input deadband, 16-bit", ("H", "deadband_value")),
    (34, 2): _fixed("analog input deadband, 32-bit", ("I", "deadband_value")),
    (34, 3): _fixed("analog input deadband, single-precision", ("f", "deadband_value")),
    # Analog outputs: status, commands (value then control status), events, command events.
    (40, 1): _fixed("analog output status, 32-bit", ("B", _A), ("i", "value")),
    (40, 2): _fixed("analog output status, 16-bit", ("B", _A), ("h", "value")),
    (40, 3): _fixed("analog output status, single-precision", ("B", _A), ("f", "value")),
    (40, 4): _fixed("analog output status, double-precision", ("B", _A), ("d", "value")),
    (41, 1): _fixed("analog output, 32-bit", ("i", "value"), ("B", "control_status")),
    (41, 2): _fixed("analog output, 16-bit", ("h", "value"), ("B", "control_status")),
    (41, 3): _fixed("analog output, single-precision", ("f", "value"), ("B", "control_status")),
    (41, 4): _fixed("analog output, double-precision", ("d", "value"), ("B", "control_status")),
    **_analog_events(42, "analog output event"),
    **_analog_commands(43, "analog output command event"),
    # Time and date.
    (50, 1): _fixed("time and date, absolute", _T),
    (50, 2): _fixed("time and date, absolute with interval", _T, ("I", "interval")),
    (50, 3): _fixed("time and date, absolute at last recorded time", _T),
    (50, 4): _fixed(
        "time and date, indexed absolute with long interval",
        _T,
        ("I", "interval_count"),
        ("B", "interval_units"),
    ),
    (51, 1): _fixed("common time of occurrence, synchronized", _T),
    (51, 2): _fixed("common time of occurrence, unsynchronized", _T),
    (52, 1): _fixed("time delay, coarse", ("H", "delay_secs")),
    (52, 2): _fixed("time delay, fine", ("H", "delay_ms")),
    # Class data: headers only.
    (60, 1): ObjectSpec("class 0 data", data=False),
    (60, 2): ObjectSpec("class 1 data", data=False),
    (60, 3): ObjectSpec("class 2 data", data=False),
    (60, 4): ObjectSpec("class 3 data", data=False),
    # File transfer.
    (70, 2): ObjectSpec(
        "file authentication", decode=_g70v2, measure=_g70v2_size, min_size=_G70V2.size
    ),
    (70, 3): ObjectSpec("file command", decode=_g70v3, measure=_g70v3_size, min_size=_G70V3.size),
    (70, 4): ObjectSpec(
        "file command status", decode=_g70v4, measure=_needs_prefix, min_size=_G70V4.size
    ),
    (70, 5): ObjectSpec("file transport", decode=_g70v5, measure=_needs_prefix, min_size=8),
    (70, 6): ObjectSpec(
        "file transport status", decode=_g70v6, measure=_needs_prefix, min_size=_G70V6.size
    ),
    (70, 7): ObjectSpec(
        "file descriptor", decode=_g70v7, measure=_g70v7_size, min_size=_G70V7.size
    ),
    (70, 8): ObjectSpec("file specification string", decode=_g70v8, measure=_needs_prefix),
    # Internal indications, written by a master to clear device_restart.
    (80, 1): _packed("internal indications, packed", 1),
    # Application identifier: names the application that initialize, start and stop
    # application requests act on.
    (90, 1): ObjectSpec("application identifier", decode=_g90v1, measure=_needs_prefix),
}
# Device attributes: every variation has the same layout, so shares one (frozen) spec.
_ATTRIBUTE = ObjectSpec("device attribute", decode=_attribute, measure=_attribute_size, min_size=2)
SPECS.update({(0, v): _ATTRIBUTE for v in range(1, 256)})
# Groups whose variation is the length of each point (1-255 octets).
OCTET_GROUPS = {
    110: "octet string",
    111: "octet string event",
    112: "virtual terminal output block",
    113: "virtual terminal event data",
}
SPECS.update({(g, v): _octets(name, v) for g, name in OCTET_GROUPS.items() for v in range(1, 256)})


# ---------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------


class Dnp3Object:
    """One object header and (lazily decoded) its points.

    ``start``/``stop`` are 0 unless the range field gives them; ``count`` is the number of
    points the header declares (0 for "all points", range code 6).
    """

    __slots__ = (
        "_begin",
        "_data",
        "_limit",
        "_points",
        "_spec",
        "count",
        "group",
        "qualifier",
        "start",
        "stop",
        "variation",
    )

    def __init__(self, group: int, variation: int, qualifier: int, data: bytes = b"") -> None:
        self.group = group
        self.variation = variation
        self.qualifier = qualifier
        self.start = 0
        self.stop = 0
        self.count = 0
        self._data = data  # the fragment the header is in
        self._begin = 0  # where the points' octets start in _data
        self._limit = 0  # how many points to decode (the MAX_POINTS budget)
        self._spec: ObjectSpec | None = None  # None: prefixes only, no values
        self._points: list[Point] | None = None

    @property
    def prefix_code(self) -> int:
        """Object prefix code, bits 4-6 of the qualifier."""
        return (self.qualifier >> 4) & 0x07

    @property
    def range_code(self) -> int:
        """Range specifier code, bits 0-3 of the qualifier."""
        return self.qualifier & 0x0F

    @property
    def gv(self) -> str:
        """``g12v1``-style name."""
        return f"g{self.group}v{self.variation}"

    @property
    def points(self) -> list[Point]:
        """Decoded points: ``prefix``, ``index`` (and ``size`` when size-prefixed), fields."""
        if self._points is None:
            self._points = self._decode()
        return self._points

    @property
    def indexes(self) -> list[int]:
        """Point indexes, from the prefixes or the range."""
        return [p["index"] for p in self.points]

    def eve(self) -> dict[str, Any]:
        """The object as Suricata's EVE ``dnp3`` records write it."""
        out: dict[str, Any] = {
            "group": self.group,
            "variation": self.variation,
            "qualifier": self.qualifier,
            "prefix_code": self.prefix_code,
            "range_code": self.range_code,
            "start": self.start,
            "stop": self.stop,
            "count": self.count,
        }
        points = self.points
        if points:
            out["points"] = points
        return out

    def _decode(self) -> list[Point]:
        spec, data, pos, limit = self._spec, self._data, self._begin, self._limit
        first = self.start
        points: list[Point] = []
        if limit == 0:  # no data, or a header whose walk failed
            return points
        if spec is not None and spec.bits:
            bits = spec.bits
            mask = (1 << bits) - 1
            per_octet = 8 // bits
            name = spec.field
            for i in range(limit):
                value = (data[pos + i // per_octet] >> (bits * (i % per_octet))) & mask
                points.append({"prefix": 0, "index": first + i, name: value})
            return points
        prefix_code = self.prefix_code
        psize = PREFIX_SIZES[prefix_code]
        reader = _UINT[psize] if psize else None
        sized = prefix_code >= SIZE_PREFIX_FIRST
        decode = spec.decode if spec is not None else None
        measure = spec.measure if spec is not None and not sized else None
        size = spec.size if spec is not None else 0
        # The walk at parse time checked that these octets are there.
        for i in range(limit):
            prefix = 0
            if reader is not None:
                prefix = reader.unpack_from(data, pos)[0]
                pos += psize
            point: Point = {"prefix": prefix, "index": first + i}
            if sized:
                point["size"] = size = prefix
            elif reader is not None:
                point["index"] = prefix
            if measure is not None:
                size = measure(data, pos, len(data))
            if decode is not None:
                point.update(decode(data, pos, size))
            pos += size
            points.append(point)
        return points


@dataclass(slots=True)
class ParsedObjects:
    """The outcome of :func:`parse_objects`."""

    objects: list[Dnp3Object]
    complete: bool  # every header parsed and every point sized, no limit reached
    points: int  # points the headers declare (sum of their counts)
    events: list[tuple[Dnp3Event, str]]


def parse_objects(data: bytes, pos: int, header_only: bool) -> ParsedObjects:
    """Walk the object headers of a fragment from ``pos``.

    ``header_only``: the function names points without their values (a read). Never raises:
    a problem ends the walk with an event in the result.
    """
    objects: list[Dnp3Object] = []
    events: list[tuple[Dnp3Event, str]] = []
    budget = MAX_POINTS
    declared = 0
    end = len(data)
    try:
        # Each pass consumes at least the 3-octet header: bounded by the data length.
        while pos < end:
            if len(objects) >= MAX_OBJECTS:
                raise _Stop(Dnp3Event.TOO_MANY_OBJECTS, f"more than {MAX_OBJECTS} objects")
            if end - pos < 3:
                raise _Stop(Dnp3Event.MALFORMED, f"{end - pos} octets left for an object header")
            group = data[pos]
            variation = data[pos + 1]
            obj = Dnp3Object(group, variation, data[pos + 2], data)
            objects.append(obj)
            pos = _parse_range(obj, data, pos + 3, end)
            obj._begin = pos
            count = obj.count
            if count == 0:
                continue
            declared += count
            if variation == 0:
                continue
            spec = SPECS.get((group, variation))
            # How many points have octets (prefixes or values) here. Limited before the walk,
            # so that a header declaring too many points is reported as such even when its
            # data is short as well.
            if (header_only and not obj.qualifier & 0x70) or (spec is not None and not spec.data):
                continue  # a read of a range or count, or class data: no octets per point
            wanted = count
            if count > budget:
                if budget >= 0:
                    events.append(
                        (Dnp3Event.TOO_MANY_POINTS, f"more than {MAX_POINTS} points in a fragment")
                    )
                wanted = max(budget, 0)
                budget = -1
            else:
                budget -= count
            pos = _walk_points(obj, spec, data, pos, end, header_only, events)
            obj._limit = wanted  # only once the walk found the octets
    except _Stop as stop:
        events.append((stop.event, stop.detail))
    return ParsedObjects(objects, not events, declared, events)


def _parse_range(obj: Dnp3Object, data: bytes, pos: int, end: int) -> int:
    """Read the range field; return the position after it."""
    entry = _QUALIFIERS.get(obj.qualifier)
    if entry is None:
        _bad_qualifier(obj)
    layout, is_range = entry
    if layout is None:
        return pos
    if end - pos < layout.size:
        raise _Stop(Dnp3Event.MALFORMED, f"range field of {obj.gv} truncated")
    if is_range:
        obj.start, obj.stop = start, stop = layout.unpack_from(data, pos)
        if stop < start:
            raise _Stop(Dnp3Event.MALFORMED, f"{obj.gv} range stop {stop} < {start}")
        obj.count = stop - start + 1
    else:
        obj.count = layout.unpack_from(data, pos)[0]
    return pos + layout.size


def _bad_qualifier(obj: Dnp3Object) -> NoReturn:
    qualifier = obj.qualifier
    if qualifier & 0x80 or obj.prefix_code == 7:
        raise _Stop(Dnp3Event.MALFORMED, f"reserved qualifier {qualifier:#04x} on {obj.gv}")
    if obj.range_code == RANGE_FREE_FORMAT:
        raise _Stop(Dnp3Event.MALFORMED, f"free-format qualifier {qualifier:#04x} without size")
    raise _Stop(Dnp3Event.MALFORMED, f"reserved range code {obj.range_code:#x} on {obj.gv}")


# Every valid qualifier: (struct of the range field or None, True when it is start/stop).
# Prefix codes 0-6 combine with every range code but the reserved ones (10, 12-15); the
# free-format range (11) needs a size prefix (4-6).
_QUALIFIERS: dict[int, tuple[struct.Struct | None, bool]] = {
    (prefix << 4) | code: entry
    for prefix in range(7)
    for code, entry in ((RANGE_NONE, (None, False)), *_RANGES.items())
    if code != RANGE_FREE_FORMAT or prefix >= SIZE_PREFIX_FIRST
}


def _walk_points(
    obj: Dnp3Object,
    spec: ObjectSpec | None,
    data: bytes,
    pos: int,
    end: int,
    header_only: bool,
    events: list[tuple[Dnp3Event, str]],
) -> int:
    """Check that the points' octets are there; return the position after them."""
    count = obj.count
    prefix_code = (obj.qualifier >> 4) & 0x07
    psize = PREFIX_SIZES[prefix_code]
    if prefix_code >= SIZE_PREFIX_FIRST:
        if spec is None:
            # The prefixes still size the points: record the event and go on.
            events.append((Dnp3Event.UNKNOWN_OBJECT, f"{obj.gv}, size-prefixed: skipped"))
        obj._spec = spec
        return _walk_sized(obj, spec, data, pos, end, psize)
    if header_only:
        pos += count * psize  # a read names points by index prefixes, without values
    elif spec is None:
        raise _Stop(Dnp3Event.UNKNOWN_OBJECT, f"{obj.gv} (qualifier {obj.qualifier:#04x})")
    else:
        obj._spec = spec
        if spec.bits:
            if psize:
                raise _Stop(Dnp3Event.MALFORMED, f"packed {obj.gv} with an index prefix")
            pos += -(-count * spec.bits // 8)
        elif spec.size:
            pos += count * (psize + spec.size)
        elif spec.measure is not None:
            pos = _walk_measured(obj, spec.measure, data, pos, end, psize)
    if pos > end:
        raise _Stop(Dnp3Event.MALFORMED, f"{obj.gv}: {count} points need {pos - end} more octets")
    return pos


def _walk_sized(
    obj: Dnp3Object, spec: ObjectSpec | None, data: bytes, pos: int, end: int, psize: int
) -> int:
    """Size-prefixed points: every point says its own length."""
    reader = _UINT[psize]
    smallest = (spec.size or spec.min_size) if spec is not None else 0
    # Each pass consumes the prefix at least: bounded by the data length.
    for _ in range(obj.count):
        if end - pos < psize:
            raise _Stop(Dnp3Event.MALFORMED, f"{obj.gv}: size prefix truncated")
        size = reader.unpack_from(data, pos)[0]
        if size < smallest:
            raise _Stop(Dnp3Event.MALFORMED, f"{obj.gv}: point of {size} octets too short")
        pos += psize + size
        if pos > end:
            raise _Stop(Dnp3Event.MALFORMED, f"{obj.gv}: point overruns the fragment")
    return pos


def _walk_measured(
    obj: Dnp3Object, measure: Measure, data: bytes, pos: int, end: int, psize: int
) -> int:
    """Variable-size points without a size prefix: size each from its content."""
    # Each pass consumes at least one octet: bounded by the data length.
    for _ in range(obj.count):
        pos += psize
        size = measure(data, pos, end)
        if size < 0:
            raise _Stop(Dnp3Event.MALFORMED, f"{obj.gv} needs a size prefix (qualifier 0x5b)")
        pos += size
        if pos > end:
            raise _Stop(Dnp3Event.MALFORMED, f"{obj.gv}: point overruns the fragment")
    return pos
