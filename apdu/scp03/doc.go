// Package scp03 implements GlobalPlatform Secure Channel Protocol '03' as
// the card (applet/) and the host (host/) both need it: key derivation,
// the INITIALIZE UPDATE / EXTERNAL AUTHENTICATE handshake and secure
// messaging (C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION).
//
// References, cited as "Amd D §x" throughout:
//
//   - GlobalPlatform Card Specification v2.2 Amendment D, Secure Channel
//     Protocol '03', v1.1.1 (GPC_SPE_014, July 2014), "Amd D".
//   - GlobalPlatform Card Specification v2.2.1, "GPCS", the version Amd D
//     v1.1.1 references: §D.4.1 and §D.4.2 for the command structure of
//     INITIALIZE UPDATE and EXTERNAL AUTHENTICATE, §11.1.4 (Tables 11-11,
//     11-12) for the class byte.
//   - NIST SP 800-108 (2009) §5.1, KDF in counter mode (§4.1 in Rev. 1).
//   - NIST SP 800-38B / RFC 4493, AES-CMAC (package apdu/cmac).
//
// Only the "S8" mode of Amd D v1.1.1 is implemented: 8-byte challenges,
// cryptograms and MACs. The optional BEGIN/END R-MAC SESSION commands
// (Amd D §7.1.3-7.1.4) are not.
//
// # Layers
//
// Pure functions: [DeriveData] (the KDF), [DeriveSessionKeys],
// [CardCryptogram], [HostCryptogram], [PseudoRandomChallenge], [KCV];
// command and response codecs: [NewInitializeUpdate],
// [ParseInitializeUpdate], [InitializeUpdateResponse],
// [ParseInitializeUpdateResponse], [ParseExternalAuthenticate].
//
// [Session] is the secure-messaging state both ends keep after the
// handshake (MAC chaining value and encryption counter). It has one method
// per direction and side: WrapCommand and UnwrapResponse for the host,
// UnwrapCommand and WrapResponse for the card.
//
// [Host] and [Card] drive the handshake and then delegate to a Session:
//
//	host                                  card
//	h.InitializeUpdate()        ──────▶  c.InitializeUpdate(cmd)
//	h.ExternalAuthenticate(rsp) ──────▶  c.ExternalAuthenticate(cmd)
//	h.Complete(rsp)             ◀──────  9000
//	h.Wrap(cmd)                 ──────▶  c.Unwrap(raw)
//	h.Unwrap(rsp)               ◀──────  c.Wrap(rsp)
//
// # Class byte and logical channels
//
// Wrapping sets the GP secure messaging indicator (b3 in CLA '80'-'8F'
// and '00'-'0F', b6 in the further classes 'C0'-'CF' and '40'-'4F'); the
// C-MAC is computed over the class byte brought back to channel 0 (Amd D
// §6.2.4), so the logical channel number is not integrity protected and a
// host may set it after wrapping. Le is not MACed either. GP command
// chaining (GPCS §11.1.5, P1 b8) is not handled here: wrap the whole
// command and split it afterwards; the card reassembles before Unwrap.
//
// # Secrets
//
// [Key] and every type holding key material print as "AES-128 key KCV
// 504A77" (or a similar mask) through fmt, log/slog and encoding.TextMarshaler;
// MACs and cryptograms are compared with crypto/subtle. Host, Card and
// Session are not safe for concurrent use.
package scp03
