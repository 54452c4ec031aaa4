// Package connect turns a reader name, as users type it, into a connection
// and a ready host stack. It is the one place that knows every backend:
//
//	emu:PATH       the in-process emulated chip whose image lives in PATH
//	               (created from the sample profile on first use); no
//	               pcscd needed
//	tcp:HOST:PORT  an emulated card served with `valuechip emulate --listen`
//	replay:FILE    a recorded session (see reader.ParseDump), no card needed
//	anything else  a PC/SC reader: an index, a name fragment, or "" for the
//	               reader that holds a card (VALUECHIP_READER overrides "")
package connect

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/emu"
	"github.com/valuechip/valuechip/reader/pcsc"
	"github.com/valuechip/valuechip/reader/vpcd"
)

// Options tune how a reader is opened.
type Options struct {
	// Protocol asks PC/SC for T=0 or T=1; ProtocolUnknown accepts either.
	Protocol reader.Protocol
	// Exclusive opens a PC/SC reader in exclusive share mode.
	Exclusive bool
}

// Scheme prefixes of non-PC/SC reader names.
const (
	SchemeEmu    = "emu:"
	SchemeTCP    = "tcp:"
	SchemeReplay = "replay:"
)

// Open connects to the card named by name.
func Open(ctx context.Context, name string, o Options) (reader.Conn, error) {
	switch {
	case strings.HasPrefix(name, SchemeEmu):
		path := strings.TrimPrefix(name, SchemeEmu)
		if path == "" {
			return nil, fmt.Errorf("reader %q: emu: needs a state file path, e.g. emu:card.json", name)
		}
		card, _, err := profile.Open(path, profile.Sample())
		if err != nil {
			return nil, err
		}
		return emu.Connect(card, name), nil
	case strings.HasPrefix(name, SchemeTCP):
		return vpcd.Dial(ctx, strings.TrimPrefix(name, SchemeTCP))
	case strings.HasPrefix(name, SchemeReplay):
		path := strings.TrimPrefix(name, SchemeReplay)
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reader %q: %w", name, err)
		}
		defer f.Close()
		d, err := reader.ParseDump(f)
		if err != nil {
			return nil, fmt.Errorf("reader %q: %w", name, err)
		}
		return reader.Replay(d), nil
	}
	return openPCSC(ctx, name, o)
}

func openPCSC(ctx context.Context, spec string, o Options) (reader.Conn, error) {
	pc, err := pcsc.Open()
	if err != nil {
		return nil, err
	}
	infos, err := pc.Readers(ctx)
	if err != nil {
		pc.Close()
		return nil, err
	}
	info, err := pcsc.Select(infos, spec)
	if err != nil {
		pc.Close()
		return nil, err
	}
	card, err := pc.Connect(ctx, info.Name, pcsc.ConnectOptions{Protocol: o.Protocol, Exclusive: o.Exclusive})
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &ownedConn{Conn: card, owner: pc}, nil
}

// ownedConn closes the PC/SC context with the card.
type ownedConn struct {
	reader.Conn
	owner io.Closer
}

func (c *ownedConn) Close() error {
	err := c.Conn.Close()
	if cerr := c.owner.Close(); err == nil {
		err = cerr
	}
	return err
}

// Readers lists the PC/SC readers.
func Readers(ctx context.Context) ([]reader.Info, error) {
	pc, err := pcsc.Open()
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	return pc.Readers(ctx)
}
