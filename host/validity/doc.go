// Package validity holds the money server's validity lists in memory — the
// card hotlist and the terminal whitelist — so that a request is validated
// before, and mostly without, any database read (seed 002, issue 6; design and
// measurements in docs/validity.md).
//
// Lists are loaded from a Source at Start, refreshed every Interval and on
// Notify, and swapped whole through atomic pointers: a lookup never takes a
// lock and never waits for a refresh, however slow the Source. The card
// hotlist is a compact immutable index (8 bytes per card plus ≤ 2 bytes of
// directory) with a small map of the changes since it was built; 10 million
// cards take about 90 MB and a lookup well under a microsecond.
//
// Mode selects the variant of the seed: ModeBoth (both lists in memory),
// ModeCards (cards in memory, the terminal from the database) and
// ModeTerminals (terminals in memory, the card checked against the database
// while the acknowledgment goes out, a late hit reported through
// Config.OnLate). Check returns the ISO 8583 response code the server sends:
// 62 for a hotlisted card, 58 for a terminal not on the whitelist.
package validity
