"""Capture a real opendnp3 master and outstation on loopback: pcaps/dnp3-opendnp3.pcap.

The stacks are opendnp3's, through its Python binding ``dnp3-python`` (PyPI), whose working
wheels (0.3.0b2) exist for CPython 3.8-3.10 only. This script makes a virtualenv for it in
``scripts/pcaps/.venv310`` (git-ignored) from a Python 3.10 interpreter (``$PYTHON310``, else
pyenv's 3.10.13, else ``python3.10`` on PATH), then runs ``dnp3_opendnp3_stack.py`` there while
tcpdump captures ``tcp port 20000 and host 127.0.0.1`` on ``lo``. What the stacks do is
described in that script: integrity polls, unsolicited responses, event polls,
select/operate and direct operate. Nothing in it should raise an alert.

Usage: python scripts/pcaps/dnp3_opendnp3.py [--out pcaps/dnp3-opendnp3.pcap]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

from realstack import check_sessions, tcpdump

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parents[1] / "pcaps" / "dnp3-opendnp3.pcap"
VENV = HERE / ".venv310"
STACK = HERE / "dnp3_opendnp3_stack.py"
PACKAGE = "dnp3-python==0.3.0b2"
PYENV_PYTHON = Path("/root/.pyenv/versions/3.10.13/bin/python3.10")
DNP3_PORT = 20000
VENV_TIMEOUT = 600.0  # seconds to create the virtualenv and install the wheel
STACK_TIMEOUT = 120.0  # seconds for the stacks' session (it takes about 15)


def python310() -> str:
    """A working CPython 3.10 interpreter to build the virtualenv from."""
    check = "import sys; sys.exit(sys.version_info[:2] != (3, 10))"
    for candidate in (os.environ.get("PYTHON310"), PYENV_PYTHON, shutil.which("python3.10")):
        # A pyenv shim exists on PATH even when no 3.10 is selected: try each for real.
        if candidate and subprocess.run([str(candidate), "-c", check], capture_output=True,
                                        check=False).returncode == 0:  # fmt: skip
            return str(candidate)
    raise RuntimeError("no Python 3.10 found: set PYTHON310 to a python3.10 interpreter")


def ensure_venv() -> Path:
    """The virtualenv's interpreter, with dnp3-python installed (made on first use)."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import pydnp3"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    subprocess.run([python310(), "-m", "venv", str(VENV)], check=True, timeout=VENV_TIMEOUT)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PACKAGE],
        check=True,
        timeout=VENV_TIMEOUT,
    )
    subprocess.run(probe, check=True, timeout=VENV_TIMEOUT)
    return python


def main() -> None:
    """Parse the options, capture, check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pcap file to write")
    args = parser.parse_args()
    python = ensure_venv()
    with tcpdump(args.out, f"tcp port {DNP3_PORT} and host 127.0.0.1"):
        run = subprocess.run(
            [str(python), str(STACK)],
            capture_output=True,
            text=True,
            timeout=STACK_TIMEOUT,
            check=False,
        )
        if run.returncode != 0:  # raised inside: the capture is then not kept
            raise RuntimeError(
                f"the opendnp3 session failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
            )
    print("".join(line + "\n" for line in run.stdout.splitlines() if line.startswith("step:")))
    check_sessions(args.out, DNP3_PORT, 1)
    print(f"{args.out}: one opendnp3 master-outstation session")


if __name__ == "__main__":
    main()
