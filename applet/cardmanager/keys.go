package cardmanager

import (
	"errors"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
)

// putKey handles PUT KEY (GPCS §11.8, Amd D §7.2):
//
//   - a complete SCP03 key set: P2 '81' (key identifiers '01' ENC, '02'
//     MAC, '03' DEK), three AES key data fields of one length (16, 24 or
//     32 bytes), each encrypted with the static Key-DEK of the key set the
//     session was opened with (AES-CBC, zero ICV, Amd D §6.2.8) and
//     checked against its KCV (Amd D §7.2.2; a mismatch answers '6982',
//     GPCS Table 11-78). P1 '00' adds the set under the new KVN (which
//     must be free, '6A80'; at most MaxKeySets sets, '6A84'); P1 = KVN
//     replaces that set ('6A88' if absent), possibly under another free
//     KVN. The new set's sequence counter is zero (Amd D §6.2.2.1).
//   - the issuer's DAP verification key: new KVN '73', P2 '01', an ECC
//     P-256 public key ('B0' point, 'F0' parameters reference '00'), as
//     apdu/gp and docs/loadfile.md define it. P1 '00' adds it, P1 '73'
//     replaces it.
//
// The response is the new KVN followed by the KCV of each AES key.
func putKey(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	pk, err := gp.ParsePutKey(cmd.P1, cmd.P2, cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	if pk.NewKVN == gp.DAPKeyVersion || pk.ReplaceKVN == gp.DAPKeyVersion {
		return putDAPKey(env, pk, cmd)
	}
	if cmd.P2 != gp.PutKeyMultiple|keyIDENC {
		return nil, apdu.ErrIncorrectP1P2 // only complete key sets: Amd D §6.1
	}
	if len(pk.Components) != 3 {
		return nil, apdu.ErrWrongData
	}
	if st.dek == nil {
		return nil, apdu.ErrConditionsNotMet
	}
	keys, err := pk.AESKeys(st.dek)
	if err != nil {
		if errors.Is(err, gp.ErrBadKCV) {
			return nil, apdu.ErrSecurityStatus
		}
		return nil, apdu.ErrWrongData
	}
	ks := &scp03.KeySet{Version: pk.NewKVN, Keys: scp03.StaticKeys{ENC: keys[0], MAC: keys[1], DEK: keys[2]}}
	defer func() {
		for _, k := range keys {
			k.Wipe()
		}
	}()
	if err := ks.Keys.Check(); err != nil {
		return nil, apdu.ErrWrongData
	}
	mem := env.Memory()
	sets, err := keySets(mem)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	have := func(kvn byte) bool {
		for _, s := range sets {
			if s.Version == kvn {
				return true
			}
		}
		return false
	}
	if pk.ReplaceKVN == 0 {
		if have(pk.NewKVN) {
			return nil, apdu.ErrWrongData
		}
		if len(sets) >= MaxKeySets {
			return nil, apdu.ErrNotEnoughMemory
		}
	} else {
		if !have(pk.ReplaceKVN) {
			return nil, apdu.ErrRefDataNotFound
		}
		if pk.NewKVN != pk.ReplaceKVN && have(pk.NewKVN) {
			return nil, apdu.ErrWrongData
		}
	}
	if err := env.Begin(); err != nil {
		return nil, statusOf(err)
	}
	if pk.ReplaceKVN != 0 && pk.ReplaceKVN != pk.NewKVN {
		if err := mem.Delete(keyRecordName(pk.ReplaceKVN)); err != nil {
			env.Abort()
			return nil, statusOf(err)
		}
	}
	if err := putKeySet(mem, ks); err != nil {
		env.Abort()
		return nil, statusOf(err)
	}
	if err := env.Commit(); err != nil {
		return nil, statusOf(err)
	}
	return pk.Expected().Bytes(), apdu.SWNoError
}

// putDAPKey stores the issuer's DAP verification key (docs/loadfile.md):
// an ECC P-256 public key in the clear under KVN '73', key identifier
// '01'.
func putDAPKey(env applet.Env, pk gp.PutKey, cmd apdu.Command) ([]byte, apdu.SW) {
	if pk.NewKVN != gp.DAPKeyVersion || (pk.ReplaceKVN != 0 && pk.ReplaceKVN != gp.DAPKeyVersion) {
		return nil, apdu.ErrWrongData // a DAP key does not become, or replace, an SCP03 key set
	}
	if cmd.P2 != gp.DAPKeyID {
		return nil, apdu.ErrIncorrectP1P2
	}
	if _, err := pk.ECCPublicKey(); err != nil {
		return nil, apdu.ErrWrongData
	}
	var point []byte
	for _, c := range pk.Components {
		if c.Type == gp.KeyTypeECCPublic {
			point = c.Value
		}
	}
	mem := env.Memory()
	cfg, err := config(mem)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	switch {
	case pk.ReplaceKVN == 0 && cfg.DAPKey != nil:
		return nil, apdu.ErrWrongData
	case pk.ReplaceKVN != 0 && cfg.DAPKey == nil:
		return nil, apdu.ErrRefDataNotFound
	}
	cfg.DAPKey = append([]byte(nil), point...)
	if err := putConfig(mem, cfg); err != nil {
		return nil, statusOf(err)
	}
	return pk.Expected().Bytes(), apdu.SWNoError
}

// sessionDEK returns a copy of the static Key-DEK of the session's key
// set, kept for the session: sensitive data of one session is always
// decrypted with the key set it was opened with, even if PUT KEY replaces
// that set meanwhile.
func sessionDEK(sets []*scp03.KeySet, kvn byte) scp03.Key {
	for _, ks := range sets {
		if ks.Version == kvn {
			return append(scp03.Key(nil), ks.Keys.DEK...)
		}
	}
	return nil
}
