package pcsc

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/valuechip/valuechip/reader"
)

// EnvReader names the environment variable that Select consults when the
// caller gives no reader spec. It lets a user pin a reader once per shell
// instead of passing a flag to every command.
const EnvReader = "VALUECHIP_READER"

// MinFragment is the shortest name fragment Select accepts. Two characters
// match far too much ("00" matches both vpcd slots, "PC" most readers), so a
// typo would silently pick a reader; apdu4j settled on three for the same
// reason.
const MinFragment = 3

// Select picks one reader from infos (as Context.Readers returns them) by
// spec, the way a user types it:
//
//   - "" (after trimming spaces): the spec in $VALUECHIP_READER if set and
//     not blank; otherwise the only reader that holds a card; otherwise the
//     only reader; otherwise reader.ErrAmbiguous listing the candidates.
//   - all digits: the reader whose Info.Index equals the number (0-based,
//     as pcsc_scan -r and opensc-tool -l print them).
//   - anything else: a reader name. An exact name wins (case-sensitive
//     first, then case-insensitive); otherwise the spec is a case-insensitive
//     fragment of at least MinFragment characters that must occur in exactly
//     one reader name.
//
// Failures wrap reader.ErrNoReader (nothing matched, or the spec is too
// short) or reader.ErrAmbiguous (several matched) and name the readers, so
// the user can retype without listing them first. Select does no I/O beyond
// reading $VALUECHIP_READER.
func Select(infos []reader.Info, spec string) (reader.Info, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		if env := strings.TrimSpace(os.Getenv(EnvReader)); env != "" {
			info, err := pick(infos, env)
			if err != nil {
				return reader.Info{}, fmt.Errorf("pcsc: $%s=%q: %w", EnvReader, env, err)
			}
			return info, nil
		}
	}
	info, err := pick(infos, spec)
	if err != nil {
		return reader.Info{}, fmt.Errorf("pcsc: %w", err)
	}
	return info, nil
}

// pick is Select without the environment: the pure rule set.
func pick(infos []reader.Info, spec string) (reader.Info, error) {
	if len(infos) == 0 {
		return reader.Info{}, fmt.Errorf("%w; %s", reader.ErrNoReader, hintNoReaders)
	}
	if spec == "" {
		return pickDefault(infos)
	}
	if isDigits(spec) {
		n, err := strconv.Atoi(spec)
		if err == nil {
			for _, in := range infos {
				if in.Index == n {
					return in, nil
				}
			}
		}
		return reader.Info{}, fmt.Errorf("%w: no reader with index %s; readers: %s",
			reader.ErrNoReader, spec, describe(infos))
	}
	return pickByName(infos, spec)
}

func pickDefault(infos []reader.Info) (reader.Info, error) {
	var withCard []reader.Info
	for _, in := range infos {
		if in.Present {
			withCard = append(withCard, in)
		}
	}
	switch {
	case len(withCard) == 1:
		return withCard[0], nil
	case len(infos) == 1:
		return infos[0], nil
	}
	candidates := infos
	what := "no reader holds a card"
	if len(withCard) > 1 {
		candidates = withCard
		what = "several readers hold a card"
	}
	return reader.Info{}, fmt.Errorf("%w: %s; choose one by index or name (or set $%s): %s",
		reader.ErrAmbiguous, what, EnvReader, describe(candidates))
}

func pickByName(infos []reader.Info, spec string) (reader.Info, error) {
	// Exact names first: a reader called "ACS" must stay selectable even when
	// "ACS ACR122U" also exists, and a short name must not be refused as a
	// too-short fragment.
	for _, in := range infos {
		if in.Name == spec {
			return in, nil
		}
	}
	var folded []reader.Info
	for _, in := range infos {
		if strings.EqualFold(in.Name, spec) {
			folded = append(folded, in)
		}
	}
	if len(folded) == 1 {
		return folded[0], nil
	}
	if len([]rune(spec)) < MinFragment {
		return reader.Info{}, fmt.Errorf("%w: reader spec %q is too short: give an index or at least %d characters of a name; readers: %s",
			reader.ErrNoReader, spec, MinFragment, describe(infos))
	}
	lower := strings.ToLower(spec)
	var hits []reader.Info
	for _, in := range infos {
		if strings.Contains(strings.ToLower(in.Name), lower) {
			hits = append(hits, in)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return reader.Info{}, fmt.Errorf("%w: no reader name contains %q; readers: %s",
			reader.ErrNoReader, spec, describe(infos))
	}
	return reader.Info{}, fmt.Errorf("%w: %q matches %d readers, give more of the name or an index: %s",
		reader.ErrAmbiguous, spec, len(hits), describe(hits))
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// describe renders readers for error messages: `0 "Virtual PCD 00 00"
// (card), 1 "Virtual PCD 00 01"`, so the user can copy an index or a name.
func describe(infos []reader.Info) string {
	var b strings.Builder
	for i, in := range infos {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %q", in.Index, in.Name)
		if in.Present {
			b.WriteString(" (card)")
		}
	}
	return b.String()
}
