//go:build linux

package vpcd

import (
	"net"
	"syscall"
)

// quickAck sets TCP_QUICKACK on a socket before each read. Linux leaves
// quick-ACK mode again by itself (after a few segments, or when it decides
// the flow is interactive), so setting it once is not enough: the option
// has to be re-armed before every read (vsmartcard.md §4, "The fix in Go").
// Without it, Debian 12's vpcd, which sends the length and the body in two
// send() calls with Nagle on, waits ~40 ms for our delayed ACK of the length
// before it sends the body.
type quickAck struct {
	rc  syscall.RawConn
	set func(fd uintptr) // allocated once: Control must not allocate per read
	err error
	off bool
}

// newQuickAck returns nil for connections without a socket (net.Pipe, test
// wrappers): arm is then a no-op.
func newQuickAck(c net.Conn) *quickAck {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	q := &quickAck{rc: rc}
	q.set = func(fd uintptr) {
		q.err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	}
	return q
}

// arm sets TCP_QUICKACK for the next read. A socket that refuses the option
// (not TCP) is not asked again.
func (q *quickAck) arm() {
	if q == nil || q.off {
		return
	}
	if err := q.rc.Control(q.set); err != nil || q.err != nil {
		q.off = true
	}
}
