//go:build cibaproxy_bench_pprof

// This file is not part of any build of cibaproxy. bench/run.sh adds it to
// package main of cmd/cibaproxy with go build -overlay (and the
// cibaproxy_bench_pprof tag), so the profiled binary is the real server with
// the real wiring, plus net/http/pprof on a separate loopback listener named
// by CIBAPROXY_BENCH_PPROF. The server's own handler does not serve it.

package main

import (
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("CIBAPROXY_BENCH_PPROF")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("bench pprof listener: %v", err)
	}
	go func() { _ = http.Serve(ln, nil) }()
}
