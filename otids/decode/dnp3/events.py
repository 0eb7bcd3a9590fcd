"""The decoder events the DNP3 dissector raises, with one-line descriptions.

Names are stable: rules match on them. They follow Suricata's DNP3 app-layer events where one
exists (``flooded``, ``len_too_small``, ``bad_link_crc``, ``bad_transport_crc``,
``unknown_object``, ``too_many_points``, ``too_many_objects``, ``too_long_reassembly``,
``malformed``), prefixed with ``dnp3.``.
"""

from __future__ import annotations

import enum


class Dnp3Event(enum.StrEnum):
    """Every event name the DNP3 dissector (or the pipeline, on port 20000) can raise."""

    FLOODED = "dnp3.flooded"
    LEN_TOO_SMALL = "dnp3.len_too_small"
    BAD_LINK_CRC = "dnp3.bad_link_crc"
    BAD_TRANSPORT_CRC = "dnp3.bad_transport_crc"
    RESERVED_ADDRESS = "dnp3.reserved_address"
    DROPPED_SEGMENT = "dnp3.dropped_segment"
    TOO_LONG_REASSEMBLY = "dnp3.too_long_reassembly"
    UNKNOWN_OBJECT = "dnp3.unknown_object"
    TOO_MANY_OBJECTS = "dnp3.too_many_objects"
    TOO_MANY_POINTS = "dnp3.too_many_points"
    MALFORMED = "dnp3.malformed"
    RESERVED_FUNCTION = "dnp3.reserved_function"
    NON_DNP3_TRAFFIC = "dnp3.non_dnp3_traffic"
    GAP = "dnp3.gap"


EVENTS: dict[str, str] = {
    Dnp3Event.FLOODED: "too many requests without a response; the oldest were given up",
    Dnp3Event.LEN_TOO_SMALL: (
        "link length below 5, or a frame or fragment too short for its transport or "
        "application header"
    ),
    Dnp3Event.BAD_LINK_CRC: "link header CRC does not match; resynchronised on the next frame",
    Dnp3Event.BAD_TRANSPORT_CRC: "CRC of a link data block does not match; frame dropped",
    Dnp3Event.RESERVED_ADDRESS: "link address in the reserved range 0xFFF0-0xFFFB (or a "
    "broadcast or reserved source address)",
    Dnp3Event.DROPPED_SEGMENT: (
        "transport segment out of sequence, or not first while no fragment was in progress; "
        "the partial fragment was discarded"
    ),
    Dnp3Event.TOO_LONG_REASSEMBLY: "reassembled application fragment longer than the bound",
    Dnp3Event.UNKNOWN_OBJECT: (
        "object group/variation the dissector cannot size; the rest of the fragment is skipped"
    ),
    Dnp3Event.TOO_MANY_OBJECTS: "more object headers in one fragment than the bound",
    Dnp3Event.TOO_MANY_POINTS: "more points in one fragment than the bound; points not decoded",
    Dnp3Event.MALFORMED: (
        "invalid qualifier, range stop below start, or object data shorter than declared"
    ),
    Dnp3Event.RESERVED_FUNCTION: "application function code the standard reserves",
    Dnp3Event.NON_DNP3_TRAFFIC: (
        "bytes that are not DNP3 link frames (on the DNP3 port, or between frames)"
    ),
    Dnp3Event.GAP: "bytes lost in the stream; the dissector resynchronises on the next frame",
}
