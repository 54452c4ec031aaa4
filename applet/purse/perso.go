package purse

import (
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet"
)

// StoreData implements applet.Personalizer (§8): STORE DATA blocks routed
// by the security domain after INSTALL [for personalization], with
// secure messaging already removed. The purse takes DGI format only (P1
// b5b4 = 01) and clear values (P1 b7b6 = 00): it has no access to the
// security domain's Key-DEK, so the keys' confidentiality comes from the
// secure channel's C-DECRYPTION (§8.2). Each block's DGIs are checked
// and staged atomically; the last block (P1 b8) completes the
// personalisation — all DGIs present — and makes the purse ACTIVE in one
// transaction.
func (p *purse) StoreData(env applet.Env, p1, p2 byte, data []byte) ([]byte, apdu.SW) {
	m := env.Memory()
	st, ok := loadState(m)
	if !ok {
		return nil, apdu.ErrUnknown
	}
	if st.life != wire.StatePersonalising {
		return nil, apdu.ErrConditionsNotMet
	}
	if p1&gp.StoreFormatMask != gp.StoreFormatDGI || p1&gp.StoreEncMask != gp.StoreEncNone {
		return nil, apdu.ErrWrongData
	}
	dgis, err := gp.ParseDGIs(data)
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	for _, d := range dgis {
		if err := wire.CheckDGI(d); err != nil {
			if errors.Is(err, wire.ErrUnknownDGI) {
				return nil, apdu.ErrRefDataNotFound
			}
			return nil, apdu.ErrWrongData
		}
	}
	if len(dgis) > 0 {
		if err := atomically(env, func() error {
			for _, d := range dgis {
				if err := m.Put(fmt.Sprintf("%s%04X", recPersoPrefix, d.Tag), d.Data); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, applet.StatusOf(err)
		}
	}
	if p1&gp.StoreLastBlock == 0 {
		return nil, apdu.SWNoError
	}
	return nil, finishPersonalisation(env)
}

// finishPersonalisation turns the staged DGIs into the purse's records
// and makes it ACTIVE, all in one transaction; with a DGI missing it
// answers 6985 and the purse stays PERSONALISING with what it has.
func finishPersonalisation(env applet.Env) apdu.SW {
	m := env.Memory()
	keys := m.Keys(recPersoPrefix)
	dgis := make([]gp.DGI, 0, len(keys))
	for _, k := range keys {
		var tag uint16
		if _, err := fmt.Sscanf(k[len(recPersoPrefix):], "%04X", &tag); err != nil {
			return apdu.ErrUnknown
		}
		v, _ := m.Get(k)
		dgis = append(dgis, gp.DGI{Tag: tag, Data: v})
	}
	perso, err := wire.ParsePersonalization(dgis)
	if err != nil {
		return apdu.ErrConditionsNotMet
	}
	defer perso.Keys.Load.Key.Wipe()
	defer perso.Keys.Debit.Key.Wipe()
	defer perso.Keys.TC.Key.Wipe()
	keyRecord := keysBytes(perso.Keys)
	defer clear(keyRecord)
	err = atomically(env, func() error {
		for _, w := range []struct {
			key string
			val []byte
		}{
			{recConfig, configBytes(perso)},
			{recKeys, keyRecord},
			{recPIN, perso.PIN},
			{recTries, []byte{perso.PINTries}},
			{recState, state{life: wire.StateActive}.bytes()},
		} {
			if err := m.Put(w.key, w.val); err != nil {
				return err
			}
		}
		// The log slots are allocated now, so that a value change
		// never needs more memory than the journal (§9.2).
		empty := make([]byte, wire.LogRecordLen)
		for _, k := range logKeys {
			if err := m.Put(k, empty); err != nil {
				return err
			}
		}
		for _, k := range keys {
			if err := m.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return applet.StatusOf(err)
}

// atomically runs f in a runtime transaction, committed if f succeeds.
func atomically(env applet.Env, f func() error) error {
	if err := env.Begin(); err != nil {
		return err
	}
	if err := f(); err != nil {
		env.Abort()
		return err
	}
	return env.Commit()
}
