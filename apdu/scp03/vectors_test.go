package scp03

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
)

// hexBytes decodes a JSON hex string.
type hexBytes []byte

func (h *hexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	*h = v
	return err
}

type vectorKeys struct {
	ENC  hexBytes `json:"enc"`
	MAC  hexBytes `json:"mac"`
	DEK  hexBytes `json:"dek"`
	RMAC hexBytes `json:"rmac"`
}

type sessionVector struct {
	Name                     string     `json:"name"`
	Source                   string     `json:"source"`
	Keys                     vectorKeys `json:"keys"`
	AID                      hexBytes   `json:"aid"`
	InitializeUpdate         hexBytes   `json:"initialize_update"`
	InitializeUpdateResponse hexBytes   `json:"initialize_update_response"`
	ExternalAuthenticate     hexBytes   `json:"external_authenticate"`
	Steps                    []struct {
		Kind    string   `json:"kind"`
		Plain   hexBytes `json:"plain"`
		Wrapped hexBytes `json:"wrapped"`
	} `json:"steps"`
	SessionKeys    *vectorKeys `json:"session_keys"`
	CardCryptogram hexBytes    `json:"card_cryptogram"`
	HostCryptogram hexBytes    `json:"host_cryptogram"`
	ChainAfterEA   hexBytes    `json:"chaining_after_external_authenticate"`
	ICVs           []struct {
		Counter     int      `json:"counter"`
		CommandICV  hexBytes `json:"command_icv"`
		ResponseICV hexBytes `json:"response_icv"`
	} `json:"icvs"`
}

type kdfVector struct {
	Name     string   `json:"name"`
	Source   string   `json:"source"`
	Key      hexBytes `json:"key"`
	Constant byte     `json:"constant"`
	Context  hexBytes `json:"context"`
	Bits     int      `json:"bits"`
	Output   hexBytes `json:"output"`
	KCV      hexBytes `json:"kcv"`
	Input    hexBytes `json:"input"`
}

type vectorFile struct {
	Sessions []sessionVector `json:"sessions"`
	KDF      []kdfVector     `json:"kdf"`
	KDFKCV   []kdfVector     `json:"kdf_kcv"`
	KDFInput []kdfVector     `json:"kdf_input"`
	KCV      []kdfVector     `json:"kcv"`
}

func loadVectors(t testing.TB) vectorFile {
	t.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Sessions) != 9 || len(vf.KDF) != 40 || len(vf.KDFKCV) != 3 || len(vf.KDFInput) != 1 || len(vf.KCV) != 1 {
		t.Fatalf("testdata/vectors.json has %d sessions, %d KDF vectors", len(vf.Sessions), len(vf.KDF))
	}
	return vf
}

func (v sessionVector) static() StaticKeys {
	return StaticKeys{ENC: Key(v.Keys.ENC), MAC: Key(v.Keys.MAC), DEK: Key(v.Keys.DEK)}
}

func (v sessionVector) hostChallenge() []byte { return v.InitializeUpdate[5:13] }
func (v sessionVector) cardChallenge() []byte { return v.InitializeUpdateResponse[13:21] }
func (v sessionVector) level() SecurityLevel  { return SecurityLevel(v.ExternalAuthenticate[2]) }

func mustParse(t testing.TB, b []byte) apdu.Command {
	t.Helper()
	c, err := apdu.ParseCommand(b)
	if err != nil {
		t.Fatalf("ParseCommand(%X): %v", b, err)
	}
	return c
}

func mustBytes(t testing.TB, c apdu.Command) []byte {
	t.Helper()
	b, err := c.Bytes()
	if err != nil {
		t.Fatalf("Bytes(%v): %v", c, err)
	}
	return b
}

// The host side reproduces every command of the pySim sessions and
// recovers every response.
func TestVectorsHost(t *testing.T) {
	for _, v := range loadVectors(t).Sessions {
		t.Run(v.Name, func(t *testing.T) {
			h, err := NewHost(HostConfig{
				Keys:       v.static(),
				KeyVersion: v.InitializeUpdate[2],
				Level:      v.level(),
				AID:        v.AID,
				Rand:       bytes.NewReader(v.hostChallenge()),
			})
			if err != nil {
				t.Fatal(err)
			}
			iu, err := h.InitializeUpdate()
			if err != nil {
				t.Fatal(err)
			}
			if got := mustBytes(t, iu); !bytes.Equal(got, v.InitializeUpdate) {
				t.Fatalf("INITIALIZE UPDATE %X, want %X", got, v.InitializeUpdate)
			}
			ea, err := h.ExternalAuthenticate(append(v.InitializeUpdateResponse, 0x90, 0x00))
			if err != nil {
				t.Fatal(err)
			}
			if got := mustBytes(t, ea); !bytes.Equal(got, v.ExternalAuthenticate) {
				t.Fatalf("EXTERNAL AUTHENTICATE %X, want %X", got, v.ExternalAuthenticate)
			}
			if err := h.Complete([]byte{0x90, 0x00}); err != nil {
				t.Fatal(err)
			}
			if v.ChainAfterEA != nil && !bytes.Equal(h.Session().chain[:], v.ChainAfterEA) {
				t.Fatalf("MAC chaining value %X, want %X", h.Session().chain, v.ChainAfterEA)
			}
			for i, st := range v.Steps {
				switch st.Kind {
				case "command":
					w, err := h.Wrap(mustParse(t, st.Plain))
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if got := mustBytes(t, w); !bytes.Equal(got, st.Wrapped) {
						t.Fatalf("step %d: wrapped %X, want %X", i, got, st.Wrapped)
					}
				case "response":
					got, err := h.Unwrap(st.Wrapped)
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if !bytes.Equal(got, st.Plain) {
						t.Fatalf("step %d: unwrapped %X, want %X", i, got, st.Plain)
					}
				}
			}
		})
	}
}

// The card side reproduces the INITIALIZE UPDATE response (pseudo-random
// challenge from the sequence counter and AID), accepts EXTERNAL
// AUTHENTICATE, unwraps every command and produces every response.
func TestVectorsCard(t *testing.T) {
	for _, v := range loadVectors(t).Sessions {
		t.Run(v.Name, func(t *testing.T) {
			r := v.InitializeUpdateResponse
			seq := uint32(r[29])<<16 | uint32(r[30])<<8 | uint32(r[31])
			ks := &KeySet{Version: r[10], Keys: v.static(), Sequence: seq - 1}
			cfg := CardConfig{KeySets: []*KeySet{ks}, I: IParam(r[12]), AID: v.AID}
			copy(cfg.KDD[:], r[:10])
			c, err := NewCard(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.InitializeUpdate(mustParse(t, v.InitializeUpdate))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, r) {
				t.Fatalf("INITIALIZE UPDATE response %X, want %X", got, r)
			}
			if ks.Sequence != seq {
				t.Fatalf("sequence counter %d, want %d", ks.Sequence, seq)
			}
			if err := c.ExternalAuthenticate(mustParse(t, v.ExternalAuthenticate)); err != nil {
				t.Fatal(err)
			}
			if c.Level() != v.level() || !c.Open() {
				t.Fatalf("level %s open %v", c.Level(), c.Open())
			}
			for i, st := range v.Steps {
				switch st.Kind {
				case "command":
					cmd, err := c.Unwrap(st.Wrapped)
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if got := mustBytes(t, cmd); !bytes.Equal(got, st.Plain) {
						t.Fatalf("step %d: unwrapped %X, want %X", i, got, st.Plain)
					}
				case "response":
					got, err := c.Wrap(st.Plain)
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if !bytes.Equal(got, st.Wrapped) {
						t.Fatalf("step %d: wrapped %X, want %X", i, got, st.Wrapped)
					}
				}
			}
		})
	}
}

// Intermediate values of protocols.md §3.6 through the pure functions.
func TestVectorsIntermediate(t *testing.T) {
	n := 0
	for _, v := range loadVectors(t).Sessions {
		if v.SessionKeys == nil {
			continue
		}
		n++
		t.Run(v.Name, func(t *testing.T) {
			sk, err := DeriveSessionKeys(v.static(), v.hostChallenge(), v.cardChallenge())
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name      string
				got, want []byte
			}{{"S-ENC", sk.ENC, v.SessionKeys.ENC}, {"S-MAC", sk.MAC, v.SessionKeys.MAC}, {"S-RMAC", sk.RMAC, v.SessionKeys.RMAC}} {
				if c.want != nil && !bytes.Equal(c.got, c.want) {
					t.Errorf("%s = %X, want %X", c.name, c.got, c.want)
				}
			}
			if !bytes.Equal(sk.DEK, v.Keys.DEK) {
				t.Error("session DEK is not the static Key-DEK")
			}
			if v.CardCryptogram != nil {
				cc, _ := CardCryptogram(sk.MAC, v.hostChallenge(), v.cardChallenge())
				if !bytes.Equal(cc[:], v.CardCryptogram) || !bytes.Equal(cc[:], v.InitializeUpdateResponse[21:29]) {
					t.Errorf("card cryptogram %X", cc)
				}
			}
			if v.HostCryptogram != nil {
				hc, _ := HostCryptogram(sk.MAC, v.hostChallenge(), v.cardChallenge())
				if !bytes.Equal(hc[:], v.HostCryptogram) {
					t.Errorf("host cryptogram %X, want %X", hc, v.HostCryptogram)
				}
				_, chain, err := NewExternalAuthenticate(sk.MAC, v.level(), hc)
				if err != nil || !bytes.Equal(chain[:], v.ChainAfterEA) {
					t.Errorf("chaining value %X (%v), want %X", chain, err, v.ChainAfterEA)
				}
			}
			for _, icv := range v.ICVs {
				s, err := NewSession(sk, v.level(), [16]byte{})
				if err != nil {
					t.Fatal(err)
				}
				for range icv.Counter {
					s.incrementCounter()
				}
				if got := s.icv(false); !bytes.Equal(got[:], icv.CommandICV) {
					t.Errorf("command ICV %X, want %X", got, icv.CommandICV)
				}
				if got := s.icv(true); !bytes.Equal(got[:], icv.ResponseICV) {
					t.Errorf("response ICV %X, want %X", got, icv.ResponseICV)
				}
			}
			seq := uint32(v.InitializeUpdateResponse[31])
			ch, err := PseudoRandomChallenge(Key(v.Keys.ENC), seq, v.AID)
			if err != nil || !bytes.Equal(ch[:], v.cardChallenge()) {
				t.Errorf("pseudo-random challenge %X (%v), want %X", ch, err, v.cardChallenge())
			}
		})
	}
	if n != 2 {
		t.Fatalf("%d sessions with intermediates, want 2", n)
	}
}

func TestVectorsKDF(t *testing.T) {
	vf := loadVectors(t)
	for _, v := range vf.KDF {
		got, err := DeriveData(v.Key, v.Constant, v.Context, v.Bits)
		if err != nil || !bytes.Equal(got, v.Output) {
			t.Errorf("%s: %X (%v), want %X", v.Name, got, err, v.Output)
		}
	}
	for _, v := range vf.KDFKCV {
		got, err := DeriveData(v.Key, v.Constant, v.Context, v.Bits)
		if err != nil {
			t.Fatal(err)
		}
		kcv, _ := KCV(got)
		if !bytes.Equal(kcv[:], v.KCV) {
			t.Errorf("%s: KCV %X, want %X", v.Name, kcv, v.KCV)
		}
	}
	// The fixed-input layout of Amd D §4.1.5, byte for byte.
	for _, v := range vf.KDFInput {
		want, _ := cmac.Sum(v.Key, v.Input)
		got, err := DeriveData(v.Key, v.Constant, v.Context, v.Bits)
		if err != nil || !bytes.Equal(got, want[:]) {
			t.Errorf("%s: KDF %X, CMAC of the documented input %X", v.Name, got, want)
		}
	}
	for _, v := range vf.KCV {
		got, err := KCV(v.Key)
		if err != nil || !bytes.Equal(got[:], v.KCV) {
			t.Errorf("%s: KCV %X (%v), want %X", v.Name, got, err, v.KCV)
		}
	}
}
