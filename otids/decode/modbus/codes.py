"""Modbus code points: function codes, their categories, sub-functions, MEI types, exceptions.

Numbers and names follow the Modbus Application Protocol Specification V1.1b3 (sections 5,
6 and 7, Annex A), spelled in snake_case.
"""

from __future__ import annotations

import enum


class FunctionCode(enum.IntEnum):
    """The public function codes the specification assigns (section 5.1, 6)."""

    READ_COILS = 1
    READ_DISCRETE_INPUTS = 2
    READ_HOLDING_REGISTERS = 3
    READ_INPUT_REGISTERS = 4
    WRITE_SINGLE_COIL = 5
    WRITE_SINGLE_REGISTER = 6
    READ_EXCEPTION_STATUS = 7
    DIAGNOSTICS = 8
    GET_COMM_EVENT_COUNTER = 11
    GET_COMM_EVENT_LOG = 12
    WRITE_MULTIPLE_COILS = 15
    WRITE_MULTIPLE_REGISTERS = 16
    REPORT_SERVER_ID = 17
    READ_FILE_RECORD = 20
    WRITE_FILE_RECORD = 21
    MASK_WRITE_REGISTER = 22
    READ_WRITE_MULTIPLE_REGISTERS = 23
    READ_FIFO_QUEUE = 24
    ENCAPSULATED_INTERFACE_TRANSPORT = 43


class DiagnosticSubFunction(enum.IntEnum):
    """Sub-function codes of function 8, diagnostics (section 6.8.1).

    Codes 5-9, 19 and 21-65535 are reserved (Annex A).
    """

    RETURN_QUERY_DATA = 0x00
    RESTART_COMMUNICATIONS_OPTION = 0x01
    RETURN_DIAGNOSTIC_REGISTER = 0x02
    CHANGE_ASCII_INPUT_DELIMITER = 0x03
    FORCE_LISTEN_ONLY_MODE = 0x04
    CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER = 0x0A
    RETURN_BUS_MESSAGE_COUNT = 0x0B
    RETURN_BUS_COMMUNICATION_ERROR_COUNT = 0x0C
    RETURN_BUS_EXCEPTION_ERROR_COUNT = 0x0D
    RETURN_SERVER_MESSAGE_COUNT = 0x0E
    RETURN_SERVER_NO_RESPONSE_COUNT = 0x0F
    RETURN_SERVER_NAK_COUNT = 0x10
    RETURN_SERVER_BUSY_COUNT = 0x11
    RETURN_BUS_CHARACTER_OVERRUN_COUNT = 0x12
    CLEAR_OVERRUN_COUNTER_AND_FLAG = 0x14


class MeiType(enum.IntEnum):
    """MEI types of function 43 (section 6.19-6.21); 0-12 and 15-255 are reserved."""

    CANOPEN_GENERAL_REFERENCE = 13
    READ_DEVICE_IDENTIFICATION = 14


class ReadDeviceIdCode(enum.IntEnum):
    """Access type of a read device identification request (section 6.21)."""

    BASIC = 1  # stream access to the basic objects
    REGULAR = 2  # stream access to the regular objects
    EXTENDED = 3  # stream access to the extended objects
    SPECIFIC = 4  # one specific object


class ExceptionCode(enum.IntEnum):
    """Exception codes a server returns with ``function | 0x80`` (section 7)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND = 0x0B


class Category(enum.StrEnum):
    """Where a function code sits in the code space (section 5, Annex A)."""

    PUBLIC = "public"  # assigned by the specification
    USER_DEFINED = "user_defined"  # 65-72 and 100-110, free for vendors
    RESERVED = "reserved"  # used by some vendors' legacy products (Annex A)
    UNASSIGNED = "unassigned"  # public range, not assigned yet
    INVALID = "invalid"  # 0, or 128-255 in a request (the exception bit)


# User-defined ranges (section 5, figure 10).
USER_DEFINED_CODES = frozenset(range(65, 73)) | frozenset(range(100, 111))
# Annex A. 90 is Schneider's UMAS in practice, 125-127 Modicon programming.
RESERVED_CODES = frozenset({9, 10, 13, 14, 41, 42, 90, 91, 125, 126, 127})

# Read device identification object ids 0-6 (section 6.21, table of objects); 7-0x7F are
# reserved, 0x80-0xFF private (device dependent).
DEVICE_OBJECT_NAMES = {
    0x00: "VendorName",
    0x01: "ProductCode",
    0x02: "MajorMinorRevision",
    0x03: "VendorUrl",
    0x04: "ProductName",
    0x05: "ModelName",
    0x06: "UserApplicationName",
}
PRIVATE_OBJECT_FIRST = 0x80

# Conformity levels of a read device identification response (section 6.21): basic, regular,
# extended; 0x8x adds "individual access supported".
CONFORMITY_LEVELS = frozenset({0x01, 0x02, 0x03, 0x81, 0x82, 0x83})


def category_of(code: int) -> Category:
    """The category of a request function code (0-255)."""
    if code in _PUBLIC_CODES:
        return Category.PUBLIC
    if code in USER_DEFINED_CODES:
        return Category.USER_DEFINED
    if code in RESERVED_CODES:
        return Category.RESERVED
    if 1 <= code <= 127:
        return Category.UNASSIGNED
    return Category.INVALID


def function_name(code: int) -> str:
    """snake_case name of a function code: ``read_coils``, ``reserved_90``, ``unassigned_99``."""
    if code in _PUBLIC_CODES:
        return FunctionCode(code).name.lower()
    return f"{category_of(code).value}_{code}"


def subfunction_name(code: int) -> str:
    """snake_case name of a diagnostics sub-function; ``reserved_<n>`` for unassigned ones."""
    if code in _SUBFUNCTION_CODES:
        return DiagnosticSubFunction(code).name.lower()
    return f"reserved_{code}"


def exception_name(code: int) -> str | None:
    """snake_case name of an exception code, None when the specification defines none."""
    if code in _EXCEPTION_CODES:
        return ExceptionCode(code).name.lower()
    return None


def device_object_name(object_id: int) -> str:
    """Name of a read device identification object (``VendorName``, ``private_128``...)."""
    name = DEVICE_OBJECT_NAMES.get(object_id)
    if name is not None:
        return name
    if object_id >= PRIVATE_OBJECT_FIRST:
        return f"private_{object_id}"
    return f"reserved_{object_id}"


_PUBLIC_CODES = frozenset(FunctionCode)
_SUBFUNCTION_CODES = frozenset(DiagnosticSubFunction)
_EXCEPTION_CODES = frozenset(ExceptionCode)
