package provision

import (
	"context"

	"github.com/valuechip/valuechip/host/registry"
)

// CardRegistry records issued cards in host/registry: the card, its
// currency, maximum balance and key version, with the holder account as
// the holder reference. RegisterCard is idempotent for the same data, as
// Registry requires.
type CardRegistry struct{ Store *registry.Store }

// Issued implements Registry.
func (r CardRegistry) Issued(ctx context.Context, c Card) error {
	_, err := r.Store.RegisterCard(ctx, registry.Card{
		CardID:     hexUpper(c.CardID[:]),
		Currency:   c.Currency.String(),
		MaxBalance: int64(c.Limits.MaxBalance),
		// The registry keeps one version for the three keys; valuechip
		// rotates the three masters together (docs/purse.md §5.1).
		KeyVersion: c.KeyVersions[0],
		HolderRef:  c.Holder,
		Reason:     "issued by remote installation",
	})
	return err
}
