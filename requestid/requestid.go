// Package requestid gives every request through Gatehouse one id that the
// client may choose, that every hop logs, and that travels from the gateway
// to each backend as the gRPC metadata key x-request-id.
//
// A client-supplied id is kept only when it is well formed (1 to 64
// characters of A-Z, a-z, 0-9, '.', '_' and '-'); anything else is replaced
// by a fresh random id, so a hostile value never reaches a log line or a
// backend.
package requestid

import (
	"context"
	"crypto/rand"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Header is the HTTP header that carries the id in both directions.
const Header = "X-Request-Id"

// MetadataKey is the gRPC metadata key that carries the id between hops.
const MetadataKey = "x-request-id"

// MaxLen is the longest id accepted from a client or another hop.
const MaxLen = 64

type ctxKey struct{}

// Valid reports whether id may be used as a request id: 1 to MaxLen
// characters of A-Z, a-z, 0-9, '.', '_' and '-'.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}

	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '-':
		default:
			return false
		}
	}

	return true
}

// New returns a fresh random id of 26 characters carrying 128 bits of
// randomness from crypto/rand.
func New() string {
	return rand.Text()
}

// NewContext returns a copy of ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the id carried by ctx, or "" when there is none.
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)

	return id
}

// FromIncomingContext returns the first well-formed x-request-id value in the
// incoming gRPC metadata of ctx, or "" when there is none.
func FromIncomingContext(ctx context.Context) string {
	for _, id := range metadata.ValueFromIncomingContext(ctx, MetadataKey) {
		if Valid(id) {
			return id
		}
	}

	return ""
}

// Ensure returns r with a request id in its context and the id itself. The id
// is taken from r's context if an outer layer already set one, else from the
// X-Request-Id header if well formed, else generated. The id is written to the
// X-Request-Id response header so the client can quote it.
func Ensure(w http.ResponseWriter, r *http.Request) (*http.Request, string) {
	ctx, id := EnsureContext(w, r)
	if ctx == r.Context() {
		return r, id
	}

	return r.WithContext(ctx), id
}

// EnsureContext is Ensure returning the request's new context instead of a
// copy of the request, for middleware that adds context values of its own
// and copies the request once for all of them.
func EnsureContext(w http.ResponseWriter, r *http.Request) (context.Context, string) {
	if id := FromContext(r.Context()); id != "" {
		return r.Context(), id
	}

	id := r.Header.Get(Header)
	if !Valid(id) {
		id = New()
	}
	w.Header().Set(Header, id)

	return NewContext(r.Context(), id), id
}

// Middleware applies Ensure to every request. The access log middleware does
// the same, so this is needed only where requests are not access-logged.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, _ = Ensure(w, r)
		next.ServeHTTP(w, r)
	})
}

// GatewayMetadata is a grpc-gateway metadata annotator (runtime.WithMetadata)
// that forwards the request id of ctx to the backend as x-request-id. The
// gateway gives annotator values precedence over client headers, so a client
// cannot smuggle its own x-request-id past validation with
// Grpc-Metadata-X-Request-Id.
func GatewayMetadata(ctx context.Context, _ *http.Request) metadata.MD {
	id := FromContext(ctx)
	if id == "" {
		return nil
	}

	return metadata.Pairs(MetadataKey, id)
}

// UnaryClientInterceptor sets x-request-id on every outgoing call to the id
// carried by the call's context, replacing any value already there. Calls
// whose context has no id go out unchanged.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(
		ctx context.Context,
		method string,
		req, reply any,
		cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker,
		opts ...grpc.CallOption,
	) error {
		return invoker(outgoing(ctx), method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor is UnaryClientInterceptor for streaming calls.
func StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(
		ctx context.Context,
		desc *grpc.StreamDesc,
		cc *grpc.ClientConn,
		method string,
		streamer grpc.Streamer,
		opts ...grpc.CallOption,
	) (grpc.ClientStream, error) {
		return streamer(outgoing(ctx), desc, cc, method, opts...)
	}
}

// outgoing returns ctx with x-request-id set in its outgoing metadata.
func outgoing(ctx context.Context) context.Context {
	id := FromContext(ctx)
	if id == "" {
		return ctx
	}

	// Reading one key does not copy the outgoing metadata; only a call
	// that carries a different id pays for a copy.
	got := metadata.ValueFromOutgoingContext(ctx, MetadataKey)
	switch {
	case len(got) == 1 && got[0] == id:
		return ctx
	case len(got) == 0:
		return metadata.AppendToOutgoingContext(ctx, MetadataKey, id)
	}

	// FromOutgoingContext returns a copy, so setting the key is safe.
	md, _ := metadata.FromOutgoingContext(ctx)
	md.Set(MetadataKey, id)

	return metadata.NewOutgoingContext(ctx, md)
}
