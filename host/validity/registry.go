package validity

import (
	"context"
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/host/registry"
)

// Registry adapts host/registry's Store: it is the production Source (the
// hotlist and the whitelist with their change feeds) and DBChecker (one card
// or terminal row). A card is listed when its status is hotlisted; a terminal
// when it is active (blocked and unknown terminals are refused alike).
type Registry struct {
	Store *registry.Store
	// PageSize of the hotlist load (DefaultPageSize when 0).
	PageSize int
	// OnPage, when set, is called after each page of the hotlist load
	// with the number of cards read so far (the total is not known ahead).
	OnPage func(loaded int)
}

// DefaultPageSize is the hotlist page the registry adapter reads at a time.
const DefaultPageSize = 50_000

var (
	_ Source    = Registry{}
	_ DBChecker = Registry{}
)

// Snapshot implements Source. The hotlist is read page by page straight into
// integers (10 million CardIDs as strings would take 320 MB), after its
// version: a card changed while paging is also in the changes since that
// version, which Start applies right after the load (docs/registry.md §4).
func (r Registry) Snapshot(ctx context.Context, k Kind) ([]uint64, int64, error) {
	if k == Terminals {
		ids, v, err := r.Store.Whitelist(ctx)
		if err != nil {
			return nil, 0, err
		}
		out := make([]uint64, len(ids))
		for i, id := range ids {
			if out[i], err = parseID(k, id); err != nil {
				return nil, 0, err
			}
		}
		return out, v, nil
	}
	v, err := r.Store.HotlistVersion(ctx)
	if err != nil {
		return nil, 0, err
	}
	size := r.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	var out []uint64
	after := ""
	for {
		page, err := r.Store.HotlistPage(ctx, after, size)
		if err != nil {
			return nil, 0, err
		}
		for _, id := range page {
			c, err := parseID(k, id)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, c)
		}
		if r.OnPage != nil {
			r.OnPage(len(out))
		}
		if len(page) < size {
			return out, v, nil
		}
		after = page[len(page)-1]
	}
}

// Changes implements Source.
func (r Registry) Changes(ctx context.Context, k Kind, since int64) ([]Change, int64, error) {
	var (
		rc  []registry.Change
		v   int64
		err error
	)
	if k == Cards {
		rc, v, err = r.Store.HotlistChanges(ctx, since)
	} else {
		rc, v, err = r.Store.TerminalChanges(ctx, since)
	}
	if err != nil {
		return nil, 0, err
	}
	out := make([]Change, len(rc))
	for i, c := range rc {
		id, err := parseID(k, c.ID)
		if err != nil {
			return nil, 0, err
		}
		out[i] = Change{ID: id, Listed: listed(k, c.Status), Version: c.Version}
	}
	return out, v, nil
}

// Version implements Source.
func (r Registry) Version(ctx context.Context, k Kind) (int64, error) {
	if k == Cards {
		return r.Store.HotlistVersion(ctx)
	}
	return r.Store.TerminalVersion(ctx)
}

// CardHotlisted implements DBChecker. An unregistered card is not on the
// hotlist (the server refuses it with 14 on its own lookup).
func (r Registry) CardHotlisted(ctx context.Context, card CardKey) (bool, error) {
	c, err := r.Store.Card(ctx, card.String())
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return c.Status == registry.Hotlisted, nil
}

// TerminalPermitted implements DBChecker.
func (r Registry) TerminalPermitted(ctx context.Context, t TerminalKey) (bool, error) {
	term, err := r.Store.Terminal(ctx, t.String())
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return term.Status == registry.Active, nil
}

func listed(k Kind, st registry.Status) bool {
	if k == Cards {
		return st == registry.Hotlisted
	}
	return st == registry.Active
}

func parseID(k Kind, id string) (uint64, error) {
	if k == Cards {
		c, err := ParseCardKey(id)
		return uint64(c), err
	}
	t, err := ParseTerminalKey(id)
	if err != nil {
		return 0, fmt.Errorf("registry terminal: %w", err)
	}
	return uint64(t), nil
}
