# cibaproxy — the commands a newcomer needs.
#   make run    build and start the quick start (local upstream, embedded store, demo clients);
#               PORT=8081 DEMO_PORT=9091 METRICS_PORT=9465 when 8080, 9090 or 9464 is taken
#   make test   everything CI runs: the whole suite with -race (every fuzz target's corpus included) and, niced
#               beside it, gofmt, vet, staticcheck and a short fuzz of the parsers a change touched
#               (times: test/README.md, "Time")
#   make test-quick  the unit tests with -race and -short (no browser, no IdP, no built binary)
#   make fuzz   fuzz every parser (FUZZTIME each, 3s; FUZZTIME=5m make fuzz)

GO       ?= go
BIN      := bin/cibaproxy
FUZZTIME ?= 3s
# The fuzz pass of make test (fuzz-smoke): 1 s per target, for the targets
# of the packages whose own files differ from FUZZ_BASE (their merge base
# with HEAD; uncommitted and untracked files count), every target when
# FUZZ_BASE names no commit. A fuzzed package costs an instrumented build of
# its whole dependency graph, shared with nothing else (250–330 CPU
# seconds from a cold cache for all ten): on a clean main it fuzzes nothing.
# Every target's seed corpus runs in go test regardless; make fuzz fuzzes
# every target (FUZZTIME each).
TEST_FUZZTIME ?= 1s
FUZZ_BASE ?= main
STATICCHECK_VERSION := v0.8.2
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
# The race detector's flags for every build of make test and test-quick.
# golang.org/x/crypto/blowfish, the cipher inside bcrypt, is compiled
# without the race instrumentation (-race=false for that package alone): it
# shares no memory between goroutines, and instrumented, one bcrypt check
# at cost 10 took 16 times as long (7.5 s against 0.45 s, measured with
# go test -bench on this machine), which made the bcrypt-bound suites (the
# password and user-code lockouts of test/abuse: 254 s → 107 s in make test,
# 75 s alone) the longest part of make test. Every other package, ours and the dependencies, is
# instrumented. test/testutil's BuildBinary passes the same flags
# (RaceBuildFlags; test/ci TestRaceFlagsMatchMakefile keeps them so).
RACEFLAGS := -race -gcflags=golang.org/x/crypto/blowfish=-race=false
# vet and staticcheck type-check against the compiled dependencies; built
# with -race, those are the very packages the race-enabled tests and server
# need, so a cold build cache compiles the dependency graph once, not once
# plain for the checks and again with -race for the tests. (With -race the
# files under the "race" build tag are the ones checked: test/testutil's
# race_on.go rather than race_off.go.) staticcheck itself is built plain,
# into bin/, and its go list calls get -race through GOFLAGS.
CHECKFLAGS := $(RACEFLAGS)
# go test -vet=off: go test's own vet pass (a subset of go vet's checks,
# cached apart from it) would vet every package a second time.
# The race-enabled server the packages under test/ run, built once for all of
# them (test/testutil runs the binary named by CIBAPROXY_TEST_BIN instead of
# building its own in every package).
RACE_BIN := bin/cibaproxy-race
# The race-enabled server and the test binaries are linked without DWARF
# (-w): an eighth less link CPU (the 48 test binaries 61 → 54 CPU seconds,
# busy machine), and nothing reads it there: panics and the race
# detector's reports symbolise from the binary's own tables.
TEST_LDFLAGS ?= -w
# The four longest packages first (go test starts packages in the order
# given): in ./...'s order test/browser, now as long as test/abuse, came
# after every package under internal/ and, started last, ended a cold run
# 100 s after the others. They spend much of their time waiting on the
# servers and the browser they start; a running package holds one of go
# test's -p slots, and the packages under internal/ take the slots the
# shorter two free.
SLOW_PKGS ?= ./test/browser ./test/abuse ./test/scale ./test/e2e
TEST_PKGS ?= ./...
TEST_P   ?= 4
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test test-quick vet vet-go staticcheck staticcheck-bin gofmt-check fuzz fuzz-smoke interop-deps clean bench

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/cibaproxy

# The ports of the quick start: cibaproxy, the demo device, cibaproxy's metrics.
PORT         ?= 8080
DEMO_PORT    ?= 9090
METRICS_PORT ?= 9464

run: build
	@PORT=$(PORT) DEMO_PORT=$(DEMO_PORT) METRICS_PORT=$(METRICS_PORT) scripts/quickstart.sh $(BIN)

vet: vet-go staticcheck gofmt-check

vet-go:
	$(GO) vet $(CHECKFLAGS) ./...

# bin/staticcheck is built only when it is missing or is not
# $(STATICCHECK_VERSION) built by this go: built from a cold build cache,
# it costs more than two minutes of CPU (its own dependencies, plain).
staticcheck: staticcheck-bin
	GOFLAGS="$$($(GO) env GOFLAGS) $(CHECKFLAGS)" bin/staticcheck ./...

staticcheck-bin:
	@if $(GO) version -m bin/staticcheck 2>/dev/null | grep -q "^bin/staticcheck: $$($(GO) env GOVERSION)$$" && \
	  $(GO) version -m bin/staticcheck | grep -Eq "^[[:space:]]+mod[[:space:]]+honnef.co/go/tools[[:space:]]+$(STATICCHECK_VERSION)[[:space:]]"; then \
	  echo "bin/staticcheck is $(STATICCHECK_VERSION), built by $$($(GO) env GOVERSION)"; \
	else echo "GOBIN=$(CURDIR)/bin $(GO) install $(STATICCHECK)"; GOBIN=$(CURDIR)/bin $(GO) install $(STATICCHECK); fi

gofmt-check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

interop-deps:
	cd test/interop && npm ci --no-audit --no-fund
	cd test/idp && npm ci --no-audit --no-fund

# make test: the gofmt check, go vet, staticcheck (its build included when
# bin/staticcheck is missing) and the fuzz smoke run ($(BACKGROUND)) start
# first, in the background under nice -n 19; then, in the foreground, the
# race-enabled server (it compiles most of the dependency graph, go-redis
# and the OTLP exporter's gRPC included, which the packages under test/
# need before they can start) and go test. npm ci (interop-deps) runs
# first, alone: go vet's, staticcheck's and the fuzz run's ./... walk
# test/interop/node_modules, which npm ci deletes and fills again.
# The niced work takes the time the foreground leaves the cores idle (the
# server's link, the few packages on the compile's critical path, the
# packages under test/ waiting on the servers they start: expiries, retry
# backoffs, long polls) and yields the cores to the foreground whenever it
# wants them (CFS gives a nice-19 task about 1.5 % of a core against a
# nice-0 one), so the tests' timing is not disturbed. staticcheck's own
# build (plain, 135–160 CPU seconds cold) shares nothing with the race
# build, so it starts at once rather than after the server. They run side by
# side (make -j, each one's output kept together), as the fuzz pass is
# bound by its time per target as much as by the CPU. go vet finds in the
# build cache what the server's build and go test compiled (the same -race
# packages): the graph is compiled once. The background output is printed
# after go test's, and make test fails if any of it failed. `make vet` runs
# the checks alone, in the foreground.
BACKGROUND ?= gofmt-check vet-go staticcheck fuzz-smoke
BG_LOG := bin/background.log
# Not $(MAKE) in the recipe: make -n would run such a line, go test included.
BG_MAKE = $(MAKE)

test: interop-deps
	@mkdir -p bin; rm -f $(BG_LOG)
	@( nice -n 19 $(BG_MAKE) -k -j 4 --output-sync=target --no-print-directory FUZZTIME=$(TEST_FUZZTIME) $(BACKGROUND) >$(BG_LOG) 2>&1; echo "exit $$?" >>$(BG_LOG) ) & bg=$$!; \
	echo "$(BACKGROUND) run niced in the background (log: $(BG_LOG))"; \
	echo "$(GO) build $(RACEFLAGS) '-ldflags=$(TEST_LDFLAGS)' -o $(RACE_BIN) ./cmd/cibaproxy"; \
	if $(GO) build $(RACEFLAGS) '-ldflags=$(TEST_LDFLAGS)' -o $(RACE_BIN) ./cmd/cibaproxy; then \
	  echo "CIBAPROXY_TEST_BIN=$(CURDIR)/$(RACE_BIN) $(GO) test $(RACEFLAGS) '-ldflags=$(TEST_LDFLAGS)' -vet=off -count=1 -p $(TEST_P) $(SLOW_PKGS) $(TEST_PKGS)"; \
	  CIBAPROXY_TEST_BIN=$(CURDIR)/$(RACE_BIN) $(GO) test $(RACEFLAGS) '-ldflags=$(TEST_LDFLAGS)' -vet=off -count=1 -p $(TEST_P) $(SLOW_PKGS) $(TEST_PKGS); rc=$$?; \
	else rc=1; echo "make test: the race-enabled server did not build; go test not run"; fi; \
	wait $$bg; echo "----- $(BACKGROUND), niced beside go test:"; cat $(BG_LOG); \
	[ "$$(tail -n 1 $(BG_LOG))" = "exit 0" ] || { echo "make test: $(BACKGROUND) failed"; rc=1; }; \
	exit $$rc

# The unit tests only: -short skips the tests that start the test IdP (node)
# and the Redis Cluster and Sentinel failovers (make test runs them). -p 8:
# many packages wait on the Redis servers they start, and go test's default
# (one package a core) left the 2 cores idle: 98 s at the default, 63 s at
# -p 8 on a quiet 2-core machine (test/README.md, "Time").
QUICK_P ?= 8
test-quick:
	$(GO) test $(RACEFLAGS) '-ldflags=$(TEST_LDFLAGS)' -short -count=1 -p $(QUICK_P) ./internal/... ./cmd/...

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

fuzz-smoke:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh --changed-since $(FUZZ_BASE)

# Poll, bc-authorize and memory benchmarks against a bare net/http reference
# (needs wrk; under 15 minutes, BENCH_QUICK=1 under 3; see BENCHMARKS.md and
# bench/run.sh). The last line says how long it took. BENCH_PHASES runs only
# those phases (bench/run.sh PHASE...).
bench:
	@t0=$$(date +%s); GO=$(GO) bench/run.sh $(BENCH_PHASES); rc=$$?; \
	echo "make bench took $$(($$(date +%s) - t0)) s"; exit $$rc

clean:
	rm -rf bin data
