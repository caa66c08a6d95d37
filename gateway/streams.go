package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// firstMessageConn wraps a backend connection so that a server-streaming
// call that fails before its first message fails as a whole: the client
// gets the HTTP status of the error and the usual JSON status body, where
// grpc-gateway would otherwise answer with a stream whose only line is
// {"error":…}. Once a first message has arrived the status is 200, and a
// later error still ends the stream as an error line.
//
// Limitation: a stream's response headers wait for its first message, so
// a backend that is slow to send one shows the client nothing until then.
type firstMessageConn struct {
	grpc.ClientConnInterface
}

// NewStream implements grpc.ClientConnInterface.
func (c firstMessageConn) NewStream(
	ctx context.Context,
	desc *grpc.StreamDesc,
	method string,
	opts ...grpc.CallOption,
) (grpc.ClientStream, error) {
	cs, err := c.ClientConnInterface.NewStream(ctx, desc, method, opts...)
	if err != nil || desc.ClientStreams || !desc.ServerStreams {
		return cs, err
	}

	return &firstMessageStream{ClientStream: cs, method: method}, nil
}

// firstMessageStream receives the first message when its header is asked
// for, and hands it out on the first RecvMsg. grpc-gateway asks for the
// header before it reads; like any grpc.ClientStream it must not be read
// from two goroutines at once.
type firstMessageStream struct {
	grpc.ClientStream
	method string

	peeked   bool
	first    proto.Message // received by Header, not yet handed out
	firstErr error         // what receiving the first message returned
}

// Header waits for the first message, then returns the stream's header,
// or the error that ended the stream before any message.
func (s *firstMessageStream) Header() (metadata.MD, error) {
	if !s.peeked {
		s.peek()
	}
	if s.firstErr != nil && !errors.Is(s.firstErr, io.EOF) {
		return nil, s.firstErr
	}

	return s.ClientStream.Header()
}

func (s *firstMessageStream) peek() {
	s.peeked = true

	msg, err := responseOf(s.method)
	if err != nil {
		s.firstErr = err
		return
	}

	s.firstErr = s.ClientStream.RecvMsg(msg)
	if s.firstErr == nil {
		s.first = msg
	}
}

// RecvMsg implements grpc.ClientStream.
func (s *firstMessageStream) RecvMsg(m any) error {
	if !s.peeked {
		return s.ClientStream.RecvMsg(m)
	}

	if s.first != nil {
		pm, ok := m.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "stream message %T is not protobuf", m)
		}
		proto.Reset(pm)
		proto.Merge(pm, s.first)
		s.first = nil
		return nil
	}
	if s.firstErr != nil {
		return s.firstErr
	}

	return s.ClientStream.RecvMsg(m)
}

// responseOf returns an empty response message of the full gRPC method
// name method ("/pkg.Service/Method"), from the registered descriptors.
func responseOf(method string) (proto.Message, error) {
	name := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", "."))

	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		return nil, fmt.Errorf("gateway: descriptor of %s: %w", method, err)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, fmt.Errorf("gateway: %s is not a method", method)
	}

	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("gateway: response type of %s: %w", method, err)
	}

	return mt.New().Interface(), nil
}
