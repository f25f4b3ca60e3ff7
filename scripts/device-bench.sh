#!/usr/bin/env bash
# The models bench on a machine without Node (e.g. a lent GPU server): `pack` puts this machine's
# node binary, the project's tracked files and the packages the models bench loads (Dawn's
# linux-x64 dawn.node included; other platforms' builds, docs, types and source maps left out)
# into one archive;
# `run` unpacks it and runs the models suite there on the gpu backend (webgpu: the adapter's
# Vulkan driver, e.g. NVIDIA's; rows 'gpu', 'gpu-jit' and the peer 'tfjs-webgpu') and on the cpu backend
# (rows 'cpu'), writing JSON rows.
#
# Usage:
#   scripts/device-bench.sh pack [ARCHIVE]                  default ARCHIVE: .cache/device-bench.tar.xz
#   scripts/device-bench.sh run ARCHIVE OUTDIR [--quick] [--dry-run] [--filter WORKLOAD]
#   scripts/device-bench.sh smoke                           pack, check the size, run one small workload from the archive here
# --quick: the small gpu workloads (minutes on a software adapter); --dry-run: unpack, check node,
# the webgpu adapter and the bench's workload list, run nothing long; --filter: one workload only.
# The archive (~40 MiB) travels with the device tool's carry (64 MiB with the working tree).
# OUTDIR gets models-gpu.json, models-cpu.json (the bench's JSON rows), adapter.txt and logs.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the models bench loads: the loader, the harness, the packages src/ imports at its top level
# (esbuild's metafile of bench/index.ts and bench/peers/model-workload.ts lists them), the WebGPU
# peer and Dawn. scripts/runtime-deps.mjs adds their dependencies.
RUNTIME_ROOTS=(tsx tinybench webgpu @tensorflow/tfjs @tensorflow/tfjs-backend-webgpu d3-scale-chromatic fp-ts sharp)

pack() {
  local archive=${1:-.cache/device-bench.tar.xz}
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage/app/bin" "$(dirname "$archive")"
  cp "$(command -v node)" "$stage/app/bin/node"
  git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$stage/app"
  node scripts/runtime-deps.mjs "${RUNTIME_ROOTS[@]}" | grep -v -e '^node_modules/@types/' -e '^node_modules/@webgpu/types$' >"$stage/deps"
  # Type declarations, docs, source maps and other platforms' builds are never loaded; of the
  # TensorFlow.js packages only the Node entry point (one bundle each, `main`) is.
  tar -cf - \
    --exclude='*.map' --exclude='*.md' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' \
    --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' --exclude='node_modules/webgpu/dist/linux-arm64' \
    --exclude='node_modules/@tensorflow/*/dist' --exclude='node_modules/@tensorflow/*/src' \
    -T "$stage/deps" | tar -xf - -C "$stage/app"
  grep '^node_modules/@tensorflow/' "$stage/deps" | while read -r d; do
    echo "$d/$(node -p "require('./$d/package.json').main")"
  done | tar -cf - -T - | tar -xf - -C "$stage/app"
  # xz: the node binary is most of the archive (99 MB: 24 MB in xz, 36 MB in gzip).
  tar -C "$stage" -cf - app | xz -T0 -9 >"$archive"
  echo "device-bench: packed $archive ($(du -m "$archive" | cut -f1) MiB; node $(node --version), $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + local changes'))"
}

# xz's decompressor, or Python's where the machine has no xz.
unxz() {
  if command -v xz >/dev/null; then xz -dc "$1"
  elif command -v python3 >/dev/null; then python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  else echo "device-bench: neither xz nor python3 here to unpack $1" >&2; exit 2
  fi
}

run() {
  local archive=$1 out=$2
  shift 2
  local quick='' dry=0 filter=''
  while [ $# -gt 0 ]; do
    case $1 in
      --quick) quick=--quick ;;
      --dry-run) dry=1 ;;
      --filter) [ $# -ge 2 ] || { echo "device-bench: --filter needs a workload name" >&2; exit 2; }; filter=$2; shift ;;
      *) echo "device-bench: unknown option $1" >&2; exit 2 ;;
    esac
    shift
  done
  [ -f "$archive" ] || { echo "device-bench: no archive at $archive (run: $0 pack)" >&2; exit 2; }
  mkdir -p "$out"
  local dir
  dir=$(mktemp -d)
  unxz "$archive" | tar -xf - -C "$dir"
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
  # With --filter WORKLOAD: that workload's gpu rows (gpu, gpu-jit, tfjs-webgpu) and its eager cpu row.
  "$node" --import tsx bench/index.ts --suite models --backend gpu $quick ${filter:+--filter "$filter"} --json >"$out/models-gpu.json" 2>"$out/models-gpu.log" || echo "device-bench: gpu rows failed, see $out/models-gpu.log"
  "$node" --import tsx bench/index.ts --suite models --filter "${filter:+$filter} cpu " $quick --json >"$out/models-cpu.json" 2>"$out/models-cpu.log" || echo "device-bench: cpu rows failed, see $out/models-cpu.log"
  echo "device-bench: rows in $out/models-gpu.json and $out/models-cpu.json"
  rm -rf "$dir"
}

case ${1:-} in
  pack) shift; pack "$@" ;;
  run) shift; [ $# -ge 2 ] || { echo "usage: $0 run ARCHIVE OUTDIR [--quick] [--dry-run]" >&2; exit 2; }; run "$@" ;;
  smoke)
    pack .cache/device-bench.tar.xz
    [ "$(du -m .cache/device-bench.tar.xz | cut -f1)" -lt 60 ] || { echo "device-bench: the archive is over 60 MiB; with the tree it would not fit the device tool's 64 MiB" >&2; exit 1; }
    run .cache/device-bench.tar.xz "${TMPDIR:-/tmp}/device-bench-smoke" --quick --filter b0/inference-4x64
    cat "${TMPDIR:-/tmp}/device-bench-smoke/models-gpu.json"
    ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
