package scp03

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"log/slog"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
)

// Session is the secure messaging state of an open secure channel, the
// same on both ends (Amd D §5.3, §5.4, §6.2.4-§6.2.7):
//
//   - the MAC chaining value, 16 bytes: the full CMAC of the last command,
//     first that of EXTERNAL AUTHENTICATE (Amd D §6.2.3);
//   - the encryption counter, a 128-bit big-endian block set to 1 for the
//     first command after EXTERNAL AUTHENTICATE and incremented for every
//     command, with or without data (Amd D §6.2.6).
//
// The host uses WrapCommand and UnwrapResponse, the card UnwrapCommand
// and WrapResponse. Any verification failure aborts the session (Amd D
// §5.6); every later call then fails with ErrSessionAborted. A Session is
// not safe for concurrent use and never prints its keys or state.
type Session struct {
	level   SecurityLevel
	enc     cipher.Block // S-ENC
	mac     *cmac.MAC    // S-MAC
	rmac    *cmac.MAC    // S-RMAC, nil unless the level has R-MAC
	chain   [cmac.Size]byte
	counter [aes.BlockSize]byte
	// pending: a command went through WrapCommand/UnwrapCommand at a
	// level with C-MAC and its response has not been processed yet.
	pending bool
	aborted bool
}

func newMAC(k Key) (*cmac.MAC, error) {
	if err := k.Check(); err != nil {
		return nil, err
	}
	m, err := cmac.NewMAC(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return m, nil
}

// NewSession starts secure messaging at level with the given session keys
// and the MAC chaining value left by EXTERNAL AUTHENTICATE (as returned by
// NewExternalAuthenticate). S-RMAC is needed only if the level has R-MAC.
// The encryption counter starts at 0, so the first command uses 1.
func NewSession(keys SessionKeys, level SecurityLevel, chain [cmac.Size]byte) (*Session, error) {
	if !level.Valid() {
		return nil, fmt.Errorf("%w: %02X", ErrBadLevel, byte(level))
	}
	if err := keys.ENC.Check(); err != nil {
		return nil, fmt.Errorf("S-ENC: %w", err)
	}
	s := &Session{level: level, chain: chain}
	var err error
	if s.enc, err = aes.NewCipher(keys.ENC); err != nil {
		return nil, fmt.Errorf("S-ENC: %w: %w", ErrBadKey, err)
	}
	if s.mac, err = newMAC(keys.MAC); err != nil {
		return nil, fmt.Errorf("S-MAC: %w", err)
	}
	if level.Has(LevelRMAC) {
		if s.rmac, err = newMAC(keys.RMAC); err != nil {
			return nil, fmt.Errorf("S-RMAC: %w", err)
		}
	}
	return s, nil
}

// Level returns the session's security level.
func (s *Session) Level() SecurityLevel { return s.level }

// Aborted reports whether a security error aborted the session.
func (s *Session) Aborted() bool { return s.aborted }

// abort ends the session after a security error (Amd D §5.6) and returns
// an error wrapping ErrSecurity, cause (if any) and the message.
func (s *Session) abort(cause error, format string, args ...any) error {
	s.aborted = true
	s.pending = false
	msg := fmt.Sprintf(format, args...)
	if cause == nil {
		return fmt.Errorf("%w: %s", ErrSecurity, msg)
	}
	return fmt.Errorf("%w: %w: %s", ErrSecurity, cause, msg)
}

// Class byte handling (Amd D §6.2.4; GPCS §11.1.4 Tables 11-11, 11-12).
// In the first interindustry coding and the GP proprietary classes built
// like it (b7 = 0), b4b3 = 01 is GP secure messaging and b2b1 the logical
// channel; in the further coding (b7 = 1, channels 4-19), b6 is secure
// messaging and b4..b1 the channel.

// hasSM reports whether cla indicates GP secure messaging.
func hasSM(cla byte) bool {
	if cla&0x40 != 0 {
		return cla&0x20 != 0
	}
	return cla&0x0C == 0x04
}

// smCLA returns cla with the GP secure messaging indicator set.
func smCLA(cla byte) byte {
	if cla&0x40 != 0 {
		return cla | 0x20
	}
	return cla&^0x0C | 0x04
}

// plainCLA returns cla with the secure messaging indicator cleared.
func plainCLA(cla byte) byte {
	if cla&0x40 != 0 {
		return cla &^ 0x20
	}
	return cla &^ 0x0C
}

// macCLA is the class byte as it enters the C-MAC (Amd D §6.2.4): logical
// channel number set to zero, b4 = 0 and b3 = 1; a further-coding class
// (channels 4-19) is first brought back to the channel-0 coding, so that
// 'E1' MACs like '84'. The channel is not integrity protected.
func macCLA(cla byte) byte {
	if cla&0x40 != 0 {
		return cla&0x90 | 0x04 // keep b8 (proprietary) and b5 (chaining)
	}
	return cla&^0x0B | 0x04
}

// commandMAC computes the full 16-byte CMAC of a command (Amd D §6.2.4,
// Figure 6-1): S-MAC over MAC chaining value || CLA* INS P1 P2 || Lc* ||
// data, where Lc* = lc is the length of the final data field including
// the 8-byte C-MAC, encoded as on the wire (1 byte, or '00' and 2 bytes in
// the extended form), and data is the (encrypted) data field without the
// C-MAC. Le is not included.
func commandMAC(m *cmac.MAC, chain *[cmac.Size]byte, cla, ins, p1, p2 byte, lc int, extended bool, data []byte) [cmac.Size]byte {
	hdr := [7]byte{macCLA(cla), ins, p1, p2}
	n := 5
	if extended {
		hdr[5], hdr[6] = byte(lc>>8), byte(lc)
		n = 7
	} else {
		hdr[4] = byte(lc)
	}
	return m.Sum(chain[:], hdr[:n], data)
}

// protectedSW reports whether a response with this status gets an R-MAC:
// '9000' and the warnings '62xx' and '63xx'; every other status word is an
// error, returned alone (Amd D §6.2.5).
func protectedSW(sw1, sw2 byte) bool {
	return sw1 == 0x90 && sw2 == 0x00 || sw1 == 0x62 || sw1 == 0x63
}

// incrementCounter adds one to the 128-bit encryption counter (Amd D
// §6.2.6).
func (s *Session) incrementCounter() {
	for i := len(s.counter) - 1; i >= 0; i-- {
		s.counter[i]++
		if s.counter[i] != 0 {
			return
		}
	}
}

// icv returns the CBC ICV for the current command: AES(S-ENC, counter)
// (Amd D §6.2.6), or for its response AES(S-ENC, counter with the most
// significant byte set to '80') (Amd D §6.2.7).
func (s *Session) icv(response bool) [aes.BlockSize]byte {
	b := s.counter
	if response {
		b[0] = 0x80
	}
	s.enc.Encrypt(b[:], b[:])
	return b
}

// paddedLen is the length of data after the padding of Amd D §4.1.4.
func paddedLen(n int) int { return (n/aes.BlockSize + 1) * aes.BlockSize }

// encrypt pads data with '80' and zeros to a multiple of 16 (Amd D
// §4.1.4; ISO/IEC 9797-1 method 2: the '80' is always added) and
// encrypts it with AES-CBC under S-ENC (Amd D §4.1.2).
func (s *Session) encrypt(data []byte, response bool, extra int) []byte {
	out := make([]byte, paddedLen(len(data)), paddedLen(len(data))+extra)
	copy(out, data)
	out[len(data)] = 0x80
	iv := s.icv(response)
	cipher.NewCBCEncrypter(s.enc, iv[:]).CryptBlocks(out, out)
	return out
}

// decrypt reverses encrypt. The ciphertext was authenticated first
// (encrypt-then-MAC), so the padding check need not be constant time.
func (s *Session) decrypt(ct []byte, response bool) ([]byte, error) {
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes of ciphertext", ErrBadPadding, len(ct))
	}
	out := make([]byte, len(ct))
	iv := s.icv(response)
	cipher.NewCBCDecrypter(s.enc, iv[:]).CryptBlocks(out, ct)
	return unpad(out)
}

// unpad strips the Amd D §4.1.4 padding: trailing zeros after a final
// '80', at most one block in all.
func unpad(p []byte) ([]byte, error) {
	i := len(p) - 1
	for i >= 0 && p[i] == 0x00 {
		i--
	}
	if i < 0 || p[i] != 0x80 || len(p)-i > aes.BlockSize {
		return nil, fmt.Errorf("%w: no '80' in the last block", ErrBadPadding)
	}
	if i == 0 {
		return nil, nil
	}
	return p[:i], nil
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// WrapCommand protects a command on the host side. At a level with C-MAC
// it sets the GP secure messaging indicator in CLA, increments the
// encryption counter, encrypts a non-empty data field if the level has
// C-DECRYPTION (Amd D §6.2.6) and appends the C-MAC computed over the
// result (Amd D §6.2.4), which becomes the new MAC chaining value. Ne is
// kept and not MACed. At level '00' the command is returned unchanged.
//
// The MAC covers Lc in the form Bytes() will encode the result in (short
// unless the data or Ne need the extended form); transmit the result
// encoded with Bytes.
func (s *Session) WrapCommand(cmd apdu.Command) (apdu.Command, error) {
	if s.aborted {
		return apdu.Command{}, ErrSessionAborted
	}
	out := apdu.Command{CLA: cmd.CLA, INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Data: clone(cmd.Data), Ne: cmd.Ne}
	if !s.level.Has(LevelCMAC) {
		return out, nil // Amd D §5.6: level '00', no secure messaging
	}
	if cmd.CLA == 0xFF || cmd.CLA&0x40 == 0 && cmd.CLA&0x08 != 0 {
		return apdu.Command{}, fmt.Errorf("%w: CLA %02X cannot carry GP secure messaging", ErrMalformed, cmd.CLA)
	}
	encrypt := s.level.Has(LevelCDEC) && len(cmd.Data) > 0
	n := len(cmd.Data)
	if encrypt {
		n = paddedLen(n)
	}
	lc := n + MACLen
	if lc > apdu.MaxExtendedNc || cmd.Ne < 0 || cmd.Ne > apdu.MaxExtendedNe {
		return apdu.Command{}, fmt.Errorf("%w: %d data bytes and Ne %d after wrapping", apdu.ErrNotEncodable, lc, cmd.Ne)
	}
	s.incrementCounter() // Amd D §6.2.6: every command, with data or not
	if encrypt {
		out.Data = s.encrypt(cmd.Data, false, MACLen)
	}
	out.CLA = smCLA(cmd.CLA)
	extended := lc > apdu.MaxShortNc || cmd.Ne > apdu.MaxShortNe
	s.chain = commandMAC(s.mac, &s.chain, out.CLA, out.INS, out.P1, out.P2, lc, extended, out.Data)
	out.Data = append(out.Data, s.chain[:MACLen]...)
	s.pending = true
	return out, nil
}

// UnwrapCommand verifies and decrypts a command on the card side (Amd D
// §6.2.4, §6.2.6, §5.6). raw is the command as received, so that Lc is
// MACed in the form it was sent in. At a level with C-MAC the command must
// carry the secure messaging indicator and a C-MAC, checked in constant
// time; the C-MAC becomes the new MAC chaining value, the encryption
// counter is incremented, and with C-DECRYPTION a non-empty data field is
// decrypted and unpadded. The result has the indicator cleared from CLA
// and neither C-MAC nor padding in Data. Any failure aborts the session.
// At level '00' the command is only parsed (Amd D §5.6: the application
// applies its own rules).
func (s *Session) UnwrapCommand(raw []byte) (apdu.Command, error) {
	if s.aborted {
		return apdu.Command{}, ErrSessionAborted
	}
	cmd, err := apdu.ParseCommand(raw)
	if !s.level.Has(LevelCMAC) {
		if err != nil {
			return apdu.Command{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		cmd.Data = clone(cmd.Data)
		return cmd, nil
	}
	if err != nil {
		return apdu.Command{}, s.abort(err, "unparsable command at level %s", s.level)
	}
	if !hasSM(cmd.CLA) {
		return apdu.Command{}, s.abort(nil, "CLA %02X lacks the secure messaging indicator required at level %s", cmd.CLA, s.level)
	}
	if len(cmd.Data) < MACLen {
		return apdu.Command{}, s.abort(ErrBadMAC, "%d data bytes cannot hold a C-MAC", len(cmd.Data))
	}
	body, tag := cmd.Data[:len(cmd.Data)-MACLen], cmd.Data[len(cmd.Data)-MACLen:]
	extended := len(raw) > 5 && raw[4] == 0x00 // data present, so '00' marks the extended form
	full := commandMAC(s.mac, &s.chain, cmd.CLA, cmd.INS, cmd.P1, cmd.P2, len(cmd.Data), extended, body)
	if !equal8(full[:MACLen], tag) {
		return apdu.Command{}, s.abort(ErrBadMAC, "C-MAC of %02X %02X", cmd.CLA, cmd.INS)
	}
	s.chain = full
	s.incrementCounter()
	out := apdu.Command{CLA: plainCLA(cmd.CLA), INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Data: clone(body), Ne: cmd.Ne}
	if s.level.Has(LevelCDEC) && len(body) > 0 {
		if out.Data, err = s.decrypt(body, false); err != nil {
			return apdu.Command{}, s.abort(err, "command data of %02X %02X", cmd.CLA, cmd.INS)
		}
	}
	s.pending = true
	return out, nil
}

// WrapResponse protects a response (data || SW1 SW2) on the card side.
// At a level with R-MAC, a response with status '9000', '62xx' or '63xx'
// gets its data encrypted if the level has R-ENCRYPTION and data is
// present (ICV from the command's counter, Amd D §6.2.7), then an R-MAC
// over MAC chaining value || data || SW (Amd D §6.2.5): data || R-MAC ||
// SW. An error status is returned alone, without data or R-MAC. Below
// R-MAC the response is returned unchanged. It must follow the
// UnwrapCommand of the command it answers.
func (s *Session) WrapResponse(resp []byte) ([]byte, error) {
	if s.aborted {
		return nil, ErrSessionAborted
	}
	if len(resp) < 2 {
		return nil, fmt.Errorf("%w: response of %d bytes", ErrMalformed, len(resp))
	}
	if !s.level.Has(LevelRMAC) {
		s.pending = false
		return clone(resp), nil
	}
	if !s.pending {
		// No unwrapped command to answer: only the bare status of a
		// response that carries no R-MAC may pass, such as the '9000' of
		// EXTERNAL AUTHENTICATE (Amd D §6.2.5).
		if len(resp) == 2 {
			return clone(resp), nil
		}
		return nil, fmt.Errorf("%w: no command to answer", ErrState)
	}
	s.pending = false
	n := len(resp) - 2
	sw1, sw2 := resp[n], resp[n+1]
	if !protectedSW(sw1, sw2) {
		return []byte{sw1, sw2}, nil
	}
	data := resp[:n]
	if s.level.Has(LevelRENC) && len(data) > 0 {
		if paddedLen(len(data))+MACLen > apdu.MaxExtendedNe {
			return nil, fmt.Errorf("%w: %d response bytes after wrapping", apdu.ErrNotEncodable, paddedLen(len(data))+MACLen)
		}
		data = s.encrypt(data, true, MACLen+2)
	} else {
		if len(data)+MACLen > apdu.MaxExtendedNe {
			return nil, fmt.Errorf("%w: %d response bytes after wrapping", apdu.ErrNotEncodable, len(data)+MACLen)
		}
		data = append(make([]byte, 0, len(data)+MACLen+2), data...)
	}
	sw := [2]byte{sw1, sw2}
	tag := s.rmac.Sum(s.chain[:], data, sw[:])
	data = append(data, tag[:MACLen]...)
	return append(data, sw1, sw2), nil
}

// UnwrapResponse verifies and decrypts a response (data || R-MAC || SW1
// SW2) on the host side (Amd D §6.2.5, §6.2.7) and returns data || SW1
// SW2. At a level with R-MAC, an error status must come alone; any other
// response must carry an R-MAC, checked in constant time, and with
// R-ENCRYPTION non-empty data is decrypted. A failure aborts the session.
// Below R-MAC the response is returned unchanged.
func (s *Session) UnwrapResponse(resp []byte) ([]byte, error) {
	if s.aborted {
		return nil, ErrSessionAborted
	}
	if !s.level.Has(LevelRMAC) {
		if len(resp) < 2 {
			return nil, fmt.Errorf("%w: response of %d bytes", ErrMalformed, len(resp))
		}
		s.pending = false
		return clone(resp), nil
	}
	if !s.pending {
		return nil, fmt.Errorf("%w: no command awaits a response", ErrState)
	}
	s.pending = false
	if len(resp) < 2 {
		return nil, s.abort(ErrMalformed, "response of %d bytes", len(resp))
	}
	n := len(resp) - 2
	sw1, sw2 := resp[n], resp[n+1]
	if !protectedSW(sw1, sw2) {
		if n != 0 {
			return nil, s.abort(nil, "%d unprotected data bytes with error status %02X%02X", n, sw1, sw2)
		}
		return []byte{sw1, sw2}, nil
	}
	if n < MACLen {
		return nil, s.abort(ErrBadMAC, "response of %d bytes cannot hold an R-MAC", len(resp))
	}
	data, tag := resp[:n-MACLen], resp[n-MACLen:n]
	want := s.rmac.Sum(s.chain[:], data, resp[n:])
	if !equal8(want[:MACLen], tag) {
		return nil, s.abort(ErrBadMAC, "R-MAC of response %02X%02X", sw1, sw2)
	}
	out := clone(data)
	if s.level.Has(LevelRENC) && len(data) > 0 {
		var err error
		if out, err = s.decrypt(data, true); err != nil {
			return nil, s.abort(err, "response data")
		}
	}
	return append(out, sw1, sw2), nil
}

// String describes the session without keys or state.
func (s Session) String() string {
	st := "open"
	if s.aborted {
		st = "aborted"
	}
	return fmt.Sprintf("scp03.Session(%s, level %s)", st, s.level)
}

// GoString masks the session for %#v.
func (s Session) GoString() string { return s.String() }

// Format masks the session for every fmt verb.
func (s Session) Format(f fmt.State, _ rune) { writeMasked(f, s.String()) }

// LogValue masks the session in log/slog output.
func (s Session) LogValue() slog.Value { return slog.StringValue(s.String()) }
