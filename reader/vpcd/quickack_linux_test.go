//go:build linux

package vpcd

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQuickAck(t *testing.T) {
	l := listen(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server := recv(t, accepted)
	defer server.Close()

	q := newQuickAck(server)
	require.NotNil(t, q)
	q.arm()
	q.arm()
	require.False(t, q.off, "TCP must accept TCP_QUICKACK: %v", q.err)

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	require.Nil(t, newQuickAck(p1), "no socket, nothing to arm")
	newQuickAck(p1).arm() // nil-safe

	ul, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	require.NoError(t, err)
	defer ul.Close()
	uc, err := net.Dial("unix", ul.Addr().String())
	require.NoError(t, err)
	defer uc.Close()
	uq := newQuickAck(uc)
	require.NotNil(t, uq)
	uq.arm()
	require.True(t, uq.off, "a unix socket refuses the option once, then is left alone")
}
