package script_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/host/script"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

// These tests open SCP03 sessions with the sample card's real issuer
// security domain (applet/cardmanager): key set 01 = the test key, i = 70
// (pseudo-random card challenges, R-MAC and R-ENCRYPTION supported). A
// secure channel protects commands to its own security domain, so the
// wrapped commands are ones the ISD answers: GET DATA and GET STATUS.

const selectISD = "select " + isdAID + "\nexpect sw 9000\n"

// wireCard returns the interpreter's card for c with a trace of the wire,
// below the secure channel: what really goes to the card.
func wireCard(c applet.Card, wire io.Writer) script.Card {
	conn := emu.Connect(c, "emu:scp")
	return script.StackCard{Conn: conn, Stack: reader.Stack(connect.Stack(conn, connect.StackOptions{}), reader.Trace(wire))}
}

// withKey has ${env:KEY} give the test key.
func withKey(k string) func(string) (string, bool) {
	return func(name string) (string, bool) { return k, name == "KEY" }
}

// The secure channel engages at every level: commands leave with the
// secure messaging class 84 and a C-MAC that the trace masks, responses
// come back longer by their R-MAC when one was asked for (and are checked,
// or the script would fail), the ISD answers GET STATUS only inside the
// session, and the key appears in no output.
func TestSecureSCP03(t *testing.T) {
	for _, level := range []string{"mac", "mac+enc", "mac+rmac", "mac+enc+rmac", "mac+enc+rmac+renc", "33"} {
		t.Run(level, func(t *testing.T) {
			var wire bytes.Buffer
			src := selectISD + "secure scp03 key=${env:KEY} kvn=01 sd=" + isdAID + " level=" + level + `
80 CA 00 66 00
expect data match "^6631732F"
80 CA 9F 7F 00
expect data match "^9F7F2A"
80 F2 80 02 02 4F 00 00
expect sw 9000
expect data match "^E3..4F08` + isdAID + `"
`
			var human bytes.Buffer
			r, _ := runSource(t, src, script.Config{Card: wireCard(sampleCard(t), &wire), Observer: script.NewHuman(&human), Getenv: withKey(testKey)})
			require.NoError(t, r.Err, human.String())
			h, w := human.String(), wire.String()
			require.Contains(t, h, "SCP03 key version 01, level ")
			// The trace shows the commands as written, marked secure...
			require.Contains(t, h, ">> 80CA006600  (secure)")
			require.Contains(t, h, ">> 80F28002024F0000  (secure)")
			// ... the wire the handshake, the host cryptogram masked and
			// the card's challenge and cryptogram too ...
			require.Regexp(t, `(?m)^>> 8050010008[0-9A-F]{16}00$`, w)
			require.Regexp(t, `(?m)^<< 00005643000000000001010370(\*\*){19}  9000`, w)
			require.Regexp(t, `(?m)^>> 8482`+hexLevel(t, level)+`0010(\*\*){16}$`, w)
			// ... and the wrapped commands: class 84, C-MAC masked; GET
			// STATUS's data encrypted (16 bytes of padded ciphertext)
			// when C-DECRYPTION is on.
			require.Regexp(t, `(?m)^>> 84CA006608(\*\*){8}00$`, w)
			if strings.Contains(level, "enc") || level == "33" {
				require.Regexp(t, `(?m)^>> 84F2800218[0-9A-F]{32}(\*\*){8}00$`, w)
			} else {
				require.Regexp(t, `(?m)^>> 84F280020A4F00(\*\*){8}00$`, w)
			}
			// R-MAC: the 51-byte card recognition data come with 8 more
			// bytes; R-ENCRYPTION pads them to 64 first.
			cardData := regexp.MustCompile(`(?m)^>> 84CA0066.*\n<< ([0-9A-F]*)  9000`).FindStringSubmatch(w)
			require.NotNil(t, cardData, w)
			want := 51
			switch {
			case level == "33" || strings.Contains(level, "renc"):
				want = 64 + 8
			case strings.Contains(level, "rmac"):
				want = 51 + 8
			}
			require.Equal(t, want, len(cardData[1])/2, "response data on the wire")

			var js bytes.Buffer
			require.NoError(t, script.WriteJSON(&js, []*script.Result{r}))
			for _, out := range []string{h, js.String(), w} {
				require.NotContains(t, strings.ToUpper(out), testKey)
			}
		})
	}
}

// hexLevel is the security level byte of EXTERNAL AUTHENTICATE's P1.
func hexLevel(t *testing.T, level string) string {
	l, err := script.ParseSecurityLevel(level)
	require.NoError(t, err)
	return fmt.Sprintf("%02X", byte(l))
}

// Failures to open a session are clear and name no key.
func TestSecureSCP03Failures(t *testing.T) {
	const wrong = "00112233445566778899AABBCCDDEEFF"
	tests := []struct {
		name, src, want string
	}{
		// The card's cryptogram does not match the host's: wrong key.
		{"wrong key", selectISD + "secure scp03 key=" + wrong + " kvn=01", "secure scp03: scp03: authentication failed: scp03: cryptogram verification failed: card cryptogram"},
		// The card has no key set 30 (GPCS: 6A88 referenced data not found).
		{"wrong kvn", selectISD + "secure scp03 key=${env:KEY} kvn=30", "secure scp03: scp03: INITIALIZE UPDATE: card returned 6A88 (referenced data not found)"},
		// sd= names another security domain: the card challenge is not the
		// one its sequence counter gives for that AID.
		{"wrong sd", selectISD + "secure scp03 key=${env:KEY} sd=A0000001510000", "unexpected pseudo-random card challenge"},
		// The test applet is selected: it is no security domain.
		{"not a security domain", selectTest + "secure scp03 key=${env:KEY}", "secure scp03: scp03: INITIALIZE UPDATE: card returned 6D00 (instruction not supported)"},
		// The ISD's i=70 allows R-MAC and R-ENC; the level must still be
		// valid: R-ENC needs C-DEC.
		{"bad level", selectISD + "secure scp03 key=${env:KEY} level=mac+rmac+renc", "security level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, out := runSource(t, tt.src, script.Config{Getenv: withKey(testKey)})
			require.Error(t, r.Err, out)
			require.Contains(t, r.Err.Error(), tt.want)
			require.NotContains(t, strings.ToUpper(out+r.Err.Error()), wrong)
			require.NotContains(t, strings.ToUpper(out+r.Err.Error()), testKey)
		})
	}

	// A protocol this build lacks says so.
	r, _ := runSource(t, "secure scp03 key="+wrong, script.Config{Secure: map[string]script.SecureChannel{}})
	require.ErrorIs(t, r.Err, script.ErrSecureUnavailable)
}

// tamper flips a bit in the last byte of response data (the R-MAC's) of
// commands with the secure messaging class.
type tamper struct{ reader.Conn }

func (c tamper) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	resp, err := c.Conn.Transceive(ctx, cmd)
	if err == nil && len(resp) > 2 && cmd[0] == 0x84 && cmd[1] != 0x82 {
		resp = append([]byte(nil), resp...)
		resp[len(resp)-3] ^= 0x01
	}
	return resp, err
}

// The host checks every R-MAC: a response altered on the way fails the
// command, and the interpreter drops the session; the next command goes in
// plain, and the ISD, still expecting secure messaging, refuses it.
func TestSecureSCP03RMACChecked(t *testing.T) {
	conn := tamper{emu.Connect(sampleCard(t), "emu:scp")}
	card := script.StackCard{Conn: conn, Stack: connect.Stack(conn, connect.StackOptions{})}
	in := script.New(script.Config{Card: card, Getenv: withKey(testKey)})
	defer in.Close()
	run := func(src string) *script.Result {
		s, err := script.Parse("t.vcs", []byte(src))
		require.NoError(t, err)
		return in.Run(context.Background(), s)
	}
	require.NoError(t, run(selectISD+"secure scp03 key=${env:KEY} level=mac+rmac").Err)
	require.Equal(t, "SCP03 key version 01, level C-MAC+R-MAC", in.Secure())
	r := run("80 CA 00 66 00")
	require.Error(t, r.Err)
	require.Equal(t, "t.vcs:1:1: scp03: security error: scp03: MAC verification failed: R-MAC of response 9000", r.Err.Error())
	require.Equal(t, "", in.Secure())
	require.NoError(t, run("80 CA 00 66 00\nexpect sw 6982").Err)
}

// "secure off" stops wrapping on the host side only: the card's session is
// still open, so the ISD refuses the next plain command ('6982') and ends
// the session; from then on it refuses plain commands until a new session
// or a new selection.
func TestSecureOffLeavesCardSession(t *testing.T) {
	src := selectISD + `secure scp03 key=${env:KEY}
80 CA 00 66 00
expect sw 9000
secure off
80 CA 00 66 00
expect sw 6982
select ` + isdAID + `
80 CA 00 66 00
expect sw 9000
80 F2 80 02 02 4F 00 00
expect sw 6982
`
	r, out := runSource(t, src, script.Config{Getenv: withKey(testKey)})
	require.NoError(t, r.Err, out)
}

// A recorded secure session replays byte for byte when the replay draws
// the host challenges of the recording run (SCP03.Rand) and the recording
// keeps the card's challenge and cryptogram (reader.NoMask): the host
// then derives the same session keys, so every wrapped command and its MAC
// are the recorded ones and every recorded R-MAC verifies. A chip with a
// fixed random source (chip.WithRandom) makes the recording itself
// repeatable. With the default masking, as `valuechip script --record`
// writes, the replay cannot even authenticate: the masked card cryptogram
// comes back as zeros.
func TestSecureReplay(t *testing.T) {
	src := selectISD + `secure scp03 key=${env:KEY} kvn=01 level=mac+enc+rmac+renc sd=` + isdAID + `
80 CA 9F 7F 00
expect data match "^9F7F2A"
80 F2 40 02 02 4F 00 00
expect data match "4F08F056435445535401"
`
	seed := func() io.Reader { return mrand.NewChaCha8([32]byte{1}) }
	clock := func() time.Time { return time.Unix(0, 0) }
	record := func(masker reader.Masker) (dump, trace string) {
		var d, human bytes.Buffer
		c := sampleCard(t, chip.WithRandom(mrand.NewChaCha8([32]byte{2})))
		rec := reader.Record(&d, emu.Connect(c, "emu:test"), reader.RecordMasker(masker), reader.RecordClock(clock))
		r, _ := runSource(t, src, script.Config{
			Card: script.StackCard{Conn: rec, Stack: connect.Stack(rec, connect.StackOptions{})}, Observer: script.NewHuman(&human),
			Getenv: withKey(testKey), Secure: map[string]script.SecureChannel{"scp03": script.SCP03{Rand: seed()}},
		})
		require.NoError(t, r.Err, human.String())
		require.NoError(t, rec.Close())
		return d.String(), human.String()
	}
	replay := func(dump string, hostRand io.Reader) (*script.Result, string, *reader.Replayer) {
		d, err := reader.ParseDump(strings.NewReader(dump))
		require.NoError(t, err)
		rp := reader.Replay(d)
		var human bytes.Buffer
		r, _ := runSource(t, src, script.Config{
			Card: script.StackCard{Conn: rp, Stack: connect.Stack(rp, connect.StackOptions{})}, Observer: script.NewHuman(&human),
			Getenv: withKey(testKey), Secure: map[string]script.SecureChannel{"scp03": script.SCP03{Rand: hostRand}},
		})
		return r, human.String(), rp
	}

	dump, trace := record(reader.NoMask)
	again, _ := record(reader.NoMask)
	require.Equal(t, dump, again, "same seeds, same card: the same recording")
	require.Contains(t, dump, ">> 84CA9F7F08", "the recording holds the wrapped commands")

	r, replayed, rp := replay(dump, seed())
	require.NoError(t, r.Err, replayed)
	require.Equal(t, trace, replayed)
	require.NoError(t, rp.Done())

	// Fresh host challenges: the INITIALIZE UPDATE differs.
	r, _, _ = replay(dump, nil)
	require.ErrorIs(t, r.Err, reader.ErrReplayMismatch)
	require.Contains(t, r.Err.Error(), "secure scp03: INITIALIZE UPDATE: ")

	// The default masking: the card cryptogram was masked.
	masked, _ := record(reader.DefaultMasker)
	require.Regexp(t, `(?m)^<< 00005643000000000001010370(\*\*){19}9000$`, masked)
	r, _, _ = replay(masked, seed())
	require.Error(t, r.Err)
	require.Contains(t, r.Err.Error(), "secure scp03: scp03: authentication failed")
}
