//go:build cgo && linux

package pcsc

import (
	"net"
	"syscall"
)

// setQuickAck arms TCP_QUICKACK for the next read. Debian 12's vpcd sends
// a frame's length and body in two writes with Nagle on, so without quick
// ACKs every frame waits for our delayed ACK (~40 ms). Linux clears the
// option by itself, hence once per read.
func setQuickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
