"""The Modbus rule field vocabulary: name -> :class:`FieldSpec` over a ModbusTransaction.

Every ``get`` takes a :class:`~otids.decode.modbus.transaction.ModbusTransaction` and is a
plain attribute read (or nearly): rules evaluate them for every transaction.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from otids.decode.base import Direction, FieldSpec
from otids.decode.modbus.transaction import ModbusTransaction


def _device_id(tx: ModbusTransaction) -> dict[str, str] | None:
    objects = tx.objects
    if objects is None:
        return None
    return {obj["name"]: obj["value"] for obj in objects.values()}


def _is_exception(tx: ModbusTransaction) -> bool:
    return tx.exception_code is not None


def _unsolicited(tx: ModbusTransaction) -> bool:
    return tx.direction == Direction.TO_CLIENT


# name: (type, doc, getter)
_FIELDS: dict[str, tuple[str, str, Any]] = {
    "modbus.transaction_id": ("int", "MBAP transaction identifier", attrgetter("transaction_id")),
    "modbus.unit": ("int", "MBAP unit identifier (0-255)", attrgetter("unit_id")),
    "modbus.function": (
        "int",
        "function code, exception bit masked (1 read coils ... 43 MEI)",
        attrgetter("function_code"),
    ),
    "modbus.function_name": (
        "str",
        "function name: read_coils, diagnostics, reserved_90, unassigned_99...",
        attrgetter("function"),
    ),
    "modbus.category": (
        "str",
        "public, user_defined, reserved, unassigned or invalid",
        attrgetter("category"),
    ),
    "modbus.subfunction": ("int", "diagnostics (8) sub-function code", attrgetter("subfunction")),
    "modbus.subfunction_name": (
        "str",
        "diagnostics sub-function name: force_listen_only_mode, reserved_21...",
        attrgetter("subfunction_name"),
    ),
    "modbus.mei_type": (
        "int",
        "MEI type of function 43 (13 CANopen, 14 device id)",
        attrgetter("mei_type"),
    ),
    "modbus.access": (
        "str",
        "read, write or read_write for data-model functions, else absent",
        attrgetter("access"),
    ),
    "modbus.table": (
        "str",
        "table touched: coils, discretes, input, holding, file or fifo",
        attrgetter("table"),
    ),
    "modbus.address": (
        "int",
        "starting address (the read address for 23, FIFO pointer for 24)",
        attrgetter("address"),
    ),
    "modbus.quantity": (
        "int",
        "number of coils/registers (read part for 23)",
        attrgetter("quantity"),
    ),
    "modbus.write_address": ("int", "write starting address of 23", attrgetter("write_address")),
    "modbus.write_quantity": ("int", "registers written by 23", attrgetter("write_quantity")),
    "modbus.write_values": (
        "list[int]",
        "values written (coils 0/1, registers) by 5, 6, 15, 16, 23",
        attrgetter("write_values"),
    ),
    "modbus.read_values": (
        "list[int]",
        "values read (coils 0/1, registers) in the response",
        attrgetter("read_values"),
    ),
    "modbus.and_mask": ("int", "AND mask of mask write register (22)", attrgetter("and_mask")),
    "modbus.or_mask": ("int", "OR mask of mask write register (22)", attrgetter("or_mask")),
    "modbus.exception": ("int", "exception code of the response", attrgetter("exception_code")),
    "modbus.exception_name": (
        "str",
        "exception name: illegal_function, server_device_busy...",
        attrgetter("exception"),
    ),
    "modbus.is_exception": ("bool", "the response is an exception", _is_exception),
    "modbus.device_id": (
        "dict",
        "read device identification objects by name (VendorName, ProductCode...)",
        _device_id,
    ),
    "modbus.unanswered": ("bool", "done without any response", attrgetter("unanswered")),
    "modbus.unsolicited": ("bool", "a response without a matching request", _unsolicited),
}

FIELDS: dict[str, FieldSpec] = {
    name: FieldSpec(name, type_, doc, get) for name, (type_, doc, get) in _FIELDS.items()
}
