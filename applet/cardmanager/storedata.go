package cardmanager

import (
	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/tlv"
	"github.com/valuechip/valuechip/applet"
)

// DGIs of the ISD's own data (STORE DATA in DGI format): the value of the
// data object of the same GET DATA tag.
const (
	dgiIIN uint16 = 0x0042
	dgiCIN uint16 = 0x0045
)

// storeData handles STORE DATA (GPCS §11.11). After INSTALL [for
// personalization] the blocks go to that application through
// CardAdmin.Personalize with their P1, P2 and (unwrapped) data; the
// session ends after the block with P1 b8 set. Otherwise the data is for
// the ISD itself: see storeOwn. In both cases block numbers (P2) must run
// from '00' by one ('6A86' otherwise, and the personalisation session
// ends).
func storeData(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	last := cmd.P1&gp.StoreLastBlock != 0
	if c := env.Card(); st.perso != nil && c != nil {
		if int(cmd.P2) != st.persoP2 {
			st.endPerso(env)
			return nil, apdu.ErrIncorrectP1P2
		}
		st.persoP2++
		data, sw := c.Personalize(st.perso, cmd.P1, cmd.P2, cmd.Data)
		if last || st.persoP2 >= gp.MaxBlocks {
			st.endPerso(env)
		}
		return data, sw
	}
	if int(cmd.P2) != st.ownStore {
		st.ownStore = 0
		return nil, apdu.ErrIncorrectP1P2
	}
	st.ownStore++
	data, sw := storeOwn(env, st, cmd)
	if last || sw != apdu.SWNoError || st.ownStore >= gp.MaxBlocks {
		st.ownStore = 0 // GPCS §11.11.2.2: reset on the last block or a rejected command
	}
	return data, sw
}

// storeOwn stores ISD data (GPCS §11.11.2.3): the Issuer Identification
// Number and the Card Image Number, as BER-TLV objects '42' and '45' (P1
// b5b4 = 10, no encryption) or as DGIs '0042' and '0045' (P1 b5b4 = 01),
// which may be encrypted under the session's Key-DEK (P1 b7b6 = 11, see
// gp.SealDGI). Other objects answer '6A88', other formats '6A80'. All
// objects of one command are stored in one persistent write; an object
// must not be split over two commands (GPCS §11.11.2.3 allows it, the
// ISD's objects are a few bytes).
func storeOwn(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	enc := cmd.P1 & gp.StoreEncMask
	values := map[uint16][]byte{}
	switch cmd.P1 & gp.StoreFormatMask {
	case gp.StoreFormatBERTLV:
		if enc != gp.StoreEncNone {
			return nil, apdu.ErrWrongData
		}
		list, err := tlv.Parse(cmd.Data)
		if err != nil {
			return nil, apdu.ErrWrongData
		}
		for _, o := range list {
			if o.Tag != tagIIN && o.Tag != tagCIN {
				return nil, apdu.ErrRefDataNotFound
			}
			values[uint16(o.Tag)] = o.Value
		}
	case gp.StoreFormatDGI:
		if enc != gp.StoreEncNone && enc != gp.StoreEncAll {
			return nil, apdu.ErrWrongData
		}
		dgis, err := gp.ParseDGIs(cmd.Data)
		if err != nil {
			return nil, apdu.ErrWrongData
		}
		for _, d := range dgis {
			if d.Tag != dgiIIN && d.Tag != dgiCIN {
				return nil, apdu.ErrRefDataNotFound
			}
			if enc == gp.StoreEncAll {
				if d, err = gp.OpenDGI(st.dek, d); err != nil {
					return nil, apdu.ErrWrongData
				}
			}
			values[d.Tag] = d.Data
		}
	default:
		return nil, apdu.ErrWrongData
	}
	if len(values) == 0 {
		return nil, apdu.ErrWrongData
	}
	mem := env.Memory()
	cfg, err := config(mem)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	for tag, v := range values {
		if len(v) == 0 || len(v) > 127 {
			return nil, apdu.ErrWrongData
		}
		if tag == dgiIIN {
			cfg.IIN = append([]byte(nil), v...)
		} else {
			cfg.CIN = append([]byte(nil), v...)
		}
	}
	if err := putConfig(mem, cfg); err != nil {
		return nil, statusOf(err)
	}
	return nil, apdu.SWNoError
}
