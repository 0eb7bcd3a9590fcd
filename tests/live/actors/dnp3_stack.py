"""A real opendnp3 outstation or master for the live-capture plant (Python 3.10 venv).

Usage: dnp3_stack.py outstation
       dnp3_stack.py master OUTSTATION_IP

The outstation (link address 10) listens on 0.0.0.0:20000, prints ``listening`` and serves
until killed. The master (link address 1) connects, runs an integrity poll, sends a cold
restart (function 13), and exits. Only opendnp3's built-in handlers are used: handlers
written in Python deadlock the binding's threads (see scripts/pcaps/dnp3_opendnp3_stack.py).
"""

from __future__ import annotations

import os
import sys
import time

from pydnp3 import asiodnp3, asiopal, opendnp3, openpal

PORT = 20000
MASTER_ADDRESS = 1
OUTSTATION_ADDRESS = 10
POINTS = 4  # of each kind the outstation has
CONNECT_WAIT = 3.0  # seconds for the connection and the master's start-up integrity poll
STEP_WAIT = 1.0  # seconds for one exchange across the plant (it takes milliseconds)
SERVE_LIMIT = 600.0  # seconds the outstation serves at most if nobody stops it


def outstation(manager: asiodnp3.DNP3Manager) -> None:
    """Serve the outstation until killed (or SERVE_LIMIT)."""
    sizes = opendnp3.DatabaseSizes(POINTS, 0, POINTS, POINTS, 0, POINTS, POINTS, 0)
    config = asiodnp3.OutstationStackConfig(sizes)
    config.outstation.eventBufferConfig = opendnp3.EventBufferConfig().AllTypes(sizes=10)
    config.link.LocalAddr = OUTSTATION_ADDRESS
    config.link.RemoteAddr = MASTER_ADDRESS
    config.link.KeepAliveTimeout = openpal.TimeDuration().Max()
    server = manager.AddTCPServer(
        "server", opendnp3.levels.NOTHING, asiopal.ChannelRetry().Default(), "0.0.0.0", PORT,
        asiodnp3.PrintingChannelListener().Create(),
    )  # fmt: skip
    stack = server.AddOutstation(
        "outstation",
        opendnp3.SuccessCommandHandler().Create(),
        opendnp3.DefaultOutstationApplication().Create(),
        config,
    )
    stack.Enable()
    print("\nlistening", flush=True)
    time.sleep(SERVE_LIMIT)


def master(manager: asiodnp3.DNP3Manager, host: str) -> None:
    """Connect, integrity poll, cold restart."""
    config = asiodnp3.MasterStackConfig()
    config.master.disableUnsolOnStartup = False
    config.master.unsolClassMask = opendnp3.ClassField()
    config.link.LocalAddr = MASTER_ADDRESS
    config.link.RemoteAddr = OUTSTATION_ADDRESS
    client = manager.AddTCPClient(
        "client", opendnp3.levels.NOTHING, asiopal.ChannelRetry().Default(), host, "0.0.0.0",
        PORT, asiodnp3.PrintingChannelListener().Create(),
    )  # fmt: skip
    stack = client.AddMaster(
        "master",
        asiodnp3.PrintingSOEHandler().Create(),
        asiodnp3.DefaultMasterApplication().Create(),
        config,
    )
    stack.Enable()
    time.sleep(CONNECT_WAIT)
    task = opendnp3.TaskConfig().Default()
    stack.PerformFunction("cold restart", opendnp3.FunctionCode.COLD_RESTART, [], task)
    time.sleep(STEP_WAIT)
    stack.Disable()
    client.Shutdown()
    time.sleep(STEP_WAIT)


def main() -> None:
    """Run the role given on the command line."""
    manager = asiodnp3.DNP3Manager(1, asiodnp3.ConsoleLogger().Create())
    if sys.argv[1] == "outstation":
        outstation(manager)
    else:
        master(manager, sys.argv[2])
    sys.stdout.flush()
    # DNP3Manager.Shutdown() hangs in this binding once channels are shut down.
    os._exit(0)


if __name__ == "__main__":
    main()
