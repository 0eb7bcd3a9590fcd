"""Run a real opendnp3 master and outstation against each other on 127.0.0.1:20000.

Runs under the CPython 3.8-3.10 of ``scripts/pcaps/.venv310`` (the only ones with working
``dnp3-python`` wheels); ``dnp3_opendnp3.py`` starts it while tcpdump captures. Both stacks
are opendnp3's C++, with only its built-in handlers (a success-for-every-command handler, the
default applications, the printing SOE handler and callbacks): handlers written in Python
deadlock the binding's threads.

The outstation (link address 10) has 4 binary inputs, 4 analog inputs, 2 counters, 2 binary
and 2 analog output statuses (all in class 1: the binding cannot change point classes). The
master (link address 1) is a SCADA master configured to leave unsolicited reporting alone at
start-up: opendnp3's default would send a disable unsolicited request (which otids reports,
rule 9102104) and enable it again afterwards. The steps, a pause after each:

1. start-up: the outstation's null unsolicited response (device restart) and its confirm,
   the master's integrity poll, the write clearing device restart, a second integrity poll;
2. ``EVENT_CYCLES`` times: the outstation's values change (a binary input, an analog input, a
   counter), then the master's event poll (class 1, 2, 3) collects the events;
3. the master enables unsolicited responses (classes 1, 2, 3);
4. ``UNSOLICITED_CYCLES`` times: the values change and the outstation reports them in an
   unsolicited response, which the master confirms;
5. an integrity poll (class 1, 2, 3, 0);
6. select/operate of a control relay output block (latch on, index 0), then of a 16-bit
   analog output (index 0);
7. direct operate of a control relay output block (pulse on, index 1), then of a
   single-precision analog output (index 1);
8. both stacks disabled and their channels shut down (TCP FIN both ways).

Usage (from dnp3_opendnp3.py): scripts/pcaps/.venv310/bin/python dnp3_opendnp3_stack.py
"""

from __future__ import annotations

import os
import sys
import time

from pydnp3 import asiodnp3, asiopal, opendnp3, openpal

HOST = "127.0.0.1"
PORT = 20000
MASTER_ADDRESS = 1
OUTSTATION_ADDRESS = 10
BINARY_INPUTS, ANALOG_INPUTS, COUNTERS, OUTPUTS = 4, 4, 2, 2
EVENT_CYCLES = 3
UNSOLICITED_CYCLES = 3
STARTUP_WAIT = 3.0  # seconds for the connection and the master's start-up tasks
STEP_WAIT = 1.0  # seconds for one step's exchanges on loopback (they take milliseconds)
RESPONSE_TIMEOUT = 2  # seconds the master waits for a response


def outstation_config() -> asiodnp3.OutstationStackConfig:
    """The outstation's points and its link addresses."""
    sizes = opendnp3.DatabaseSizes(
        numBinary=BINARY_INPUTS,
        numDoubleBinary=0,
        numAnalog=ANALOG_INPUTS,
        numCounter=COUNTERS,
        numFrozenCounter=0,
        numBinaryOutputStatus=OUTPUTS,
        numAnalogOutputStatus=OUTPUTS,
        numTimeAndInterval=0,
    )
    config = asiodnp3.OutstationStackConfig(sizes)
    config.outstation.eventBufferConfig = opendnp3.EventBufferConfig().AllTypes(sizes=10)
    config.outstation.params.allowUnsolicited = True
    config.link.LocalAddr = OUTSTATION_ADDRESS
    config.link.RemoteAddr = MASTER_ADDRESS
    config.link.KeepAliveTimeout = openpal.TimeDuration().Max()
    return config


def master_config() -> asiodnp3.MasterStackConfig:
    """The master's link addresses and start-up behaviour (see the module docstring)."""
    config = asiodnp3.MasterStackConfig()
    config.master.responseTimeout = openpal.TimeDuration().Seconds(RESPONSE_TIMEOUT)
    config.master.disableUnsolOnStartup = False
    config.master.unsolClassMask = opendnp3.ClassField()  # no enable at start-up either
    config.link.LocalAddr = MASTER_ADDRESS
    config.link.RemoteAddr = OUTSTATION_ADDRESS
    return config


def step(title: str) -> None:
    """Say what comes next, on the parent's output."""
    # A leading newline: the C++ printing callbacks end their lines without one.
    print(f"\nstep: {title}", flush=True)


def main() -> None:
    """Start both stacks, run the steps, stop."""
    manager = asiodnp3.DNP3Manager(1, asiodnp3.ConsoleLogger().Create())
    retry = asiopal.ChannelRetry().Default()
    server = manager.AddTCPServer(
        "server", opendnp3.levels.NORMAL, retry, HOST, PORT,
        asiodnp3.PrintingChannelListener().Create(),
    )  # fmt: skip
    outstation = server.AddOutstation(
        "outstation",
        opendnp3.SuccessCommandHandler().Create(),
        opendnp3.DefaultOutstationApplication().Create(),
        outstation_config(),
    )
    outstation.Enable()
    client = manager.AddTCPClient(
        "client", opendnp3.levels.NORMAL, retry, HOST, "0.0.0.0", PORT,
        asiodnp3.PrintingChannelListener().Create(),
    )  # fmt: skip
    master = client.AddMaster(
        "master",
        asiodnp3.PrintingSOEHandler().Create(),
        asiodnp3.DefaultMasterApplication().Create(),
        master_config(),
    )
    step("start-up")
    master.Enable()
    time.sleep(STARTUP_WAIT)

    def change(value: object, index: int) -> None:
        update = asiodnp3.UpdateBuilder().Update(value, index, opendnp3.EventMode.Force)
        outstation.Apply(update.Build())

    task = opendnp3.TaskConfig().Default()
    events = opendnp3.ClassField(
        opendnp3.ClassField.CLASS_1 | opendnp3.ClassField.CLASS_2 | opendnp3.ClassField.CLASS_3
    )
    for cycle in range(EVENT_CYCLES):
        step(f"changes and event poll {cycle + 1}")
        change(opendnp3.Binary(cycle % 2 == 0), cycle % BINARY_INPUTS)
        change(opendnp3.Analog(20.5 + cycle), cycle % ANALOG_INPUTS)
        change(opendnp3.Counter(100 + cycle), cycle % COUNTERS)
        time.sleep(STEP_WAIT)
        master.ScanClasses(events, task)
        time.sleep(STEP_WAIT)

    step("enable unsolicited")
    classes = [opendnp3.Header.AllObjects(60, variation) for variation in (2, 3, 4)]
    master.PerformFunction("enable unsolicited", opendnp3.FunctionCode.ENABLE_UNSOLICITED,
                           classes, task)  # fmt: skip
    time.sleep(STEP_WAIT)
    for cycle in range(UNSOLICITED_CYCLES):
        step(f"changes reported unsolicited {cycle + 1}")
        change(opendnp3.Binary(cycle % 2 == 1), (cycle + 1) % BINARY_INPUTS)
        change(opendnp3.Analog(30.25 - cycle), (cycle + 1) % ANALOG_INPUTS)
        time.sleep(STEP_WAIT)

    step("integrity poll")
    master.ScanClasses(opendnp3.ClassField().AllClasses(), task)
    time.sleep(STEP_WAIT)

    done = asiodnp3.PrintingCommandCallback.Get()
    step("select/operate")
    latch_on = opendnp3.ControlRelayOutputBlock(opendnp3.ControlCode.LATCH_ON)
    master.SelectAndOperate(latch_on, 0, done, task)
    time.sleep(STEP_WAIT)
    master.SelectAndOperate(opendnp3.AnalogOutputInt16(250), 0, done, task)
    time.sleep(STEP_WAIT)

    step("direct operate")
    pulse_on = opendnp3.ControlRelayOutputBlock(opendnp3.ControlCode.PULSE_ON)
    master.DirectOperate(pulse_on, 1, done, task)
    time.sleep(STEP_WAIT)
    master.DirectOperate(opendnp3.AnalogOutputFloat32(12.5), 1, done, task)
    time.sleep(STEP_WAIT)

    step("shutdown")
    master.Disable()
    outstation.Disable()
    time.sleep(STEP_WAIT)
    client.Shutdown()
    server.Shutdown()
    time.sleep(STEP_WAIT)
    sys.stdout.flush()
    # DNP3Manager.Shutdown() hangs (or aborts) in this binding once channels are shut down;
    # everything is closed and flushed, so leave without running destructors.
    os._exit(0)


if __name__ == "__main__":
    main()
