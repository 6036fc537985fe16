#!/usr/bin/env bash
# Debian packages that sarcoscreen's tests use as real DICOM peers:
#   dcmtk       storescu / echoscu / storescp / dcmdump / dsrdump
#   orthanc     a PACS to deliver SEG and SR to
#   dicom3tools dciodvfy, the IOD validator
# Idempotent: does nothing when every tool is already on PATH.
set -euo pipefail
need=()
# dcmtk by its path: inside a virtual environment `storescu` may be pynetdicom's app of the same name
[ -x /usr/bin/storescu ] || need+=(dcmtk)
command -v Orthanc  >/dev/null 2>&1 || need+=(orthanc)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian orthanc package starts a system service where systemd runs; the
# tests start their own Orthanc on a free loopback port, so that one is not needed.
