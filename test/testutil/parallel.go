package testutil

import (
	"flag"
	"strconv"
)

// DefaultParallel makes n the number of t.Parallel tests that run at once in
// the package (go test's -parallel, whose default is GOMAXPROCS) unless the
// command line set -parallel. It is for TestMain, before m.Run, in packages
// whose tests spend their time waiting on the processes they start (an
// expiry, a retry backoff, a long poll) rather than on the CPU, so that
// more of them wait at once than there are cores. Each such test runs its
// own servers on their own ports and data directories.
func DefaultParallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			set = true
		}
	})
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}
