package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/server"
)

// Server is an in-process money server to generate load against: the
// service `valuechip server` runs (host/server.Open), on a database of the
// caller's, with a fresh key ring of random masters sealed under a fresh KEK,
// serving ISO 8583 on a loopback port.
type Server struct {
	Addr    string
	Service *server.Service
	// TCMaster is the key ring's K_TC master and KeyVersion its version:
	// what the generated cards' keys derive from.
	TCMaster   wire.Key
	KeyVersion byte

	dir    string
	cancel context.CancelFunc
	done   chan error
}

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Dir holds the key ring and KEK files (a temporary directory when
	// empty, removed by Close).
	Dir string
	// LogLevel of the server's slog output, to Log (io.Discard when nil);
	// the default, warn, leaves out the line per advice.
	LogLevel slog.Level
	Log      io.Writer
	// RegistryCache as in server.Options; 2 s (valuechip server's default)
	// when 0, none when negative.
	RegistryCache time.Duration
	MaxBatch      int // advices per group commit, 0: the server's default
}

// StartServer opens the service on dsn and serves on 127.0.0.1 until
// Close.
func StartServer(ctx context.Context, dsn string, o ServerOptions) (*Server, error) {
	s := &Server{}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "valuechip-loadgen-")
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		dir, s.dir = d, d
	}
	fail := func(err error) (*Server, error) {
		if s.dir != "" {
			_ = os.RemoveAll(s.dir)
		}
		return nil, err
	}
	raw := make([]byte, keystore.KEKLen)
	if _, err := rand.Read(raw); err != nil {
		return fail(fmt.Errorf("loadgen: %w", err))
	}
	kek, err := keystore.NewKEK(raw)
	if err != nil {
		return fail(fmt.Errorf("loadgen: %w", err))
	}
	kekFile := filepath.Join(dir, "kek.hex")
	if err := os.WriteFile(kekFile, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		return fail(fmt.Errorf("loadgen: %w", err))
	}
	clear(raw)
	ringFile := filepath.Join(dir, "keyring.json")
	kr, err := keystore.Init(ringFile, kek, keystore.InitOptions{Force: true})
	if err != nil {
		return fail(fmt.Errorf("loadgen: %w", err))
	}
	m, err := kr.Masters(ctx)
	if err != nil {
		return fail(fmt.Errorf("loadgen: %w", err))
	}
	s.TCMaster, s.KeyVersion = m.TC.Key, m.TC.Version
	m.Load.Key.Wipe()
	m.Debit.Key.Wipe()

	w := o.Log
	if w == nil {
		w = io.Discard
	}
	cache := o.RegistryCache
	switch {
	case cache == 0:
		cache = 2 * time.Second
	case cache < 0:
		cache = 0
	}
	svc, err := server.Open(ctx, server.Options{DB: dsn, Keyring: ringFile, KEKFile: kekFile, RegistryCache: cache,
		MaxBatch: o.MaxBatch, Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: o.LogLevel}))})
	if err != nil {
		return fail(fmt.Errorf("loadgen: open server: %w", err))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = svc.Close()
		return fail(fmt.Errorf("loadgen: %w", err))
	}
	s.Service, s.Addr = svc, l.Addr().String()
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- svc.Serve(sctx, l, nil) }()
	return s, nil
}

// Close stops the server, closes its database and removes its key files
// (when StartServer made their directory).
func (s *Server) Close() error {
	s.cancel()
	err := <-s.done
	err = errors.Join(err, s.Service.Close())
	s.TCMaster.Wipe()
	if s.dir != "" {
		err = errors.Join(err, os.RemoveAll(s.dir))
	}
	return err
}
