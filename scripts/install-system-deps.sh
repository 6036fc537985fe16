#!/usr/bin/env bash
# Debian packages that sarcoscreen's tests use as real DICOM peers:
#   dcmtk       storescu / echoscu / storescp / dcmdump / dsrdump
#   orthanc     a PACS to deliver SEG and SR to
#   dicom3tools dciodvfy, the IOD validator
#   chromium + chromium-driver  the headless browser (and its WebDriver) of the web console's browser tests,
#               driven by Selenium with these two paths only (no driver or browser downloaded at test time)
# Idempotent: does nothing when every tool is already on PATH.
set -euo pipefail
need=()
# dcmtk by its path: inside a virtual environment `storescu` may be pynetdicom's app of the same name
[ -x /usr/bin/storescu ] || need+=(dcmtk)
command -v Orthanc  >/dev/null 2>&1 || need+=(orthanc)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
# chromium by its paths: tests/e2e/test_web_browser.py uses exactly these two
[ -x /usr/bin/chromium ]     || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
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
