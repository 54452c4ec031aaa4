package chip

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/valuechip/valuechip/internal/atomicfile"
)

// The card image file: the chip's whole persistent memory as JSON. It is
// data only — records of bytes and an interrupted transaction's journal —
// so loading it runs no code (unlike vicc's pickled images). Registry
// records are themselves JSON (sys/...), applet records are opaque bytes
// (a/<AID>/...).
const (
	ImageFormat  = "valuechip card image"
	ImageVersion = 1
)

// ErrImage reports a file that is not a card image this version can load.
var ErrImage = errors.New("chip: not a valid card image")

type imageFile struct {
	Format  string            `json:"format"`
	Version int               `json:"version"`
	ATR     string            `json:"atr"`
	Writes  uint64            `json:"persistent_writes"`
	Records map[string]string `json:"records"` // key → hex value
	// An interrupted transaction: rolled forward at the next power-up if
	// Marked (its commit mark was written), discarded otherwise.
	Journal []journalEntry `json:"journal,omitempty"`
	InTx    bool           `json:"in_transaction,omitempty"`
	Marked  bool           `json:"commit_marked,omitempty"`
}

type journalEntry struct {
	Key     string `json:"key"`
	Value   string `json:"value,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

// MarshalImage returns the chip's persistent state as a card image.
func (c *Chip) MarshalImage() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.marshalImage()
}

func (c *Chip) marshalImage() ([]byte, error) {
	f := imageFile{
		Format: ImageFormat, Version: ImageVersion, ATR: fmt.Sprintf("%X", c.atr),
		Writes: c.mem.writes, Records: make(map[string]string, len(c.mem.records)),
		InTx: c.mem.inTx, Marked: c.mem.marked,
	}
	for k, v := range c.mem.records {
		f.Records[k] = hex.EncodeToString(v)
	}
	for _, e := range c.mem.journal {
		f.Journal = append(f.Journal, journalEntry{Key: e.Key, Value: hex.EncodeToString(e.Value), Deleted: e.Deleted})
	}
	return json.MarshalIndent(f, "", "  ")
}

// UnmarshalImage builds a chip (powered off) from a card image. The
// options give the modules the chip implements and its random source.
func UnmarshalImage(b []byte, opts ...Option) (*Chip, error) {
	var f imageFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	if f.Format != ImageFormat {
		return nil, fmt.Errorf("%w: format %q", ErrImage, f.Format)
	}
	if f.Version != ImageVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads version %d", ErrImage, f.Version, ImageVersion)
	}
	atr, err := hex.DecodeString(f.ATR)
	if err != nil || len(atr) < 2 || len(atr) > 33 {
		return nil, fmt.Errorf("%w: bad ATR %q", ErrImage, f.ATR)
	}
	c := New(atr, opts...)
	c.mem.records = make(map[string][]byte, len(f.Records))
	for k, v := range f.Records {
		b, err := hex.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("%w: record %q: %v", ErrImage, k, err)
		}
		c.mem.records[k] = b
	}
	for _, e := range f.Journal {
		b, err := hex.DecodeString(e.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: journal entry %q: %v", ErrImage, e.Key, err)
		}
		c.mem.journal = append(c.mem.journal, entry{Key: e.Key, Value: b, Deleted: e.Deleted})
	}
	if len(f.Journal) > 0 && !f.InTx {
		return nil, fmt.Errorf("%w: journal outside a transaction", ErrImage)
	}
	c.mem.inTx, c.mem.marked, c.mem.writes = f.InTx, f.Marked, f.Writes
	c.mem.sysGen++ // records replaced wholesale
	c.mem.recount()
	// Registry records must decode: a corrupt registry is refused here
	// rather than half-working later.
	keys := make([]string, 0, len(c.mem.records))
	for k := range c.mem.records {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, prefixApp) || strings.HasPrefix(k, prefixFile) {
			var v map[string]any
			if err := json.Unmarshal(c.mem.records[k], &v); err != nil {
				return nil, fmt.Errorf("%w: registry record %q: %v", ErrImage, k, err)
			}
		}
	}
	return c, nil
}

// Open loads the chip saved in path; it saves itself there after every
// command that changed its persistent memory.
func Open(path string, opts ...Option) (*Chip, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("chip: %w", err)
	}
	c, err := UnmarshalImage(b, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.path = path
	return c, nil
}

// SaveTo writes the image to path now and keeps saving there.
func (c *Chip) SaveTo(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.path = path
	c.mem.dirty = true
	c.persist()
	return c.saveErr
}

// persist saves the image if it changed. A failure is remembered: the next
// command that succeeds answers 6581 (memory failure) instead, as a chip
// whose EEPROM write failed would.
func (c *Chip) persist() {
	if c.path == "" || !c.mem.dirty {
		return
	}
	b, err := c.marshalImage()
	if err == nil {
		err = atomicfile.Write(c.path, b)
	}
	if err != nil {
		c.saveErr = fmt.Errorf("chip: saving %s: %w", c.path, err)
		return
	}
	c.saveErr = nil
	c.mem.dirty = false
}
