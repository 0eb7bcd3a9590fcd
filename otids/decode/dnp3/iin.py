"""Internal indications: the two octets after a response's function code.

IEEE 1815-2012, 4.2.2.7. As a 16-bit number (how Suricata's ``dnp3.ind`` and Zeek's ``iin``
write it) IIN1 is the high octet::

    IIN1  bit 0 all_stations          IIN2  bit 0 no_func_code_support
          bit 1 class_1_events              bit 1 object_unknown
          bit 2 class_2_events              bit 2 parameter_error
          bit 3 class_3_events              bit 3 event_buffer_overflow
          bit 4 need_time                   bit 4 already_executing
          bit 5 local_control               bit 5 config_corrupt
          bit 6 device_trouble              bit 6 reserved_2
          bit 7 device_restart              bit 7 reserved_1
"""

from __future__ import annotations

import enum


class Iin(enum.IntFlag):
    """IIN bits as a 16-bit value, IIN1 in the high octet."""

    ALL_STATIONS = 0x0100
    CLASS_1_EVENTS = 0x0200
    CLASS_2_EVENTS = 0x0400
    CLASS_3_EVENTS = 0x0800
    NEED_TIME = 0x1000
    LOCAL_CONTROL = 0x2000
    DEVICE_TROUBLE = 0x4000
    DEVICE_RESTART = 0x8000
    NO_FUNC_CODE_SUPPORT = 0x0001
    OBJECT_UNKNOWN = 0x0002
    PARAMETER_ERROR = 0x0004
    EVENT_BUFFER_OVERFLOW = 0x0008
    ALREADY_EXECUTING = 0x0010
    CONFIG_CORRUPT = 0x0020
    RESERVED_2 = 0x0040
    RESERVED_1 = 0x0080


REQUEST_ERRORS = Iin.NO_FUNC_CODE_SUPPORT | Iin.OBJECT_UNKNOWN | Iin.PARAMETER_ERROR
"""The IIN2 bits by which an outstation rejects a request (IEEE 1815-2012, 4.2.2.7.2)."""

# In the order Suricata lists indicators: IIN1 bit 0 to 7, then IIN2 bit 0 to 7.
_ORDER = tuple((flag.value, flag.name.lower()) for flag in Iin if flag.name is not None)
# Names for every value of each octet, so that a lookup replaces a loop over 16 bits.
_HIGH = tuple(tuple(name for bit, name in _ORDER if bit & (v << 8)) for v in range(256))
_LOW = tuple(tuple(name for bit, name in _ORDER if bit & v) for v in range(256))


def iin_names(iin: int) -> list[str]:
    """Names of the indications set in a 16-bit IIN value, IIN1 first."""
    return [*_HIGH[(iin >> 8) & 0xFF], *_LOW[iin & 0xFF]]
