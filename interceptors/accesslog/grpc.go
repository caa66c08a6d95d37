package accesslog

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/requestid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Server is a grpc stats.Handler that writes one line per server-side RPC,
// unary or streaming, when the RPC ends. It is safe for concurrent use.
//
// Register it with grpc.StatsHandler after the OpenTelemetry server handler,
// so the span it reads the trace id from already exists. It also gives each
// call a request id (the caller's x-request-id if well formed, else a new
// one) in the context the handler sees, which requestid's client
// interceptors forward on outgoing calls.
//
// Limitation: grpc-go does not report the end of calls to unknown services or
// methods to stats handlers, so those calls get no line.
type Server struct {
	logger *zap.Logger
	opts   options
}

var _ stats.Handler = (*Server)(nil)

type rpcKey struct{}

// rpc is what Server knows about one call between TagRPC and End.
type rpc struct {
	start    time.Time
	method   string
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	panicked atomic.Bool

	// mu guards inner.
	mu    sync.Mutex
	inner context.Context
}

// NewServer returns a Server writing to logger, named "access".
func NewServer(logger *zap.Logger, opts ...Option) (*Server, error) {
	if logger == nil {
		return nil, ErrNilLogger
	}

	return &Server{logger: accessLogger(logger), opts: newOptions(opts)}, nil
}

// TagRPC implements stats.Handler. It starts the clock of the call and puts
// the request id and the call record into ctx.
func (s *Server) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if s.opts.skip != nil && s.opts.skip(info.FullMethodName) {
		return ctx
	}

	id := requestid.FromIncomingContext(ctx)
	if id == "" {
		id = requestid.New()
	}
	ctx = requestid.NewContext(ctx, id)

	return context.WithValue(ctx, rpcKey{}, &rpc{start: s.opts.now(), method: info.FullMethodName})
}

// HandleRPC implements stats.Handler. It counts payload bytes on the wire
// (compressed, with gRPC framing) and writes the line at the end of the call.
func (s *Server) HandleRPC(ctx context.Context, st stats.RPCStats) {
	call, _ := ctx.Value(rpcKey{}).(*rpc)
	if call == nil {
		return
	}

	switch st := st.(type) {
	case *stats.InPayload:
		call.bytesIn.Add(int64(st.WireLength))
	case *stats.OutPayload:
		call.bytesOut.Add(int64(st.WireLength))
	case *stats.End:
		s.write(ctx, call, st.Error)
	}
}

// TagConn implements stats.Handler; connections are not logged.
func (s *Server) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

// HandleConn implements stats.Handler; connections are not logged.
func (s *Server) HandleConn(context.Context, stats.ConnStats) {}

// UnaryServerInterceptor records the context it is called with as the
// innermost one of the call, so WithPrincipal and WithCaller see what
// authentication interceptors added. Put it last (innermost) in the chain.
// Without it those functions get the context of TagRPC.
func (s *Server) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(
		ctx context.Context,
		req any,
		_ *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		keepInner(ctx)

		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls.
func (s *Server) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(
		srv any,
		ss grpc.ServerStream,
		_ *grpc.StreamServerInfo,
		handler grpc.StreamHandler,
	) error {
		keepInner(ss.Context())

		return handler(srv, ss)
	}
}

// Recovered is a panic hook for go-grpc-middleware's recovery interceptor
// (recovery.WithRecoveryHandlerContext). It logs the panic with its stack,
// the method, request id and trace id, marks the call's access line with
// panic=true, and returns Internal with a message that reveals nothing.
func (s *Server) Recovered(ctx context.Context, p any) error {
	if call, _ := ctx.Value(rpcKey{}).(*rpc); call != nil {
		call.panicked.Store(true)
	}

	method, _ := grpc.Method(ctx)
	traceID, spanID, _ := traceFields(ctx)
	s.logger.Error("panic in handler",
		zap.String("request_id", requestid.FromContext(ctx)),
		traceID, spanID,
		zap.String("grpc_method", method),
		zap.String("panic", truncate(fmt.Sprint(p), maxPanic)),
		zap.Stack("stack"),
	)

	return status.Error(codes.Internal, "internal error")
}

func keepInner(ctx context.Context) {
	call, _ := ctx.Value(rpcKey{}).(*rpc)
	if call == nil {
		return
	}

	call.mu.Lock()
	call.inner = ctx
	call.mu.Unlock()
}

func (s *Server) write(ctx context.Context, call *rpc, err error) {
	code := status.Code(err)
	level := zapcore.InfoLevel
	if serverFault(code) {
		level = zapcore.WarnLevel
	}

	ce := s.logger.Check(level, "grpc request")
	if ce == nil {
		return
	}

	inner := ctx
	call.mu.Lock()
	if call.inner != nil {
		inner = call.inner
	}
	call.mu.Unlock()

	buf := getFields()
	fields := append(buf.f, zap.String("request_id", requestid.FromContext(ctx)))
	if traceID, spanID, ok := traceFields(ctx); ok {
		fields = append(fields, traceID, spanID)
	}
	fields = append(fields,
		zap.String("grpc_method", call.method),
		zap.String("grpc_code", code.String()),
		latencyMS(s.opts.now().Sub(call.start)),
		zap.Int64("bytes_in", call.bytesIn.Load()),
		zap.Int64("bytes_out", call.bytesOut.Load()),
	)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		fields = append(fields, zap.String("peer", p.Addr.String()))
	}
	if s.opts.caller != nil {
		fields = append(fields, zap.String("caller", s.opts.caller(inner)))
	}
	if s.opts.principal != nil {
		fields = append(fields, zap.String("principal", s.opts.principal(inner)))
	}
	if s.opts.instance != "" {
		fields = append(fields, zap.String("instance", s.opts.instance))
	}
	if code != codes.OK {
		fields = append(fields, zap.String("grpc_message",
			truncate(status.Convert(err).Message(), maxText)))
	}
	if call.panicked.Load() {
		fields = append(fields, zap.Bool("panic", true))
	}

	ce.Write(fields...)
	buf.put(fields)
}
