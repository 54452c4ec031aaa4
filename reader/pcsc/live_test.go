//go:build cgo

package pcsc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/reader"
)

// Live tests talk to a running pcscd with the vsmartcard-vpcd driver and
// put their own test card (vpcdcard_test.go) in slot 1, leaving slot 0 to
// whoever else is testing. Without pcscd or vpcd they skip, saying why,
// unless VALUECHIP_REQUIRE_E2E=1 makes that a failure (CI sets it, so a
// broken setup cannot pass as green).

const (
	slot0     = "Virtual PCD 00 00"
	slot1     = "Virtual PCD 00 01"
	slot1Addr = "127.0.0.1:35964"
)

var (
	// atrT1 offers T=1 only: TS 3B, T0 81 (TD1, 1 historical byte),
	// TD1 81 (TD2, T=1), TD2 01 (T=1), historical byte 56, TCK 57.
	atrT1 = []byte{0x3B, 0x81, 0x81, 0x01, 0x56, 0x57}
	// atrT0 offers T=0 only (no TCK needed).
	atrT0 = []byte{0x3B, 0x02, 0x14, 0x50}
)

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("VALUECHIP_REQUIRE_E2E") == "1" {
		t.Fatalf(format+" (VALUECHIP_REQUIRE_E2E=1 makes this a failure)", args...)
	}
	t.Skipf(format, args...)
}

// livePCSC opens a Context, or skips the test when pcscd is not there.
func livePCSC(t *testing.T) *Context {
	t.Helper()
	c, err := Open()
	if err != nil {
		if errors.Is(err, reader.ErrServiceUnavailable) {
			skipOrFail(t, "pcscd not running: %v", err)
		}
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

// testContext bounds a live test, so a stuck slot fails the test instead of
// hanging the run.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// liveSlot1 returns a Context and a test card for vpcd slot 1, which must
// be empty: a card there belongs to someone else.
func liveSlot1(t *testing.T, atr []byte) (context.Context, *Context, *testCard) {
	t.Helper()
	c := livePCSC(t)
	ctx := testContext(t)
	infos, err := c.Readers(ctx)
	if errors.Is(err, reader.ErrNoReader) {
		skipOrFail(t, "no PC/SC readers: %v", err)
	}
	require.NoError(t, err)
	in, err := Select(infos, slot1)
	if err != nil || in.Name != slot1 {
		skipOrFail(t, "vpcd slot 1 (%q) not found, is vsmartcard-vpcd installed? readers: %v", slot1, infos)
	}
	if in.Present {
		skipOrFail(t, "vpcd slot 1 already holds someone else's card (ATR % X)", in.ATR)
	}
	card := newTestCard(slot1Addr, atr)
	t.Cleanup(func() {
		card.remove()
		// Leave the slot empty for the next test: wait until pcscd has
		// seen the card go.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.waitPresence(ctx, slot1, false)
		assert.NoError(t, err, "slot 1 did not empty")
	})
	return ctx, c, card
}

// insert puts the card in and waits until pcscd reports it.
func insert(t *testing.T, ctx context.Context, c *Context, card *testCard) reader.Info {
	t.Helper()
	card.insert(t)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in, err := c.WaitForCard(wctx, slot1)
	require.NoError(t, err, "pcscd did not see the test card in slot 1")
	return in
}

// remove takes the card out and waits until pcscd reports the slot empty.
func remove(t *testing.T, ctx context.Context, c *Context, card *testCard) {
	t.Helper()
	card.remove()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.waitPresence(wctx, slot1, false)
	require.NoError(t, err, "pcscd did not see the test card leave slot 1")
}

func TestLiveReaders(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)

	infos, err := c.Readers(ctx)
	require.NoError(t, err)
	names := make([]string, len(infos))
	for i, in := range infos {
		names[i] = in.Name
		assert.Equal(t, i, in.Index)
	}
	assert.Contains(t, names, slot0)
	assert.Contains(t, names, slot1)
	t.Logf("readers: %s", describe(infos))

	got := insert(t, ctx, c, card)
	assert.Equal(t, atrT1, got.ATR)
	assert.Equal(t, slot1, got.Name)

	infos, err = c.Readers(ctx)
	require.NoError(t, err)
	in, err := Select(infos, "00 01")
	require.NoError(t, err)
	assert.True(t, in.Present)
	assert.Equal(t, atrT1, in.ATR)

	// With slot 0 empty, "" picks the reader holding our card.
	if s0, err := Select(infos, slot0); err == nil && !s0.Present {
		t.Setenv(EnvReader, "")
		in, err := Select(infos, "")
		require.NoError(t, err)
		assert.Equal(t, slot1, in.Name)
	}
}

func TestLiveCard(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)
	insert(t, ctx, c, card)

	conn, err := c.Connect(ctx, slot1, ConnectOptions{})
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, slot1, conn.Reader())
	assert.Equal(t, atrT1, conn.ATR())
	assert.Equal(t, reader.ProtocolT1, conn.Protocol())

	cmd := []byte{0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x00, 0x01}
	rsp, err := conn.Transceive(ctx, cmd)
	require.NoError(t, err)
	assert.Equal(t, append(append([]byte{}, cmd...), 0x90, 0x00), rsp)

	// Short commands never reach vpcd; the slot keeps working.
	for _, short := range [][]byte{nil, {0x00}, {0x04}, {0x00, 0xA4}, {0x00, 0xA4, 0x04}} {
		_, err := conn.Transceive(ctx, short)
		assert.ErrorIs(t, err, ErrShortCommand, "% X", short)
	}
	rsp, err = conn.Transceive(ctx, []byte{0x80, 0xCA, 0x00, 0x00})
	require.NoError(t, err)
	assert.Equal(t, []byte{0x80, 0xCA, 0x00, 0x00, 0x90, 0x00}, rsp)

	// Extended length passes through.
	big := make([]byte, 7+4000)
	copy(big, []byte{0x80, 0xE2, 0x00, 0x00, 0x00, 0x0F, 0xA0})
	rsp, err = conn.Transceive(ctx, big)
	require.NoError(t, err)
	assert.Len(t, rsp, len(big)+2)

	// Warm reset: vpcd sends RESET to the card.
	mark := card.mark()
	require.NoError(t, conn.Reset(ctx, false))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	seen, err := card.waitCtrl(wctx, mark, ctrlReset)
	cancel()
	require.NoError(t, err)
	t.Logf("warm reset: control bytes %s", hexString(seen))
	assert.Equal(t, atrT1, conn.ATR())
	_, err = conn.Transceive(ctx, cmd)
	require.NoError(t, err)

	// Cold reset: power off, then on.
	mark = card.mark()
	require.NoError(t, conn.Reset(ctx, true))
	wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	seen, err = card.waitCtrl(wctx, mark, ctrlOff, ctrlOn)
	cancel()
	require.NoError(t, err)
	t.Logf("cold reset: control bytes %s", hexString(seen))
	_, err = conn.Transceive(ctx, cmd)
	require.NoError(t, err)

	// A cancelled context stops a command before it is sent.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	_, err = conn.Transceive(cctx, cmd)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, conn.Reset(cctx, false), context.Canceled)

	require.NoError(t, conn.Close())
	require.NoError(t, conn.Close(), "second Close is a no-op")
	_, err = conn.Transceive(ctx, cmd)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, conn.Reset(ctx, false), ErrClosed)
}

func TestLiveResetOnClose(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)
	insert(t, ctx, c, card)
	conn, err := c.Connect(ctx, slot1, ConnectOptions{ResetOnClose: true})
	require.NoError(t, err)
	mark := card.mark()
	require.NoError(t, conn.Close())
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = card.waitCtrl(wctx, mark, ctrlReset)
	require.NoError(t, err, "Close with ResetOnClose must reset the card")
}

func TestLiveProtocolOption(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT0)
	insert(t, ctx, c, card)

	_, err := c.Connect(ctx, slot1, ConnectOptions{Protocol: reader.ProtocolT1})
	require.Error(t, err, "a T=0-only card cannot do T=1")
	var pe *Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, codeProtoMismatch, pe.Code)
	assert.Contains(t, err.Error(), "with T=1")
	t.Logf("forced T=1 on a T=0 card: %v", err)

	conn, err := c.Connect(ctx, slot1, ConnectOptions{Protocol: reader.ProtocolT0})
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, reader.ProtocolT0, conn.Protocol())
	rsp, err := conn.Transceive(ctx, []byte{0x00, 0xB0, 0x00, 0x00, 0x10})
	require.NoError(t, err)
	assert.Equal(t, []byte{0x00, 0xB0, 0x00, 0x00, 0x10, 0x90, 0x00}, rsp)
}

func TestLiveExclusive(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)
	insert(t, ctx, c, card)

	excl, err := c.Connect(ctx, slot1, ConnectOptions{Exclusive: true})
	require.NoError(t, err)

	other := livePCSC(t)
	_, err = other.Connect(ctx, slot1, ConnectOptions{})
	require.Error(t, err)
	var pe *Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, codeSharingViolation, pe.Code)
	assert.Contains(t, err.Error(), "exclusively")

	require.NoError(t, excl.Close())
	shared, err := other.Connect(ctx, slot1, ConnectOptions{})
	require.NoError(t, err)
	require.NoError(t, shared.Close())
}

func TestLiveNoCardAndRemoval(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)

	_, err := c.Connect(ctx, slot1, ConnectOptions{})
	require.ErrorIs(t, err, reader.ErrNoCard)
	t.Logf("connect to an empty slot: %v", err)

	// WaitForCard ends with its context, woken by SCardCancel rather than
	// at the end of a wait slice.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, err = c.WaitForCard(wctx, slot1)
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 900*time.Millisecond, "the wait should end soon after its deadline")

	insert(t, ctx, c, card)
	conn, err := c.Connect(ctx, slot1, ConnectOptions{})
	require.NoError(t, err)
	remove(t, ctx, c, card)
	_, err = conn.Transceive(ctx, []byte{0x00, 0xA4, 0x00, 0x0C})
	require.ErrorIs(t, err, reader.ErrCardRemoved)
	t.Logf("transmit after removal: %v", err)
	assert.NoError(t, conn.Close(), "closing a connection to a removed card is fine")
}

func TestLiveRemovedThenReconnect(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)
	insert(t, ctx, c, card)
	conn, err := c.Connect(ctx, slot1, ConnectOptions{ResetOnClose: true})
	require.NoError(t, err)
	remove(t, ctx, c, card)
	assert.NoError(t, conn.Close(), "a card that is gone cannot be reset; Close still succeeds")

	insert(t, ctx, c, card)
	conn, err = c.Connect(ctx, slot1, ConnectOptions{})
	require.NoError(t, err)
	_, err = conn.Transceive(ctx, []byte{0x00, 0xA4, 0x00, 0x0C})
	require.NoError(t, err)
	require.NoError(t, conn.Close())
}

func TestLiveWaitForCardUnknownReader(t *testing.T) {
	c := livePCSC(t)
	_, err := c.WaitForCard(testContext(t), "No Such Reader 00 00")
	require.ErrorIs(t, err, reader.ErrNoReader)
	assert.Contains(t, err.Error(), slot0)
}

// nextEvent returns the next event for reader name, skipping others.
func nextEvent(t *testing.T, ctx context.Context, evs <-chan reader.Event, name string) reader.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("event channel closed while waiting for an event on %q", name)
			}
			if ev.Reader == name {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("no event on %q: %v", name, ctx.Err())
		}
	}
}

func TestLiveWatch(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := c.watch(wctx)
	require.NoError(t, err)

	// The present state comes first, as changes from nothing.
	assert.Equal(t, reader.Event{Kind: reader.ReaderAdded, Reader: slot1}, nextEvent(t, ctx, w.out, slot1))

	card.insert(t)
	ev := nextEvent(t, ctx, w.out, slot1)
	assert.Equal(t, reader.Event{Kind: reader.CardInserted, Reader: slot1, ATR: atrT1}, ev)

	// Using the card while watching: Transceive is not held up by the
	// watcher's blocking wait, and connecting, resetting and pcscd powering
	// the idle card down afterwards are not card events.
	conn, err := c.Connect(ctx, slot1, ConnectOptions{})
	require.NoError(t, err)
	for i := range 50 {
		_, err := conn.Transceive(ctx, []byte{0x00, 0xB0, 0x00, byte(i), 0x00})
		require.NoError(t, err)
	}
	require.NoError(t, conn.Reset(ctx, false))
	mark := card.mark()
	require.NoError(t, conn.Close())
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = card.waitCtrl(pctx, mark, ctrlOff) // pcscd powers idle cards down
	cancel()
	require.NoError(t, err)

	card.remove()
	assert.Equal(t, reader.Event{Kind: reader.CardRemoved, Reader: slot1}, nextEvent(t, ctx, w.out, slot1),
		"the next event after using the card must be its removal")

	card.setATR(atrT0)
	card.insert(t)
	assert.Equal(t, reader.Event{Kind: reader.CardInserted, Reader: slot1, ATR: atrT0}, nextEvent(t, ctx, w.out, slot1))

	// Ending the context closes the channel promptly (SCardCancel, not the
	// end of a wait slice), even unread.
	start := time.Now()
	stop()
	deadline := time.After(3 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-w.out:
		case <-deadline:
			t.Fatal("the watch did not end after its context was cancelled")
		}
	}
	t.Logf("watch ended %v after cancel", time.Since(start))
	assert.Less(t, time.Since(start), waitSlice/2)
	assert.NoError(t, w.err)
}

func TestLiveWatchStartsWithPresentCard(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)
	insert(t, ctx, c, card)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	evs, err := c.Watch(wctx)
	require.NoError(t, err)
	assert.Equal(t, reader.ReaderAdded, nextEvent(t, ctx, evs, slot1).Kind)
	assert.Equal(t, reader.Event{Kind: reader.CardInserted, Reader: slot1, ATR: atrT1}, nextEvent(t, ctx, evs, slot1))
}

// A snapshot must not queue behind a watcher's blocking wait: it cancels
// the wait, which resumes afterwards and still sees changes.
func TestLiveReadersDuringWatch(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	evs, err := c.Watch(wctx)
	require.NoError(t, err)
	assert.Equal(t, reader.ReaderAdded, nextEvent(t, ctx, evs, slot1).Kind)

	const n = 10
	start := time.Now()
	for range n {
		_, err := c.Readers(ctx)
		require.NoError(t, err)
	}
	elapsed := time.Since(start)
	t.Logf("%d Readers calls during a watch: %v", n, elapsed)
	assert.Less(t, elapsed, time.Duration(n)*100*time.Millisecond, "snapshots waited for the watcher's wait slices")

	card.insert(t)
	assert.Equal(t, reader.CardInserted, nextEvent(t, ctx, evs, slot1).Kind, "the watcher still works")
}

// Two blocking waits share the gate by taking turns; both see the card.
func TestLiveTwoWaiters(t *testing.T) {
	ctx, c, card := liveSlot1(t, atrT1)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	evs, err := c.Watch(wctx)
	require.NoError(t, err)
	assert.Equal(t, reader.ReaderAdded, nextEvent(t, ctx, evs, slot1).Kind)

	got := make(chan error, 1)
	go func() {
		in, err := c.WaitForCard(ctx, slot1)
		if err == nil && in.Name != slot1 {
			err = fmt.Errorf("got reader %q", in.Name)
		}
		got <- err
	}()
	card.insert(t)
	assert.Equal(t, reader.CardInserted, nextEvent(t, ctx, evs, slot1).Kind)
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("WaitForCard did not return")
	}
}

// Every goroutine Watch and WaitForCard start ends with their context.
func TestLiveNoGoroutineLeak(t *testing.T) {
	ctx, c, _ := liveSlot1(t, atrT1)
	before := runtime.NumGoroutine()

	for range 3 {
		wctx, stop := context.WithCancel(ctx)
		evs, err := c.Watch(wctx)
		require.NoError(t, err)
		assert.Equal(t, reader.ReaderAdded, nextEvent(t, ctx, evs, slot1).Kind)
		stop() // and never read the channel again
	}
	for range 3 {
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := c.WaitForCard(wctx, slot1)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	_, err := c.Connect(ctx, slot1, ConnectOptions{})
	require.ErrorIs(t, err, reader.ErrNoCard)

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d now:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond) // goroutines end asynchronously; nothing to wait on
	}
}
