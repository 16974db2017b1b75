#!/usr/bin/env bash
# Builds .device/ (ignored by git): what scripts/gpu-check.sh needs on a device machine, which has no
# network and no Node.js (its image holds CUDA and Python), and takes at most 64 MiB of working tree:
#   node.tar.xz           this machine's Node.js with npm and npx (bin/, lib/node_modules/npm)
#   node_modules.tar.xz   node_modules cut down to the run-time dependencies on linux-x64
#   gl/*.deb              the Vulkan loader and GLVND libraries (the device notes' '.gl' recipe)
#   package-lock.sha256   the lock file the bundle was made from, so gpu-check.sh can tell it is stale
# Run it here (x86-64 Linux, Node.js 20+, npm packages installed, network for apt) after every change
# to package-lock.json; then name .device in the device run's carry (see the top of scripts/gpu-check.sh).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

say() { echo "[pack-device] $*"; }
die() { say "FAILED: $*"; exit 1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
row() { printf '  %-34s %10s\n' "$1" "$2"; }
# The device takes at most 64 MiB of working tree; the margin leaves room for files added later.
limit=$((60 * 1048576))

# The device machine is x86-64 Linux, and the Node binary, dawn.node and esbuild are taken from here.
[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || die "run this on x86-64 Linux (this is $(uname -s)/$(uname -m)): the device machine is one"
command -v node >/dev/null || die "node not found: install Node.js 20 or later"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || die "node $(node --version) is too old: Node.js 20 or later is needed"
command -v apt-get >/dev/null || die "apt-get not found: the Vulkan loader .deb files are fetched with it (Debian/Ubuntu)"
[ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || die "node_modules/webgpu/dist/linux-x64/dawn.node missing (run npm ci)"
# npm ls fails on a missing or mismatched package, so the bundle is what package-lock.json pins.
prod=$(npm ls --omit=dev --all --parseable 2>&1) || die "npm ls: node_modules does not match package-lock.json (run npm ci):
$prod"

stage=$(mktemp -d "${TMPDIR:-/tmp}/pack-device.XXXXXX") || exit 1
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/node/bin" "$stage/node/lib/node_modules" "$stage/out/gl" "$stage/lists/partial"

# 1. Node.js: the binary and npm (gpu-check.sh runs npm test, npm run and npx).
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(npm root -g)/npm
[ -f "$npm_dir/bin/npm-cli.js" ] || die "npm not found at $npm_dir"
say "Node.js $(node --version) from $node_bin, npm $(npm --version) from $npm_dir"
cp "$node_bin" "$stage/node/bin/node" || die "copying $node_bin"
cp -r "$npm_dir" "$stage/node/lib/node_modules/npm" || die "copying $npm_dir"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$stage/node/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$stage/node/bin/npx"
tar -C "$stage/node" -cf "$stage/node.tar" bin lib || die "packing Node.js"

# 2. node_modules: the packages npm ls lists for production (dependencies, not devDependencies: no
# TensorFlow.js, whose bench peer then reports that it did not run, and no TypeScript), webgpu with
# only the linux-x64 dawn.node, and the .bin links into them. npm installed only this platform's
# @esbuild package, and esbuild/bin/esbuild is a hard link to its binary, which tar stores once.
pkgs=$(grep -o 'node_modules/.*' <<<"$prod")
list=$stage/files
# shellcheck disable=SC2086  # package paths have no spaces
{ find $pkgs -path node_modules/webgpu/dist -prune -o -print; find node_modules/webgpu/dist/linux-x64; } | sort -u >"$list"
for l in node_modules/.bin/*; do
  # A link such as tsx -> ../tsx/dist/cli.mjs goes in when its target does.
  t=$(readlink "$l")
  grep -qxF "node_modules/${t#../}" "$list" && echo "$l"
done >"$stage/bins"
cat "$list" "$stage/bins" | tar --no-recursion -T - -cf "$stage/node_modules.tar" || die "packing node_modules"
raw_node=$(stat -c %s "$stage/node.tar") raw_modules=$(stat -c %s "$stage/node_modules.tar")
say "node_modules: $(grep -c /package.json "$list") package.json files, $(mib "$raw_modules") as tar"
say "compressing with xz -9 (a minute or two)"
xz -9 -T0 "$stage/node.tar" "$stage/node_modules.tar" || die "xz"
mv "$stage"/node*.tar.xz "$stage/out/" || exit 1

# 3. The Vulkan loader, by the device notes' recipe: amd64 packages from this machine's apt sources,
# with the package lists in the temporary directory so the system's are left alone.
say "downloading the Vulkan loader .deb files (apt-get download)"
apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$stage/lists")
# As root apt downloads as user _apt, who cannot write to the private temporary directory.
[ "$(id -u)" = 0 ] && apt_opts+=(-oAPT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq || die "apt-get update (network needed)"
(cd "$stage/out/gl" && apt-get "${apt_opts[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2) \
  || die "apt-get download of the Vulkan loader packages"

sha256sum package-lock.json | cut -d' ' -f1 >"$stage/out/package-lock.sha256"
rm -rf .device
mv "$stage/out" .device || die "moving the bundle into .device/"

# What travels to the device: tracked and untracked-not-ignored files, and the carried .device/.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
bundle=$(du -cb .device | tail -1 | cut -f1)
total=$((tree + bundle))
say "sizes:"
row ".device/node.tar.xz" "$(mib "$(stat -c %s .device/node.tar.xz)")"
row "  (uncompressed)" "$(mib "$raw_node")"
row ".device/node_modules.tar.xz" "$(mib "$(stat -c %s .device/node_modules.tar.xz)")"
row "  (uncompressed)" "$(mib "$raw_modules")"
row ".device/gl/ ($(find .device/gl -name '*.deb' | wc -l) .deb files)" "$(mib "$(du -cb .device/gl | tail -1 | cut -f1)")"
row ".device/ in all" "$(mib "$bundle")"
row "working tree (git, not ignored)" "$(mib "$tree")"
row "total that travels" "$(mib "$total")"
[ "$total" -le "$limit" ] || die "$(mib "$total") is over the $(mib "$limit") allowed (the device takes at most 64 MiB)"
say "ok: name .device in the device run's carry (see the top of scripts/gpu-check.sh)"
