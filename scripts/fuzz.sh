#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 5s).
# With KEEP_CORPUS=1 the inputs the fuzzer found interesting are copied from
# Go's cache into the package's testdata/fuzz/TARGET/, to be committed: every
# plain `go test` replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
go list -f '{{.Dir}} {{.ImportPath}}' ./... | while read -r dir pkg; do
  targets=$(cat "$dir"/*_test.go 2>/dev/null | grep -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/^func //' | sort -u || true)
  for target in $targets; do
    echo "fuzz $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
    if [ "${KEEP_CORPUS:-}" = 1 ]; then
      cache="$(go env GOCACHE)/fuzz/$pkg/$target"
      if [ -d "$cache" ]; then
        mkdir -p "$dir/testdata/fuzz/$target"
        cp -n "$cache"/* "$dir/testdata/fuzz/$target/" 2>/dev/null || true
      fi
    fi
  done
done
