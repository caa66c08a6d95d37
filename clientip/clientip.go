// Package clientip finds the address of the client behind an HTTP request.
//
// By default that is the direct peer. A forwarding header (X-Forwarded-For
// or Forwarded, one chosen per Resolver) is read only when the direct peer
// is a trusted proxy, and then the client is the right-most address in the
// header that is not itself a trusted proxy: everything to its right was
// written by proxies we trust, everything to its left by the client, who
// may have written anything. A header that cannot be read is ignored and
// the peer is used.
//
// Limitation: when a trusted hop wrote something that is not an address
// (a malformed entry, or Forwarded's "unknown" and obfuscated "_name"
// nodes), the chain cannot be followed past it, so the peer is used and
// all such clients share the proxy's address.
package clientip

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// maxHops is how many header entries are read at most, right to left.
const maxHops = 32

// ErrInvalidOption is returned (wrapped) by New for an unusable trusted
// proxy entry or option.
var ErrInvalidOption = errors.New("invalid client IP option")

// Header names the forwarding header a Resolver reads.
type Header string

// The forwarding headers.
const (
	// XForwardedFor is the de facto standard list "client, proxy1, proxy2".
	XForwardedFor Header = "X-Forwarded-For"
	// Forwarded is RFC 7239's header; only its for= parameters are used.
	Forwarded Header = "Forwarded"
)

// Resolver finds client addresses. It is safe for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
	header  Header
}

// Option configures a Resolver.
type Option func(*options)

type options struct {
	header Header
}

// WithHeader chooses the forwarding header the trusted proxies maintain
// (XForwardedFor by default). Only one header is read: a client can send
// the other one, and nothing of it would have been written by a proxy.
func WithHeader(h Header) Option {
	return func(o *options) { o.header = h }
}

// New builds a Resolver that trusts the proxies in trustedProxies, each a
// CIDR ("10.0.0.0/8") or a single address. With none, forwarding headers
// are never read.
func New(trustedProxies []string, opts ...Option) (*Resolver, error) {
	o := options{header: XForwardedFor}
	for _, opt := range opts {
		opt(&o)
	}

	if o.header != XForwardedFor && o.header != Forwarded {
		return nil, fmt.Errorf("clientip: %w: header %q: want %q or %q", ErrInvalidOption,
			string(o.header), XForwardedFor, Forwarded)
	}

	r := &Resolver{header: o.header}
	for _, s := range trustedProxies {
		p, err := parseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("clientip: %w: trusted proxy %q: %w", ErrInvalidOption, s, err)
		}

		r.trusted = append(r.trusted, p)
	}

	return r, nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parse address: %w", err)
		}

		a = a.Unmap()

		return netip.PrefixFrom(a, a.BitLen()), nil
	}

	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse CIDR: %w", err)
	}

	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("host bits set; did you mean %s?", p.Masked())
	}

	return p, nil
}

// ClientIP returns the client address of r. ok is false only when r's
// RemoteAddr is not an IP address (a Unix socket, say); then the zero Addr
// is returned.
func (r *Resolver) ClientIP(req *http.Request) (addr netip.Addr, ok bool) {
	return r.Resolve(req.RemoteAddr, req.Header)
}

// Resolve is ClientIP for a peer address ("host:port" or a bare IP) and
// the request's headers.
func (r *Resolver) Resolve(remoteAddr string, h http.Header) (addr netip.Addr, ok bool) {
	peer, ok := parseNode(remoteAddr)
	if !ok {
		return netip.Addr{}, false
	}

	if !r.Trusted(peer) {
		return peer, true
	}

	values := h.Values(string(r.header))
	if len(values) == 0 {
		return peer, true
	}

	var client netip.Addr
	if r.header == Forwarded {
		client, ok = r.fromForwarded(values)
	} else {
		client, ok = r.fromXForwardedFor(values)
	}

	if !ok {
		return peer, true
	}

	return client, true
}

// Trusted reports whether addr is in one of the trusted proxy networks.
func (r *Resolver) Trusted(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range r.trusted {
		if p.Contains(addr) {
			return true
		}
	}

	return false
}

// fromXForwardedFor walks the entries of every X-Forwarded-For line from
// the right without splitting them into a new slice.
func (r *Resolver) fromXForwardedFor(values []string) (netip.Addr, bool) {
	hops := 0
	var leftmost netip.Addr
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for {
			cut := strings.LastIndexByte(rest, ',')
			addr, ok := parseNode(strings.TrimSpace(rest[cut+1:]))
			hops++
			if !ok || hops > maxHops {
				return netip.Addr{}, false
			}

			if !r.Trusted(addr) {
				return addr, true
			}

			leftmost = addr
			if cut < 0 {
				break
			}

			rest = rest[:cut]
		}
	}

	// Every hop is a trusted proxy: the first of them is the client.
	return leftmost, true
}

// parseNode reads "1.2.3.4", "1.2.3.4:80", "2001:db8::1", "[2001:db8::1]"
// or "[2001:db8::1]:80", drops any IPv6 zone and unmaps IPv4-in-IPv6.
func parseNode(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap(), true
	}

	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}

	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.WithZone("").Unmap(), true
		}
	}

	return netip.Addr{}, false
}
