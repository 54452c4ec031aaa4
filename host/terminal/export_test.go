package terminal

import (
	"io"
	"time"
)

// SetSAMRand replaces the SAM's nonce source (tests replaying
// docs/purse.md §10).
func SetSAMRand(s *SoftwareSAM, r io.Reader) { s.rand = r }

// SetAuthorityClock fixes the authority's clock and its last
// authorisation reference.
func SetAuthorityClock(a *LocalAuthority, now func() time.Time, lastRef uint32) {
	a.now, a.ref = now, lastRef
}
