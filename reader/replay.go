package reader

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// ErrReplayIncomplete reports recorded steps that were never replayed.
var ErrReplayIncomplete = errors.New("reader: recorded session not replayed to its end")

// ReplayOption tunes Replay.
type ReplayOption func(*replayConfig)

type replayConfig struct {
	anyOrder bool
	sleep    func(context.Context, time.Duration) error
}

// ReplayAnyOrder answers each command from the first recorded exchange not
// yet used whose command matches, and each reset from the first unused reset
// of the same kind, instead of insisting on the recorded order.
func ReplayAnyOrder() ReplayOption { return func(c *replayConfig) { c.anyOrder = true } }

// ReplayTimings makes each step take as long as it took when recorded, by
// calling sleep with the recorded duration before answering (nil sleep
// waits on a timer and gives up when the context ends). Off by default:
// replays run as fast as the host asks.
func ReplayTimings(sleep func(ctx context.Context, d time.Duration) error) ReplayOption {
	return func(c *replayConfig) {
		if sleep == nil {
			sleep = sleepContext
		}
		c.sleep = sleep
	}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Replayer is a Conn that answers from a recorded session instead of a card.
// It is safe for concurrent use.
type Replayer struct {
	cfg    replayConfig
	mu     sync.Mutex
	d      *Dump
	pos    int    // next step in strict order
	used   []bool // steps consumed, in any order
	atr    []byte
	closed bool
}

// Replay returns a Conn backed by d. Reader, ATR and Protocol come from the
// dump's header. Transceive expects the recorded commands in the recorded
// order (see ReplayAnyOrder); a command that does not match the next
// recorded one, masked bytes matching anything, fails with an error wrapping
// ErrReplayMismatch that shows both, and one past the end with
// ErrReplayExhausted; neither consumes a step. A matching command gets the
// recorded response (masked bytes as 00) or the recorded transport error,
// which matches the reader's sentinel errors with errors.Is when its text
// names one. Reset must meet a recorded reset of the same kind and then
// reports the recorded ATR.
func Replay(d *Dump, opts ...ReplayOption) *Replayer {
	if d == nil {
		d = &Dump{}
	}
	r := &Replayer{d: d, used: make([]bool, len(d.Steps)), atr: d.ATR}
	for _, o := range opts {
		o(&r.cfg)
	}
	return r
}

// Transceive implements Transceiver.
func (r *Replayer) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	s, err := r.take(StepExchange, func(s *Step) bool { return s.Command.Match(cmd) },
		func() string { return fmt.Sprintf("%X", cmd) })
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := r.wait(ctx, s); err != nil {
		return nil, err
	}
	if s.Err != "" {
		return nil, replayedError(s.Err)
	}
	return append([]byte(nil), s.Response.Bytes...), nil
}

// Reset implements Conn.
func (r *Replayer) Reset(ctx context.Context, cold bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	s, err := r.take(StepReset, func(s *Step) bool { return s.Cold == cold },
		func() string { return "RESET " + resetWord(cold) })
	if err == nil && s.Err == "" && s.ATR != nil {
		r.atr = s.ATR
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if err := r.wait(ctx, s); err != nil {
		return err
	}
	if s.Err != "" {
		return replayedError(s.Err)
	}
	return nil
}

// take consumes the step that answers got (described by what for errors).
// Callers hold r.mu.
func (r *Replayer) take(kind StepKind, match func(*Step) bool, what func() string) (*Step, error) {
	if r.closed {
		return nil, fmt.Errorf("reader: replay: connection closed: %w", ErrCardRemoved)
	}
	steps := r.d.Steps
	if !r.cfg.anyOrder {
		if r.pos >= len(steps) {
			return nil, fmt.Errorf("%w: got %s after all %d steps", ErrReplayExhausted, what(), len(steps))
		}
		s := &steps[r.pos]
		if s.Kind != kind || !match(s) {
			return nil, fmt.Errorf("%w: expected %s, got %s", ErrReplayMismatch, s.describe(), what())
		}
		r.used[r.pos] = true
		r.pos++
		return s, nil
	}
	next := -1
	for i := range steps {
		if r.used[i] {
			continue
		}
		if next < 0 {
			next = i
		}
		if steps[i].Kind == kind && match(&steps[i]) {
			r.used[i] = true
			return &steps[i], nil
		}
	}
	if next < 0 {
		return nil, fmt.Errorf("%w: got %s after all %d steps", ErrReplayExhausted, what(), len(steps))
	}
	return nil, fmt.Errorf("%w: no unused recorded %s matches %s (next unused: %s)",
		ErrReplayMismatch, kind, what(), steps[next].describe())
}

func (r *Replayer) wait(ctx context.Context, s *Step) error {
	if r.cfg.sleep == nil || s.Duration <= 0 {
		return nil
	}
	if err := r.cfg.sleep(ctx, s.Duration); err != nil {
		return fmt.Errorf("reader: replay: waiting the recorded %v: %w", s.Duration, err)
	}
	return nil
}

// Done returns nil when every recorded step was replayed and otherwise an
// error wrapping ErrReplayIncomplete that names the first step left: the
// check a test makes at its end.
func (r *Replayer) Done() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	left, first := 0, -1
	for i, u := range r.used {
		if !u {
			left++
			if first < 0 {
				first = i
			}
		}
	}
	if left == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d of %d steps left, next %s", ErrReplayIncomplete, left, len(r.used), r.d.Steps[first].describe())
}

// Reader implements Conn.
func (r *Replayer) Reader() string { return r.d.Reader }

// ATR implements Conn.
func (r *Replayer) ATR() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.atr...)
}

// Protocol implements Conn.
func (r *Replayer) Protocol() Protocol { return r.d.Protocol }

// Close implements Conn. Later calls fail with ErrCardRemoved.
func (r *Replayer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// replayableErrors are the sentinels a recorded error text is matched
// against, most specific first.
var replayableErrors = []error{
	ErrServiceUnavailable, ErrNoReader, ErrNoCard, ErrCardRemoved, ErrReaderGone,
	ErrAmbiguous, ErrNoPCSC, ErrReplayMismatch, ErrReplayExhausted, ErrReplayIncomplete,
	ErrTooManyRounds, ErrShortResponse, context.DeadlineExceeded, context.Canceled,
}

// recordedError is a transport error read back from a dump.
type recordedError struct {
	msg  string
	kind error // the sentinel the text names, or nil
}

func (e *recordedError) Error() string { return "replayed: " + e.msg }
func (e *recordedError) Unwrap() error { return e.kind }

func replayedError(msg string) error {
	e := &recordedError{msg: msg}
	for _, s := range replayableErrors {
		if strings.Contains(msg, s.Error()) {
			e.kind = s
			break
		}
	}
	return e
}
