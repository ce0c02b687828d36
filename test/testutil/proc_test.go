package testutil

import (
	"flag"
	"net"
	"os"
	"strings"
	"testing"
)

// binary is the cibaproxy executable the tests of this package start.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	bin, cleanup := MustBuild()
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// TestStartRetriesAnAddressTakenBeforeTheBind: when a program that does
// not reserve its ports binds the listen or the metrics address Start
// chose before the server does, the server exits with "address already in
// use" and Start starts it again on fresh addresses: the test goes on.
func TestStartRetriesAnAddressTakenBeforeTheBind(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping with -short: the test starts the built server")
	}
	for _, tc := range []struct {
		name  string
		taken int // which address Start chooses is taken: 0 listen, 1 metrics
	}{{"listen", 0}, {"metrics", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			occupied, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer occupied.Close()
			calls := 0
			o := Options{Binary: binary, freeAddr: func() (string, error) {
				calls++
				if calls-1 == tc.taken {
					return occupied.Addr().String(), nil
				}
				return FreeAddr()
			}}
			s := Start(t, o)
			taken := occupied.Addr().String()
			if s.Addr == taken || strings.TrimPrefix(s.MetricsURL, "http://") == taken {
				t.Fatalf("the server runs on the taken address %s", taken)
			}
			if !strings.Contains(s.Logs(), "address already in use") || !strings.Contains(s.Logs(), "cibaproxy start #2") {
				t.Errorf("the first start did not fail on the taken address, or no second start:\n%s", s.Logs())
			}
			res, err := HTTP.Get(s.MetricsURL + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("metrics /healthz: %s", res.Status)
			}
		})
	}
}

// TestBoundElsewhereOnlyForChosenAddresses: only a bind failure on an
// address Start chose is a reason to start again on fresh ones; one the
// test gave (Options.Addr) is not replaced, nor is any other failure
// retried.
func TestBoundElsewhereOnlyForChosenAddresses(t *testing.T) {
	if !boundElsewhere("listen on 127.0.0.1:5: listen tcp 127.0.0.1:5: bind: address already in use", []string{"127.0.0.1:5"}) {
		t.Error("a bind failure on a chosen address is not recognised")
	}
	if boundElsewhere("listen on 127.0.0.1:5: listen tcp 127.0.0.1:5: bind: address already in use", []string{"127.0.0.1:6"}) {
		t.Error("a bind failure on an address Start did not choose is taken for one it did")
	}
	if boundElsewhere("store: open: timeout", []string{"127.0.0.1:5"}) {
		t.Error("another failure is taken for a bind failure")
	}
}
