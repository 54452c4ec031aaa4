// Package livepcsc is the policy shared by every test that needs a running
// pcscd with the vpcd driver: skip with a visible reason when it is missing,
// unless VALUECHIP_REQUIRE_E2E=1 (CI), where a missing pcscd is a failure;
// and a cross-process lock, because go test runs package binaries in
// parallel while pcscd offers only two vpcd slots.
package livepcsc

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Socket is pcsc-lite's client socket on Debian.
const Socket = "/run/pcscd/pcscd.comm"

// VPCDAddr returns the address vpcd listens on for a slot (35963 + slot).
func VPCDAddr(slot int) string { return fmt.Sprintf("127.0.0.1:%d", 35963+slot) }

// Required reports whether end-to-end tests must run (CI sets it).
func Required() bool { return os.Getenv("VALUECHIP_REQUIRE_E2E") == "1" }

// Probe says why live PC/SC tests cannot run here, or "" when they can:
// pcscd's socket accepts connections and vpcd listens on both slots.
func Probe() string {
	c, err := net.DialTimeout("unix", Socket, time.Second)
	if err != nil {
		return fmt.Sprintf("pcscd is not running (%v); start it with: pcscd --foreground", err)
	}
	c.Close()
	// Look at the listening sockets rather than dialling vpcd: a connection
	// would count as a card insertion.
	tab, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return fmt.Sprintf("cannot read /proc/net/tcp: %v", err)
	}
	for slot := 0; slot < 2; slot++ {
		// Local address 00000000:8C7B (or 0100007F:...) in state 0A (LISTEN).
		port := fmt.Sprintf(":%04X 00000000:0000 0A", 35963+slot)
		if !strings.Contains(string(tab), port) {
			return fmt.Sprintf("vpcd does not listen on port %d: is vsmartcard-vpcd installed, and was pcscd started after it?", 35963+slot)
		}
	}
	return ""
}

// Require skips t (or fails it under VALUECHIP_REQUIRE_E2E=1) when pcscd
// with vpcd is not available, then takes the machine-wide lock for the
// duration of the test.
func Require(t testing.TB) {
	t.Helper()
	if why := Probe(); why != "" {
		if Required() {
			t.Fatalf("end-to-end test required (VALUECHIP_REQUIRE_E2E=1) but %s", why)
		}
		t.Skipf("skipping end-to-end test: %s", why)
	}
	Lock(t)
}

// The machine-wide lock is held once per process: flock conflicts between
// two open descriptions of the same file even within one process, so a
// test that takes it twice (a helper calling Require again) would
// otherwise wait for itself forever.
var (
	lockMu   sync.Mutex
	lockFile *os.File
	holders  int
)

// Lock takes an exclusive flock shared by all test processes on the
// machine and releases it when t ends. Within one process it is
// re-entrant.
func Lock(t testing.TB) {
	t.Helper()
	lockMu.Lock()
	defer lockMu.Unlock()
	if holders == 0 {
		path := filepath.Join(os.TempDir(), "valuechip-pcscd.lock")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatalf("open lock %s: %v", path, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			t.Fatalf("lock %s: %v", path, err)
		}
		lockFile = f
	}
	holders++
	t.Cleanup(func() {
		lockMu.Lock()
		defer lockMu.Unlock()
		holders--
		if holders == 0 {
			_ = syscall.Flock(int(lockFile.Fd()), syscall.LOCK_UN)
			lockFile.Close()
			lockFile = nil
		}
	})
}
