#!/usr/bin/env bash
# Runs a command with a GL context for gpu.js's headless-gl mode: under `xvfb-run -a` (a virtual X
# display; Mesa's software GL from libgl1-mesa-dri renders) when xvfb-run exists, else directly,
# in which case the GL conformance tests report themselves skipped.
# Usage: scripts/with-gl.sh npx vitest run
set -euo pipefail
if [ "$#" -eq 0 ]; then
  echo "usage: $0 <command> [args...]" >&2
  exit 2
fi
if [ -n "${DISPLAY:-}" ]; then
  exec "$@"
fi
if command -v xvfb-run >/dev/null 2>&1; then
  # -s: a 24-bit screen; GLX is what headless-gl needs from the server.
  exec xvfb-run -a -s "-screen 0 1280x1024x24 +extension GLX" "$@"
fi
echo "with-gl.sh: xvfb-run not found (apt-get install xvfb xauth libgl1-mesa-dri); running without a display: gpu.js headless-gl tests will be skipped" >&2
exec "$@"
