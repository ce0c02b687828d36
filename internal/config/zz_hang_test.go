package config

import (
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

func FuzzHang(f *testing.F) {
	for _, n := range []string{"../../examples/quickstart.yaml"} {
		d, _ := os.ReadFile(n)
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				name := fmt.Sprintf("/tmp/hang-%x", sha256.Sum256(data))
				os.WriteFile(name, data, 0o644)
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				os.WriteFile(name+".stack", buf[:n], 0o644)
				os.Exit(3)
			}
		}()
		parse(data, "/nonexistent-cibaproxy-fuzz/fuzz.yaml", noEnv)
		close(done)
	})
}
