#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run through stage's "$@" look unreachable to it
# One check of this project on a machine with a real GPU (any Vulkan GPU; an NVIDIA H200 in practice):
# set-up, the kernel tests, kernel tuning, the quick benchmark, and 20 MiniMind2-small training steps
# with tokens/s and MFU. Each stage has a time budget, so the whole run ends within 8 minutes.
#   bash scripts/gpu-check.sh           the full check (needs a GPU)
#   bash scripts/gpu-check.sh --short   the same stages at sizes for lavapipe on 2 cores (used by test/gpu_check.test.ts)
# Every stage runs even when an earlier one failed, except that nothing runs after a failed set-up;
# the summary at the end lists each stage, and the exit status is 1 if any failed.
#
# On a device machine (/work/.library/device/README.md: no network, no Node.js, 64 MiB of working tree),
# first run `bash scripts/pack-device.sh` here, which builds .device/ (Node.js, a pruned node_modules and
# the Vulkan loader .deb files, about 34 MiB); set-up then unpacks it there. The device tool's call:
#   run(command: "set -o pipefail; bash scripts/gpu-check.sh 2>&1 | tee $OUT/gpu-check.log",
#       carry: [".device"], timeout_s: 570)
# The script ends within 8 minutes (stage budgets 7.5, set-up a few seconds), inside the 10-minute limit
# of one call; the log in $OUT comes back even if the call is cut off.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

short=0
case "${1:-}" in
  --short) short=1 ;;
  '') ;;
  *) echo "usage: bash scripts/gpu-check.sh [--short]" >&2; exit 2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
# Vulkan drivers expect a runtime directory, and a bare container has none (as scripts/setup.sh does).
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

say() { echo "[gpu-check] $*"; }
now() { date +%s%N; }
started=$(now)
names=() seconds=() results=()
failed=0

# stage NAME COMMAND...: runs it under a header, times it, records ok/failed for the summary.
stage() {
  local name=$1; shift
  echo
  echo "==== $name ===="
  local t0 rc result
  t0=$(now)
  "$@"; rc=$?
  case $rc in
    0) result=ok ;;
    124) result="failed (over its time budget)" ;;
    *) result="failed (exit $rc)" ;;
  esac
  [ "$rc" = 0 ] || failed=1
  names+=("$name"); results+=("$result")
  seconds+=("$(awk -v ns=$(( $(now) - t0 )) 'BEGIN { printf "%.1f", ns / 1e9 }')")
  echo "==== $name: $result, ${seconds[-1]} s ===="
  return "$rc"
}

# budget SECONDS COMMAND...: a stage's time limit. timeout signals the command's whole process group
# (npm, tsx and node under it), and -k kills what ignores the SIGTERM. That group is not the
# terminal's, so Ctrl-C (or a SIGTERM to this script) is passed on to it here.
running=
budget() {
  local s=$1 rc; shift
  # --short (lavapipe, tests): no limits; a cold shader cache alone can take minutes there.
  [ "$short" = 1 ] && s=0
  timeout -k 10 "$s" "$@" &
  running=$!
  wait "$running"; rc=$?
  running=
  return "$rc"
}
on_signal() {
  say "interrupted"
  [ -n "$running" ] && kill -TERM -- "-$running" 2>/dev/null
  exit 130
}
trap on_signal INT TERM

has_vulkan_loader() { ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; }
nvidia_present() { compgen -G '/dev/nvidia[0-9]*' >/dev/null || command -v nvidia-smi >/dev/null; }

# Dawn reaches the GPU through the Vulkan loader (libvulkan.so.1). Device machines have no network:
# there the loader comes as .deb files in .device/gl/ (scripts/pack-device.sh) or .gl/ (the device
# notes' recipe), unpacked into /; elsewhere apt installs it.
ensure_vulkan_loader() {
  if has_vulkan_loader; then say "Vulkan loader: present"; return 0; fi
  local debs='' d f
  for d in .device/gl .gl; do compgen -G "$d/*.deb" >/dev/null && { debs=$d; break; }; done
  if [ -n "$debs" ]; then
    say "no Vulkan loader; unpacking $debs/*.deb into /"
    for f in "$debs"/*.deb; do dpkg -x "$f" / || return 1; done
    ldconfig
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "no Vulkan loader; apt-get install libvulkan1"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1
  fi
  has_vulkan_loader && return 0
  say "FAILED: no Vulkan loader (libvulkan.so.1). Install libvulkan1 (apt-get install libvulkan1); on a machine"
  say "without network, put its .deb (and libglvnd0, libegl1, libgl1, libglx0, libopengl0, libgles2: NVIDIA's"
  say "Vulkan driver is its GLX library) in .gl/ of this checkout, fetched with 'apt-get download' on a machine with one"
  say "(scripts/pack-device.sh puts them in .device/gl/)."
  return 1
}

# A bare NVIDIA container often has the driver mounted but its Vulkan driver manifest where the loader
# does not look. A manifest already chosen (VK_DRIVER_FILES, or VK_ICD_FILENAMES for older loaders) is kept.
use_nvidia_icd() {
  nvidia_present || return 0
  command -v nvidia-smi >/dev/null && say "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
  if [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
    say "Vulkan driver manifest given: ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-}}"
    return 0
  fi
  local icd='' f lib
  for f in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json \
           /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json /usr/local/share/vulkan/icd.d/nvidia_icd*.json; do
    [ -f "$f" ] && { icd=$f; break; }
  done
  if [ -z "$icd" ]; then
    # No manifest at all, but the driver's library is there: write the manifest the driver package would.
    lib=$(ldconfig -p | awk '/libGLX_nvidia\.so\.0 /{ print $NF; exit }')
    [ -z "$lib" ] && [ -f /usr/local/nvidia/lib64/libGLX_nvidia.so.0 ] && lib=/usr/local/nvidia/lib64/libGLX_nvidia.so.0
    if [ -z "$lib" ]; then say "NVIDIA GPU present, but no NVIDIA Vulkan driver (nvidia_icd.json or libGLX_nvidia.so.0) found"; return 0; fi
    icd=$work/nvidia_icd.json
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3"}}\n' "$lib" >"$icd"
    say "no NVIDIA Vulkan manifest found; wrote $icd for $lib"
  fi
  export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
  say "VK_DRIVER_FILES and VK_ICD_FILENAMES: $icd"
}

node_ok() { command -v node >/dev/null && node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; }

# unxz FILE: the file decompressed to stdout, with Python's lzma where the image has no xz.
unxz() {
  if command -v xz >/dev/null; then xz -dc "$1"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}

# The bundle from scripts/pack-device.sh, for a machine without Node.js 20 and without network (the
# device machines): Node.js into /tmp (fresh each time, so a half-unpacked copy from an interrupted
# run cannot linger), and the pruned node_modules where none is installed.
device_node=/tmp/device-node
use_bundle() {
  say "using the bundle in .device/ (from scripts/pack-device.sh): Node.js into $device_node/bin"
  rm -rf "$device_node"; mkdir -p "$device_node"
  unxz .device/node.tar.xz | tar -x -C "$device_node" || { say "FAILED: unpacking .device/node.tar.xz into $device_node"; return 1; }
  export PATH=$device_node/bin:$PATH
  # No registry is reachable there: npm's update check would only wait on the network.
  export npm_config_update_notifier=false
  if [ -d node_modules/webgpu ]; then
    say "node_modules: present"
  else
    say "node_modules: unpacking .device/node_modules.tar.xz"
    unxz .device/node_modules.tar.xz | tar -x || { say "FAILED: unpacking .device/node_modules.tar.xz"; return 1; }
  fi
  [ "$(sha256sum package-lock.json | cut -d' ' -f1)" = "$(cat .device/package-lock.sha256 2>/dev/null)" ] \
    || say "WARNING: package-lock.json changed since .device/ was made: rerun scripts/pack-device.sh where there is network"
}

setup() {
  if node_ok; then
    say "Node.js: $(node --version) at $(command -v node)"
    if [ -d node_modules/webgpu ]; then
      say "node_modules: present"
    else
      say "node_modules: npm ci"
      npm ci --no-audit --no-fund || { say "FAILED: npm ci"; return 1; }
    fi
  elif [ -f .device/node.tar.xz ] && [ -f .device/node_modules.tar.xz ]; then
    say "Node.js: $(command -v node >/dev/null && echo "$(node --version) is older than 20" || echo none) here"
    use_bundle || return 1
    node_ok || { say "FAILED: the bundled node does not run here: $(node --version 2>&1 | head -1)"; return 1; }
    say "Node.js: $(node --version) at $(command -v node) (bundled)"
  elif command -v node >/dev/null; then
    say "FAILED: node $(node --version) is too old: Node.js 20 or later is needed (or .device/ from scripts/pack-device.sh)"; return 1
  else
    say "FAILED: node not found: install Node.js 20 or later, or carry .device/ from scripts/pack-device.sh"; return 1
  fi
  ensure_vulkan_loader || return 1
  use_nvidia_icd
  local adapter
  adapter=$(node scripts/probe-adapter.mjs) \
    || { say "FAILED: Dawn found no WebGPU adapter (scripts/setup.sh installs lavapipe; for a GPU, check its Vulkan driver)"; return 1; }
  say "adapter: $adapter"
  # What the adapter offers, experimental features and tensor-core shapes included (for subgroup-matrix variants).
  node scripts/probe-adapter.mjs --features 2>/dev/null | tail -n +2 | while read -r line; do say "$line"; done
  # The same test as runtime/device.ts's isSoftware.
  if grep -Eqi 'llvmpipe|lavapipe|swiftshader|software|cpu' <<<"$adapter"; then
    if [ "$short" = 0 ]; then
      say "FAILED: the only adapter is a software rasterizer on the CPU, and the full check needs a GPU"
      say "(no GPU's Vulkan driver was found: check VK_DRIVER_FILES and the driver; or run with --short)"
      return 1
    fi
    if nvidia_present; then say "WARNING: an NVIDIA GPU is present, but the only adapter is a software rasterizer on the CPU"
    else say "software rasterizer on the CPU (no GPU here): --short sizes"; fi
  fi
}

# The tuner refuses to time with MINIMIND_TUNE=off (the test runner's default, inherited under
# npm test); force (re-time cached choices) is kept. MINIMIND_TUNE_FILE is left as given.
tune_mode=on
[ "${MINIMIND_TUNE:-}" = force ] && tune_mode=force
if [ "$short" = 1 ]; then
  # One small kernel test file: the full sweeps run in npm test itself.
  test_files=(rope)
  tune_args=(-- --preset tiny --batch_size 2 --max_seq_len 32)
  bench_args=(-- --quick --filter launch)
  train_args=(--short)
else
  test_files=(variants test/matmul attention) # test/matmul: not variants_matmul, which 'variants' runs
  tune_args=()
  bench_args=(-- --quick)
  train_args=()
fi

say "mode: $([ "$short" = 1 ] && echo 'short (lavapipe sizes)' || echo full); temporary files in $work"
if stage "set-up" setup; then
  # The budgets (s) add up to 7.5 minutes, leaving set-up half a minute of the 8.
  declare -A test_budget=([variants]=60 [test/matmul]=30 [attention]=30 [rope]=30)
  for f in "${test_files[@]}"; do stage "tests: $f" budget "${test_budget[$f]}" npm test -- "$f"; done
  stage "tune" budget 120 env MINIMIND_TUNE=$tune_mode npm run tune "${tune_args[@]}"
  stage "bench" budget 90 npm run bench "${bench_args[@]}"
  stage "train" budget 120 npx tsx scripts/gpu_train_check.ts "${train_args[@]}" --dir "$work"
fi

echo
echo "==== summary ===="
printf '%-18s %8s  %s\n' stage seconds result
for i in "${!names[@]}"; do printf '%-18s %8s  %s\n' "${names[$i]}" "${seconds[$i]}" "${results[$i]}"; done
[ "${results[0]}" = ok ] || printf '%-18s %8s  %s\n' "(later stages)" - "skipped: set-up failed"
printf '%-18s %8s\n' total "$(awk -v ns=$(( $(now) - started )) 'BEGIN { printf "%.1f", ns / 1e9 }')"
if [ "$failed" = 0 ]; then say "all stages ok"; else say "FAILED: see the stages marked failed above"; fi
exit "$failed"
