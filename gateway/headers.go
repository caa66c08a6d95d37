package gateway

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// reservedHeaders can never be forwarded: hop-by-hop headers (RFC 9110
// section 7.6.1), headers that describe the HTTP message rather than the
// call, and headers whose metadata the gateway or gRPC set themselves.
var reservedHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Host": true, "Content-Length": true,
	"Content-Type": true, "Content-Encoding": true, "Expect": true, "User-Agent": true,
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true,
	"X-Forwarded-Proto": true, "Grpc-Timeout": true, "X-Http-Method-Override": true,
}

// checkForwardable reports why header may not be forwarded, or nil.
func checkForwardable(header string) error {
	key := textproto.CanonicalMIMEHeaderKey(header)
	lower := strings.ToLower(key)

	switch {
	case reservedHeaders[key]:
		return fmt.Errorf("gateway: header %q is hop-by-hop or reserved; it cannot be forwarded",
			header)
	case strings.HasPrefix(lower, "grpc-"), strings.HasPrefix(lower, "grpcgateway-"),
		strings.HasPrefix(lower, "x-gatehouse-"):
		return fmt.Errorf("gateway: header %q is in a namespace the platform owns", header)
	case strings.HasSuffix(lower, "-bin"):
		return fmt.Errorf("gateway: binary header %q cannot be forwarded", header)
	}

	return checkMetadataKey(lower)
}

// checkMetadataKey reports why key is not a metadata key a client may
// see or send, or nil.
func checkMetadataKey(key string) error {
	if key == "" {
		return fmt.Errorf("gateway: empty metadata key")
	}
	for _, c := range key {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("gateway: %q is not a lowercase gRPC metadata key", key)
		}
	}
	if strings.HasPrefix(key, "grpc-") || key == "content-type" || key == "te" ||
		key == "user-agent" {
		return fmt.Errorf("gateway: metadata key %q belongs to the gRPC transport", key)
	}

	return nil
}

// headerPolicy decides which headers cross the gateway in each direction.
// It is read-only after construction and so safe for concurrent use.
type headerPolicy struct {
	// forward maps a canonical request header to its metadata key.
	forward map[string]string
	// forwardAuthorization is kept apart: grpc-gateway forwards
	// Authorization itself, outside the header matcher.
	forwardAuthorization bool
	// expose holds the backend metadata keys a client may see.
	expose map[string]bool
}

func newHeaderPolicy(forward, expose []string) *headerPolicy {
	p := &headerPolicy{forward: map[string]string{}, expose: map[string]bool{}}

	for _, h := range forward {
		key := textproto.CanonicalMIMEHeaderKey(h)
		if key == "Authorization" {
			p.forwardAuthorization = true
			continue
		}
		p.forward[key] = strings.ToLower(key)
	}
	for _, k := range expose {
		p.expose[k] = true
	}

	return p
}

// incoming is the mux's incoming header matcher: allowlisted headers only.
func (p *headerPolicy) incoming(key string) (string, bool) {
	md, ok := p.forward[textproto.CanonicalMIMEHeaderKey(key)]
	return md, ok
}

// outgoingHeader is the mux's outgoing header matcher: only allowlisted
// backend header metadata reaches the client.
func (p *headerPolicy) outgoingHeader(key string) (string, bool) {
	if !p.expose[key] {
		return "", false
	}

	return runtime.MetadataHeaderPrefix + key, true
}

// outgoingTrailer is the same for trailer metadata.
func (p *headerPolicy) outgoingTrailer(key string) (string, bool) {
	if !p.expose[key] {
		return "", false
	}

	return runtime.MetadataTrailerPrefix + key, true
}

// strip removes the request headers grpc-gateway would turn into metadata
// without asking the matcher. X-Forwarded-For and X-Forwarded-Host come
// from the client and prove nothing at the edge, so the backends see the
// peer address and Host only.
//
// It returns r itself when there is nothing to remove, else a copy of r
// with a header map of its own: the layers around the gateway (the access
// log, the abuse guard) share r's map and must still see X-Forwarded-For
// to find the client behind a trusted proxy.
//
// Limitation: behind a trusted proxy the backends see the proxy's address;
// honouring its X-Forwarded-For needs a list of trusted proxies.
func (p *headerPolicy) strip(r *http.Request) *http.Request {
	names := [...]string{"X-Forwarded-For", "X-Forwarded-Host", "Authorization"}
	drop := names[:2]
	if !p.forwardAuthorization {
		drop = names[:]
	}

	var h http.Header
	for _, name := range drop {
		if _, ok := r.Header[name]; !ok {
			continue
		}
		if h == nil {
			h = r.Header.Clone()
		}
		delete(h, name)
	}
	if h == nil {
		return r
	}

	r2 := new(http.Request)
	*r2 = *r
	r2.Header = h

	return r2
}
