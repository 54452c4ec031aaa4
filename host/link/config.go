package link

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/internal/atomicfile"
	"github.com/valuechip/valuechip/internal/secretfile"
)

// Configuration errors.
var (
	// ErrConfig: the terminal file is malformed or incomplete.
	ErrConfig = errors.New("link: invalid terminal configuration")
	// ErrInsecureConfig: the terminal file can be read by other users;
	// it holds the TMK and the SAM key (docs/terminal.md §1).
	ErrInsecureConfig = errors.New("link: terminal configuration readable by group or others")
)

// Config is the terminal file written by `valuechip terminal register`
// (docs/terminal.md §1): the terminal's identity, the money server it
// talks to, its terminal master key (docs/iso8583.md §2.1) and the debit
// master key of its software security module (docs/purse.md §12).
//
// Its keys print as key check values only; json.Marshal of a Config also
// writes KCVs, never keys. Encode and SaveConfig write the real file.
type Config struct {
	TerminalID string // DE 41, 8 printable ASCII characters
	MerchantID string // DE 42, 15 printable ASCII characters
	Server     string // host:port of the money server
	TMK        iso8583.Key
	SAM        wire.VersionedKey // the SAM's debit master key and its version
}

// configFile is the on-disk form: keys in hex.
type configFile struct {
	TerminalID string `json:"terminal_id"`
	MerchantID string `json:"merchant_id"`
	Server     string `json:"server"`
	TMK        string `json:"tmk"`
	SAM        struct {
		Version int    `json:"version"`
		Key     string `json:"key"`
	} `json:"sam"`
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// Validate checks the fields against docs/iso8583.md §3.1 (DE 41 ans 8,
// DE 42 ans 15) and the key sizes (an AES-128 TMK, §4).
func (c Config) Validate() error {
	switch {
	case len(c.TerminalID) != 8 || !printable(c.TerminalID):
		return fmt.Errorf("%w: terminal_id %q: want 8 printable ASCII characters", ErrConfig, c.TerminalID)
	case len(c.MerchantID) != 15 || !printable(c.MerchantID):
		return fmt.Errorf("%w: merchant_id %q: want 15 printable ASCII characters", ErrConfig, c.MerchantID)
	case len(c.TMK) != 16:
		return fmt.Errorf("%w: tmk: want 32 hex digits (AES-128)", ErrConfig)
	case c.SAM.Version == 0:
		return fmt.Errorf("%w: sam.version: want 1..255", ErrConfig)
	}
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		return fmt.Errorf("%w: server %q: want host:port", ErrConfig, c.Server)
	}
	if err := c.SAM.Key.Check(); err != nil {
		return fmt.Errorf("%w: sam.key: %v", ErrConfig, err)
	}
	return nil
}

// String shows the configuration with key check values in place of keys.
func (c Config) String() string {
	return fmt.Sprintf("terminal %s merchant %s server %s TMK %s SAM %s", c.TerminalID, c.MerchantID, c.Server, c.TMK, c.SAM)
}

// ParseConfig parses and validates the JSON of a terminal file.
func ParseConfig(b []byte) (Config, error) {
	var f configFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: trailing data", ErrConfig)
	}
	key := func(name, s string) (iso8583.Key, error) {
		k, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: not hex", ErrConfig, name)
		}
		return iso8583.Key(k), nil
	}
	c := Config{TerminalID: f.TerminalID, MerchantID: f.MerchantID, Server: f.Server}
	var err error
	if c.TMK, err = key("tmk", f.TMK); err != nil {
		return Config{}, err
	}
	if f.SAM.Version < 1 || f.SAM.Version > 255 {
		return Config{}, fmt.Errorf("%w: sam.version %d: want 1..255", ErrConfig, f.SAM.Version)
	}
	c.SAM.Version = byte(f.SAM.Version)
	if c.SAM.Key, err = key("sam.key", f.SAM.Key); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Encode returns the terminal file: JSON with the keys in hex. Whoever
// holds it can act as the terminal; write it with mode 0600 (SaveConfig).
func (c Config) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var f configFile
	f.TerminalID, f.MerchantID, f.Server = c.TerminalID, c.MerchantID, c.Server
	f.TMK = strings.ToUpper(hex.EncodeToString(c.TMK))
	f.SAM.Version = int(c.SAM.Version)
	f.SAM.Key = strings.ToUpper(hex.EncodeToString(c.SAM.Key))
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("link: encode configuration: %w", err)
	}
	return append(b, '\n'), nil
}

// SaveConfig writes the terminal file atomically with mode 0600.
func SaveConfig(path string, c Config) error {
	b, err := c.Encode()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("link: %w", err)
	}
	// atomicfile writes through os.CreateTemp, which creates mode 0600.
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("link: write %s: %w", path, err)
	}
	return nil
}

// LoadConfig reads a terminal file. It refuses a file that group or
// others may read or write (on systems with Unix permissions): it holds the
// TMK and the SAM key.
func LoadConfig(path string) (Config, error) {
	b, err := secretfile.Read(path, 0)
	if errors.Is(err, secretfile.ErrExposed) {
		return Config{}, fmt.Errorf("%w: %w", ErrInsecureConfig, err)
	}
	if err != nil {
		return Config{}, fmt.Errorf("link: terminal file: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// StateDir is the default state directory of the terminal file at path:
// the path without its extension plus ".state" (term.json → term.state),
// so several terminal files may share a directory (docs/terminal.md §2).
func StateDir(configPath string) string {
	return strings.TrimSuffix(configPath, filepath.Ext(configPath)) + ".state"
}
