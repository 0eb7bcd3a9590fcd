"""DNP3 application function codes (IEEE 1815-2012, table 4-1), named as Suricata names them.

Codes 0x00-0x21 are requests a master sends, 0x81-0x83 responses an outstation sends; every
other code is reserved.
"""

from __future__ import annotations

import enum


class FunctionCode(enum.IntEnum):
    """Application layer function codes."""

    CONFIRM = 0x00
    READ = 0x01
    WRITE = 0x02
    SELECT = 0x03
    OPERATE = 0x04
    DIRECT_OPERATE = 0x05
    DIRECT_OPERATE_NR = 0x06
    IMMED_FREEZE = 0x07
    IMMED_FREEZE_NR = 0x08
    FREEZE_CLEAR = 0x09
    FREEZE_CLEAR_NR = 0x0A
    FREEZE_AT_TIME = 0x0B
    FREEZE_AT_TIME_NR = 0x0C
    COLD_RESTART = 0x0D
    WARM_RESTART = 0x0E
    INITIALIZE_DATA = 0x0F
    INITIALIZE_APPL = 0x10
    START_APPL = 0x11
    STOP_APPL = 0x12
    SAVE_CONFIG = 0x13
    ENABLE_UNSOLICITED = 0x14
    DISABLE_UNSOLICITED = 0x15
    ASSIGN_CLASS = 0x16
    DELAY_MEASURE = 0x17
    RECORD_CURRENT_TIME = 0x18
    OPEN_FILE = 0x19
    CLOSE_FILE = 0x1A
    DELETE_FILE = 0x1B
    GET_FILE_INFO = 0x1C
    AUTHENTICATE_FILE = 0x1D
    ABORT_FILE = 0x1E
    ACTIVATE_CONFIG = 0x1F
    AUTHENTICATE_REQ = 0x20
    AUTHENTICATE_ERR = 0x21  # "authentication request, no acknowledgement" in SAv5
    RESPONSE = 0x81
    UNSOLICITED_RESPONSE = 0x82
    AUTHENTICATE_RESP = 0x83


class Category(enum.StrEnum):
    """Where a function code sits in the code space."""

    REQUEST = "request"
    RESPONSE = "response"
    RESERVED = "reserved"


REQUEST_CODES = frozenset(range(FunctionCode.CONFIRM, FunctionCode.AUTHENTICATE_ERR + 1))
"""Function codes a master sends (0x00-0x21)."""

RESPONSE_CODES = frozenset(
    {FunctionCode.RESPONSE, FunctionCode.UNSOLICITED_RESPONSE, FunctionCode.AUTHENTICATE_RESP}
)
"""Function codes of messages with the response header (which carries the IIN)."""

NO_RESPONSE_CODES = frozenset(
    {
        FunctionCode.CONFIRM,
        FunctionCode.DIRECT_OPERATE_NR,
        FunctionCode.IMMED_FREEZE_NR,
        FunctionCode.FREEZE_CLEAR_NR,
        FunctionCode.FREEZE_AT_TIME_NR,
        FunctionCode.AUTHENTICATE_ERR,
    }
)
"""Requests an outstation does not answer (the ``_nr`` codes and confirm)."""

HEADER_ONLY_CODES = frozenset(
    {
        FunctionCode.READ,
        FunctionCode.IMMED_FREEZE,
        FunctionCode.IMMED_FREEZE_NR,
        FunctionCode.FREEZE_CLEAR,
        FunctionCode.FREEZE_CLEAR_NR,
        FunctionCode.ENABLE_UNSOLICITED,
        FunctionCode.DISABLE_UNSOLICITED,
        FunctionCode.ASSIGN_CLASS,
    }
)
"""Requests whose object headers name points without carrying their values (IEEE 1815-2012,
4.4): only size-prefixed objects (the file handle and block of a file read) carry data.
Freeze-at-time is not one: its time object (g50v2) carries data, and the counter headers after
it use variation 0, which never does."""

_NAMES = {code.value: code.name.lower() for code in FunctionCode}


def category_of(code: int) -> Category:
    """Request, response or reserved."""
    if code in RESPONSE_CODES:
        return Category.RESPONSE
    if code in REQUEST_CODES:
        return Category.REQUEST
    return Category.RESERVED


def function_name(code: int) -> str:
    """snake_case name of a function code (``direct_operate``), ``reserved_<n>`` otherwise."""
    name = _NAMES.get(code)
    return name if name is not None else f"reserved_{code}"
