package reader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeConn is a Conn over a scripted card with scripted resets.
type fakeConn struct {
	Transceiver
	t      *testing.T
	name   string
	atr    []byte
	resets []fakeReset
	closed bool
}

type fakeReset struct {
	cold bool
	atr  []byte
	err  error
}

func (c *fakeConn) Reader() string     { return c.name }
func (c *fakeConn) ATR() []byte        { return c.atr }
func (c *fakeConn) Protocol() Protocol { return ProtocolT1 }
func (c *fakeConn) Close() error       { c.closed = true; return nil }

func (c *fakeConn) Reset(_ context.Context, cold bool) error {
	require.NotEmpty(c.t, c.resets, "unexpected reset")
	r := c.resets[0]
	c.resets = c.resets[1:]
	require.Equal(c.t, r.cold, cold)
	if r.err != nil {
		return fmt.Errorf("fake: %w", r.err)
	}
	c.atr = r.atr
	return nil
}

// sessionStep is one host action in a recorded session.
type sessionStep struct {
	reset     *fakeReset
	cmd       string
	sensitive bool
}

// result is what the host saw for one step.
type result struct {
	resp []byte
	err  error
	atr  []byte
}

// runSession plays steps against conn through a host stack with
// GetResponse, as a T=0 host would.
func runSession(t *testing.T, conn Conn, steps []sessionStep) []result {
	t.Helper()
	tr := Stack(conn, GetResponse())
	var out []result
	for _, s := range steps {
		if s.reset != nil {
			err := conn.Reset(t.Context(), s.reset.cold)
			out = append(out, result{err: err, atr: conn.ATR()})
			continue
		}
		ctx := t.Context()
		if s.sensitive {
			ctx = WithSensitive(ctx)
		}
		resp, err := tr.Transceive(ctx, unhex(t, s.cmd))
		out = append(out, result{resp: resp, err: err})
	}
	return out
}

const testATR = "3B8A80010031C173C8400000900090"

func sessionFixture(t *testing.T) (*fakeConn, []sessionStep) {
	card := scripted(t,
		exchange{cmd: "00A4040007A000000151000000", resp: "6F108408A000000151000000A5049F6501FF9000"},
		exchange{cmd: "0020008108" + testPIN, resp: "9000"},
		exchange{cmd: "80500000081122334455667788", resp: "6120"},
		exchange{cmd: "00C0000020", resp: initUpdateResp + "9000"},
		exchange{cmd: "80CA00CF00", resp: testSensitive + "9000"},
		exchange{cmd: "80CA006600", err: ErrCardRemoved},
	)
	conn := &fakeConn{
		Transceiver: card, t: t, name: "Fake Reader 00 00", atr: unhex(t, testATR),
		resets: []fakeReset{{cold: false, atr: unhex(t, "3B00")}, {cold: true, err: ErrNoCard}},
	}
	steps := []sessionStep{
		{cmd: "00A4040007A000000151000000"},
		{cmd: "0020008108" + testPIN},
		{cmd: "80500000081122334455667788"},
		{reset: &fakeReset{cold: false}},
		{cmd: "80CA00CF00", sensitive: true},
		{cmd: "80CA006600"},
		{reset: &fakeReset{cold: true}},
	}
	return conn, steps
}

var goldenDump = strings.Join([]string{
	"# valuechip dump v1",
	"# READER Fake Reader 00 00",
	"# ATR " + testATR,
	"# PROTOCOL T=1",
	">> 00A4040007A000000151000000",
	"<< 6F108408A000000151000000A5049F6501FF9000",
	"# 250us",
	">> 0020008108****************",
	"<< 9000",
	"# 250us",
	">> 80500000081122334455667788",
	"<< 6120",
	"# 250us",
	">> 00C0000020",
	"<< 00010203040506070809300370" + strings.Repeat("**", 19) + "9000",
	"# 250us",
	"# RESET warm",
	"# ATR 3B00",
	"# 250us",
	">> 80CA00CF00",
	"<< ********9000",
	"# 250us",
	">> 80CA006600",
	"# ERROR reader: the card was removed",
	"# 250us",
	"# RESET cold",
	"# ERROR fake: reader: no card in the reader",
	"# 250us",
}, "\n") + "\n"

func TestRecordReplayRoundTrip(t *testing.T) {
	conn, steps := sessionFixture(t)
	var rec bytes.Buffer
	r := Record(&rec, conn, RecordClock(fakeClock(250*time.Microsecond)))
	live := runSession(t, r, steps)
	require.NoError(t, r.Close())
	require.True(t, conn.closed)

	require.Equal(t, goldenDump, rec.String())
	for _, secret := range secrets {
		require.NotContains(t, rec.String(), secret)
	}

	d, err := ParseDump(strings.NewReader(rec.String()))
	require.NoError(t, err)
	require.Equal(t, "Fake Reader 00 00", d.Reader)
	require.Equal(t, unhex(t, testATR), d.ATR)
	require.Equal(t, ProtocolT1, d.Protocol)

	rp := Replay(d)
	require.Equal(t, d.Reader, rp.Reader())
	require.Equal(t, ProtocolT1, rp.Protocol())
	require.Equal(t, unhex(t, testATR), rp.ATR())
	replayed := runSession(t, rp, steps)
	require.NoError(t, rp.Done())

	require.Len(t, replayed, len(live))
	for i := range live {
		require.Equal(t, live[i].atr, replayed[i].atr, "step %d ATR", i)
		if live[i].err != nil {
			require.Error(t, replayed[i].err, "step %d", i)
			require.Contains(t, replayed[i].err.Error(), live[i].err.Error(), "step %d", i)
			continue
		}
		require.NoError(t, replayed[i].err, "step %d", i)
		require.Len(t, replayed[i].resp, len(live[i].resp), "step %d", i)
	}
	// Unmasked answers replay byte for byte; masked bytes come back as 00.
	require.Equal(t, live[0].resp, replayed[0].resp)
	require.Equal(t, live[1].resp, replayed[1].resp)
	require.Equal(t, live[2].resp[:13], replayed[2].resp[:13])
	require.Equal(t, make([]byte, 19), replayed[2].resp[13:32])
	require.Equal(t, []byte{0, 0, 0, 0, 0x90, 0x00}, replayed[4].resp)
	require.ErrorIs(t, replayed[5].err, ErrCardRemoved)
	require.ErrorIs(t, replayed[6].err, ErrNoCard)

	// The dump writes back to the same text.
	var again bytes.Buffer
	_, err = d.WriteTo(&again)
	require.NoError(t, err)
	require.Equal(t, goldenDump, again.String())
}

func TestRecordReplayUnmasked(t *testing.T) {
	conn, steps := sessionFixture(t)
	var rec bytes.Buffer
	r := Record(&rec, conn, RecordMasker(NoMask))
	live := runSession(t, r, steps)
	d, err := ParseDump(&rec)
	require.NoError(t, err)
	replayed := runSession(t, Replay(d), steps)
	for i := range live {
		if steps[i].sensitive { // WithSensitive masks whatever the masker
			require.Equal(t, []byte{0, 0, 0, 0, 0x90, 0x00}, replayed[i].resp)
			continue
		}
		require.Equal(t, live[i].resp, replayed[i].resp, "step %d", i)
		require.Equal(t, live[i].atr, replayed[i].atr, "step %d", i)
	}
}

func TestReplayWildcardMatchesAnySecret(t *testing.T) {
	d := parse(t, "# valuechip dump v1\n>> 0020008104********\n<< 9000\n")
	resp, err := Replay(d).Transceive(t.Context(), unhex(t, "002000810439393939"))
	require.NoError(t, err)
	require.Equal(t, []byte{0x90, 0x00}, resp)
}

func parse(t *testing.T, s string) *Dump {
	t.Helper()
	d, err := ParseDump(strings.NewReader(s))
	require.NoError(t, err)
	return d
}

const replayFixture = `# valuechip dump v1
# ATR 3B00
>> 00A4040000
<< 9000
# RESET cold
# ATR 3B01
>> 00B0000000
<< 01029000
# 1500us
`

func TestReplayErrors(t *testing.T) {
	t.Run("mismatch names both commands and does not consume", func(t *testing.T) {
		r := Replay(parse(t, replayFixture))
		_, err := r.Transceive(t.Context(), unhex(t, "00A4040400"))
		require.ErrorIs(t, err, ErrReplayMismatch)
		require.ErrorContains(t, err, "expected 00A4040000 (line 3), got 00A4040400")
		_, err = r.Transceive(t.Context(), unhex(t, "00A4040000"))
		require.NoError(t, err)
	})
	t.Run("command where a reset was recorded", func(t *testing.T) {
		r := Replay(parse(t, replayFixture))
		_, err := r.Transceive(t.Context(), unhex(t, "00A4040000"))
		require.NoError(t, err)
		_, err = r.Transceive(t.Context(), unhex(t, "00B0000000"))
		require.ErrorIs(t, err, ErrReplayMismatch)
		require.ErrorContains(t, err, "expected RESET cold (line 5)")
	})
	t.Run("reset of the wrong kind", func(t *testing.T) {
		r := Replay(parse(t, replayFixture))
		_, err := r.Transceive(t.Context(), unhex(t, "00A4040000"))
		require.NoError(t, err)
		require.ErrorIs(t, r.Reset(t.Context(), false), ErrReplayMismatch)
		require.NoError(t, r.Reset(t.Context(), true))
		require.Equal(t, []byte{0x3B, 0x01}, r.ATR())
	})
	t.Run("exhausted", func(t *testing.T) {
		r := Replay(parse(t, replayFixture))
		require.ErrorIs(t, r.Done(), ErrReplayIncomplete)
		_, _ = r.Transceive(t.Context(), unhex(t, "00A4040000"))
		require.NoError(t, r.Reset(t.Context(), true))
		_, _ = r.Transceive(t.Context(), unhex(t, "00B0000000"))
		require.NoError(t, r.Done())
		_, err := r.Transceive(t.Context(), unhex(t, "00B0000000"))
		require.ErrorIs(t, err, ErrReplayExhausted)
		require.ErrorIs(t, r.Reset(t.Context(), false), ErrReplayExhausted)
	})
	t.Run("Done names the next step", func(t *testing.T) {
		r := Replay(parse(t, replayFixture))
		_, _ = r.Transceive(t.Context(), unhex(t, "00A4040000"))
		err := r.Done()
		require.ErrorIs(t, err, ErrReplayIncomplete)
		require.ErrorContains(t, err, "2 of 3 steps left, next RESET cold (line 5)")
	})
	t.Run("closed", func(t *testing.T) {
		r := Replay(parse(t, replayFixture))
		require.NoError(t, r.Close())
		_, err := r.Transceive(t.Context(), unhex(t, "00A4040000"))
		require.ErrorIs(t, err, ErrCardRemoved)
	})
	t.Run("cancelled context consumes nothing", func(t *testing.T) {
		r := Replay(parse(t, replayFixture))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := r.Transceive(ctx, unhex(t, "00A4040000"))
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, r.Reset(ctx, true), context.Canceled)
		_, err = r.Transceive(t.Context(), unhex(t, "00A4040000"))
		require.NoError(t, err)
	})
	t.Run("nil dump is an empty session", func(t *testing.T) {
		_, err := Replay(nil).Transceive(t.Context(), unhex(t, "00A4040000"))
		require.ErrorIs(t, err, ErrReplayExhausted)
	})
}

func TestReplayAnyOrder(t *testing.T) {
	r := Replay(parse(t, replayFixture), ReplayAnyOrder())
	resp, err := r.Transceive(t.Context(), unhex(t, "00B0000000"))
	require.NoError(t, err)
	require.Equal(t, unhex(t, "01029000"), resp)
	_, err = r.Transceive(t.Context(), unhex(t, "00B0000000"))
	require.ErrorIs(t, err, ErrReplayMismatch)
	require.ErrorContains(t, err, "next unused: 00A4040000 (line 3)")
	require.ErrorIs(t, r.Reset(t.Context(), false), ErrReplayMismatch)
	require.NoError(t, r.Reset(t.Context(), true))
	_, err = r.Transceive(t.Context(), unhex(t, "00A4040000"))
	require.NoError(t, err)
	require.NoError(t, r.Done())
	_, err = r.Transceive(t.Context(), unhex(t, "00A4040000"))
	require.ErrorIs(t, err, ErrReplayExhausted)
}

func TestReplayTimings(t *testing.T) {
	var slept []time.Duration
	sleep := func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}
	r := Replay(parse(t, replayFixture), ReplayTimings(sleep))
	_, _ = r.Transceive(t.Context(), unhex(t, "00A4040000"))
	_ = r.Reset(t.Context(), true)
	_, _ = r.Transceive(t.Context(), unhex(t, "00B0000000"))
	require.Equal(t, []time.Duration{1500 * time.Microsecond}, slept)

	failing := Replay(parse(t, replayFixture), ReplayTimings(func(context.Context, time.Duration) error {
		return context.DeadlineExceeded
	}))
	_, _ = failing.Transceive(t.Context(), unhex(t, "00A4040000"))
	_ = failing.Reset(t.Context(), true)
	_, err := failing.Transceive(t.Context(), unhex(t, "00B0000000"))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The default sleeper gives up when the context is already over.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, sleepContext(ctx, time.Hour), context.Canceled)
}

func TestReplayedErrorsKeepTheirSentinel(t *testing.T) {
	for _, sentinel := range replayableErrors {
		err := replayedError("pcsc: transmit: " + sentinel.Error())
		require.ErrorIs(t, err, sentinel)
		require.Contains(t, err.Error(), sentinel.Error())
	}
	err := replayedError("something odd")
	require.EqualError(t, err, "replayed: something odd")
	require.Nil(t, errors.Unwrap(err))
}

func TestParseDumpErrors(t *testing.T) {
	const hdr = "# valuechip dump v1\n"
	tests := []struct {
		name, in string
		line     int
		msg      string
	}{
		{"empty", "", 1, "empty dump"},
		{"not a dump", "00A40400\n", 1, "not a valuechip dump"},
		{"future version", "# valuechip dump v2\n", 1, `unsupported dump version "v2"`},
		{"bad hex", hdr + ">> 00A4G400\n<< 9000\n", 2, `bad hex byte "G4" at column 8`},
		{"odd hex", hdr + ">> 00A\n", 2, "odd number of hex digits at column 6"},
		{"bad ATR hex", hdr + "# ATR  3BZZ\n", 2, `ATR: bad hex byte "ZZ" at column 10`},
		{"single star", hdr + ">> 00*\n", 2, "odd number of hex digits"},
		{"response first", hdr + "# ATR 3B00\n<< 9000\n", 3, "response without a command"},
		{"two commands", hdr + ">> 00A40400\n>> 00A40400\n", 3, "command follows a command"},
		{"unanswered at end", hdr + ">> 00A40400\n<< 9000\n>> 00B00000\n\n", 4, "without a response"},
		{"reset while pending", hdr + ">> 00A40400\n# RESET cold\n", 3, "RESET follows a command"},
		{"bad reset", hdr + "# RESET hard\n", 2, `RESET "hard": want cold or warm`},
		{"header after steps", hdr + ">> 00\n<< 9000\n# READER x\n", 4, "READER after the first step"},
		{"second ATR", hdr + "# ATR 3B00\n# ATR 3B00\n", 3, "second ATR line"},
		{"masked ATR", hdr + "# ATR 3B**\n", 2, "masked bytes"},
		{"bad protocol", hdr + "# PROTOCOL T=2\n", 2, `unknown protocol "T=2"`},
		{"stray ATR", hdr + ">> 00\n<< 9000\n# ATR 3B00\n", 4, "must directly follow a RESET"},
		{"stray ERROR", hdr + ">> 00\n<< 9000\n# ERROR boom\n", 4, "ERROR must follow"},
		{"bad timing unit", hdr + ">> 00\n<< 9000\n# 12ms\n", 4, `timing "12ms"`},
		{"timing with words", hdr + ">> 00\n<< 9000\n# 12 us\n", 4, `timing "12 us"`},
		{"timing twice", hdr + ">> 00\n<< 9000\n# 12us\n# 13us\n", 5, "timing must end a step"},
		{"timing in header", hdr + "# 12us\n", 2, "timing must end a step"},
		{"timing overflow", hdr + ">> 00\n<< 9000\n# 99999999999999999999us\n", 4, "timing"},
		{"garbage", hdr + "hello\n", 2, `unexpected line "hello"`},
		{"line too long", hdr + ">> " + strings.Repeat("00", maxDumpLine) + "\n", 2, "token too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDump(strings.NewReader(tc.in))
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tc.line, pe.Line)
			require.ErrorContains(t, err, fmt.Sprintf("reader: dump line %d: ", tc.line))
			require.ErrorContains(t, err, tc.msg)
			require.Error(t, errors.Unwrap(err))
		})
	}
}

func TestParseDumpFile(t *testing.T) {
	f, err := os.Open("testdata/session.dump")
	require.NoError(t, err)
	defer f.Close()
	d, err := ParseDump(f)
	require.NoError(t, err)
	require.Equal(t, "Virtual PCD 00 00", d.Reader)
	require.Equal(t, ProtocolT0, d.Protocol)
	require.Equal(t, unhex(t, "3B8A80010031C173C8400000900090"), d.ATR)
	require.Len(t, d.Steps, 5)

	s := d.Steps[0]
	require.Equal(t, StepExchange, s.Kind)
	require.Equal(t, 8, s.Line)
	require.Equal(t, unhex(t, "00A4040007A000000151000000"), s.Command.Bytes)
	require.Nil(t, s.Command.Masked)
	require.Equal(t, 1234*time.Microsecond, s.Duration)

	s = d.Steps[1] // written with spaces and lower case
	require.Equal(t, "0020008108****************", s.Command.String())
	require.True(t, s.Command.Match(unhex(t, "0020008108"+testPIN)))
	require.False(t, s.Command.Match(unhex(t, "0020008208"+testPIN)))
	require.False(t, s.Command.Match(unhex(t, "0020008107"+testPIN[:14])))

	s = d.Steps[2]
	require.Equal(t, StepReset, s.Kind)
	require.False(t, s.Cold)
	require.Equal(t, unhex(t, "3B00"), s.ATR)
	require.Equal(t, 80*time.Millisecond, s.Duration)

	s = d.Steps[3]
	require.Equal(t, "reader: the card was removed", s.Err)

	s = d.Steps[4]
	require.True(t, s.Cold)
	require.Equal(t, "reader: no card in the reader", s.Err)
	require.Nil(t, s.ATR)
}

func TestRecorderWriteError(t *testing.T) {
	boom := errors.New("disk full")
	conn := &fakeConn{
		Transceiver: scripted(t, exchange{cmd: "00A4040000", resp: "9000"}),
		t:           t, name: "r", atr: unhex(t, "3B00"),
	}
	r := Record(failingWriter{boom}, conn)
	resp, err := r.Transceive(t.Context(), unhex(t, "00A4040000"))
	require.NoError(t, err, "a failing recording must not fail the card session")
	require.Equal(t, []byte{0x90, 0x00}, resp)
	require.ErrorIs(t, r.Err(), boom)
	require.ErrorIs(t, r.Close(), boom)
	require.Equal(t, "r", r.Reader())
	require.Equal(t, ProtocolT1, r.Protocol())
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// normalise drops what a written dump cannot keep: line numbers.
func normalise(d *Dump) *Dump {
	c := *d
	c.Steps = append([]Step(nil), d.Steps...)
	for i := range c.Steps {
		c.Steps[i].Line = 0
	}
	return &c
}

// FuzzParseDump checks that the parser never panics and that whatever it
// accepts writes back to a dump that parses to the same session.
func FuzzParseDump(f *testing.F) {
	f.Add([]byte(goldenDump))
	f.Add([]byte(replayFixture))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := ParseDump(bytes.NewReader(in))
		if err != nil {
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			require.Positive(t, pe.Line)
			return
		}
		var buf bytes.Buffer
		_, err = d.WriteTo(&buf)
		require.NoError(t, err)
		d2, err := ParseDump(&buf)
		require.NoError(t, err, "re-parsing:\n%s", buf.String())
		require.Equal(t, normalise(d), normalise(d2))
	})
}
