package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// pty is a pseudo-terminal: what the test writes to master is what a user
// types on the terminal tty; screen is everything the terminal shows.
type pty struct {
	master, tty *os.File
	mu          sync.Mutex
	screen      strings.Builder
}

func openPTY(t *testing.T) *pty {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the terminal: %v", err)
	}
	p := &pty{master: m, tty: tty}
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := m.Read(buf)
			p.mu.Lock()
			p.screen.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { tty.Close(); m.Close() })
	return p
}

func (p *pty) shown() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.screen.String()
}

func (p *pty) echo(t *testing.T) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(p.tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("termios: %v", err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// waitFor waits until the terminal shows the n-th prompt s and has echo
// turned off, so that what is typed next would be echoed if it were on.
func (p *pty) waitFor(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(p.shown(), s) < n || p.echo(t) {
		if time.Now().After(deadline) {
			t.Fatalf("the terminal never showed prompt %d %q with echo off; it shows %q", n, s, p.shown())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHashSecretOnATerminal: on a terminal, hash-secret prompts, reads the
// secret twice without echoing it and prints its hash; Ctrl-C ends it
// with exit 130 and the terminal's echo back on.
func TestHashSecretOnATerminal(t *testing.T) {
	const secret = "typed-on-the-terminal"
	t.Run("prompt, no echo, hash", func(t *testing.T) {
		p := openPTY(t)
		var stdout strings.Builder
		done := make(chan int, 1)
		go func() {
			done <- run(context.Background(), []string{"hash-secret"}, p.tty, &stdout, p.tty)
		}()
		p.waitFor(t, "Secret (not shown): ", 1)
		p.master.WriteString(secret + "\n")
		p.waitFor(t, "Again, to check: ", 1)
		p.master.WriteString(secret + "\n")
		if code := <-done; code != 0 {
			t.Fatalf("exit %d; the terminal shows %q", code, p.shown())
		}
		if strings.Contains(p.shown(), secret) {
			t.Errorf("the secret was echoed: the terminal shows %q", p.shown())
		}
		if !p.echo(t) {
			t.Error("echo is still off after hash-secret")
		}
		hash := strings.TrimSpace(stdout.String())
		if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(secret)); err != nil {
			t.Errorf("printed %q, not a hash of the secret: %v", hash, err)
		}
	})
	t.Run("two different entries hash nothing", func(t *testing.T) {
		p := openPTY(t)
		var stdout strings.Builder
		done := make(chan int, 1)
		go func() {
			done <- run(context.Background(), []string{"hash-secret"}, p.tty, &stdout, p.tty)
		}()
		p.waitFor(t, "Secret (not shown): ", 1)
		p.master.WriteString(secret + "\n")
		p.waitFor(t, "Again, to check: ", 1)
		p.master.WriteString(secret + "x\n")
		if code := <-done; code != 1 || stdout.String() != "" {
			t.Errorf("exit %d, stdout %q; want 1 and nothing", code, stdout.String())
		}
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(p.shown(), "differ") {
			if time.Now().After(deadline) {
				t.Fatalf("the terminal shows %q, not that the entries differ", p.shown())
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("Ctrl-C ends it and restores echo", func(t *testing.T) {
		p := openPTY(t)
		// main turns SIGINT into the cancellation of this context.
		ctx, interrupt := context.WithCancel(context.Background())
		defer interrupt()
		var stdout strings.Builder
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"hash-secret"}, p.tty, &stdout, p.tty)
		}()
		p.waitFor(t, "Secret (not shown): ", 1)
		interrupt()
		select {
		case code := <-done:
			if code != 130 {
				t.Errorf("exit %d after Ctrl-C, want 130", code)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("hash-secret did not end on Ctrl-C")
		}
		if !p.echo(t) {
			t.Error("echo is still off after Ctrl-C")
		}
		if stdout.String() != "" {
			t.Errorf("printed %q after Ctrl-C", stdout.String())
		}
	})
}

// TestHashSecretPiped: piped standard input still works, without a prompt.
func TestHashSecretPiped(t *testing.T) {
	code, stdout, stderr := runCLI(t, "piped-secret\n", "hash-secret")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(stdout)), []byte("piped-secret")); err != nil {
		t.Errorf("printed %q: %v", stdout, err)
	}
	if code, _, stderr := runCLI(t, "", "hash-secret"); code != 2 || !strings.Contains(stderr, "empty") {
		t.Errorf("empty input: exit %d, stderr %q; want 2 saying it is empty", code, stderr)
	}
}
