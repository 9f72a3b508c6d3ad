#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are installed (the dashboard's real-browser test,
# tests/dashboard/test_browser.py, drives them). Does nothing when both are already present;
# otherwise installs the Debian packages with apt-get (run as root, as CI does), with a font so
# screenshots show text.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=""
fi

echo "Installing chromium and chromium-driver (for the dashboard's browser test)..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation

for binary in "$CHROMIUM" "$CHROMEDRIVER"; do
    if [[ ! -x "$binary" ]]; then
        echo "error: $binary is still missing after installing chromium and chromium-driver" >&2
        exit 1
    fi
done
"$CHROMIUM" --version
"$CHROMEDRIVER" --version
