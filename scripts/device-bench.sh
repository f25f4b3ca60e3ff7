#!/usr/bin/env bash
# The models bench on a machine without Node (e.g. a lent GPU server): `pack` puts this machine's
# node binary, the project's tracked files and its node_modules (Dawn's linux-x64 dawn.node
# included; other platforms' builds, source maps and test-only tools left out) into one archive;
# `run` unpacks it and runs the models suite there on the gpu backend (webgpu: the adapter's
# Vulkan driver, e.g. NVIDIA's; rows 'gpu' and the peer 'tfjs-webgpu') and on the cpu backend
# (rows 'cpu'), writing JSON rows.
#
# Usage:
#   scripts/device-bench.sh pack [ARCHIVE]                  default ARCHIVE: .cache/device-bench.tar.gz
#   scripts/device-bench.sh run ARCHIVE OUTDIR [--quick] [--dry-run]
#   scripts/device-bench.sh smoke                           pack, then run --dry-run from the archive here
# --quick: the small gpu workloads (minutes on a software adapter); --dry-run: unpack, check node,
# the webgpu adapter and the bench's workload list, run nothing long.
# OUTDIR gets models-gpu.json, models-cpu.json (the bench's JSON rows), adapter.txt and logs.
set -euo pipefail
cd "$(dirname "$0")/.."

pack() {
  local archive=${1:-.cache/device-bench.tar.gz}
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage/app/bin" "$(dirname "$archive")"
  cp "$(command -v node)" "$stage/app/bin/node"
  git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$stage/app"
  tar -cf - \
    --exclude='*.map' --exclude='*.md' --exclude='*.d.ts' \
    --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' --exclude='node_modules/webgpu/dist/linux-arm64' \
    --exclude='node_modules/gl' --exclude='node_modules/gpu.js/dist' --exclude='node_modules/typescript' \
    --exclude='node_modules/vitest' --exclude='node_modules/@vitest' --exclude='node_modules/vite' \
    --exclude='node_modules/@rolldown' --exclude='node_modules/rolldown' --exclude='node_modules/lightningcss*' \
    --exclude='node_modules/node-gyp' --exclude='node_modules/@types' --exclude='node_modules/fast-check' \
    --exclude='node_modules/@tensorflow/*/dist/miniprogram' --exclude='node_modules/@tensorflow/*/dist/*.min.js' \
    --exclude='node_modules/@tensorflow/*/dist/*.es2017.js' --exclude='node_modules/@tensorflow/*/dist/*.esm.js' \
    node_modules | tar -xf - -C "$stage/app"
  tar -C "$stage" -czf "$archive" app
  echo "device-bench: packed $archive ($(du -m "$archive" | cut -f1) MiB; node $(node --version), $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + local changes'))"
}

run() {
  local archive=$1 out=$2
  shift 2
  local quick='' dry=0
  for a in "$@"; do
    case $a in
      --quick) quick=--quick ;;
      --dry-run) dry=1 ;;
      *) echo "device-bench: unknown option $a" >&2; exit 2 ;;
    esac
  done
  [ -f "$archive" ] || { echo "device-bench: no archive at $archive (run: $0 pack)" >&2; exit 2; }
  mkdir -p "$out"
  local dir
  dir=$(mktemp -d)
  tar -xzf "$archive" -C "$dir"
  local app=$dir/app node=$dir/app/bin/node
  export PATH="$app/bin:$PATH"
  cd "$app"
  echo "device-bench: node $("$node" --version) in $app"
  # The adapter (or why there is none) first: a cpu-only machine still gives the cpu rows.
  "$node" --import tsx -e "
    import('./src/index.ts').then((E) => {
      const why = E.gpuModeUnavailableReason('webgpu');
      if (why) { console.log('webgpu unavailable: ' + why); return; }
      E.setBackend('gpu');
      console.log(E.getBackend().describe());
    });" 2>"$out/adapter.log" | tee "$out/adapter.txt"
  if [ "$dry" = 1 ]; then
    "$node" --import tsx bench/index.ts --help | tee "$out/bench-help.txt"
    echo "device-bench: dry run done (unpacked, node runs, adapter probed); outputs in $out"
    rm -rf "$dir"
    return
  fi
  "$node" --import tsx bench/index.ts --suite models --backend gpu $quick --json >"$out/models-gpu.json" 2>"$out/models-gpu.log" || echo "device-bench: gpu rows failed, see $out/models-gpu.log"
  "$node" --import tsx bench/index.ts --suite models --filter ' cpu ' $quick --json >"$out/models-cpu.json" 2>"$out/models-cpu.log" || echo "device-bench: cpu rows failed, see $out/models-cpu.log"
  echo "device-bench: rows in $out/models-gpu.json and $out/models-cpu.json"
  rm -rf "$dir"
}

case ${1:-} in
  pack) shift; pack "$@" ;;
  run) shift; [ $# -ge 2 ] || { echo "usage: $0 run ARCHIVE OUTDIR [--quick] [--dry-run]" >&2; exit 2; }; run "$@" ;;
  smoke)
    pack .cache/device-bench.tar.gz
    run .cache/device-bench.tar.gz "${TMPDIR:-/tmp}/device-bench-smoke" --dry-run
    ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
