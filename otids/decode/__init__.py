"""Sans-I/O protocol dissectors: bytes in, typed transactions and decoder events out.

Dissectors never alert, never print and never raise on bad bytes: short input waits for more,
malformed input becomes a named :class:`~otids.decode.base.DecoderEvent`.
"""
