#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 5s).
#
#   scripts/fuzz.sh                    every target (make fuzz)
#   scripts/fuzz.sh --changed-since B  only the targets of the packages whose
#                                      own files (testdata/ included) differ
#                                      from the merge base of B and HEAD,
#                                      uncommitted and untracked files
#                                      counted (make test's smoke run); every
#                                      target when B names no commit
#
# A package's targets need its test binary built with the fuzzing
# instrumentation, which instruments its whole dependency graph, standard
# library included, and shares nothing with the race-enabled build: about
# 210 CPU seconds from a cold build cache for the ten fuzzed packages
# (test/README.md, "Time"). The smoke run of make test pays it only for the
# packages a change touched.
#
# With KEEP_CORPUS=1 the inputs the fuzzer found interesting are copied from
# Go's cache into the package's testdata/fuzz/TARGET/, to be committed: every
# plain `go test` replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}

# Each package's test binary is built once, with the fuzzing
# instrumentation (go test -c -fuzz), and each of its targets runs from it:
# a go test -fuzz per target would link the binary again each time. It is
# built with the build tag "fuzzing", which leaves out the test files that
# only plain tests need and that would drag a heavy dependency into the
# instrumented build (internal/httpapi's Redis runs of its tests on every
# store: go-redis); the binary runs nothing but the fuzz targets. -vet=off: go
# test's own vet pass would analyse the whole graph for each package (about
# a seventh of the build's CPU), and make test and make vet run go vet.
bindir=$(mktemp -d)
trap 'rm -rf "$bindir"' EXIT
cachedir=$(go env GOCACHE)/fuzz

# changed: the directories, relative to the module root, of the packages
# whose files changed since base ($1); a file under a package's testdata/
# counts for that package.
changed() {
  { git diff --no-renames --name-only "$1" -- && git ls-files --others --exclude-standard; } |
    awk '{ if (sub(/\/testdata\/.*/, "")) print; else { sub(/\/[^\/]*$/, ""); print } }' | sort -u
}

only=""
case "${1:-}" in
  --changed-since)
    ref=${2:?"usage: scripts/fuzz.sh [--changed-since REF]"}
    if base=$(git merge-base "$ref" HEAD 2>/dev/null); then
      only=$(changed "$base")
      echo "fuzz: the packages changed since $ref ($(git rev-parse --short "$base")) only"
      [ -n "$only" ] || only=" "
    else
      echo "fuzz: $ref names no commit: every target"
    fi
    ;;
  "") ;;
  *) echo "usage: scripts/fuzz.sh [--changed-since REF]" >&2; exit 2 ;;
esac
root=$(pwd)

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
  if [ -n "$only" ] && ! grep -qxF "${dir#"$root"/}" <<<"$only"; then
    echo "fuzz: $pkg unchanged, not fuzzed (make fuzz fuzzes it)"
    continue
  fi
  go test -c -fuzz . -tags fuzzing -vet=off -o "$bindir/fuzz.test" "$pkg"
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
