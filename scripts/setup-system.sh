#!/usr/bin/env bash
# Install the Debian packages otids' tests, sample-capture scripts and benchmark use, when
# missing: tshark (Wireshark cross-check, benchmark), tcpdump (captures of real stacks),
# iproute2 (network namespaces), python3-venv. Needs root (or sudo) only if something is missing.
set -euo pipefail

need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || { echo "otids needs Python >= 3.11 as python3" >&2; exit 1; }
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)

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
