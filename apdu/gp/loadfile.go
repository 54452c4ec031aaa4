package gp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	"github.com/valuechip/valuechip/apdu/tlv"
)

// Tags of this chip's load file manifest (docs/loadfile.md). The manifest
// is the Load File Data Block: BER-TLV objects in this order,
//
//	4F  <package AID, 5-16 bytes>
//	CE  <version: major, minor>
//	A1  { 4F <module AID>  8E <SHA-256 implementation digest, 32 bytes> }   one per module
//
// 4F and CE are the tags GET STATUS uses for a load file's AID and
// version (GPCS Table 11-36); A1 is a context-specific template and 8E
// ("cryptographic checksum", ISO/IEC 7816-4) holds the digest inside it.
const (
	TagManifestModule tlv.Tag = 0xA1
	TagModuleDigest   tlv.Tag = 0x8E
)

// DigestLen is the length of a module implementation digest (SHA-256).
const DigestLen = sha256.Size

// ModuleRef names one built-in module a package provides: its AID and the
// digest of the implementation the chip must have for it.
type ModuleRef struct {
	AID    []byte
	Digest [DigestLen]byte
}

// Manifest is the Load File Data Block of this chip: the package AID (the
// Load File AID of INSTALL [for load]), its version and its modules.
type Manifest struct {
	PackageAID []byte
	Version    [2]byte // major, minor
	Modules    []ModuleRef
}

// VersionString renders the version as "major.minor".
func (m Manifest) VersionString() string { return fmt.Sprintf("%d.%d", m.Version[0], m.Version[1]) }

// ParseVersion reads "major.minor" (each 0-255) as in "1.0".
func ParseVersion(s string) ([2]byte, error) {
	major, minor, ok := strings.Cut(s, ".")
	a, err1 := strconv.ParseUint(major, 10, 8)
	b, err2 := strconv.ParseUint(minor, 10, 8)
	if !ok || err1 != nil || err2 != nil {
		return [2]byte{}, errorf(ErrMalformed, "version %q, want MAJOR.MINOR with numbers 0-255", s)
	}
	return [2]byte{byte(a), byte(b)}, nil
}

// Validate checks the manifest: AIDs of 5 to 16 bytes, at least one
// module, no module AID twice.
func (m Manifest) Validate() error {
	if err := checkAID("package AID", m.PackageAID); err != nil {
		return err
	}
	if len(m.Modules) == 0 {
		return errorf(ErrMalformed, "manifest names no module")
	}
	seen := map[string]bool{}
	for i, mod := range m.Modules {
		if err := checkAID(fmt.Sprintf("module %d AID", i+1), mod.AID); err != nil {
			return err
		}
		if seen[string(mod.AID)] {
			return errorf(ErrMalformed, "module %X named twice", mod.AID)
		}
		seen[string(mod.AID)] = true
	}
	return nil
}

// Bytes validates and encodes the manifest.
func (m Manifest) Bytes() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	list := []tlv.TLV{{Tag: TagAID, Value: m.PackageAID}, {Tag: TagVersion, Value: m.Version[:]}}
	for _, mod := range m.Modules {
		list = append(list, tlv.TLV{Tag: TagManifestModule, Children: []tlv.TLV{
			{Tag: TagAID, Value: mod.AID},
			{Tag: TagModuleDigest, Value: mod.Digest[:]},
		}})
	}
	out, err := tlv.EncodeList(list)
	if err != nil {
		return nil, errorf(ErrTooLong, "manifest: %w", err)
	}
	return out, nil
}

// Module returns the module with the given AID.
func (m Manifest) Module(aid []byte) (ModuleRef, bool) {
	for _, mod := range m.Modules {
		if bytes.Equal(mod.AID, aid) {
			return mod, true
		}
	}
	return ModuleRef{}, false
}

// ParseManifest decodes and validates a manifest. It is strict: the
// objects must come in the documented order, each module template holds
// exactly 4F then 8E, and any other tag is refused, so that one manifest
// has one encoding. The returned slices are copies.
func ParseManifest(b []byte) (Manifest, error) {
	list, err := parseStrict(b)
	if err != nil {
		return Manifest{}, errorf(ErrMalformed, "manifest: %w", err)
	}
	if len(list) < 3 || list[0].Tag != TagAID || list[1].Tag != TagVersion {
		return Manifest{}, errorf(ErrMalformed, "manifest must start with 4F (package AID) and CE (version) and name a module")
	}
	var m Manifest
	m.PackageAID = clone(list[0].Value)
	if len(list[1].Value) != 2 {
		return Manifest{}, errorf(ErrMalformed, "manifest version of %d bytes, want 2", len(list[1].Value))
	}
	copy(m.Version[:], list[1].Value)
	for i, t := range list[2:] {
		if t.Tag != TagManifestModule {
			return Manifest{}, errorf(ErrMalformed, "manifest object %d has tag %s, want A1", i+3, t.Tag)
		}
		kids, err := parseStrict(t.Value)
		if err != nil {
			return Manifest{}, errorf(ErrMalformed, "manifest module %d: %w", i+1, err)
		}
		if len(kids) != 2 || kids[0].Tag != TagAID || kids[1].Tag != TagModuleDigest {
			return Manifest{}, errorf(ErrMalformed, "manifest module %d must hold 4F (AID) then 8E (digest)", i+1)
		}
		if len(kids[1].Value) != DigestLen {
			return Manifest{}, errorf(ErrMalformed, "manifest module %d digest of %d bytes, want %d", i+1, len(kids[1].Value), DigestLen)
		}
		mod := ModuleRef{AID: clone(kids[0].Value)}
		copy(mod.Digest[:], kids[1].Value)
		m.Modules = append(m.Modules, mod)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// parseStrict parses a TLV list without tolerating 00/FF padding, so that
// every byte of a signed structure is accounted for.
func parseStrict(b []byte) ([]tlv.TLV, error) {
	var out []tlv.TLV
	for len(b) > 0 {
		if b[0] == 0x00 || b[0] == 0xFF {
			return nil, fmt.Errorf("padding byte %02X where an object is expected", b[0])
		}
		t, rest, err := tlv.ParseOne(b)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		b = rest
	}
	return out, nil
}

// DAPBlock is one DAP block of a load file (GPCS §11.6.2.1, Table 11-59):
// E2 { 4F <security domain AID>, C3 <signature> }, the signature of the
// security domain with DAP Verification privilege named by the AID.
type DAPBlock struct {
	SecurityDomainAID []byte
	Signature         []byte
}

// LoadFile is a Load File as LOAD carries it (GPCS §11.6.2.1): zero or more
// DAP blocks, then the Load File Data Block under tag 'C4'.
type LoadFile struct {
	DAPs      []DAPBlock
	DataBlock []byte
}

// Bytes encodes the load file: E2 {...}... C4 <len> <data block>.
func (lf LoadFile) Bytes() ([]byte, error) {
	var list []tlv.TLV
	for i, d := range lf.DAPs {
		if err := checkAID(fmt.Sprintf("DAP block %d security domain AID", i+1), d.SecurityDomainAID); err != nil {
			return nil, err
		}
		if len(d.Signature) == 0 {
			return nil, errorf(ErrMalformed, "DAP block %d without signature", i+1)
		}
		list = append(list, tlv.TLV{Tag: TagDAPBlock, Children: []tlv.TLV{
			{Tag: TagAID, Value: d.SecurityDomainAID},
			{Tag: TagDAPSignature, Value: d.Signature},
		}})
	}
	if len(lf.DataBlock) == 0 {
		return nil, errorf(ErrMalformed, "empty load file data block")
	}
	list = append(list, tlv.TLV{Tag: TagLoadFileDataBlock, Value: lf.DataBlock})
	out, err := tlv.EncodeList(list)
	if err != nil {
		return nil, errorf(ErrTooLong, "load file: %w", err)
	}
	return out, nil
}

// BuildLoadFile encodes m as the data block of a load file with the given
// DAP blocks (see SignDAP).
func BuildLoadFile(m Manifest, daps ...DAPBlock) ([]byte, error) {
	block, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	return LoadFile{DAPs: daps, DataBlock: block}.Bytes()
}

// ParseLoadFile splits a load file into its DAP blocks and data block.
// The data block must be the last object; a ciphered data block ('D4')
// wraps ErrUnsupported. The manifest is not parsed here: see
// LoadFile.Manifest. Slices alias b.
func ParseLoadFile(b []byte) (LoadFile, error) {
	list, err := parseStrict(b)
	if err != nil {
		return LoadFile{}, errorf(ErrMalformed, "load file: %w", err)
	}
	var lf LoadFile
	for i, t := range list {
		last := i == len(list)-1
		switch t.Tag {
		case TagDAPBlock:
			if last {
				return LoadFile{}, errorf(ErrMalformed, "load file ends without a C4 data block")
			}
			d, err := parseDAPBlock(t)
			if err != nil {
				return LoadFile{}, errorf(ErrMalformed, "DAP block %d: %w", i+1, err)
			}
			lf.DAPs = append(lf.DAPs, d)
		case TagLoadFileDataBlock:
			if !last {
				return LoadFile{}, errorf(ErrMalformed, "objects after the C4 data block")
			}
			if len(t.Value) == 0 {
				return LoadFile{}, errorf(ErrMalformed, "empty load file data block")
			}
			lf.DataBlock = t.Value
		case TagCipheredLoadFileData:
			return LoadFile{}, errorf(ErrUnsupported, "ciphered load file data block (D4)")
		default:
			return LoadFile{}, errorf(ErrMalformed, "load file object %d has tag %s", i+1, t.Tag)
		}
	}
	if lf.DataBlock == nil {
		return LoadFile{}, errorf(ErrMalformed, "load file without a C4 data block")
	}
	return lf, nil
}

func parseDAPBlock(t tlv.TLV) (DAPBlock, error) {
	kids, err := parseStrict(t.Value)
	if err != nil {
		return DAPBlock{}, err
	}
	if len(kids) != 2 || kids[0].Tag != TagAID || kids[1].Tag != TagDAPSignature {
		return DAPBlock{}, errorf(ErrMalformed, "want 4F (SD AID) then C3 (signature)")
	}
	if err := checkAID("security domain AID", kids[0].Value); err != nil {
		return DAPBlock{}, err
	}
	if len(kids[1].Value) == 0 {
		return DAPBlock{}, errorf(ErrMalformed, "empty signature")
	}
	return DAPBlock{SecurityDomainAID: kids[0].Value, Signature: kids[1].Value}, nil
}

// Manifest parses the data block.
func (lf LoadFile) Manifest() (Manifest, error) { return ParseManifest(lf.DataBlock) }

// Hash returns the Load File Data Block Hash, as INSTALL [for load]
// carries it.
func (lf LoadFile) Hash() [sha256.Size]byte { return DataBlockHash(lf.DataBlock) }

// DAP returns the signature for the security domain sd.
func (lf LoadFile) DAP(sd []byte) ([]byte, bool) {
	for _, d := range lf.DAPs {
		if bytes.Equal(d.SecurityDomainAID, sd) {
			return d.Signature, true
		}
	}
	return nil, false
}

// DataBlockHash is this chip's Load File Data Block Hash: SHA-256 of the
// data block (the value of 'C4', without tag and length).
func DataBlockHash(dataBlock []byte) [sha256.Size]byte { return sha256.Sum256(dataBlock) }

// SignDAP computes the DAP of a data block for this chip: an ECDSA
// signature on P-256 with SHA-256 (ASN.1 DER), whose signed message is the
// 32-byte Load File Data Block Hash. ECDSA therefore signs
// SHA-256(SHA-256(data block)).
func SignDAP(priv *ecdsa.PrivateKey, dataBlock []byte) ([]byte, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return nil, errorf(ErrBadKey, "DAP keys are ECDSA P-256")
	}
	h := DataBlockHash(dataBlock)
	e := sha256.Sum256(h[:])
	sig, err := ecdsa.SignASN1(rand.Reader, priv, e[:])
	if err != nil {
		return nil, errorf(ErrBadKey, "DAP signature: %w", err)
	}
	return sig, nil
}

// VerifyDAP checks a DAP signature over a data block (see SignDAP). A
// failure wraps ErrBadSignature.
func VerifyDAP(pub *ecdsa.PublicKey, dataBlock, sig []byte) error {
	h := DataBlockHash(dataBlock)
	return VerifyDAPHash(pub, h[:], sig)
}

// VerifyDAPHash checks a DAP signature given the Load File Data Block Hash,
// as a security domain has it from INSTALL [for load] before the data
// block arrives.
func VerifyDAPHash(pub *ecdsa.PublicKey, hash, sig []byte) error {
	if pub == nil || pub.Curve != elliptic.P256() {
		return errorf(ErrBadKey, "DAP keys are ECDSA P-256")
	}
	if len(hash) != sha256.Size {
		return errorf(ErrBadSignature, "hash of %d bytes, want %d", len(hash), sha256.Size)
	}
	e := sha256.Sum256(hash)
	if !ecdsa.VerifyASN1(pub, e[:], sig) {
		return errorf(ErrBadSignature, "ECDSA P-256")
	}
	return nil
}
