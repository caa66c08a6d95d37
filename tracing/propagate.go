package tracing

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// This file is the propagate-only path, used when export is off: no tracer
// provider is involved, each hop just reads the W3C headers, makes a span id
// of its own and passes the trace on. A span the SDK would have made there
// is never sampled, so it would be thrown away; skipping it saves its
// allocations, and gRPC stats events where interceptors replace stats
// handlers.

// The W3C header names, as gRPC metadata keys (lowercase) and as canonical
// HTTP header keys, which net/http servers store request headers under.
const (
	traceparentKey = "traceparent"
	tracestateKey  = "tracestate"
	baggageKey     = "baggage"

	traceparentHeader = "Traceparent"
	tracestateHeader  = "Tracestate"
	baggageHeader     = "Baggage"
)

// traceparentLen is the length of a version 00 traceparent:
// "00-" + 32 hex digits + "-" + 16 hex digits + "-" + 2 hex digits.
const traceparentLen = 55

// keptFlags are the trace flags passed on to the next hop: sampled and
// random (W3C Trace Context level 2), the two the specification defines.
const keptFlags = trace.FlagsSampled | trace.FlagsRandom

// propagateMiddleware is Middleware with export off. It puts this hop's span
// context, and the caller's baggage, into the request context. It also
// starts the request's httpcall.Call in the same copy of the request, which
// the metrics and access log layers inside it would otherwise each start.
func propagateMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header
		ctx := hopContext(r.Context(), first(h[traceparentHeader]), h[tracestateHeader],
			h[baggageHeader])
		_, w, r, _ = httpcall.StartContext(ctx, w, r)

		next.ServeHTTP(w, r)
	})
}

// fromIncoming is hopContext for a gRPC server call, from its metadata.
func fromIncoming(ctx context.Context) context.Context {
	return hopContext(ctx,
		first(metadata.ValueFromIncomingContext(ctx, traceparentKey)),
		metadata.ValueFromIncomingContext(ctx, tracestateKey),
		metadata.ValueFromIncomingContext(ctx, baggageKey))
}

// hopContext returns ctx with the span context of this hop and the caller's
// baggage. A valid traceparent keeps its trace id, kept flags and (when it
// parses) tracestate under a new span id; otherwise a new, unsampled trace
// starts. Malformed tracestate or baggage is dropped, whole or in part,
// without affecting the traceparent, and silently: OpenTelemetry's baggage
// propagator reports the first malformed baggage of the process to its error
// handler, this path reports none.
func hopContext(
	ctx context.Context,
	traceparent string,
	tracestate, bag []string,
) context.Context {
	cfg, ok := parseTraceparent(traceparent)
	if !ok {
		cfg = trace.SpanContextConfig{TraceID: newTraceID()}
	} else if len(tracestate) > 0 {
		// Repeated headers form one list, in order.
		cfg.TraceState, _ = trace.ParseTraceState(strings.Join(tracestate, ","))
	}
	cfg.SpanID = newSpanID()
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(cfg))

	if len(bag) == 0 {
		return ctx
	}

	// Members that fail to parse are dropped; Parse keeps the others.
	b, _ := baggage.Parse(strings.Join(bag, ","))
	if b.Len() == 0 {
		return ctx
	}

	return baggage.ContextWithBaggage(ctx, b)
}

// parseTraceparent reads a W3C traceparent as OpenTelemetry's propagator
// does: lowercase hex only; version ff is invalid; version 00 is exactly 55
// characters with no reserved flag set; a later version may carry more
// fields after a "-"; the trace and parent ids must not be all zeros. Only
// the kept flags are returned. It is stricter in one case: the propagator
// also accepts a version 00 value ending in "-".
func parseTraceparent(s string) (trace.SpanContextConfig, bool) {
	var cfg trace.SpanContextConfig
	if len(s) < traceparentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return cfg, false
	}

	version, ok := hexByte(s[0], s[1])
	if !ok || version == 0xff {
		return cfg, false
	}
	if len(s) > traceparentLen && (version == 0 || s[traceparentLen] != '-') {
		return cfg, false
	}

	flags, ok := hexByte(s[53], s[54])
	if !ok || (version == 0 && trace.TraceFlags(flags)&^keptFlags != 0) {
		return cfg, false
	}

	if !decodeHex(cfg.TraceID[:], s[3:35]) || !decodeHex(cfg.SpanID[:], s[36:52]) {
		return cfg, false
	}
	if !cfg.TraceID.IsValid() || !cfg.SpanID.IsValid() {
		return cfg, false
	}
	cfg.TraceFlags = trace.TraceFlags(flags) & keptFlags

	return cfg, true
}

// decodeHex fills dst from the lowercase hex digits in s, twice as long.
func decodeHex(dst []byte, s string) bool {
	for i := range dst {
		b, ok := hexByte(s[2*i], s[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}

	return true
}

// hexByte is the byte written as the lowercase hex digits hi and lo.
func hexByte(hi, lo byte) (byte, bool) {
	h, okHi := hexDigit(hi)
	l, okLo := hexDigit(lo)

	return h<<4 | l, okHi && okLo
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	default:
		return 0, false
	}
}

// formatTraceparent writes a version 00 traceparent for sc.
func formatTraceparent(sc trace.SpanContext) string {
	var b [traceparentLen]byte
	traceID, spanID := sc.TraceID(), sc.SpanID()

	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], traceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], spanID[:])
	b[52] = '-'
	hex.Encode(b[53:], []byte{byte(sc.TraceFlags() & keptFlags)})

	return string(b[:])
}

// newTraceID and newSpanID draw from math/rand/v2's global source: a
// ChaCha8 generator per thread, seeded by the runtime from the system, with
// no lock, no system call and no allocation. Trace ids must be unique, not
// secret (the edge accepts a caller's own, see Middleware), so crypto/rand,
// a getrandom call per id (a system call on Linux before 6.11), would buy
// nothing here.
func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}

	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}

	return id
}

// toOutgoing returns ctx with the trace headers of a new client call in its
// outgoing metadata: the trace of ctx (a new unsampled one if there is
// none) under a new span id, its tracestate, and the baggage of ctx.
func toOutgoing(ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	cfg := trace.SpanContextConfig{
		TraceID:    sc.TraceID(),
		TraceFlags: sc.TraceFlags(),
		TraceState: sc.TraceState(),
		SpanID:     newSpanID(),
	}
	if !sc.IsValid() {
		cfg = trace.SpanContextConfig{TraceID: newTraceID(), SpanID: cfg.SpanID}
	}

	// Up to three key and value pairs, on the stack.
	kv := [6]string{traceparentKey, formatTraceparent(trace.NewSpanContext(cfg))}
	n := 2
	if cfg.TraceState.Len() > 0 {
		kv[n], kv[n+1] = tracestateKey, cfg.TraceState.String()
		n += 2
	}
	if b := baggage.FromContext(ctx); b.Len() > 0 {
		kv[n], kv[n+1] = baggageKey, b.String()
		n += 2
	}

	return metadata.AppendToOutgoingContext(ctx, kv[:n]...)
}

func propagateUnaryClient(
	ctx context.Context,
	method string,
	req, reply any,
	cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker,
	opts ...grpc.CallOption,
) error {
	return invoker(toOutgoing(ctx), method, req, reply, cc, opts...)
}

func propagateStreamClient(
	ctx context.Context,
	desc *grpc.StreamDesc,
	cc *grpc.ClientConn,
	method string,
	streamer grpc.Streamer,
	opts ...grpc.CallOption,
) (grpc.ClientStream, error) {
	return streamer(toOutgoing(ctx), desc, cc, method, opts...)
}

func propagateUnaryServer(
	ctx context.Context,
	req any,
	_ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler,
) (any, error) {
	return handler(fromIncoming(ctx), req)
}

func propagateStreamServer(
	srv any,
	ss grpc.ServerStream,
	_ *grpc.StreamServerInfo,
	handler grpc.StreamHandler,
) error {
	return handler(srv, &hopStream{ServerStream: ss, ctx: fromIncoming(ss.Context())})
}

// hopStream is a server stream whose context carries the hop's span.
type hopStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *hopStream) Context() context.Context { return s.ctx }

// propagateHandler is ServerHandler with export off: a stats handler that
// only puts the hop's span context into the call's context, and ignores
// every event.
type propagateHandler struct{}

var _ stats.Handler = propagateHandler{}

func (propagateHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return fromIncoming(ctx)
}

func (propagateHandler) HandleRPC(context.Context, stats.RPCStats) {}

func (propagateHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (propagateHandler) HandleConn(context.Context, stats.ConnStats) {}

// first is the first of values, or "".
func first(values []string) string {
	if len(values) == 0 {
		return ""
	}

	return values[0]
}
