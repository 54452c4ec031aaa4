package cardmanager

import (
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/apdu/tlv"
	"github.com/valuechip/valuechip/applet"
)

// Tags of GET DATA and the FCI (GPCS §11.3.2.1, §11.9.3.1, Annex H).
const (
	tagRecognition   tlv.Tag = 0x73
	tagSequence      tlv.Tag = 0xC1
	tagSecLevel      tlv.Tag = 0xD3
	tagAppList       tlv.Tag = 0x2F00
	tagAppTemplate   tlv.Tag = 0x61
	tagFCI           tlv.Tag = 0x6F
	tagDFName        tlv.Tag = 0x84
	tagFCIProp       tlv.Tag = 0xA5
	tagMaxCommandLen tlv.Tag = 0x9F65
)

// SCP03 key identifiers within a key set (Amd D §6.1, Table 6-1 order).
const (
	keyIDENC = 0x01
	keyIDMAC = 0x02
	keyIDDEK = 0x03
)

// cardData is the card recognition data (GPCS Annex H.2, Table H-1): GP
// version 2.3.1, the card identification scheme and SCP03 with the ISD's
// "i": 66 { 73 { ... } }.
func cardData(i scp03.IParam) (tlv.TLV, error) {
	b, err := gp.CardData{Version: []byte{2, 3, 1}, SCPs: []gp.SCPInfo{{ID: scp03.ProtocolID, I: byte(i)}}}.Bytes()
	if err != nil {
		return tlv.TLV{}, err
	}
	list, err := tlv.Parse(b)
	if err != nil || len(list) != 1 || len(list[0].Children) != 1 {
		return tlv.TLV{}, fmt.Errorf("%w: card data %X", errCorrupt, b)
	}
	return list[0], nil
}

// fci builds the ISD's FCI (GPCS §11.9.3.1, Table 11-82):
//
//	6F { 84 <AID>, A5 { 73 <security domain management data>, 9F65 01 FF } }
//
// The Security Domain Management Data (Annex H.3, Table H-3) are the card
// recognition data objects; 9F65 is the maximum length of a command data
// field: 255, a short APDU.
func fci(env applet.Env) ([]byte, error) {
	cfg, err := config(env.Memory())
	if err != nil {
		return nil, err
	}
	cd, err := cardData(cfg.I)
	if err != nil {
		return nil, err
	}
	return tlv.TLV{Tag: tagFCI, Children: []tlv.TLV{
		{Tag: tagDFName, Value: env.AID()},
		{Tag: tagFCIProp, Children: []tlv.TLV{
			cd.Children[0],
			{Tag: tagMaxCommandLen, Value: []byte{0xFF}},
		}},
	}}.Bytes()
}

// keyInformation returns the Key Information Template (GPCS
// §11.3.3.1.1, Table 11-28, basic format): one 'C0' per key — identifier,
// KVN, type '88' (AES) and length for the SCP03 keys, and the DAP key
// when there is one.
func keyInformation(sets []*scp03.KeySet, dapKey bool) (tlv.TLV, error) {
	var info []gp.KeyInfo
	for _, ks := range sets {
		for _, id := range []byte{keyIDENC, keyIDMAC, keyIDDEK} {
			info = append(info, gp.KeyInfo{ID: id, Version: ks.Version,
				Components: []gp.KeyInfoComponent{{Type: gp.KeyTypeAES, Length: len(ks.Keys.ENC)}}})
		}
	}
	if dapKey {
		// GPCS §11.3.3.1.1, ECC rules: 'B0' length '40' for P-256 (the
		// point without its '04'), 'F0' carrying the parameters reference.
		info = append(info, gp.KeyInfo{ID: gp.DAPKeyID, Version: gp.DAPKeyVersion, Components: []gp.KeyInfoComponent{
			{Type: gp.KeyTypeECCPublic, Length: 0x40}, {Type: gp.KeyTypeECCParams, Length: int(gp.ECCParamsP256)}}})
	}
	b, err := gp.EncodeKeyInfo(info)
	if err != nil {
		return tlv.TLV{}, err
	}
	t, _, err := tlv.ParseOne(b)
	return t, err
}

// getData answers GET DATA (GPCS §11.3). With a GP class ('80', INS 'CA')
// the response is the whole data object; with an ISO class only its value
// (§11.3.3.1), except for the application list '2F00'. Supported tags:
//
//	42    Issuer Identification Number         45  Card Image Number
//	66    Card Data (card recognition data)    CF  key diversification data
//	E0    Key Information Template             C1  sequence counter of the default key set
//	D3    current security level               9F7F CPLC
//	2F00  list of applications (61 { 4F })
//
// An unknown or absent object answers '6A88'.
func getData(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	tag := tlv.Tag(uint16(cmd.P1)<<8 | uint16(cmd.P2))
	mem := env.Memory()
	cfg, err := config(mem)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	var obj tlv.TLV
	switch tag {
	case tagIIN, tagCIN, tagCPLC, tagKDD:
		kdd := cfg.KDD
		if kdd == nil {
			kdd = make([]byte, KDDLen) // what INITIALIZE UPDATE sends
		}
		v := map[tlv.Tag][]byte{tagIIN: cfg.IIN, tagCIN: cfg.CIN, tagCPLC: cfg.CPLC, tagKDD: kdd}[tag]
		if v == nil {
			return nil, apdu.ErrRefDataNotFound
		}
		obj = tlv.TLV{Tag: tag, Value: v}
	case gp.TagCardData:
		if obj, err = cardData(cfg.I); err != nil {
			return nil, apdu.ErrUnknown
		}
	case gp.TagKeyInfo, tagSequence:
		sets, err := keySets(mem)
		if err != nil {
			return nil, apdu.ErrUnknown
		}
		if tag == gp.TagKeyInfo {
			if obj, err = keyInformation(sets, cfg.DAPKey != nil); err != nil {
				return nil, apdu.ErrUnknown
			}
			break
		}
		if len(sets) == 0 {
			return nil, apdu.ErrRefDataNotFound
		}
		s := sets[0].Sequence // the default key set: the first, as INITIALIZE UPDATE P1 '00'
		obj = tlv.TLV{Tag: tagSequence, Value: []byte{byte(s >> 16), byte(s >> 8), byte(s)}}
	case tagSecLevel:
		obj = tlv.TLV{Tag: tagSecLevel, Value: []byte{st.currentLevel()}}
	case tagAppList:
		return applicationList(env)
	default:
		return nil, apdu.ErrRefDataNotFound
	}
	if cmd.CLA&0x80 == 0 {
		if len(obj.Children) > 0 {
			v, err := tlv.EncodeList(obj.Children)
			if err != nil {
				return nil, apdu.ErrUnknown
			}
			return v, apdu.SWNoError
		}
		return obj.Value, apdu.SWNoError
	}
	b, err := obj.Bytes()
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	return b, apdu.SWNoError
}

// applicationList answers GET DATA '2F00' (GPCS §11.3.3.1.3, Table 11-30):
// one Application Template per application other than the ISD. The ISD
// has the Global Registry privilege, so every application is listed.
func applicationList(env applet.Env) ([]byte, apdu.SW) {
	c := env.Card()
	if c == nil {
		return nil, apdu.ErrRefDataNotFound
	}
	self := env.AID()
	var list []tlv.TLV
	for _, a := range c.Applications() {
		if string(a.AID) == string(self) {
			continue
		}
		list = append(list, tlv.TLV{Tag: tagAppTemplate, Children: []tlv.TLV{{Tag: gp.TagAID, Value: a.AID}}})
	}
	if len(list) == 0 {
		return nil, apdu.ErrRefDataNotFound
	}
	b, err := tlv.EncodeList(list)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	return b, apdu.SWNoError
}
