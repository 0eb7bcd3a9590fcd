#!/usr/bin/env bash
# Install the Debian packages otids' tests, sample-capture scripts and benchmark use, when
# missing: tshark (Wireshark cross-check, benchmark), tcpdump (captures of real stacks),
# iproute2 (network namespaces), tcpreplay (live-capture benchmark), python3-venv, gcc and
# python3-dev (the C accelerator). Needs root
# (or sudo) only if something is missing.
set -euo pipefail

need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v tcpreplay >/dev/null 2>&1 || need+=(tcpreplay)
# The SIEM-output tests' syslog receiver, its TLS driver, and their test certificates.
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || need+=(rsyslog-gnutls)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || { echo "otids needs Python >= 3.11 as python3" >&2; exit 1; }
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# A C compiler and Python's headers build otids' optional pcap accelerator (without them
# otids still installs and runs its pure-Python loop, more slowly).
command -v gcc >/dev/null 2>&1 || need+=(gcc)
python3 -c 'import os, sysconfig, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  2>/dev/null || need+=(python3-dev)

[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "missing packages: ${need[*]}; install them as root" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Do not make dumpcap setuid: tests run as root, users add themselves to the wireshark group.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
