#!/usr/bin/env bash
# Headless Chromium and its WebDriver for tests/test_report_browser.py, from Debian's packages, when missing.
# Exit 0: both present (or just installed); exit 3: cannot install here (no apt-get, or not root) - the test
# then skips and prints this script's message.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not available: install Chromium and chromedriver yourself (Debian: chromium chromium-driver)" >&2
    exit 3
fi
if [ "$(id -u)" != 0 ]; then
    echo "not root: run 'sudo apt-get install -y chromium chromium-driver'" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing chromium and chromium-driver (apt-get, once per machine)..." >&2
if ! apt-get install -y -q --no-install-recommends chromium chromium-driver >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends chromium chromium-driver >&2
fi
