// Package apdu holds the ISO/IEC 7816-4 message layer that the card (applet/)
// and the host (host/) share: command and response APDUs in all four cases,
// short and extended, and status words as comparable Go errors.
//
// Lengths follow the standard's Nc/Ne semantics (ISO/IEC 7816-4:2020 §5.1):
// a Command carries Ne, the maximum number of response bytes expected, never
// the raw Le byte. Ne 256 is encoded as short Le 00, Ne 65536 as extended
// Le 0000. Encoding refuses what cannot be encoded instead of truncating.
//
// Sub-packages hold the other shared wire definitions: tlv (BER-TLV) and atr
// (answer-to-reset).
package apdu
