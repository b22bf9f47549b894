#!/bin/sh
# Retake dashboards/status-page.png, the README's picture of the status page: runs the demo
# on loopback for a minute (so every relay has a history of timings and canaries), then
# screenshots its status page with headless Chromium (Debian packages chromium, and
# fonts-noto-color-emoji for the delivery path's lock signs).
# Usage: dashboards/screenshot.sh [OUTPUT.png]
set -eu
cd "$(dirname "$0")/.."
out="${1:-dashboards/status-page.png}"
port="${SCREENSHOT_PORT:-19926}"
tmp="$(mktemp -d)"
smtp-canary-exporter demo --web.listen-address="127.0.0.1:$port" --demo.interval=5s \
  >"$tmp/demo.log" 2>&1 &
demo=$!
trap 'kill "$demo" 2>/dev/null; wait "$demo" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
sleep "${SCREENSHOT_WAIT:-60}"
if ! kill -0 "$demo" 2>/dev/null; then
  echo "screenshot: the demo did not keep running; its output:" >&2
  cat "$tmp/demo.log" >&2
  exit 1
fi
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp/chromium" --hide-scrollbars --window-size=1400,1500 \
  --screenshot="$PWD/$out" "http://127.0.0.1:$port/" >/dev/null 2>&1
echo "wrote $out"
