# cibaproxy — the commands a newcomer needs.
#   make run    build and start the quick start (local upstream, embedded store, demo clients);
#               PORT=8081 DEMO_PORT=9091 METRICS_PORT=9465 when 8080, 9090 or 9464 is taken
#   make test   everything CI runs: vet, staticcheck, gofmt, the whole suite with -race, a short fuzz of every parser
#   make fuzz   fuzz every parser longer (FUZZTIME=5m make fuzz)

GO       ?= go
BIN      := bin/cibaproxy
FUZZTIME ?= 5s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test vet fuzz interop-deps clean bench

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/cibaproxy

# The ports of the quick start: cibaproxy, the demo device, cibaproxy's metrics.
PORT         ?= 8080
DEMO_PORT    ?= 9090
METRICS_PORT ?= 9464

run: build
	@PORT=$(PORT) DEMO_PORT=$(DEMO_PORT) METRICS_PORT=$(METRICS_PORT) scripts/quickstart.sh $(BIN)

vet:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

interop-deps:
	cd test/interop && npm ci --no-audit --no-fund
	cd test/idp && npm ci --no-audit --no-fund

test: vet interop-deps
	$(GO) test -race -count=1 ./...
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Poll, bc-authorize and memory benchmarks against a bare net/http reference
# (needs wrk; about 5 minutes; see BENCHMARKS.md and bench/run.sh).
bench:
	GO=$(GO) bench/run.sh

clean:
	rm -rf bin data
