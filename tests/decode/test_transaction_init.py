"""The protocol transactions write out the base constructor: they must set what it sets."""

from __future__ import annotations

import pytest

from otids.decode.base import Direction, Transaction
from otids.decode.dnp3.transaction import Dnp3Transaction
from otids.decode.modbus.transaction import ModbusTransaction


@pytest.mark.parametrize(
    "tx",
    [
        ModbusTransaction(3, 1.5, Direction.TO_CLIENT, 7, 1, 3, "read_holding_registers", "public"),
        Dnp3Transaction(3, 1.5, Direction.TO_CLIENT),
    ],
)
def test_base_fields_as_the_base_constructor_sets_them(tx: Transaction) -> None:
    base = Transaction(3, 1.5, Direction.TO_CLIENT)
    for name in Transaction.__slots__:
        assert getattr(tx, name) == getattr(base, name), name
    assert tx.events is not base.events and tx.alerted is not base.alerted
