"""Address and port groups of a signature header, with site variables.

Addresses: ``any``, an address, a CIDR block, ``$VAR``, ``!x`` and ``[a, b, !c]`` (nested).
Ports: ``any``, ``502``, ``1024:``, ``:1023``, ``1:100``, ``$VAR``, ``!x``, ``[a, b]``.
A group matches when one of its positive members does (or it has none) and none of its
negated members does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_VAR_DEPTH = 8  # variables naming variables: deeper than this is a loop
ADDRESS_MEMO_MAX = 4096  # addresses whose verdict a group remembers; a sweep resets it

DEFAULT_VARIABLES: dict[str, list[Any]] = {
    # Suricata's suricata.yaml names the site's networks; without a site file every
    # address is "home", so that the ICS server/client variables (which default to
    # $HOME_NET, as in suricata.yaml) match any address.
    "HOME_NET": ["any"],
    "EXTERNAL_NET": ["any"],
    "MODBUS_CLIENT": ["$HOME_NET"],
    "MODBUS_SERVER": ["$HOME_NET"],
    "DNP3_CLIENT": ["$HOME_NET"],
    "DNP3_SERVER": ["$HOME_NET"],
    "ENIP_CLIENT": ["$HOME_NET"],
    "ENIP_SERVER": ["$HOME_NET"],
    "MODBUS_PORTS": [502],
    "DNP3_PORTS": [20000],
    "HTTP_PORTS": [80],
    "SHELLCODE_PORTS": ["!80"],
    "ORACLE_PORTS": [1521],
    "SSH_PORTS": [22],
    "FILE_DATA_PORTS": ["$HTTP_PORTS", 110, 143],
    "FTP_PORTS": [21],
    "GENEVE_PORTS": [6081],
    "VXLAN_PORTS": [4789],
    "TEREDO_PORTS": [3544],
}
"""Variables a signature may use without a site variables file (``--vars``)."""


class GroupError(ValueError):
    """An address or port group that cannot be parsed."""


def site_variables(variables: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The site's variables over :data:`DEFAULT_VARIABLES`. A site that names its
    ``HOME_NET`` but not ``EXTERNAL_NET`` gets ``!$HOME_NET`` for it, as in suricata.yaml."""
    merged = {**DEFAULT_VARIABLES, **variables}
    if "HOME_NET" in variables and "EXTERNAL_NET" not in variables:
        merged["EXTERNAL_NET"] = ["!$HOME_NET"]
    return merged


def _split_list(text: str) -> list[str]:
    """``a, [b, c], !d`` -> ``["a", "[b, c]", "!d"]`` (commas inside brackets kept)."""
    parts: list[str] = []
    depth = 0
    word: list[str] = []
    for ch in text:  # a group is a few dozen characters
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(word).strip())
            word = []
            continue
        word.append(ch)
    parts.append("".join(word).strip())
    return [p for p in parts if p]


def _expand(
    text: str,
    variables: dict[str, list[Any]],
    missing: set[str],
    negated: bool,
    depth: int,
    leaf: Callable[[str, bool], None],
) -> None:
    """Walk a group, calling ``leaf(item, negated)`` for each plain member."""
    if depth > MAX_VAR_DEPTH:
        raise GroupError(f"variables nested deeper than {MAX_VAR_DEPTH} (a loop?)")
    text = text.strip()
    while text.startswith("!"):
        negated = not negated
        text = text[1:].strip()
    if text.startswith("[") and text.endswith("]"):
        for part in _split_list(text[1:-1]):
            _expand(part, variables, missing, negated, depth + 1, leaf)
        return
    if text.startswith("$"):
        name = text[1:]
        if name not in variables:
            missing.add(name)
            return
        for value in variables[name]:
            _expand(str(value), variables, missing, negated, depth + 1, leaf)
        return
    if not text:
        raise GroupError("empty group member")
    leaf(text, negated)


class AddressGroup:
    """A compiled address group; :meth:`match` takes an address string or raw bytes."""

    __slots__ = ("_memo", "any", "negative", "positive")

    def __init__(self, text: str, variables: dict[str, list[Any]], missing: set[str]) -> None:
        self.positive: list[Network] = []
        self.negative: list[Network] = []
        self.any = False  # a positive "any": every address is a positive member
        none = [False]  # a negated "any": nothing matches

        def leaf(item: str, negated: bool) -> None:
            if item.lower() == "any":
                if negated:
                    none[0] = True
                else:
                    self.any = True
                return
            try:
                net = ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise GroupError(f"not an address or CIDR block: {item!r}") from exc
            (self.negative if negated else self.positive).append(net)

        _expand(text, variables, missing, False, 0, leaf)
        if none[0]:
            self.any, self.positive, self.negative = False, [], [ipaddress.ip_network("0.0.0.0/0")]
            self.negative.append(ipaddress.ip_network("::/0"))
        self._memo: dict[Any, bool] = {}

    @property
    def matches_all(self) -> bool:
        """True when the group is ``any`` (no test needed)."""
        return (self.any or not self.positive) and not self.negative

    def predicate(self) -> Callable[[str | bytes], bool] | None:
        """:meth:`match`, or None when the group matches every address."""
        return None if self.matches_all else self.match

    def match(self, addr: str | bytes) -> bool:
        """Does the address (text, or 4/16 raw bytes) belong to the group?"""
        verdict = self._memo.get(addr)
        if verdict is None:
            if len(self._memo) >= ADDRESS_MEMO_MAX:
                self._memo.clear()
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                return False
            positive = self.any or not self.positive or any(ip in n for n in self.positive)
            verdict = self._memo[addr] = positive and not any(ip in n for n in self.negative)
        return verdict


class PortGroup:
    """A compiled port group; :meth:`match` takes a port number."""

    __slots__ = ("any", "negative", "positive")

    def __init__(self, text: str, variables: dict[str, list[Any]], missing: set[str]) -> None:
        self.positive: list[tuple[int, int]] = []
        self.negative: list[tuple[int, int]] = []
        self.any = False

        def leaf(item: str, negated: bool) -> None:
            if item.lower() == "any":
                if negated:
                    self.negative.append((0, 65535))
                else:
                    self.any = True
                return
            lo_s, sep, hi_s = item.partition(":")
            try:
                lo = int(lo_s) if lo_s.strip() else 0
                hi = (int(hi_s) if hi_s.strip() else 65535) if sep else lo
            except ValueError as exc:
                raise GroupError(f"not a port or port range: {item!r}") from exc
            if not 0 <= lo <= hi <= 65535:
                raise GroupError(f"bad port range {item!r}")
            (self.negative if negated else self.positive).append((lo, hi))

        _expand(text, variables, missing, False, 0, leaf)

    @property
    def matches_all(self) -> bool:
        """True when the group is ``any``."""
        return (self.any or not self.positive) and not self.negative

    def ports(self) -> frozenset[int] | None:
        """The ports the group names, when it is a short positive list (None otherwise)."""
        if self.any or self.negative or not self.positive:
            return None
        if sum(hi - lo + 1 for lo, hi in self.positive) > 1024:
            return None
        return frozenset(p for lo, hi in self.positive for p in range(lo, hi + 1))

    def predicate(self) -> Callable[[int], bool] | None:
        """A test of a port, None when the group matches every port: a set lookup when the
        group is a list of ports."""
        if self.matches_all:
            return None
        ports = self.ports()
        return ports.__contains__ if ports is not None else self.match

    def match(self, port: int) -> bool:
        """Does ``port`` belong to the group?"""
        positive = (
            self.any or not self.positive or any(lo <= port <= hi for lo, hi in self.positive)
        )
        return positive and not any(lo <= port <= hi for lo, hi in self.negative)
