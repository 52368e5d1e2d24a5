#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages `chromium` and `chromium-driver`)
# for the dashboard's browser tests (tests/integration/test_dashboard*.py). Quick and silent
# when /usr/bin/chromedriver is already there, so `make test` may run it every time.
# Usage: bash scripts/install_chromium.sh
set -euo pipefail

DRIVER=/usr/bin/chromedriver
[ -x "$DRIVER" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install_chromium: $DRIVER is missing; run as root (or install sudo) to apt-get install chromium chromium-driver" >&2
    exit 1
fi

echo "install_chromium: installing the Debian packages chromium and chromium-driver" >&2
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null

[ -x "$DRIVER" ] || { echo "install_chromium: ERROR: $DRIVER is still missing after apt-get install" >&2; exit 1; }
echo "install_chromium: done" >&2
