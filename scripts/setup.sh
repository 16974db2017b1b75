#!/usr/bin/env bash
# Set-up for a fresh machine: npm dependencies, a headless browser for the dashboard's tests, and a WebGPU adapter.
# Idempotent: each step checks first and says what it does. Installs only through apt and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

say() { echo "[setup] $*"; }

# 1. npm packages, pinned by package-lock.json.
if [ ! -d node_modules/webgpu ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
else
  say "npm packages already installed"
fi

# 2. A headless browser for the dashboard's tests (test/dashboard_browser.test.ts): Debian's chromium. Soft:
#    without it those tests count as skipped, saying why. Before step 3, which ends the script.
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "${CHROMIUM_PATH:-}" ]; then
  say "browser: $( (chromium --version || chromium-browser --version || echo "$CHROMIUM_PATH") 2>/dev/null | head -1)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "apt-get install chromium (for the dashboard's browser tests)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; then
    say "could not install chromium; the dashboard's browser tests will be skipped"
  fi
else
  say "no chromium, and installing it needs root and apt-get: the dashboard's browser tests will be skipped (apt-get install chromium, or set CHROMIUM_PATH)"
fi

# 3. A WebGPU adapter. Dawn refuses Debian 12's stock Mesa 22 lavapipe (it lacks
#    shaderUniform*ArrayDynamicIndexing); Mesa 25 from bookworm-backports works.
if node scripts/probe-adapter.mjs >/dev/null 2>&1; then
  say "WebGPU adapter: $(node scripts/probe-adapter.mjs)"
  exit 0
fi
say "no usable WebGPU adapter found; installing Mesa's lavapipe (software Vulkan)"
. /etc/os-release 2>/dev/null || true
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  cat <<MSG
[setup] cannot install automatically (need root on Debian/Ubuntu). Run as root:
  Debian 12:  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list
              apt-get update && apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1
  Ubuntu 24.04+ / Debian 13+:  apt-get update && apt-get install -y mesa-vulkan-drivers libvulkan1
  Other systems: install a Vulkan driver (or Mesa >= 24 lavapipe) and its loader.
MSG
  exit 1
fi
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
  list=/etc/apt/sources.list.d/bookworm-backports.list
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding bookworm-backports to $list"
    echo 'deb http://deb.debian.org/debian bookworm-backports main' > "$list"
  fi
  say "apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1
else
  say "apt-get install mesa-vulkan-drivers libvulkan1"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi
if ! node scripts/probe-adapter.mjs; then
  say "still no WebGPU adapter after installing lavapipe; see the messages above"
  exit 1
fi
