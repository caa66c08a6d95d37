package auth

import (
	"context"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// authorizationKey is the gRPC metadata key of the bearer token.
const authorizationKey = "authorization"

// UnaryServerInterceptor checks each unary call before the handler and
// hands the handler a context carrying the caller's Principal (see
// jwtauth.PrincipalFrom).
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(
		ctx context.Context,
		req any,
		info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		ctx, err := g.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}

		return handler(ctx, req)
	}
}

// StreamServerInterceptor checks each stream when it opens, before the
// handler runs; the stream's Context carries the caller's Principal.
// Limitation: a stream lives on after its token expires; the check is made
// once, at the start.
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(
		srv any,
		ss grpc.ServerStream,
		info *grpc.StreamServerInfo,
		handler grpc.StreamHandler,
	) error {
		ctx, err := g.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}

		return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
}

// authenticate checks the call in ctx and returns ctx with the principal,
// or a status error with a short message.
func (g *Guard) authenticate(ctx context.Context, method string) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)

	p, err := g.Check(ctx, method, md.Get(authorizationKey))
	if err != nil {
		g.refused(ctx, "grpc", method, p, err)
		return nil, statusFor(refusal(err))
	}

	if p != nil {
		ctx = jwtauth.WithPrincipal(ctx, p)
	}

	return ctx, nil
}

// statusFor turns a challenge into the gRPC status of the same meaning.
// Every authentication failure is Unauthenticated in gRPC, including those
// HTTP answers with 400.
func statusFor(c jwtauth.Challenge) error {
	switch c.Status {
	case http.StatusForbidden:
		return status.Error(codes.PermissionDenied, c.Description)
	case http.StatusServiceUnavailable:
		return status.Error(codes.Unavailable, c.Description)
	}

	return status.Error(codes.Unauthenticated, c.Description)
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context with the caller's principal.
func (s *principalStream) Context() context.Context { return s.ctx }

// ForwardUnaryClientInterceptor passes the bearer token of the incoming
// call in ctx on to the outgoing call, so a service calling another on a
// user's behalf (orders reserving stock in the catalog) is checked against
// the same token. A call that sets its own authorization keeps it.
func ForwardUnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(
		ctx context.Context,
		method string,
		req, reply any,
		cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker,
		opts ...grpc.CallOption,
	) error {
		return invoker(forwardToken(ctx), method, req, reply, cc, opts...)
	}
}

// ForwardStreamClientInterceptor is ForwardUnaryClientInterceptor for
// streams.
func ForwardStreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(
		ctx context.Context,
		desc *grpc.StreamDesc,
		cc *grpc.ClientConn,
		method string,
		streamer grpc.Streamer,
		opts ...grpc.CallOption,
	) (grpc.ClientStream, error) {
		return streamer(forwardToken(ctx), desc, cc, method, opts...)
	}
}

func forwardToken(ctx context.Context) context.Context {
	if out, ok := metadata.FromOutgoingContext(ctx); ok && len(out.Get(authorizationKey)) > 0 {
		return ctx
	}

	in, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}

	values := in.Get(authorizationKey)
	if len(values) != 1 {
		// The server interceptor refuses anything but one value; forward
		// nothing rather than something it would not have accepted.
		return ctx
	}

	return metadata.AppendToOutgoingContext(ctx, authorizationKey, values[0])
}
