#!/usr/bin/env bash
# Browser tests drive Debian's Chromium through Playwright; never download a browser build.
set -euo pipefail
CHROMIUM="${CLICKATELL_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  echo "Browser: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi
echo "Chromium is missing at $CHROMIUM; installing Debian's chromium package..."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "ERROR: run 'sudo apt-get install chromium' (or set CLICKATELL_CHROMIUM)." >&2
  exit 1
fi
[ -x "$CHROMIUM" ] || { echo "ERROR: chromium still missing at $CHROMIUM" >&2; exit 1; }
