package validity

import (
	"math/bits"
	"slices"
)

// The card hotlist can hold 10 million entries and is read on every request,
// so it is an immutable, compact structure swapped whole (docs/validity.md §2):
// the keys are mapped through a bijective 64-bit mixer, sorted, and indexed by
// the top bits of the mixed value. A lookup reads one directory slot pair and
// scans one short run of the sorted array — two cache misses at most, no
// pointers, no per-entry allocation — and the memory is 8 bytes per entry
// plus at most 1 byte per entry of directory.

// mix is MurmurHash3's fmix64 finalizer. It is a bijection on uint64, so the
// set stores mix(key) in place of the key and can still list its keys (unmix).
// Card IDs are BCD and far from uniform; mixed they fill the buckets evenly.
func mix(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// Multiplicative inverses mod 2^64 of mix's constants (odd, so they exist).
var (
	invMix1 = inverse(0xff51afd7ed558ccd)
	invMix2 = inverse(0xc4ceb9fe1a85ec53)
)

// inverse returns x with c·x ≡ 1 (mod 2^64) for odd c by Newton's iteration:
// x = c is right to 3 bits and each step doubles the correct bits.
func inverse(c uint64) uint64 {
	x := c
	for range 5 {
		x *= 2 - c*x
	}
	return x
}

// unmix inverts mix. x ^= x>>33 is its own inverse because 33 ≥ 32.
func unmix(h uint64) uint64 {
	h ^= h >> 33
	h *= invMix2
	h ^= h >> 33
	h *= invMix1
	h ^= h >> 33
	return h
}

// bucketLoad is the mean number of entries per directory bucket the
// directory aims at (between bucketLoad/2 and bucketLoad): 4 entries of 8
// bytes sit in one 64-byte cache line, and the directory costs 4 bytes per
// bucket, i.e. ≤ 2 bytes per entry.
const bucketLoad = 4

// set is an immutable set of uint64 keys. The zero value is not usable; see
// newSet.
type set struct {
	hashes []uint64 // mix(key), ascending, distinct
	dir    []uint32 // dir[b] = index of the first hash with hash>>shift ≥ b; len = buckets+1
	shift  uint     // 64 − log2(buckets)
}

// newSet builds a set from keys. It takes ownership of keys: the slice is
// rewritten in place (mixed, sorted, deduplicated) and becomes the set's
// storage. progress, when not nil, is called with the number of keys
// processed so far.
func newSet(keys []uint64, progress func(done int)) *set {
	const chunk = 1 << 20
	n := len(keys)
	for i := 0; i < len(keys); i += chunk {
		end := min(i+chunk, len(keys))
		for j := i; j < end; j++ {
			keys[j] = mix(keys[j])
		}
		if progress != nil {
			progress(end / 2) // mixing is the cheap half; sorting the other
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	s := fromSortedHashes(keys)
	if progress != nil {
		progress(n) // all done, duplicates included
	}
	return s
}

// fromSortedHashes indexes ascending distinct mixed keys.
func fromSortedHashes(hashes []uint64) *set {
	nb := 1
	if n := len(hashes) / bucketLoad; n > 1 {
		nb = 1 << bits.Len(uint(n-1)) // next power of two ≥ n
	}
	shift := uint(64 - bits.TrailingZeros(uint(nb)))
	dir := make([]uint32, nb+1)
	b := 0
	for i, h := range hashes {
		hb := int(h >> shift) // shift 64 (one bucket) yields 0 in Go
		for b < hb {
			b++
			dir[b] = uint32(i)
		}
	}
	for b < nb {
		b++
		dir[b] = uint32(len(hashes))
	}
	return &set{hashes: hashes, dir: dir, shift: shift}
}

var emptySet = fromSortedHashes(nil)

// has reports whether k is in the set.
func (s *set) has(k uint64) bool {
	h := mix(k)
	b := h >> s.shift
	lo, hi := s.dir[b], s.dir[b+1]
	for _, x := range s.hashes[lo:hi] {
		if x >= h {
			return x == h
		}
	}
	return false
}

// len returns the number of keys.
func (s *set) len() int { return len(s.hashes) }

// bytes returns the memory the set holds.
func (s *set) bytes() int64 { return int64(cap(s.hashes))*8 + int64(cap(s.dir))*4 }

// keys calls fn for each key, in hash order.
func (s *set) each(fn func(k uint64) bool) {
	for _, h := range s.hashes {
		if !fn(unmix(h)) {
			return
		}
	}
}

// apply returns a new set: s with the keys delta maps to true added and those
// it maps to false removed. s is unchanged (readers may still hold it).
func (s *set) apply(delta map[uint64]entry) *set {
	var add []uint64
	del := make(map[uint64]struct{})
	for k, e := range delta {
		if e.listed {
			add = append(add, mix(k))
		} else {
			del[mix(k)] = struct{}{}
		}
	}
	slices.Sort(add)
	out := make([]uint64, 0, len(s.hashes)+len(add))
	i := 0
	for _, h := range s.hashes {
		for i < len(add) && add[i] < h {
			out = append(out, add[i])
			i++
		}
		if i < len(add) && add[i] == h {
			i++ // already present
		}
		if _, gone := del[h]; !gone {
			out = append(out, h)
		}
	}
	out = append(out, add[i:]...)
	return fromSortedHashes(out)
}
