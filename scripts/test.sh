#!/usr/bin/env bash
# Install searchkit with its test dependencies and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The web page tests drive Debian's Chromium; install it where we can (root with apt-get), else they skip.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || echo "could not install chromium; the web page tests will skip" >&2
fi
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
