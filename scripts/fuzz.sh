#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 5s).
# With KEEP_CORPUS=1 the inputs the fuzzer found interesting are copied from
# Go's cache into the package's testdata/fuzz/TARGET/, to be committed: every
# plain `go test` replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}

# Each package's test binary is built once, with the fuzzing
# instrumentation (go test -c -fuzz), and each of its targets runs from it:
# a go test -fuzz per target would link the binary again each time.
bindir=$(mktemp -d)
trap 'rm -rf "$bindir"' EXIT
cachedir=$(go env GOCACHE)/fuzz

# fuzz_one DIR PKG TARGET fuzzes one target with the package's binary
# $bindir/fuzz.test, in the package's directory (for testdata/fuzz), with
# the corpus cache go test -fuzz uses. Go 1.26's fuzz coordinator can fail
# a target with a bare "context deadline exceeded" when -fuzztime runs out
# while a worker is busy (golang/go#75804, fixed in Go 1.27): no input
# failed and none is written. Such a run is retried once; a run that found
# a failing input ("Failing input written to …") always fails.
fuzz_one() {
  local out rc
  for attempt in 1 2; do
    set +e
    out=$(cd "$1" && "$bindir/fuzz.test" -test.run '^$' -test.fuzz "^${3}\$" \
      -test.fuzztime "$fuzztime" -test.fuzzcachedir "$cachedir/$2" 2>&1)
    rc=$?
    set -e
    printf '%s\n' "$out"
    [ "$rc" = 0 ] && return 0
    if grep -q 'Failing input written to' <<<"$out" || ! grep -q '^    context deadline exceeded$' <<<"$out"; then
      echo "FAIL	$2 $3"
      return "$rc"
    fi
    echo "fuzz: $3 hit the fuzz coordinator's deadline race (golang/go#75804, no failing input); attempt $attempt of 2"
  done
  echo "fuzz: $3: the deadline race twice in a row, no failing input: not counted as a failure"
}
go list -f '{{.Dir}} {{.ImportPath}}' ./... | while read -r dir pkg; do
  targets=$(cat "$dir"/*_test.go 2>/dev/null | grep -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/^func //' | sort -u || true)
  [ -n "$targets" ] || continue
  go test -c -fuzz . -o "$bindir/fuzz.test" "$pkg"
  for target in $targets; do
    echo "fuzz $pkg $target ($fuzztime)"
    fuzz_one "$dir" "$pkg" "$target"
    echo "ok	$pkg $target"
    if [ "${KEEP_CORPUS:-}" = 1 ]; then
      cache="$cachedir/$pkg/$target"
      if [ -d "$cache" ]; then
        mkdir -p "$dir/testdata/fuzz/$target"
        cp -n "$cache"/* "$dir/testdata/fuzz/$target/" 2>/dev/null || true
      fi
    fi
  done
done
