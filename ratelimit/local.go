package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// sweepPerCall is how many idle buckets one Allow may drop from the cold
// end of its shard, so memory is returned without a background goroutine.
const sweepPerCall = 2

// none marks the end of a shard's lists.
const none = -1

// Local is a Limiter that keeps its buckets in process memory. Keys are
// spread over shards, each with its own lock and a least-recently-used list.
//
// Memory is bounded: at most the configured number of keys is tracked.
// A bucket that has refilled completely is idle and carries no state, so
// dropping it changes no answer; each call drops up to two idle buckets
// from the cold end of its shard. When a shard is full, a new key evicts
// the shard's least recently used key, idle or not.
//
// Limitation: evicting a bucket that is not idle hands that key a full
// bucket the next time it is seen, so under a flood of distinct keys the
// limit is loosened for the least recently seen keys (new keys are never
// refused). The first such eviction is logged at warn level; size the
// ceiling above the number of clients active within one refill time.
//
// Each tracked key costs about 120 bytes plus the key's own bytes: under
// 320 bytes for keys of up to 128 bytes (the longest a Guard builds), so
// the default ceiling bounds a Local at about 32 MB. docs/benchmarks.md has
// the measured figures. Local is safe for concurrent use.
//
// Limitation: the key ceiling is split evenly across shards, so eviction is
// least-recently-used within a shard, not across the whole Local.
type Local struct {
	shards []localShard
	seed   maphash.Seed
	clock  func() time.Time
	epoch  time.Time
	logger *zap.Logger

	// warnedFull is set once the first bucket with state has been evicted.
	warnedFull atomic.Bool
}

// localShard is one lock's worth of buckets: a map from key to slot and the
// slots threaded into a recency list (head = most recent) and a free list.
type localShard struct {
	// mu guards every field below it.
	mu    sync.Mutex
	index map[string]int32
	slots []slot
	head  int32
	tail  int32
	free  int32
	limit int

	// Keeps neighbouring shards' locks off one cache line.
	_ [64]byte
}

// slot is one tracked bucket. tat is its theoretical arrival time in
// nanoseconds since the Local's epoch.
type slot struct {
	key  string
	tat  int64
	prev int32
	next int32
}

var _ Backend = (*Local)(nil)

// NewLocal builds a Local. It reads WithMaxKeys, WithShards, WithClock and
// WithLogger.
func NewLocal(opts ...Option) (*Local, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: new local limiter: %w", err)
	}

	return newLocal(o), nil
}

func newLocal(o options) *Local {
	n := min(o.shards, o.maxKeys)
	n = 1 << (bits.Len(uint(n)) - 1) // largest power of two <= n

	l := &Local{
		shards: make([]localShard, n),
		seed:   maphash.MakeSeed(),
		clock:  o.clock,
		epoch:  o.clock(),
		logger: o.logger,
	}
	for i := range l.shards {
		s := &l.shards[i]
		s.limit = o.maxKeys / n
		if i < o.maxKeys%n {
			s.limit++
		}
		s.index = make(map[string]int32)
		s.head, s.tail, s.free = none, none, none
	}

	return l
}

// Allow implements Limiter. It fails only for an invalid rule; ctx is not
// used, as nothing blocks.
func (l *Local) Allow(_ context.Context, key string, rule Rule) (Decision, error) {
	if err := rule.Validate(); err != nil {
		return Decision{}, fmt.Errorf("ratelimit: allow %q: %w", key, err)
	}

	now := int64(l.clock().Sub(l.epoch))
	s := &l.shards[maphash.String(l.seed, key)&uint64(len(l.shards)-1)]

	s.mu.Lock()
	d, evictedBusy := s.allowLocked(key, now, int64(rule.interval()), int64(rule.Burst))
	s.mu.Unlock()

	if evictedBusy && l.warnedFull.CompareAndSwap(false, true) {
		l.logger.Warn("rate limiter key table is full; evicting buckets that still hold "+
			"state, which loosens limits for the least recently seen keys",
			zap.Int("max_keys", l.maxKeys()))
	}

	return d, nil
}

// Len returns the number of keys tracked right now.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}

	return n
}

// Close implements Backend; a Local holds nothing that needs releasing.
func (l *Local) Close() error { return nil }

func (l *Local) maxKeys() int {
	n := 0
	for i := range l.shards {
		n += l.shards[i].limit
	}

	return n
}

// allowLocked applies one request and reports whether a bucket that still
// held state had to be evicted to make room.
func (s *localShard) allowLocked(key string, now, interval, burst int64) (Decision, bool) {
	i, found := s.index[key]

	var tat int64
	if found {
		tat = s.slots[i].tat
	}

	next, d := gcra(tat, now, interval, burst)

	evictedBusy := false
	switch {
	case found:
		s.slots[i].tat = next
		s.unlinkLocked(i)
		s.pushFrontLocked(i)
	case d.Allowed:
		evictedBusy = s.insertLocked(key, next, now)
	}

	s.sweepLocked(now)

	return d, evictedBusy
}

// insertLocked adds key, evicting the least recently used key first when
// the shard is full. It reports whether the evicted bucket held state.
func (s *localShard) insertLocked(key string, tat, now int64) bool {
	evictedBusy := false
	if len(s.index) >= s.limit {
		evictedBusy = s.slots[s.tail].tat > now
		s.removeLocked(s.tail)
	}

	i := s.free
	if i != none {
		s.free = s.slots[i].next
	} else {
		s.slots = append(s.slots, slot{})
		i = int32(len(s.slots) - 1)
	}

	s.slots[i] = slot{key: key, tat: tat}
	s.index[key] = i
	s.pushFrontLocked(i)

	return evictedBusy
}

// sweepLocked drops up to sweepPerCall idle buckets from the cold end.
func (s *localShard) sweepLocked(now int64) {
	for range sweepPerCall {
		if s.tail == none || s.slots[s.tail].tat > now {
			return
		}

		s.removeLocked(s.tail)
	}
}

func (s *localShard) removeLocked(i int32) {
	s.unlinkLocked(i)
	delete(s.index, s.slots[i].key)
	s.slots[i] = slot{next: s.free}
	s.free = i
}

func (s *localShard) unlinkLocked(i int32) {
	sl := &s.slots[i]
	if sl.prev != none {
		s.slots[sl.prev].next = sl.next
	} else {
		s.head = sl.next
	}

	if sl.next != none {
		s.slots[sl.next].prev = sl.prev
	} else {
		s.tail = sl.prev
	}

	sl.prev, sl.next = none, none
}

func (s *localShard) pushFrontLocked(i int32) {
	s.slots[i].prev = none
	s.slots[i].next = s.head
	if s.head != none {
		s.slots[s.head].prev = i
	}

	s.head = i
	if s.tail == none {
		s.tail = i
	}
}
