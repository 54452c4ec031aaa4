//go:build !linux

package vpcd

import "net"

// quickAck is a no-op outside Linux: TCP_QUICKACK is Linux-only, and the
// Nagle/delayed-ACK stall it works around was measured against Debian's
// vpcd (vsmartcard.md TL;DR).
type quickAck struct{ off bool }

func newQuickAck(net.Conn) *quickAck { return nil }

func (*quickAck) arm() {}
