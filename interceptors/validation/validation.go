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

	"buf.build/go/protovalidate"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
func (v *Validator) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(
		ctx context.Context,
		desc *grpc.StreamDesc,
		cc *grpc.ClientConn,
		method string,
		streamer grpc.Streamer,
		opts ...grpc.CallOption,
	) (grpc.ClientStream, error) {
		// The stream is open once streamer returns, before any message can
		// be checked; a refused message must end it, or the call (and its
		// server-side handler) would live on until the caller's ctx ends.
		ctx, cancel := context.WithCancel(ctx)
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			cancel()
			return nil, err
		}

		return &validatingClientStream{ClientStream: cs, v: v, method: method, cancel: cancel}, nil
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
