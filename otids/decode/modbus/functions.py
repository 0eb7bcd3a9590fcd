"""The function table: every function code (0-255) with its name, category and PDU parsers."""

from __future__ import annotations

from dataclasses import dataclass

from otids.decode.modbus import pdu
from otids.decode.modbus.codes import FunctionCode, category_of, function_name


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """What the dissector knows about one function code.

    ``access`` (``read``, ``write``, ``read_write``) and ``table`` (the data model table the
    function touches) feed the rule vocabulary; None for functions outside the data model.
    """

    code: int
    name: str
    category: str
    access: str | None
    table: str | None
    request: pdu.PduParser
    response: pdu.PduParser


F = FunctionCode
# code: (access, table, request parser, response parser)
_PUBLIC: dict[int, tuple[str | None, str | None, pdu.PduParser, pdu.PduParser]] = {
    F.READ_COILS: (
        "read",
        "coils",
        pdu.parse_read_bits_request,
        pdu.parse_read_bits_response,
    ),
    F.READ_DISCRETE_INPUTS: (
        "read",
        "discretes",
        pdu.parse_read_bits_request,
        pdu.parse_read_bits_response,
    ),
    F.READ_HOLDING_REGISTERS: (
        "read",
        "holding",
        pdu.parse_read_registers_request,
        pdu.parse_read_registers_response,
    ),
    F.READ_INPUT_REGISTERS: (
        "read",
        "input",
        pdu.parse_read_registers_request,
        pdu.parse_read_registers_response,
    ),
    F.WRITE_SINGLE_COIL: (
        "write",
        "coils",
        pdu.parse_single_write_request,
        pdu.parse_single_write_response,
    ),
    F.WRITE_SINGLE_REGISTER: (
        "write",
        "holding",
        pdu.parse_single_write_request,
        pdu.parse_single_write_response,
    ),
    F.READ_EXCEPTION_STATUS: (
        None,
        None,
        pdu.parse_empty_request,
        pdu.parse_exception_status_response,
    ),
    F.DIAGNOSTICS: (
        None,
        None,
        pdu.parse_diagnostics_request,
        pdu.parse_diagnostics_response,
    ),
    F.GET_COMM_EVENT_COUNTER: (
        None,
        None,
        pdu.parse_empty_request,
        pdu.parse_comm_event_counter_response,
    ),
    F.GET_COMM_EVENT_LOG: (
        None,
        None,
        pdu.parse_empty_request,
        pdu.parse_comm_event_log_response,
    ),
    F.WRITE_MULTIPLE_COILS: (
        "write",
        "coils",
        pdu.parse_write_coils_request,
        pdu.parse_multiple_write_response,
    ),
    F.WRITE_MULTIPLE_REGISTERS: (
        "write",
        "holding",
        pdu.parse_write_registers_request,
        pdu.parse_multiple_write_response,
    ),
    F.REPORT_SERVER_ID: (
        None,
        None,
        pdu.parse_empty_request,
        pdu.parse_report_server_id_response,
    ),
    F.READ_FILE_RECORD: (
        "read",
        "file",
        pdu.parse_read_file_request,
        pdu.parse_read_file_response,
    ),
    F.WRITE_FILE_RECORD: (
        "write",
        "file",
        pdu.parse_write_file_request,
        pdu.parse_write_file_response,
    ),
    F.MASK_WRITE_REGISTER: (
        "write",
        "holding",
        pdu.parse_mask_write_request,
        pdu.parse_mask_write_response,
    ),
    F.READ_WRITE_MULTIPLE_REGISTERS: (
        "read_write",
        "holding",
        pdu.parse_read_write_request,
        pdu.parse_read_registers_response,
    ),
    F.READ_FIFO_QUEUE: (
        "read",
        "fifo",
        pdu.parse_fifo_request,
        pdu.parse_fifo_response,
    ),
    # access becomes "read" for 43/14 (read device identification), decided per request.
    F.ENCAPSULATED_INTERFACE_TRANSPORT: (
        None,
        None,
        pdu.parse_mei_request,
        pdu.parse_mei_response,
    ),
}


def _info(code: int) -> FunctionInfo:
    """The table entry of one code; non-public codes keep their data raw."""
    name = function_name(code)
    category = category_of(code).value
    public = _PUBLIC.get(code)
    if public is None:
        return FunctionInfo(
            code, name, category, None, None, pdu.parse_raw_request, pdu.parse_raw_response
        )
    access, table, request, response = public
    return FunctionInfo(code, name, category, access, table, request, response)


# Indexed by the function code byte of a request, 0-255 (a list index is the cheapest
# lookup on the per-packet path). 0 and 128-255 are in the "invalid" category.
FUNCTIONS: tuple[FunctionInfo, ...] = tuple(_info(code) for code in range(256))
