//go:build cgo && !linux

package pcsc

import "net"

// setQuickAck is Linux-only; elsewhere frames are just slower.
func setQuickAck(net.Conn) {}
