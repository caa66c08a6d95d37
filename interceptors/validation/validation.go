// Package validation runs protovalidate rules (the buf.validate options in
// our protos) on every request message, on the server side of each service
// and on the client side of the gateway, so an invalid request is refused
// before any handler or backend sees it.
//
// A refused request gets codes.InvalidArgument with a
// google.rpc.BadRequest detail that lists one violation per field: the field
// path, the rule id and a human-readable description.
package validation

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"buf.build/go/protovalidate"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Validator checks messages against their protovalidate rules.
// It is safe for concurrent use.
type Validator struct {
	v      protovalidate.Validator
	logger *zap.Logger
}

// Option configures a Validator.
type Option func(*Validator)

// WithLogger sets the logger that records refused requests at debug level.
func WithLogger(logger *zap.Logger) Option {
	return func(v *Validator) {
		if logger != nil {
			v.logger = logger.Named("validation")
		}
	}
}

// New builds a Validator. Rules are compiled lazily per message type and
// cached, so the first request of each type pays for compilation.
func New(opts ...Option) (*Validator, error) {
	pv, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("validation: create protovalidate validator: %w", err)
	}

	v := &Validator{v: pv, logger: zap.NewNop()}
	for _, opt := range opts {
		opt(v)
	}

	return v, nil
}

// Check validates msg and returns nil, or an InvalidArgument status error
// carrying one BadRequest field violation per broken rule. Values that are
// not protobuf messages are refused: every RPC here uses protobuf.
func (v *Validator) Check(method string, msg any) error {
	pm, ok := msg.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "request is not a protobuf message")
	}

	err := v.v.Validate(pm)
	if err == nil {
		return nil
	}

	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		// Compilation or runtime errors in the rules themselves are our bug,
		// not the caller's: fail closed without echoing internals.
		v.logger.Error("validation rules failed to run",
			zap.String("method", method), zap.Error(err))
		return status.Error(codes.Internal, "request validation failed to run")
	}

	return v.statusFor(method, verr)
}

func (v *Validator) statusFor(method string, verr *protovalidate.ValidationError) error {
	br := &errdetails.BadRequest{}
	seen := make(map[string]bool, len(verr.Violations))
	for _, viol := range verr.Violations {
		// A field can break several rules (an empty id fails min_len and
		// pattern); the detail keeps the first, the message lists them all.
		field := protovalidate.FieldPathString(viol.Proto.GetField())
		if seen[field] {
			continue
		}
		seen[field] = true
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       field,
			Reason:      viol.Proto.GetRuleId(),
			Description: viol.Proto.GetMessage(),
		})
	}

	v.logger.Debug("request refused by validation",
		zap.String("method", method), zap.Int("violations", len(br.FieldViolations)))

	st := status.New(codes.InvalidArgument, "invalid request: "+verr.Error())
	withDetails, err := st.WithDetails(br)
	if err != nil {
		return st.Err()
	}

	return withDetails.Err()
}

// UnaryServerInterceptor validates each unary request before the handler.
func (v *Validator) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(
		ctx context.Context,
		req any,
		info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		if err := v.Check(info.FullMethod, req); err != nil {
			return nil, err
		}

		return handler(ctx, req)
	}
}

// StreamServerInterceptor validates every message the client sends on a
// stream, including the single request of a server-streaming RPC.
func (v *Validator) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(
		srv any,
		ss grpc.ServerStream,
		info *grpc.StreamServerInfo,
		handler grpc.StreamHandler,
	) error {
		return handler(srv, &validatingServerStream{ServerStream: ss, v: v, method: info.FullMethod})
	}
}

type validatingServerStream struct {
	grpc.ServerStream
	v      *Validator
	method string
}

func (s *validatingServerStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}

	return s.v.Check(s.method, m)
}

// UnaryClientInterceptor validates each unary request before it is sent, so
// an invalid request costs no backend round trip.
func (v *Validator) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(
		ctx context.Context,
		method string,
		req, reply any,
		cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker,
		opts ...grpc.CallOption,
	) error {
		if err := v.Check(method, req); err != nil {
			return err
		}

		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor validates every message sent on a client stream
// before it leaves the process.
//
// For a server-streaming call (one request, many responses) the stream is
// opened only once its single request has passed validation, so an invalid
// request costs no backend hop at all: no connection pick, no headers sent,
// no handler started. Client- and bidi-streaming calls open the stream at
// once (their first message may come much later) and validate each message
// at SendMsg; a refused message ends the call.
func (v *Validator) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(
		ctx context.Context,
		desc *grpc.StreamDesc,
		cc *grpc.ClientConn,
		method string,
		streamer grpc.Streamer,
		opts ...grpc.CallOption,
	) (grpc.ClientStream, error) {
		open := func() (*validatingClientStream, error) {
			// The stream's own context lets a refused message or the end of
			// the call release it without waiting for the caller's ctx.
			sctx, cancel := context.WithCancel(ctx)
			cs, err := streamer(sctx, desc, cc, method, opts...)
			if err != nil {
				cancel()
				return nil, err
			}

			return &validatingClientStream{ClientStream: cs, v: v, method: method, cancel: cancel}, nil
		}

		if desc.ClientStreams {
			cs, err := open()
			if err != nil {
				// A nil *validatingClientStream would make a non-nil interface.
				return nil, err
			}
			return cs, nil
		}

		return &deferredClientStream{ctx: ctx, v: v, method: method, open: open}, nil
	}
}

type validatingClientStream struct {
	grpc.ClientStream
	v      *Validator
	method string
	cancel context.CancelFunc
}

func (s *validatingClientStream) SendMsg(m any) error {
	if err := s.v.Check(s.method, m); err != nil {
		s.cancel()
		return err
	}

	return s.ClientStream.SendMsg(m)
}

// RecvMsg releases the stream's context once the call is over.
func (s *validatingClientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.cancel()
	}

	return err
}

// errNotStarted answers calls on a deferred stream whose request was never
// sent; it only surfaces when a caller ignores the error of SendMsg.
var errNotStarted = status.Error(codes.FailedPrecondition, "stream was not started")

// deferredClientStream stands in for a server-streaming call until its one
// request has been validated; only then is the real stream opened. It is
// safe for the concurrent use grpc.ClientStream allows (one goroutine
// sending while another receives).
type deferredClientStream struct {
	ctx    context.Context
	v      *Validator
	method string
	open   func() (*validatingClientStream, error)

	// mu guards the fields below.
	mu     sync.Mutex
	stream *validatingClientStream // nil until a valid request opened it
	err    error                   // why the stream was never opened
}

// started returns the real stream, or nil and the reason there is none.
func (s *deferredClientStream) started() (*validatingClientStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.stream != nil {
		return s.stream, nil
	}
	if s.err != nil {
		return nil, s.err
	}

	return nil, errNotStarted
}

// SendMsg validates m and, when it passes, opens the stream and sends it.
// A refused or failed first message is remembered and returned again by
// every later call.
func (s *deferredClientStream) SendMsg(m any) error {
	s.mu.Lock()
	if s.stream != nil || s.err != nil {
		stream, err := s.stream, s.err
		s.mu.Unlock()
		if err != nil {
			return err
		}
		return stream.SendMsg(m)
	}

	if err := s.v.Check(s.method, m); err != nil {
		s.err = err
		s.mu.Unlock()
		return err
	}

	stream, err := s.open()
	if err != nil {
		s.err = err
		s.mu.Unlock()
		return err
	}
	s.stream = stream
	s.mu.Unlock()

	return stream.ClientStream.SendMsg(m)
}

func (s *deferredClientStream) RecvMsg(m any) error {
	stream, err := s.started()
	if err != nil {
		return err
	}

	return stream.RecvMsg(m)
}

func (s *deferredClientStream) Header() (metadata.MD, error) {
	stream, err := s.started()
	if err != nil {
		return nil, err
	}

	return stream.Header()
}

func (s *deferredClientStream) Trailer() metadata.MD {
	stream, err := s.started()
	if err != nil {
		return nil
	}

	return stream.Trailer()
}

// CloseSend closes the send direction of an open stream; before the stream
// is open there is nothing to close.
func (s *deferredClientStream) CloseSend() error {
	stream, err := s.started()
	if err != nil {
		return nil
	}

	return stream.CloseSend()
}

func (s *deferredClientStream) Context() context.Context {
	stream, err := s.started()
	if err != nil {
		return s.ctx
	}

	return stream.Context()
}
