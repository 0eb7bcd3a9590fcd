#!/usr/bin/env bash
# Regenerate every sample capture in pcaps/ (what `make pcaps` runs).
# The real-stack captures (pymodbus + tcpdump on lo, port 502) need root or the capture
# capabilities; the crafted ones (scapy) are the same byte for byte on every run.
# PYTHON defaults to the python on PATH (make puts .venv/bin first).
set -euo pipefail
cd "$(dirname "$0")/../.."
py="${PYTHON:-python}"

"$py" scripts/pcaps/modbus_polling.py --out pcaps/modbus-polling.pcap
"$py" scripts/pcaps/modbus_attack.py --out pcaps/modbus-attack.pcap
"$py" scripts/pcaps/modbus_malformed.py --out pcaps/modbus-malformed.pcap
"$py" scripts/pcaps/modbus_flood.py --out pcaps/modbus-flood.pcap
"$py" scripts/pcaps/modbus_non_modbus_502.py --out pcaps/modbus-non-modbus-502.pcap
"$py" scripts/pcaps/modbus_state.py --out pcaps/modbus-state.pcap
"$py" scripts/pcaps/modbus_bursts.py --out pcaps/modbus-bursts.pcap
# DNP3: the opendnp3 capture makes scripts/pcaps/.venv310 (Python 3.10, dnp3-python) first.
"$py" scripts/pcaps/dnp3_opendnp3.py --out pcaps/dnp3-opendnp3.pcap
"$py" scripts/pcaps/dnp3_attack.py --out pcaps/dnp3-attack.pcap
"$py" scripts/pcaps/dnp3_udp.py --out pcaps/dnp3-udp.pcap
"$py" scripts/pcaps/dnp3_malformed.py --out pcaps/dnp3-malformed.pcap
"$py" scripts/pcaps/dnp3_state.py --out pcaps/dnp3-state.pcap
"$py" scripts/pcaps/dnp3_readback.py --out pcaps/dnp3-readback.pcap
