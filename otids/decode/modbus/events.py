"""The decoder events the Modbus dissector raises, with one-line descriptions.

Names are stable: rules match on them. They follow Suricata's Modbus app-layer events where
one exists (``invalid_protocol_id``, ``flooded``...), prefixed with ``modbus.``.
"""

from __future__ import annotations

import enum


class ModbusEvent(enum.StrEnum):
    """Every event name the Modbus dissector (or the pipeline, on port 502) can raise."""

    INVALID_PROTOCOL_ID = "modbus.invalid_protocol_id"
    INVALID_LENGTH = "modbus.invalid_length"
    INVALID_FUNCTION_CODE = "modbus.invalid_function_code"
    INVALID_EXCEPTION_CODE = "modbus.invalid_exception_code"
    INVALID_VALUE = "modbus.invalid_value"
    VALUE_MISMATCH = "modbus.value_mismatch"
    UNSOLICITED_RESPONSE = "modbus.unsolicited_response"
    FLOODED = "modbus.flooded"
    NON_MODBUS_TRAFFIC = "modbus.non_modbus_traffic"
    GAP = "modbus.gap"


EVENTS: dict[str, str] = {
    ModbusEvent.INVALID_PROTOCOL_ID: "MBAP protocol identifier is not 0 (Modbus)",
    ModbusEvent.INVALID_LENGTH: (
        "MBAP length outside 2..254, or a PDU (or a count inside it) too short or too long "
        "for its function"
    ),
    ModbusEvent.INVALID_FUNCTION_CODE: "function code 0, or 128-255 in a request",
    ModbusEvent.INVALID_EXCEPTION_CODE: "exception response with a code the spec does not define",
    ModbusEvent.INVALID_VALUE: (
        "field value outside the range the spec allows (quantity, coil value, sub-function "
        "data, reference type...)"
    ),
    ModbusEvent.VALUE_MISMATCH: (
        "response does not fit its request (byte count for the quantity, echo differing)"
    ),
    ModbusEvent.UNSOLICITED_RESPONSE: "response with no pending request of that id/unit/function",
    ModbusEvent.FLOODED: "too many requests without a response; the oldest were given up",
    ModbusEvent.NON_MODBUS_TRAFFIC: "traffic on the Modbus port that is not Modbus",
    ModbusEvent.GAP: "bytes lost in the stream; the dissector resynchronises on the next header",
}
