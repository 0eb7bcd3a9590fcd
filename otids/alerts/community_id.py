"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

The Community ID names a flow the same way in every tool that implements it (Zeek,
Suricata, Elastic, Arkime...), so an analyst can pivot from an otids alert to the same
conversation elsewhere. Only TCP and UDP flows exist in otids, so only the port form is
implemented (ICMP's type/code mapping is not needed).

The hashed buffer, in network byte order, with the endpoints ordered so both directions
give the same id (the smaller ``(address, port)`` first)::

    +--------+-----------------+-----------------+-------+-----+-------+-------+
    | seed   | lower address   | higher address  | proto | pad | lower | higher|
    | 2 B    | 4 or 16 B       | 4 or 16 B       | 1 B   | 1 B | port  | port  |
    +--------+-----------------+-----------------+-------+-----+-------+-------+

The id is ``"1:" + base64(sha1(buffer))``.
"""

from __future__ import annotations

import base64
import hashlib
import struct

VERSION_PREFIX = "1:"
_SEED = struct.Struct("!H")
_TAIL = struct.Struct("!BxHH")  # proto, one pad byte, the two ports


def community_id(src: bytes, dst: bytes, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """The Community ID v1 of a TCP/UDP flow; addresses are raw 4- or 16-byte values.

    Either orientation of the flow gives the same id.
    """
    if (src, sport) > (dst, dport):
        src, dst, sport, dport = dst, src, dport, sport
    digest = hashlib.sha1(
        _SEED.pack(seed & 0xFFFF) + src + dst + _TAIL.pack(proto, sport, dport),
        usedforsecurity=False,
    ).digest()
    return VERSION_PREFIX + base64.b64encode(digest).decode("ascii")
