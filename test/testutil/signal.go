package testutil

import (
	"errors"
	"fmt"
	"os"
)

// Signal sends sig to the running cibaproxy process (for instance
// syscall.SIGHUP, which reloads its clients).
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return errors.New("testutil: cibaproxy is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testutil: signal cibaproxy: %w", err)
	}
	return nil
}
