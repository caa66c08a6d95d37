package validation_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/interceptors/validation"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const validUUID = "0b6d2c1e-3f4a-4b5c-8d9e-0f1a2b3c4d5e"

func newValidator(t *testing.T) *validation.Validator {
	t.Helper()

	v, err := validation.New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	return v
}

// badRequest returns the BadRequest detail of err, failing the test unless
// err is InvalidArgument and carries exactly one.
func badRequest(t *testing.T, err error) *errdetails.BadRequest {
	t.Helper()

	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("error = %v, want an InvalidArgument status", err)
	}
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code = %v (%q), want InvalidArgument", st.Code(), st.Message())
	}
	var found []*errdetails.BadRequest
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			found = append(found, br)
		}
	}
	if len(found) != 1 {
		t.Fatalf("status has %d BadRequest details, want 1: %v", len(found), st.Details())
	}

	return found[0]
}

func fields(br *errdetails.BadRequest) []string {
	var out []string
	for _, fv := range br.GetFieldViolations() {
		out = append(out, fv.GetField())
	}

	return out
}

// checkRefusal fails the test unless err is InvalidArgument with violations
// on exactly wantFields, in that order.
func checkRefusal(t *testing.T, err error, wantFields []string) {
	t.Helper()

	br := badRequest(t, err)
	if got := fields(br); !slices.Equal(got, wantFields) {
		t.Errorf("violations on %v, want %v", got, wantFields)
	}
	for _, fv := range br.GetFieldViolations() {
		if fv.GetReason() == "" || fv.GetDescription() == "" {
			t.Errorf("violation %v lacks a rule id or a description", fv)
		}
	}
}

type requestCase struct {
	name       string
	req        any
	wantCode   codes.Code
	wantFields []string
}

// notProto is a request value that is not a protobuf message.
type notProto struct{ ID string }

var unaryCases = []requestCase{
	{name: "valid", req: &catalogv1.GetProductRequest{Id: "p-1001"}, wantCode: codes.OK},
	{name: "invalid id", req: &catalogv1.GetProductRequest{Id: "P 1001"},
		wantCode: codes.InvalidArgument, wantFields: []string{"id"}},
	{name: "page size", req: &catalogv1.ListProductsRequest{PageSize: 101},
		wantCode: codes.InvalidArgument, wantFields: []string{"page_size"}},
	{name: "nested repeated field",
		req: &catalogv1.ReserveStockRequest{OrderId: "o-1",
			Items: []*catalogv1.StockItem{{ProductId: "p-1", Quantity: 1}, {ProductId: "p-2"}}},
		wantCode: codes.InvalidArgument, wantFields: []string{"items[1].quantity"}},
	{name: "not a protobuf message", req: notProto{ID: "x"}, wantCode: codes.Internal},
}

func TestUnaryServerInterceptor(t *testing.T) {
	interceptor := newValidator(t).UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/gatehouse.catalog.v1.CatalogService/Test"}

	for _, tc := range unaryCases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			handler := func(_ context.Context, req any) (any, error) {
				calls++
				if req != tc.req {
					t.Errorf("handler got %v, want the request passed in", req)
				}
				return "handled", nil
			}

			resp, err := interceptor(t.Context(), tc.req, info, handler)
			if tc.wantCode == codes.OK {
				if err != nil || resp != "handled" || calls != 1 {
					t.Fatalf("valid request: resp %v, err %v, handler calls %d; "+
						"want the handler's answer from one call", resp, err, calls)
				}
				return
			}
			if calls != 0 {
				t.Errorf("handler called %d times for an invalid request", calls)
			}
			if resp != nil {
				t.Errorf("refused request answered %v", resp)
			}
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.wantCode)
			}
			if tc.wantFields != nil {
				checkRefusal(t, err, tc.wantFields)
			}
		})
	}
}

func TestUnaryClientInterceptor(t *testing.T) {
	interceptor := newValidator(t).UnaryClientInterceptor()
	const method = "/gatehouse.catalog.v1.CatalogService/Test"

	for _, tc := range unaryCases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			invoker := func(_ context.Context, m string, req, _ any,
				_ *grpc.ClientConn, _ ...grpc.CallOption) error {
				calls++
				if m != method || req != tc.req {
					t.Errorf("invoker got %s %v, want %s and the request passed in",
						m, req, method)
				}
				return nil
			}

			err := interceptor(t.Context(), method, tc.req, nil, nil, invoker)
			if tc.wantCode == codes.OK {
				if err != nil || calls != 1 {
					t.Fatalf("valid request: err %v, invoker calls %d; want nil, 1", err, calls)
				}
				return
			}
			if calls != 0 {
				t.Errorf("invoker called %d times for an invalid request", calls)
			}
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.wantCode)
			}
			if tc.wantFields != nil {
				checkRefusal(t, err, tc.wantFields)
			}
		})
	}
}

// fakeServerStream hands out msgs one by one, then end (io.EOF if nil).
type fakeServerStream struct {
	grpc.ServerStream // nil: only RecvMsg and Context are used

	ctx  context.Context
	msgs []proto.Message
	end  error
}

func (f *fakeServerStream) Context() context.Context { return f.ctx }

func (f *fakeServerStream) RecvMsg(m any) error {
	if len(f.msgs) == 0 {
		if f.end != nil {
			return f.end
		}
		return io.EOF
	}
	next := f.msgs[0]
	f.msgs = f.msgs[1:]
	proto.Merge(m.(proto.Message), next)

	return nil
}

func TestStreamServerInterceptor(t *testing.T) {
	interceptor := newValidator(t).StreamServerInterceptor()
	info := &grpc.StreamServerInfo{
		FullMethod:     "/gatehouse.orders.v1.OrderService/WatchOrder",
		IsServerStream: true,
	}
	transportErr := status.Error(codes.Canceled, "client went away")

	tests := []struct {
		name          string
		msgs          []proto.Message
		end           error
		wantProcessed []string
		wantCode      codes.Code
		wantFields    []string
		wantErr       error // when set, the exact error expected
	}{
		{name: "valid request",
			msgs:          []proto.Message{&ordersv1.WatchOrderRequest{Id: validUUID}},
			wantProcessed: []string{validUUID}, wantErr: io.EOF},
		{name: "invalid request",
			msgs:     []proto.Message{&ordersv1.WatchOrderRequest{Id: "nope"}},
			wantCode: codes.InvalidArgument, wantFields: []string{"id"}},
		{name: "every message is checked",
			msgs: []proto.Message{
				&ordersv1.WatchOrderRequest{Id: validUUID},
				&ordersv1.WatchOrderRequest{Id: "second-is-bad"},
			},
			wantProcessed: []string{validUUID},
			wantCode:      codes.InvalidArgument, wantFields: []string{"id"}},
		{name: "receive errors pass unchanged", end: transportErr, wantErr: transportErr},
		{name: "end of stream is not validated", wantErr: io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var processed []string
			// A fake handler of a client-streaming shape: it reads until an
			// error and acts only on messages that arrived without one.
			handler := func(_ any, ss grpc.ServerStream) error {
				for {
					var req ordersv1.WatchOrderRequest
					if err := ss.RecvMsg(&req); err != nil {
						return err
					}
					processed = append(processed, req.GetId())
				}
			}
			ss := &fakeServerStream{ctx: t.Context(), msgs: tc.msgs, end: tc.end}

			err := interceptor(nil, ss, info, handler)
			if !slices.Equal(processed, tc.wantProcessed) {
				t.Errorf("handler processed %v, want %v", processed, tc.wantProcessed)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.wantCode)
			}
			checkRefusal(t, err, tc.wantFields)
		})
	}
}

// fakeClientStream records the messages sent through it.
type fakeClientStream struct {
	grpc.ClientStream // nil: only the methods below are used

	sent    []any
	recvErr error
	header  metadata.MD
	closed  bool
}

func (f *fakeClientStream) SendMsg(m any) error {
	f.sent = append(f.sent, m)
	return nil
}

func (f *fakeClientStream) RecvMsg(any) error { return f.recvErr }

func (f *fakeClientStream) Header() (metadata.MD, error) { return f.header, nil }

func (f *fakeClientStream) CloseSend() error {
	f.closed = true
	return nil
}

// streamProbe is a fake streamer that counts how often a stream is opened.
type streamProbe struct {
	fake   *fakeClientStream
	opened int
	ctx    context.Context // the context the last stream was opened with
	err    error           // returned instead of a stream when set
}

func (p *streamProbe) streamer(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn,
	_ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	p.opened++
	p.ctx = ctx
	if p.err != nil {
		return nil, p.err
	}

	return p.fake, nil
}

func TestStreamClientInterceptor(t *testing.T) {
	interceptor := newValidator(t).StreamClientInterceptor()
	const method = "/gatehouse.orders.v1.OrderService/WatchOrder"
	serverStreaming := &grpc.StreamDesc{StreamName: "WatchOrder", ServerStreams: true}
	clientStreaming := &grpc.StreamDesc{StreamName: "Upload", ClientStreams: true}
	valid := &ordersv1.WatchOrderRequest{Id: validUUID}
	invalid := &ordersv1.WatchOrderRequest{Id: "nope"}
	transportErr := status.Error(codes.Unavailable, "no backend")

	tests := []struct {
		name        string
		desc        *grpc.StreamDesc
		streamerErr error
		msg         any
		// wantOpenErr is the error the interceptor itself returns.
		wantOpenErr error
		// wantOpened is how many streams were opened once SendMsg returned.
		wantOpened int
		wantSent   int
		wantCode   codes.Code
		wantFields []string
		wantErr    error // when set, the exact error SendMsg returns
	}{
		{name: "server streaming: valid request opens the stream",
			desc: serverStreaming, msg: valid, wantOpened: 1, wantSent: 1},
		{name: "server streaming: invalid request never opens it",
			desc: serverStreaming, msg: invalid,
			wantCode: codes.InvalidArgument, wantFields: []string{"id"}},
		{name: "server streaming: non-protobuf request never opens it",
			desc: serverStreaming, msg: notProto{ID: "x"}, wantCode: codes.Internal},
		{name: "server streaming: open error comes back from SendMsg",
			desc: serverStreaming, streamerErr: transportErr, msg: valid,
			wantOpened: 1, wantErr: transportErr},
		{name: "client streaming: valid message is sent",
			desc: clientStreaming, msg: valid, wantOpened: 1, wantSent: 1},
		{name: "client streaming: invalid message is refused before sending",
			desc: clientStreaming, msg: invalid, wantOpened: 1,
			wantCode: codes.InvalidArgument, wantFields: []string{"id"}},
		{name: "client streaming: open error passes unchanged",
			desc: clientStreaming, streamerErr: transportErr, wantOpenErr: transportErr,
			wantOpened: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			probe := &streamProbe{fake: &fakeClientStream{recvErr: io.EOF}, err: tc.streamerErr}

			cs, err := interceptor(t.Context(), tc.desc, nil, method, probe.streamer)
			if tc.wantOpenErr != nil {
				if !errors.Is(err, tc.wantOpenErr) || cs != nil {
					t.Fatalf("interceptor = %v, %v; want nil, %v", cs, err, tc.wantOpenErr)
				}
				if probe.opened != tc.wantOpened {
					t.Errorf("streams opened: %d, want %d", probe.opened, tc.wantOpened)
				}
				return
			}
			if err != nil {
				t.Fatalf("interceptor: %v", err)
			}

			err = cs.SendMsg(tc.msg)
			if probe.opened != tc.wantOpened {
				t.Errorf("streams opened: %d, want %d", probe.opened, tc.wantOpened)
			}
			if len(probe.fake.sent) != tc.wantSent {
				t.Errorf("messages sent: %v, want %d", probe.fake.sent, tc.wantSent)
			}

			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("SendMsg = %v, want %v", err, tc.wantErr)
				}
			case tc.wantCode == codes.OK:
				if err != nil {
					t.Fatalf("SendMsg: %v", err)
				}
			default:
				if got := status.Code(err); got != tc.wantCode {
					t.Fatalf("SendMsg code = %v (%v), want %v", got, err, tc.wantCode)
				}
				if tc.wantFields != nil {
					checkRefusal(t, err, tc.wantFields)
				}
			}

			// Whatever happened, the caller's context is never cancelled by
			// the interceptor, and an opened stream's is released.
			if t.Context().Err() != nil {
				t.Error("the interceptor cancelled the caller's context")
			}
			if probe.ctx != nil && err != nil && probe.ctx.Err() == nil {
				t.Error("stream context still live after a refusal")
			}
		})
	}
}

// TestDeferredStreamLifecycle follows a server-streaming call through the
// methods the generated client and grpc-gateway call after SendMsg.
func TestDeferredStreamLifecycle(t *testing.T) {
	interceptor := newValidator(t).StreamClientInterceptor()
	desc := &grpc.StreamDesc{StreamName: "WatchOrder", ServerStreams: true}
	const method = "/gatehouse.orders.v1.OrderService/WatchOrder"

	t.Run("valid call", func(t *testing.T) {
		probe := &streamProbe{fake: &fakeClientStream{
			recvErr: io.EOF, header: metadata.Pairs("x-k", "v")}}
		cs, err := interceptor(t.Context(), desc, nil, method, probe.streamer)
		if err != nil {
			t.Fatalf("interceptor: %v", err)
		}
		if probe.opened != 0 {
			t.Fatalf("stream opened before its request was seen")
		}
		if cs.Context() != t.Context() {
			t.Error("Context before the request is not the caller's context")
		}
		if err := cs.SendMsg(&ordersv1.WatchOrderRequest{Id: validUUID}); err != nil {
			t.Fatalf("SendMsg: %v", err)
		}
		if err := cs.CloseSend(); err != nil || !probe.fake.closed {
			t.Fatalf("CloseSend = %v, closed %v; want nil, true", err, probe.fake.closed)
		}
		md, err := cs.Header()
		if err != nil || md.Get("x-k")[0] != "v" {
			t.Fatalf("Header = %v, %v; want the stream's header", md, err)
		}
		if probe.ctx.Err() != nil {
			t.Fatal("stream context ended while the call is live")
		}
		if err := cs.RecvMsg(&ordersv1.WatchOrderResponse{}); !errors.Is(err, io.EOF) {
			t.Fatalf("RecvMsg = %v, want io.EOF", err)
		}
		if probe.ctx.Err() == nil {
			t.Error("stream context still live after the call ended")
		}
	})

	t.Run("refused call", func(t *testing.T) {
		probe := &streamProbe{fake: &fakeClientStream{recvErr: io.EOF}}
		cs, err := interceptor(t.Context(), desc, nil, method, probe.streamer)
		if err != nil {
			t.Fatalf("interceptor: %v", err)
		}
		sendErr := cs.SendMsg(&ordersv1.WatchOrderRequest{Id: "nope"})
		checkRefusal(t, sendErr, []string{"id"})

		// Every later call reports the same refusal and opens nothing.
		if err := cs.SendMsg(&ordersv1.WatchOrderRequest{Id: validUUID}); !errors.Is(err, sendErr) {
			t.Errorf("second SendMsg = %v, want the first refusal", err)
		}
		if _, err := cs.Header(); !errors.Is(err, sendErr) {
			t.Errorf("Header error = %v, want the refusal", err)
		}
		if err := cs.RecvMsg(&ordersv1.WatchOrderResponse{}); !errors.Is(err, sendErr) {
			t.Errorf("RecvMsg = %v, want the refusal", err)
		}
		if err := cs.CloseSend(); err != nil {
			t.Errorf("CloseSend = %v, want nil", err)
		}
		if md := cs.Trailer(); md != nil {
			t.Errorf("Trailer = %v, want nil", md)
		}
		if probe.opened != 0 {
			t.Errorf("a refused call opened %d streams", probe.opened)
		}
	})

	t.Run("receive before send", func(t *testing.T) {
		probe := &streamProbe{fake: &fakeClientStream{recvErr: io.EOF}}
		cs, err := interceptor(t.Context(), desc, nil, method, probe.streamer)
		if err != nil {
			t.Fatalf("interceptor: %v", err)
		}
		err = cs.RecvMsg(&ordersv1.WatchOrderResponse{})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("RecvMsg before SendMsg = %v, want FailedPrecondition", err)
		}
		if probe.opened != 0 {
			t.Errorf("stream opened by RecvMsg")
		}
	})
}

func TestCheckMultipleViolationsOnePerField(t *testing.T) {
	v := newValidator(t)

	tests := []struct {
		name        string
		req         proto.Message
		wantFields  []string
		wantReasons []string
		wantInMsg   []string // substrings the status message must contain
	}{
		{
			name: "three fields",
			req: &ordersv1.CreateOrderRequest{
				CustomerId: "-starts-badly",
				LineItems: []*ordersv1.LineItem{
					{ProductId: "p-1", Quantity: 0},
					{ProductId: "P_2", Quantity: 1},
				},
			},
			wantFields: []string{"customer_id", "line_items[0].quantity",
				"line_items[1].product_id"},
			wantReasons: []string{"string.pattern", "int64.gt_lte", "string.pattern"},
			wantInMsg:   []string{"customer_id", "line_items[0].quantity"},
		},
		{
			name:        "one field breaking two rules",
			req:         &catalogv1.GetProductRequest{Id: ""},
			wantFields:  []string{"id"},
			wantReasons: []string{"string.min_len"},
			// The message still names every broken rule.
			wantInMsg: []string{"at least 1", "regex"},
		},
		{
			name:        "empty request",
			req:         &ordersv1.CreateOrderRequest{},
			wantFields:  []string{"customer_id", "line_items"},
			wantReasons: []string{"string.min_len", "repeated.min_items"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Check("/test", tc.req)
			br := badRequest(t, err)
			if got := fields(br); !slices.Equal(got, tc.wantFields) {
				t.Errorf("violations on %v, want one each on %v", got, tc.wantFields)
			}
			var reasons []string
			for _, fv := range br.GetFieldViolations() {
				reasons = append(reasons, fv.GetReason())
			}
			if !slices.Equal(reasons, tc.wantReasons) {
				t.Errorf("rule ids %v, want %v", reasons, tc.wantReasons)
			}
			msg := status.Convert(err).Message()
			for _, want := range tc.wantInMsg {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestCheckValid(t *testing.T) {
	v := newValidator(t)

	for _, req := range []proto.Message{
		&catalogv1.GetProductRequest{Id: "p-1001"},
		&catalogv1.ListProductsRequest{},
		&catalogv1.ListProductsRequest{PageSize: 100, PageToken: "abc"},
		&ordersv1.CreateOrderRequest{CustomerId: "c.1_x-y",
			LineItems: []*ordersv1.LineItem{{ProductId: "p-1", Quantity: 1000}}},
		&ordersv1.GetOrderRequest{Id: validUUID},
		&catalogv1.Product{}, // no rules at all
	} {
		if err := v.Check("/test", req); err != nil {
			t.Errorf("Check(%v) = %v, want nil", req, err)
		}
	}
}

// fakeCatalog counts the calls that reach it.
type fakeCatalog struct {
	catalogv1.UnimplementedCatalogServiceServer
	calls atomic.Int32
}

func (f *fakeCatalog) GetProduct(
	_ context.Context,
	req *catalogv1.GetProductRequest,
) (*catalogv1.GetProductResponse, error) {
	f.calls.Add(1)
	return &catalogv1.GetProductResponse{Product: &catalogv1.Product{Id: req.GetId()}}, nil
}

type fakeOrders struct {
	ordersv1.UnimplementedOrderServiceServer
}

// TestClientInterceptorsOverGRPC runs the client interceptors against a
// real server on loopback that does no validation of its own.
func TestClientInterceptorsOverGRPC(t *testing.T) {
	v := newValidator(t)

	var streamsStarted atomic.Int32
	gs := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream,
		_ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		streamsStarted.Add(1)
		return handler(srv, ss)
	}))
	cat := &fakeCatalog{}
	catalogv1.RegisterCatalogServiceServer(gs, cat)
	ordersv1.RegisterOrderServiceServer(gs, fakeOrders{})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(v.UnaryClientInterceptor()),
		grpc.WithStreamInterceptor(v.StreamClientInterceptor()),
	)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	catalog := catalogv1.NewCatalogServiceClient(conn)
	_, err = catalog.GetProduct(ctx, &catalogv1.GetProductRequest{Id: "NOT VALID"})
	checkRefusal(t, err, []string{"id"})
	if _, err := catalog.GetProduct(ctx, &catalogv1.GetProductRequest{Id: "p-1"}); err != nil {
		t.Fatalf("valid GetProduct: %v", err)
	}
	if n := cat.calls.Load(); n != 1 {
		t.Errorf("server saw %d GetProduct calls, want only the valid one", n)
	}

	// A refused server-streaming call must not reach the server at all.
	orders := ordersv1.NewOrderServiceClient(conn)
	stream, err := orders.WatchOrder(ctx, &ordersv1.WatchOrderRequest{Id: "not-a-uuid"})
	if err == nil {
		t.Fatalf("WatchOrder with a bad id = %v, nil; want a refusal", stream)
	}
	checkRefusal(t, err, []string{"id"})

	// A valid one does (fakeOrders answers Unimplemented).
	stream, err = orders.WatchOrder(ctx, &ordersv1.WatchOrderRequest{Id: validUUID})
	if err != nil {
		t.Fatalf("valid WatchOrder: %v", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unimplemented {
		t.Fatalf("valid WatchOrder Recv = %v, want Unimplemented from the server", err)
	}

	// GracefulStop returns once every stream the server accepted has been
	// handled, so the count below is final.
	gs.GracefulStop()
	if n := streamsStarted.Load(); n != 1 {
		t.Errorf("server started %d streams, want 1 (the valid call only)", n)
	}
}
