package clientip_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/clientip"
)

func TestResolve(t *testing.T) {
	proxies := []string{"10.0.0.0/8", "192.0.2.0/24", "2001:db8:ffff::/48"}
	manyHops := strings.TrimSuffix(strings.Repeat("10.0.0.7, ", 40), ", ")

	tests := []struct {
		name    string
		trusted []string
		header  clientip.Header
		peer    string
		xff     []string
		fwd     []string
		want    string
	}{
		{name: "peer only", peer: "203.0.113.9:1234", want: "203.0.113.9"},
		{name: "spoofed X-Forwarded-For from an untrusted peer", trusted: proxies,
			peer: "203.0.113.9:1234", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "spoofed Forwarded from an untrusted peer", trusted: proxies,
			header: clientip.Forwarded, peer: "203.0.113.9:1234",
			fwd: []string{"for=198.51.100.1"}, want: "203.0.113.9"},
		{name: "no trusted proxies configured", peer: "10.0.0.1:80",
			xff: []string{"198.51.100.1"}, want: "10.0.0.1"},
		{name: "one trusted proxy", trusted: proxies, peer: "10.0.0.1:80",
			xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "trusted chain with a spoofed left part", trusted: proxies, peer: "10.0.0.2:80",
			xff: []string{"6.6.6.6, 198.51.100.7, 192.0.2.10"}, want: "198.51.100.7"},
		{name: "chain across several header lines", trusted: proxies, peer: "10.0.0.2:80",
			xff: []string{"6.6.6.6, 198.51.100.7", "192.0.2.10"}, want: "198.51.100.7"},
		{name: "every hop trusted", trusted: proxies, peer: "10.0.0.2:80",
			xff: []string{"10.0.0.5, 10.0.0.6"}, want: "10.0.0.5"},
		{name: "garbage written by the client is never read", trusted: proxies,
			peer: "10.0.0.2:80", xff: []string{"<script>, ,198.51.100.7"}, want: "198.51.100.7"},
		{name: "malformed entry from a trusted hop", trusted: proxies, peer: "10.0.0.2:80",
			xff: []string{"198.51.100.7, not-an-ip"}, want: "10.0.0.2"},
		{name: "empty entry from a trusted hop", trusted: proxies, peer: "10.0.0.2:80",
			xff: []string{"198.51.100.7,"}, want: "10.0.0.2"},
		{name: "empty header", trusted: proxies, peer: "10.0.0.2:80", xff: []string{""},
			want: "10.0.0.2"},
		{name: "entries with ports", trusted: proxies, peer: "10.0.0.2:80",
			xff: []string{"[2001:db8::7]:443, 192.0.2.10:8080"}, want: "2001:db8::7"},
		{name: "IPv4-mapped IPv6 peer", trusted: proxies, peer: "[::ffff:10.0.0.1]:80",
			xff: []string{"::ffff:198.51.100.7"}, want: "198.51.100.7"},
		{name: "IPv6 trusted proxy", trusted: proxies, peer: "[2001:db8:ffff::1]:80",
			xff: []string{"2001:db8:1::9"}, want: "2001:db8:1::9"},
		{name: "zone dropped", peer: "[fe80::1%eth0]:80", want: "fe80::1"},
		{name: "too many trusted hops", trusted: proxies, peer: "10.0.0.2:80",
			xff: []string{manyHops}, want: "10.0.0.2"},
		{name: "X-Forwarded-For ignored when Forwarded is chosen", trusted: proxies,
			header: clientip.Forwarded, peer: "10.0.0.2:80", xff: []string{"198.51.100.1"},
			want: "10.0.0.2"},
		{name: "Forwarded ignored when X-Forwarded-For is chosen", trusted: proxies,
			peer: "10.0.0.2:80", fwd: []string{"for=198.51.100.1"}, want: "10.0.0.2"},
		{name: "Forwarded chain", trusted: proxies, header: clientip.Forwarded,
			peer: "10.0.0.2:80",
			fwd: []string{`for=6.6.6.6, for=198.51.100.7;proto=https;by="a,b", ` +
				`For="192.0.2.10:8080"`},
			want: "198.51.100.7"},
		{name: "Forwarded IPv6", trusted: proxies, header: clientip.Forwarded,
			peer: "10.0.0.2:80", fwd: []string{`for="[2001:db8:cafe::17]:4711"`},
			want: "2001:db8:cafe::17"},
		{name: "Forwarded element without for", trusted: proxies, header: clientip.Forwarded,
			peer: "10.0.0.2:80", fwd: []string{"for=198.51.100.7, proto=https"},
			want: "10.0.0.2"},
		{name: "Forwarded unknown", trusted: proxies, header: clientip.Forwarded,
			peer: "10.0.0.2:80", fwd: []string{"for=unknown"}, want: "10.0.0.2"},
		{name: "Forwarded unterminated quote", trusted: proxies, header: clientip.Forwarded,
			peer: "10.0.0.2:80", fwd: []string{`for="198.51.100.7`}, want: "10.0.0.2"},
		{name: "Forwarded long client part", trusted: proxies, header: clientip.Forwarded,
			peer: "10.0.0.2:80",
			fwd:  []string{strings.Repeat("for=6.6.6.6, ", 100) + "for=198.51.100.7"},
			want: "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []clientip.Option
			if tt.header != "" {
				opts = append(opts, clientip.WithHeader(tt.header))
			}

			r, err := clientip.New(tt.trusted, opts...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}

			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
			req.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}

			for _, v := range tt.fwd {
				req.Header.Add("Forwarded", v)
			}

			got, ok := r.ClientIP(req)
			if !ok || got != netip.MustParseAddr(tt.want) {
				t.Errorf("ClientIP = %v, %v; want %s", got, ok, tt.want)
			}
		})
	}
}

func TestResolveUnusablePeer(t *testing.T) {
	r, err := clientip.New([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	for _, peer := range []string{"", "@", "unix-socket"} {
		if got, ok := r.Resolve(peer, http.Header{"X-Forwarded-For": {"1.2.3.4"}}); ok {
			t.Errorf("Resolve(%q) = %v, true; want false", peer, got)
		}
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		opt     clientip.Option
		want    string
	}{
		{name: "not an address", trusted: []string{"proxy.internal"}, want: "parse address"},
		{name: "bad CIDR", trusted: []string{"10.0.0.0/33"}, want: "parse CIDR"},
		{name: "host bits set", trusted: []string{"10.1.2.3/8"}, want: "did you mean 10.0.0.0/8"},
		{name: "unknown header", opt: clientip.WithHeader("X-Real-IP"), want: `"X-Real-IP"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []clientip.Option
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}

			_, err := clientip.New(tt.trusted, opts...)
			if !errors.Is(err, clientip.ErrInvalidOption) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: got %v, want ErrInvalidOption mentioning %q", err, tt.want)
			}
		})
	}
}

func TestTrustedSingleAddress(t *testing.T) {
	r, err := clientip.New([]string{"10.0.0.1", "::ffff:10.0.0.2"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	tests := []struct {
		name string
		addr string
		want bool
	}{
		{name: "listed", addr: "10.0.0.1", want: true},
		{name: "listed as mapped", addr: "10.0.0.2", want: true},
		{name: "neighbour", addr: "10.0.0.3", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Trusted(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("Trusted(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}
