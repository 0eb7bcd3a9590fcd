"""Test support: values of EVE records at suricata-verify style paths."""

from __future__ import annotations

import re
from typing import Any

_PART = re.compile(r"[^.\[\]]+|\[\d+\]")


def resolve(record: Any, path: str) -> Any:
    """The value at a suricata-verify path such as ``dnp3.application.objects[0].group``;
    a :class:`KeyError` instance (equal to nothing) when absent."""
    for part in _PART.findall(path):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(record, list) or index >= len(record):
                return KeyError(path)
            record = record[index]
        elif isinstance(record, dict) and part in record:
            record = record[part]
        else:
            return KeyError(path)
    return record
