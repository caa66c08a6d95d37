package jwtauth

import (
	"container/list"
	"sync"
	"time"
)

// tokenDigest is the SHA-256 of a token: the cache never holds tokens.
type tokenDigest [32]byte

// cacheEntry is one verified token.
type cacheEntry struct {
	digest    tokenDigest
	principal *Principal
	issuer    *issuer
	kid       string
	alg       string
	// thumbprint identifies the key that verified the token; a hit needs
	// the same key still published under kid.
	thumbprint string
	// expiry is exp without leeway: the entry is never used at or after it.
	expiry time.Time
}

// tokenCache is a bounded least-recently-used set of verified tokens.
// It is safe for concurrent use.
// Limitation: an expired entry is dropped only when it is looked up or
// evicted, so it holds its slot (not its validity) until then.
type tokenCache struct {
	capacity int

	mu      sync.Mutex
	entries map[tokenDigest]*list.Element
	order   *list.List // front = most recently used
}

func newTokenCache(capacity int) *tokenCache {
	return &tokenCache{
		capacity: capacity,
		entries:  make(map[tokenDigest]*list.Element, capacity),
		order:    list.New(),
	}
}

// get returns the entry for d when it has not expired at now; an expired
// entry is dropped.
func (c *tokenCache) get(d tokenDigest, now time.Time) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()

	el, ok := c.entries[d]
	if !ok {
		return nil, false
	}

	e := el.Value.(*cacheEntry)
	if !now.Before(e.expiry) {
		c.removeLocked(el)
		return nil, false
	}
	c.order.MoveToFront(el)

	return e, true
}

// add stores e, evicting the least recently used entry when full.
func (c *tokenCache) add(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if el, ok := c.entries[e.digest]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}

	if c.order.Len() >= c.capacity {
		c.removeLocked(c.order.Back())
	}
	c.entries[e.digest] = c.order.PushFront(e)
}

// remove drops the entry for d, if any.
func (c *tokenCache) remove(d tokenDigest) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if el, ok := c.entries[d]; ok {
		c.removeLocked(el)
	}
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.order.Len()
}

func (c *tokenCache) removeLocked(el *list.Element) {
	c.order.Remove(el)
	delete(c.entries, el.Value.(*cacheEntry).digest)
}
