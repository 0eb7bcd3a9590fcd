"""The ``otids`` command line: a thin click layer over :mod:`otids.pipeline`.

Exit codes: 0 success; 1 internal error; 2 bad input or usage (unreadable capture, bad rules,
bad options); 130 interrupted. Each command lives in its own module, imported when the
command runs (see :mod:`otids.cli.app`).
"""

from otids.cli.app import main

__all__ = ["main"]
