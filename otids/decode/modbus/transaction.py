"""One Modbus request/response pair and its JSON (EVE) form."""

from __future__ import annotations

from typing import Any, ClassVar

from otids.decode.base import Direction, Transaction

# Where eve() writes each attribute: attribute -> (section, JSON key); section 0 is the top
# level, 1 "request", 2 "response". Raw byte fields are written as hex strings, apart.
_TOP, _REQUEST, _RESPONSE = 0, 1, 2
_LABELS: dict[str, str] = {}  # function name -> "3 read_holding_registers", built once each
# Attribute names a transaction set, in order -> (attribute, section, JSON key) of those eve()
# writes. Few distinct lists exist (one per way of parsing a function); bounded all the same.
_PLANS: dict[tuple[str, ...], tuple[tuple[str, int, str], ...]] = {}
_PLANS_MAX = 1024
_EVE_KEYS: dict[str, tuple[int, str]] = {
    **{
        k: (_TOP, k)
        for k in (
            "transaction_id",
            "unit_id",
            "function_code",
            "function",
            "category",
            "subfunction",
            "subfunction_name",
            "mei_type",
            "address",
            "quantity",
        )
    },
    "request_values": (_REQUEST, "values"),
    "write_address": (_REQUEST, "write_address"),
    "write_quantity": (_REQUEST, "write_quantity"),
    "and_mask": (_REQUEST, "and_mask"),
    "or_mask": (_REQUEST, "or_mask"),
    "read_device_id_code": (_REQUEST, "read_device_id_code"),
    "object_id": (_REQUEST, "object_id"),
    "request_file_records": (_REQUEST, "file_records"),
    "exception_code": (_RESPONSE, "exception_code"),
    "exception": (_RESPONSE, "exception"),
    "response_values": (_RESPONSE, "values"),
    "exception_status": (_RESPONSE, "exception_status"),
    "status": (_RESPONSE, "status"),
    "event_count": (_RESPONSE, "event_count"),
    "message_count": (_RESPONSE, "message_count"),
    "comm_events": (_RESPONSE, "events"),
    "conformity_level": (_RESPONSE, "conformity_level"),
    "more_follows": (_RESPONSE, "more_follows"),
    "next_object_id": (_RESPONSE, "next_object_id"),
    "response_file_records": (_RESPONSE, "file_records"),
}


class ModbusTransaction(Transaction):
    """A Modbus request and its response (or a response alone, when unsolicited).

    Every attribute below is None when the message did not carry it. The class has no
    ``__slots__`` of its own on purpose: the defaults live on the class, so building a
    transaction sets only the handful of fields its function uses (the per-packet cost).

    Identification: ``transaction_id``, ``unit_id`` (MBAP), ``function_code`` (int, without
    the exception bit), ``function`` (``read_holding_registers``, ``unassigned_99``...),
    ``category`` (``public``, ``user_defined``, ``reserved``, ``unassigned``, ``invalid``),
    ``access`` (``read``/``write``/``read_write``) and ``table`` (``coils``, ``discretes``,
    ``input``, ``holding``, ``file``, ``fifo``) for rules.

    Common fields: ``subfunction``/``subfunction_name`` (diagnostics), ``mei_type`` (43),
    ``address`` and ``quantity`` (the read range for function 23), ``request_values``
    (values written: coil bits 0/1 or register ints), ``response_values`` (values read, bits
    trimmed to the requested quantity, or the echoed value of 5 and 6), ``exception_code``
    and ``exception`` (its name), ``request_ts``/``response_ts``, ``request_data``/
    ``response_data`` (raw bytes after the function code, or after the sub-function / MEI
    type, for non-public functions, diagnostics and CANopen).

    Function-specific: ``and_mask``/``or_mask`` (22), ``write_address``/``write_quantity``
    (23, whose write values are ``request_values``), ``request_file_records`` (20, 21: dicts
    with ``reference_type``, ``file_number``, ``record_number``, ``record_length`` and for 21
    ``record_data``), ``response_file_records`` (20: dicts with ``reference_type`` and
    ``record_data``), ``read_device_id_code``, ``object_id``, ``conformity_level``,
    ``more_follows``, ``next_object_id``, ``objects`` ({object id: {"name", "value"}}) (43/14),
    ``server_id`` (17, raw), ``exception_status`` (7), ``status``, ``event_count``,
    ``message_count``, ``comm_events`` (11, 12).
    """

    protocol: ClassVar[str] = "modbus"

    transaction_id: int
    unit_id: int
    function_code: int
    function: str
    category: str
    access: str | None = None
    table: str | None = None
    subfunction: int | None = None
    subfunction_name: str | None = None
    mei_type: int | None = None
    address: int | None = None
    quantity: int | None = None
    request_values: list[int] | None = None
    response_values: list[int] | None = None
    exception_code: int | None = None
    exception: str | None = None
    request_ts: float | None = None
    response_ts: float | None = None
    request_data: bytes | None = None
    response_data: bytes | None = None
    # The PDUs as received (function code first), for Suricata content rules: the slices
    # the framer already made, kept by reference.
    request_pdu: bytes | None = None
    response_pdu: bytes | None = None
    and_mask: int | None = None
    or_mask: int | None = None
    write_address: int | None = None
    write_quantity: int | None = None
    request_file_records: list[dict[str, Any]] | None = None
    response_file_records: list[dict[str, Any]] | None = None
    read_device_id_code: int | None = None
    object_id: int | None = None
    conformity_level: int | None = None
    more_follows: int | None = None
    next_object_id: int | None = None
    objects: dict[int, dict[str, str]] | None = None
    server_id: bytes | None = None
    exception_status: int | None = None
    status: int | None = None
    event_count: int | None = None
    message_count: int | None = None
    comm_events: list[int] | None = None

    def __init__(
        self,
        tx_id: int,
        ts: float,
        direction: Direction,
        transaction_id: int,
        unit_id: int,
        function_code: int,
        function: str,
        category: str,
    ) -> None:
        # Transaction.__init__ written out: one transaction per request, and the call costs
        # as much as the assignments (keep in step with the base class).
        self.tx_id = tx_id
        self.ts = ts
        self.direction = direction
        self.done = False
        self.events: list[str] = []
        self.alerted: set[int] = set()
        self.transaction_id = transaction_id
        self.unit_id = unit_id
        self.function_code = function_code
        self.function = function
        self.category = category

    @property
    def write_values(self) -> list[int] | None:
        """Values the request writes (functions 5, 6, 15, 16, 23), else None."""
        return self.request_values if self.access in _WRITING else None

    @property
    def read_values(self) -> list[int] | None:
        """Values the response returns from the server's tables, else None."""
        return self.response_values if self.access in _READING else None

    @property
    def unanswered(self) -> bool:
        """True once the transaction is done with a request but no response."""
        return self.done and self.response_ts is None

    def summary(self) -> tuple[str, str | None]:
        """``("3 read_holding_registers", None)`` or, after an exception response,
        ``("3 read_holding_registers", "illegal_data_address")`` (``exception_<code>`` for a
        code the spec does not define)."""
        label = _LABELS.get(self.function)
        if label is None:
            label = _LABELS[self.function] = f"{self.function_code} {self.function}"
        code = self.exception_code
        if code is None:
            return label, None
        return label, self.exception or f"exception_{code}"

    def eve(self) -> dict[str, Any]:
        """The ``modbus`` object of the JSON log. Keys whose value is None are left out::

            {"transaction_id": 5, "unit_id": 1, "function_code": 3,
             "function": "read_holding_registers", "category": "public",
             "address": 0, "quantity": 2,            # also subfunction, subfunction_name,
                                                     # mei_type when present
             "request": {...},                       # values, data (hex), write_address,
                                                     # write_quantity, and_mask, or_mask,
                                                     # read_device_id_code, object_id,
                                                     # file_records
             "response": {"values": [10, 20]}}       # exception_code, exception, values,
                                                     # data (hex), server_id (hex),
                                                     # exception_status, status, event_count,
                                                     # message_count, events,
                                                     # conformity_level, more_follows,
                                                     # next_object_id, objects (list of
                                                     # {id, name, value}), file_records

        ``request`` is absent for an unsolicited response, ``response`` when none came.
        """
        out: dict[str, Any] = {}
        request: dict[str, Any] = {}
        response: dict[str, Any] = {}
        sections = (out, request, response)
        # One pass over the attributes this transaction set (defaults live on the class), in
        # the order it set them: the logged ones of each such list are looked up once.
        attributes = self.__dict__
        names = tuple(attributes)
        plan = _PLANS.get(names)
        if plan is None:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.clear()
            plan = _PLANS[names] = tuple(
                (name, *_EVE_KEYS[name]) for name in names if name in _EVE_KEYS
            )
        for attribute, section, key in plan:
            value = attributes[attribute]
            if value is not None:
                sections[section][key] = value
        if self.request_ts is not None:
            if self.request_data is not None:
                request["data"] = self.request_data.hex()
            out["request"] = request
        if self.response_ts is not None:
            if self.response_data is not None:
                response["data"] = self.response_data.hex()
            if self.server_id is not None:
                response["server_id"] = self.server_id.hex()
            if self.objects is not None:
                response["objects"] = [
                    {"id": object_id, **obj} for object_id, obj in self.objects.items()
                ]
            out["response"] = response
        return out

    def __repr__(self) -> str:
        return (
            f"ModbusTransaction(tx_id={self.tx_id} tid={self.transaction_id} "
            f"unit={self.unit_id} function={self.function} done={self.done} "
            f"events={self.events})"
        )


_WRITING = frozenset({"write", "read_write"})
_READING = frozenset({"read", "read_write"})
