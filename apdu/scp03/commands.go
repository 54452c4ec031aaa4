package scp03

import (
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
)

// Command bytes of the SCP03 handshake (GPCS Annex D.4, Amd D §7.1).
const (
	CLAGlobalPlatform       byte = 0x80 // GP proprietary class, no SM, channel 0
	CLASecureMessaging      byte = 0x84 // the same with GP secure messaging
	INSInitializeUpdate     byte = 0x50
	INSExternalAuthenticate byte = 0x82
	// ProtocolID is the SCP identifier in the key information (Amd D
	// §7.1.1.1).
	ProtocolID byte = 0x03
)

// NewInitializeUpdate builds INITIALIZE UPDATE (GPCS D.4.1): CLA '80',
// INS '50', P1 = key version number ('00': first available key set), P2 =
// '00' (key identifier), data = the 8-byte host challenge, Le = '00'.
func NewInitializeUpdate(kvn byte, hostChallenge [ChallengeLen]byte) apdu.Command {
	return apdu.Command{
		CLA: CLAGlobalPlatform, INS: INSInitializeUpdate, P1: kvn, P2: 0x00,
		Data: append([]byte(nil), hostChallenge[:]...),
		Ne:   apdu.MaxShortNe,
	}
}

// ParseInitializeUpdate checks an INITIALIZE UPDATE command as the card
// receives it and returns the requested key version and the host
// challenge. The class byte is left to the caller's dispatcher.
func ParseInitializeUpdate(cmd apdu.Command) (kvn byte, hostChallenge [ChallengeLen]byte, err error) {
	if cmd.INS != INSInitializeUpdate {
		return 0, hostChallenge, fmt.Errorf("%w: INS %02X is not INITIALIZE UPDATE", ErrMalformed, cmd.INS)
	}
	if cmd.P2 != 0x00 {
		return 0, hostChallenge, fmt.Errorf("%w: INITIALIZE UPDATE P2 %02X, want 00", ErrBadParameter, cmd.P2)
	}
	if len(cmd.Data) != ChallengeLen {
		return 0, hostChallenge, fmt.Errorf("%w: INITIALIZE UPDATE host challenge of %d bytes, want %d", ErrWrongLength, len(cmd.Data), ChallengeLen)
	}
	copy(hostChallenge[:], cmd.Data)
	return cmd.P1, hostChallenge, nil
}

// KeyInfo is the key information of the INITIALIZE UPDATE response (Amd D
// §7.1.1.1): key version number, SCP identifier ('03') and "i".
type KeyInfo struct {
	Version  byte
	Protocol byte
	I        IParam
}

// InitializeUpdateResponse is the data field of the INITIALIZE UPDATE
// response (Amd D §7.1.1.1 Table 7-2), fields concatenated without
// delimiters in this order.
type InitializeUpdateResponse struct {
	KDD            [KDDLen]byte // key diversification data
	KeyInfo        KeyInfo
	CardChallenge  [ChallengeLen]byte
	CardCryptogram [CryptogramLen]byte
	// Sequence is the 3-byte sequence counter, present on the wire only
	// when KeyInfo.I announces pseudo-random challenges (Table 7-2
	// "conditional").
	Sequence uint32
}

const (
	initUpdateLen    = KDDLen + 3 + ChallengeLen + CryptogramLen // 29
	initUpdateSeqLen = initUpdateLen + 3                         // 32
)

// Bytes encodes the response data field (without status word).
func (r InitializeUpdateResponse) Bytes() []byte {
	b := make([]byte, 0, initUpdateSeqLen)
	b = append(b, r.KDD[:]...)
	b = append(b, r.KeyInfo.Version, r.KeyInfo.Protocol, byte(r.KeyInfo.I))
	b = append(b, r.CardChallenge[:]...)
	b = append(b, r.CardCryptogram[:]...)
	if r.KeyInfo.I.PseudoRandom() {
		b = append(b, byte(r.Sequence>>16), byte(r.Sequence>>8), byte(r.Sequence))
	}
	return b
}

// ParseInitializeUpdateResponse decodes the response data field (without
// status word). It rejects another SCP than '03', an "i" with RFU bits
// (including the S16 mode) and any length but 29, or 32 with a sequence
// counter when "i" announces pseudo-random challenges.
func ParseInitializeUpdateResponse(data []byte) (InitializeUpdateResponse, error) {
	var r InitializeUpdateResponse
	if len(data) < KDDLen+3 {
		return r, fmt.Errorf("%w: INITIALIZE UPDATE response of %d bytes", ErrMalformed, len(data))
	}
	copy(r.KDD[:], data)
	r.KeyInfo = KeyInfo{Version: data[10], Protocol: data[11], I: IParam(data[12])}
	if r.KeyInfo.Protocol != ProtocolID {
		return r, fmt.Errorf("%w: secure channel protocol %02X, not 03", ErrUnsupported, r.KeyInfo.Protocol)
	}
	if !r.KeyInfo.I.Valid() {
		return r, fmt.Errorf("%w: SCP03 i parameter %02X (RFU bits or S16 mode)", ErrUnsupported, byte(r.KeyInfo.I))
	}
	want := initUpdateLen
	if r.KeyInfo.I.PseudoRandom() {
		want = initUpdateSeqLen
	}
	if len(data) != want {
		return r, fmt.Errorf("%w: INITIALIZE UPDATE response of %d bytes, want %d for i=%02X", ErrMalformed, len(data), want, byte(r.KeyInfo.I))
	}
	copy(r.CardChallenge[:], data[13:21])
	copy(r.CardCryptogram[:], data[21:29])
	if want == initUpdateSeqLen {
		r.Sequence = uint32(data[29])<<16 | uint32(data[30])<<8 | uint32(data[31])
	}
	return r, nil
}

// NewExternalAuthenticate builds EXTERNAL AUTHENTICATE (GPCS D.4.2, Amd D
// §7.1.2): CLA '84', INS '82', P1 = security level, P2 = '00', data = host
// cryptogram || C-MAC, no Le. The C-MAC is computed with S-MAC over a zero
// MAC chaining value (Amd D §6.2.3); the full 16-byte CMAC it returns is
// the MAC chaining value for the first command of the session.
func NewExternalAuthenticate(sMAC Key, level SecurityLevel, hostCryptogram [CryptogramLen]byte) (apdu.Command, [cmac.Size]byte, error) {
	var chain [cmac.Size]byte
	if !level.Valid() {
		return apdu.Command{}, chain, fmt.Errorf("%w: %02X", ErrBadLevel, byte(level))
	}
	m, err := newMAC(sMAC)
	if err != nil {
		return apdu.Command{}, chain, err
	}
	cmd := apdu.Command{CLA: CLASecureMessaging, INS: INSExternalAuthenticate, P1: byte(level), P2: 0x00}
	chain = commandMAC(m, &chain, cmd.CLA, cmd.INS, cmd.P1, cmd.P2, CryptogramLen+MACLen, false, hostCryptogram[:])
	cmd.Data = make([]byte, 0, CryptogramLen+MACLen)
	cmd.Data = append(cmd.Data, hostCryptogram[:]...)
	cmd.Data = append(cmd.Data, chain[:MACLen]...)
	return cmd, chain, nil
}

// ParseExternalAuthenticate splits an EXTERNAL AUTHENTICATE command as the
// card receives it. The level is returned unchecked, so that the caller
// can verify the C-MAC first; see SecurityLevel.Valid.
func ParseExternalAuthenticate(cmd apdu.Command) (level SecurityLevel, hostCryptogram, mac [8]byte, err error) {
	if cmd.INS != INSExternalAuthenticate {
		return 0, hostCryptogram, mac, fmt.Errorf("%w: INS %02X is not EXTERNAL AUTHENTICATE", ErrMalformed, cmd.INS)
	}
	if !hasSM(cmd.CLA) {
		return 0, hostCryptogram, mac, fmt.Errorf("%w: EXTERNAL AUTHENTICATE CLA %02X without secure messaging indicator", ErrMalformed, cmd.CLA)
	}
	if cmd.P2 != 0x00 {
		return 0, hostCryptogram, mac, fmt.Errorf("%w: EXTERNAL AUTHENTICATE P2 %02X, want 00", ErrBadParameter, cmd.P2)
	}
	if len(cmd.Data) != CryptogramLen+MACLen {
		return 0, hostCryptogram, mac, fmt.Errorf("%w: EXTERNAL AUTHENTICATE data of %d bytes, want 16", ErrWrongLength, len(cmd.Data))
	}
	copy(hostCryptogram[:], cmd.Data[:CryptogramLen])
	copy(mac[:], cmd.Data[CryptogramLen:])
	return SecurityLevel(cmd.P1), hostCryptogram, mac, nil
}
