package cardmanager

import (
	"errors"
	"fmt"
	"sort"

	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
)

// Persistent records of the ISD (Env.Memory).
const (
	// recConfig holds the creation parameters without key sets, in the
	// Params encoding.
	recConfig = "cfg"
	// recKeyPrefix + two hex digits of the KVN holds one SCP03 key set:
	// KVN || key length || Key-ENC || Key-MAC || Key-DEK || sequence
	// counter (3 bytes, big-endian).
	recKeyPrefix = "key/"
)

// errCorrupt reports a persistent record that does not decode; the ISD
// answers 6F00 for it.
var errCorrupt = errors.New("cardmanager: corrupt persistent record")

func keyRecordName(kvn byte) string { return fmt.Sprintf("%s%02X", recKeyPrefix, kvn) }

func encodeKeySet(ks *scp03.KeySet) []byte {
	n := len(ks.Keys.ENC)
	b := make([]byte, 0, 2+3*n+3)
	b = append(b, ks.Version, byte(n))
	b = append(b, ks.Keys.ENC...)
	b = append(b, ks.Keys.MAC...)
	b = append(b, ks.Keys.DEK...)
	return append(b, byte(ks.Sequence>>16), byte(ks.Sequence>>8), byte(ks.Sequence))
}

func decodeKeySet(b []byte) (*scp03.KeySet, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: key set record of %d bytes", errCorrupt, len(b))
	}
	n := int(b[1])
	if len(b) != 2+3*n+3 {
		return nil, fmt.Errorf("%w: key set record of %d bytes for %d-byte keys", errCorrupt, len(b), n)
	}
	k := func(i int) scp03.Key { return append(scp03.Key(nil), b[2+i*n:2+(i+1)*n]...) }
	s := b[2+3*n:]
	ks := &scp03.KeySet{
		Version:  b[0],
		Keys:     scp03.StaticKeys{ENC: k(0), MAC: k(1), DEK: k(2)},
		Sequence: uint32(s[0])<<16 | uint32(s[1])<<8 | uint32(s[2]),
	}
	if err := ks.Keys.Check(); err != nil {
		return nil, fmt.Errorf("%w: key set %02X: %w", errCorrupt, ks.Version, err)
	}
	return ks, nil
}

// keySets returns the stored key sets in KVN order (the first is the
// "default" key set of INITIALIZE UPDATE P1 '00' and GET DATA 'C1').
func keySets(mem applet.Memory) ([]*scp03.KeySet, error) {
	names := mem.Keys(recKeyPrefix)
	sort.Strings(names) // two upper-case hex digits: string order is KVN order
	out := make([]*scp03.KeySet, 0, len(names))
	for _, name := range names {
		v, _ := mem.Get(name)
		ks, err := decodeKeySet(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, ks)
	}
	return out, nil
}

// keySet returns the key set with the given version, or nil.
func keySet(mem applet.Memory, kvn byte) (*scp03.KeySet, error) {
	v, ok := mem.Get(keyRecordName(kvn))
	if !ok {
		return nil, nil
	}
	return decodeKeySet(v)
}

func putKeySet(mem applet.Memory, ks *scp03.KeySet) error {
	return mem.Put(keyRecordName(ks.Version), encodeKeySet(ks))
}

// config reads the ISD configuration (the creation parameters without key
// sets).
func config(mem applet.Memory) (Params, error) {
	v, ok := mem.Get(recConfig)
	if !ok {
		return Params{}, fmt.Errorf("%w: no configuration record", errCorrupt)
	}
	p, err := parseParams(v, false)
	if err != nil {
		return Params{}, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	return p, nil
}

func putConfig(mem applet.Memory, p Params) error {
	p.KeySets = nil
	b, err := p.encode()
	if err != nil {
		return err
	}
	return mem.Put(recConfig, b)
}

// initialize writes the creation parameters into an empty ISD memory, in
// one transaction (the caller's when one is open, as during
// CardAdmin.Install).
func initialize(env applet.Env, p Params) error {
	own := true
	if err := env.Begin(); err != nil {
		if !errors.Is(err, applet.ErrInTransaction) {
			return err
		}
		own = false
	}
	err := func() error {
		if err := putConfig(env.Memory(), p); err != nil {
			return err
		}
		for i := range p.KeySets {
			ks := p.KeySets[i]
			ks.Sequence = 0 // Amd D §6.2.2.1: a new key set starts at zero
			if err := putKeySet(env.Memory(), &ks); err != nil {
				return err
			}
		}
		return nil
	}()
	if !own {
		return err
	}
	if err != nil {
		env.Abort()
		return err
	}
	return env.Commit()
}
