package orders_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/interceptors/validation"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/gatehouse-dev/gatehouse/services/orders"
	"github.com/gatehouse-dev/gatehouse/services/pagetoken"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const fastStep = 20 * time.Millisecond

// serve runs a gRPC server with the validation interceptors on 127.0.0.1:0.
// It returns the address and a stop function that is safe to call more
// than once; the test's cleanup calls it too.
func serve(t *testing.T, register func(*grpc.Server)) (string, func()) {
	t.Helper()

	v, err := validation.New()
	if err != nil {
		t.Fatalf("validation.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(v.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(v.StreamServerInterceptor()),
	)
	register(gs)

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()

	var once sync.Once
	stop := func() {
		once.Do(func() {
			gs.Stop()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)

	return lis.Addr().String(), stop
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("NewClient(%q): %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	return conn
}

// env is a catalog server and an orders server whose catalog client dials
// it, both real gRPC servers on loopback.
type env struct {
	catalog     catalogv1.CatalogServiceClient
	catalogAddr string
	stopCatalog func()
	svc         *orders.Server
	orders      ordersv1.OrderServiceClient
}

func newEnv(t *testing.T, step time.Duration) *env {
	t.Helper()

	store, err := catalog.NewStore(catalog.SampleProducts())
	if err != nil {
		t.Fatalf("catalog.NewStore: %v", err)
	}
	catSrv, err := catalog.NewServer(store)
	if err != nil {
		t.Fatalf("catalog.NewServer: %v", err)
	}
	catAddr, stopCatalog := serve(t, func(gs *grpc.Server) {
		catalogv1.RegisterCatalogServiceServer(gs, catSrv)
	})
	catClient := catalogv1.NewCatalogServiceClient(dial(t, catAddr))

	svc, err := orders.NewServer(orders.NewStore(), catClient, orders.WithStepInterval(step))
	if err != nil {
		t.Fatalf("orders.NewServer: %v", err)
	}
	t.Cleanup(svc.Close)
	ordAddr, _ := serve(t, func(gs *grpc.Server) {
		ordersv1.RegisterOrderServiceServer(gs, svc)
	})

	return &env{
		catalog:     catClient,
		catalogAddr: catAddr,
		stopCatalog: stopCatalog,
		svc:         svc,
		orders:      ordersv1.NewOrderServiceClient(dial(t, ordAddr)),
	}
}

func callCtx(t *testing.T) context.Context {
	t.Helper()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)

	return ctx
}

func lines(pairs ...any) []*ordersv1.LineItem {
	var out []*ordersv1.LineItem
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &ordersv1.LineItem{
			ProductId: pairs[i].(string),
			Quantity:  int64(pairs[i+1].(int)),
		})
	}

	return out
}

func (e *env) create(t *testing.T, customer string, items []*ordersv1.LineItem) *ordersv1.Order {
	t.Helper()

	resp, err := e.orders.CreateOrder(callCtx(t), &ordersv1.CreateOrderRequest{
		CustomerId: customer,
		LineItems:  items,
	})
	if err != nil {
		t.Fatalf("CreateOrder(%s): %v", customer, err)
	}

	return resp.GetOrder()
}

func (e *env) stock(t *testing.T, id string) int64 {
	t.Helper()

	resp, err := e.catalog.GetProduct(callCtx(t), &catalogv1.GetProductRequest{Id: id})
	if err != nil {
		t.Fatalf("GetProduct(%q): %v", id, err)
	}

	return resp.GetProduct().GetStock()
}

func (e *env) orderCount(t *testing.T) int {
	t.Helper()

	resp, err := e.orders.ListOrders(callCtx(t), &ordersv1.ListOrdersRequest{PageSize: 100})
	if err != nil {
		t.Fatalf("ListOrders: %v", err)
	}

	return len(resp.GetOrders())
}

// wantCode fails the test unless err is a status error with code want.
func wantCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()

	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("error = %v, want a status with code %v", err, want)
	}
	if st.Code() != want {
		t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), want)
	}

	return st
}

// violationFields returns the fields named by the BadRequest detail of st.
func violationFields(t *testing.T, st *status.Status) []string {
	t.Helper()

	var fields []string
	found := false
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			found = true
			for _, fv := range br.GetFieldViolations() {
				fields = append(fields, fv.GetField())
			}
		}
	}
	if !found {
		t.Fatalf("status %v (%q) has no BadRequest detail", st.Code(), st.Message())
	}

	return fields
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	client := catalogv1.NewCatalogServiceClient(dial(t, "127.0.0.1:1"))

	tests := []struct {
		name    string
		store   *orders.Store
		catalog catalogv1.CatalogServiceClient
		opts    []orders.Option
	}{
		{name: "nil store", catalog: client},
		{name: "nil catalog", store: orders.NewStore()},
		{name: "zero step", store: orders.NewStore(), catalog: client,
			opts: []orders.Option{orders.WithStepInterval(0)}},
		{name: "negative step", store: orders.NewStore(), catalog: client,
			opts: []orders.Option{orders.WithStepInterval(-time.Second)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := orders.NewServer(tc.store, tc.catalog, tc.opts...)
			if err == nil {
				svc.Close()
				t.Fatal("NewServer succeeded, want an error")
			}
		})
	}
}

func TestCreateOrder(t *testing.T) {
	e := newEnv(t, fastStep)

	// p-1001 costs 2450, p-1002 12900; the repeated line is summed.
	o := e.create(t, "cust-1", lines("p-1001", 2, "p-1002", 1, "p-1001", 3))

	if _, err := uuid.Parse(o.GetId()); err != nil {
		t.Errorf("order id %q is not a UUID: %v", o.GetId(), err)
	}
	if o.GetCustomerId() != "cust-1" {
		t.Errorf("customer = %q, want cust-1", o.GetCustomerId())
	}
	if o.GetStatus() != reserved {
		t.Errorf("status = %v, want RESERVED", o.GetStatus())
	}
	if o.GetReservationId() == "" {
		t.Error("order has no reservation id")
	}
	if want := int64(5*2450 + 12900); o.GetTotalCents() != want || o.GetCurrency() != "EUR" {
		t.Errorf("total = %d %s, want %d EUR", o.GetTotalCents(), o.GetCurrency(), want)
	}
	wantLines := []struct {
		product  string
		qty      int64
		unitCost int64
	}{{"p-1001", 2, 2450}, {"p-1002", 1, 12900}, {"p-1001", 3, 2450}}
	if len(o.GetLineItems()) != len(wantLines) {
		t.Fatalf("order has %d line items, want %d: %v",
			len(o.GetLineItems()), len(wantLines), o.GetLineItems())
	}
	for i, w := range wantLines {
		li := o.GetLineItems()[i]
		if li.GetProductId() != w.product || li.GetQuantity() != w.qty ||
			li.GetUnitPriceCents() != w.unitCost {
			t.Errorf("line %d = %v, want %s x%d at %d", i, li, w.product, w.qty, w.unitCost)
		}
	}
	if o.GetCreateTime() == nil || !o.GetCreateTime().AsTime().Equal(o.GetUpdateTime().AsTime()) {
		t.Errorf("create_time %v, update_time %v; want both set and equal",
			o.GetCreateTime(), o.GetUpdateTime())
	}

	if got := e.stock(t, "p-1001"); got != 495 {
		t.Errorf("catalog stock of p-1001 = %d, want 495", got)
	}
	if got := e.stock(t, "p-1002"); got != 39 {
		t.Errorf("catalog stock of p-1002 = %d, want 39", got)
	}

	other := e.create(t, "cust-1", lines("p-1001", 1))
	if other.GetId() == o.GetId() || other.GetReservationId() == o.GetReservationId() {
		t.Errorf("second order reuses id %q or reservation %q", o.GetId(), o.GetReservationId())
	}
}

func TestCreateOrderRefused(t *testing.T) {
	e := newEnv(t, fastStep)

	tests := []struct {
		name       string
		customer   string
		items      []*ordersv1.LineItem
		wantCode   codes.Code
		wantFields []string
	}{
		{name: "unknown product", customer: "c-1",
			items: lines("p-1001", 1, "p-9999", 1), wantCode: codes.NotFound},
		{name: "insufficient stock", customer: "c-1",
			items: lines("p-1001", 1, "p-1002", 41), wantCode: codes.FailedPrecondition},
		{name: "no line items", customer: "c-1",
			wantCode: codes.InvalidArgument, wantFields: []string{"line_items"}},
		{name: "zero quantity", customer: "c-1", items: lines("p-1001", 0),
			wantCode: codes.InvalidArgument, wantFields: []string{"line_items[0].quantity"}},
		{name: "bad product id on second line", customer: "c-1",
			items: lines("p-1001", 1, "P 1002", 1), wantCode: codes.InvalidArgument,
			wantFields: []string{"line_items[1].product_id"}},
		{name: "bad customer and quantity", customer: "-bad", items: lines("p-1001", 1001),
			wantCode:   codes.InvalidArgument,
			wantFields: []string{"customer_id", "line_items[0].quantity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.orders.CreateOrder(callCtx(t), &ordersv1.CreateOrderRequest{
				CustomerId: tc.customer,
				LineItems:  tc.items,
			})
			if err == nil {
				t.Fatalf("CreateOrder = %v, want %v", resp, tc.wantCode)
			}
			st := wantCode(t, err, tc.wantCode)
			if tc.wantFields != nil {
				got := violationFields(t, st)
				if !slices.Equal(got, tc.wantFields) {
					t.Errorf("violations on %v, want exactly %v", got, tc.wantFields)
				}
			}
		})
	}

	// Nothing refused may take stock or store an order.
	if got := e.stock(t, "p-1001"); got != 500 {
		t.Errorf("catalog stock of p-1001 = %d, want 500", got)
	}
	if got := e.stock(t, "p-1002"); got != 40 {
		t.Errorf("catalog stock of p-1002 = %d, want 40", got)
	}
	if n := e.orderCount(t); n != 0 {
		t.Errorf("%d orders stored, want 0", n)
	}
}

func TestCreateOrderCatalogUnreachable(t *testing.T) {
	e := newEnv(t, fastStep)
	e.create(t, "c-1", lines("p-1001", 1)) // the catalog connection is up
	e.stopCatalog()

	resp, err := e.orders.CreateOrder(callCtx(t), &ordersv1.CreateOrderRequest{
		CustomerId: "c-1",
		LineItems:  lines("p-1001", 1),
	})
	if err == nil {
		t.Fatalf("CreateOrder with catalog down = %v, want Unavailable", resp)
	}
	st := wantCode(t, err, codes.Unavailable)
	_, port, _ := net.SplitHostPort(e.catalogAddr)
	for _, leak := range []string{"127.0.0.1", ":" + port, "connection refused", "dial"} {
		if strings.Contains(st.Message(), leak) {
			t.Errorf("Unavailable message %q shows transport detail %q", st.Message(), leak)
		}
	}
	if n := e.orderCount(t); n != 1 {
		t.Errorf("%d orders stored, want only the first", n)
	}
}

// fakeCatalog answers ReserveStock with err, or with a fixed reservation.
type fakeCatalog struct {
	catalogv1.CatalogServiceClient // nil: other methods are not used

	err error

	mu   sync.Mutex
	reqs []*catalogv1.ReserveStockRequest
}

func (f *fakeCatalog) ReserveStock(
	_ context.Context,
	req *catalogv1.ReserveStockRequest,
	_ ...grpc.CallOption,
) (*catalogv1.ReserveStockResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()

	if f.err != nil {
		return nil, f.err
	}
	res := &catalogv1.ReserveStockResponse{ReservationId: "res-fake"}
	for _, it := range req.GetItems() {
		res.Items = append(res.Items, &catalogv1.ReservedItem{
			ProductId:      it.GetProductId(),
			Quantity:       it.GetQuantity(),
			UnitPriceCents: 100,
			Currency:       "CHF",
		})
	}

	return res, nil
}

func TestCreateOrderMapsCatalogErrors(t *testing.T) {
	const secret = "dial tcp 10.1.2.3:7001: connect: connection refused"

	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string // "" means: must not contain secret
	}{
		{name: "not found passes", err: status.Error(codes.NotFound, "no p-1"),
			wantCode: codes.NotFound, wantMsg: "no p-1"},
		{name: "failed precondition passes",
			err:      status.Error(codes.FailedPrecondition, "only 2 left"),
			wantCode: codes.FailedPrecondition, wantMsg: "only 2 left"},
		{name: "invalid argument passes", err: status.Error(codes.InvalidArgument, "bad"),
			wantCode: codes.InvalidArgument, wantMsg: "bad"},
		{name: "deadline", err: status.Error(codes.DeadlineExceeded, secret),
			wantCode: codes.DeadlineExceeded},
		{name: "canceled", err: status.Error(codes.Canceled, secret),
			wantCode: codes.Canceled},
		{name: "unavailable", err: status.Error(codes.Unavailable, secret),
			wantCode: codes.Unavailable},
		{name: "internal", err: status.Error(codes.Internal, secret),
			wantCode: codes.Unavailable},
		{name: "plain error", err: errors.New(secret), wantCode: codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeCatalog{err: tc.err}
			svc, err := orders.NewServer(orders.NewStore(), fake)
			if err != nil {
				t.Fatalf("NewServer: %v", err)
			}
			t.Cleanup(svc.Close)

			resp, err := svc.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{
				CustomerId: "c-1",
				LineItems:  lines("p-1", 1),
			})
			if err == nil {
				t.Fatalf("CreateOrder = %v, want %v", resp, tc.wantCode)
			}
			st := wantCode(t, err, tc.wantCode)
			if tc.wantMsg != "" && st.Message() != tc.wantMsg {
				t.Errorf("message = %q, want %q", st.Message(), tc.wantMsg)
			}
			if strings.Contains(st.Message(), "10.1.2.3") {
				t.Errorf("message %q shows the catalog's transport error", st.Message())
			}
			list, err := svc.ListOrders(t.Context(), &ordersv1.ListOrdersRequest{})
			if err != nil || len(list.GetOrders()) != 0 {
				t.Errorf("after a failed reservation ListOrders = %v, %v; want none",
					list.GetOrders(), err)
			}
		})
	}
}

func TestCreateOrderReservesUnderOrderID(t *testing.T) {
	fake := &fakeCatalog{}
	svc, err := orders.NewServer(orders.NewStore(), fake)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(svc.Close)

	resp, err := svc.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{
		CustomerId: "c-1",
		LineItems:  lines("p-1", 2, "p-2", 3),
	})
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.reqs) != 1 {
		t.Fatalf("ReserveStock called %d times, want 1", len(fake.reqs))
	}
	req := fake.reqs[0]
	if req.GetOrderId() != resp.GetOrder().GetId() {
		t.Errorf("reserved under order id %q, order has id %q",
			req.GetOrderId(), resp.GetOrder().GetId())
	}
	var got []string
	for _, it := range req.GetItems() {
		got = append(got, fmt.Sprintf("%s x%d", it.GetProductId(), it.GetQuantity()))
	}
	if want := []string{"p-1 x2", "p-2 x3"}; !slices.Equal(got, want) {
		t.Errorf("reserved %v, want %v", got, want)
	}
	o := resp.GetOrder()
	if o.GetTotalCents() != 500 || o.GetCurrency() != "CHF" ||
		o.GetReservationId() != "res-fake" {
		t.Errorf("order = %v, want total 500 CHF under res-fake", o)
	}
}

func TestGetOrder(t *testing.T) {
	e := newEnv(t, fastStep)
	created := e.create(t, "cust-9", lines("p-1003", 2))

	unknown := uuid.NewString()
	tests := []struct {
		name       string
		id         string
		wantCode   codes.Code
		wantFields []string
	}{
		{name: "found", id: created.GetId(), wantCode: codes.OK},
		{name: "not found", id: unknown, wantCode: codes.NotFound},
		{name: "not a uuid", id: "order-1", wantCode: codes.InvalidArgument,
			wantFields: []string{"id"}},
		{name: "empty", id: "", wantCode: codes.InvalidArgument, wantFields: []string{"id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.orders.GetOrder(callCtx(t), &ordersv1.GetOrderRequest{Id: tc.id})
			if tc.wantCode == codes.OK {
				if err != nil {
					t.Fatalf("GetOrder: %v", err)
				}
				o := resp.GetOrder()
				// Status may have moved on since; everything else is fixed.
				if o.GetId() != created.GetId() || o.GetCustomerId() != "cust-9" ||
					o.GetTotalCents() != 7800 || len(o.GetLineItems()) != 1 ||
					o.GetReservationId() != created.GetReservationId() {
					t.Errorf("GetOrder = %v, want %v", o, created)
				}
				return
			}
			st := wantCode(t, err, tc.wantCode)
			if tc.wantCode == codes.NotFound && !strings.Contains(st.Message(), tc.id) {
				t.Errorf("NotFound message %q does not name %q", st.Message(), tc.id)
			}
			if tc.wantFields != nil {
				if got := violationFields(t, st); !slices.Equal(got, tc.wantFields) {
					t.Errorf("violations on %v, want exactly %v", got, tc.wantFields)
				}
			}
		})
	}
}

func TestListOrders(t *testing.T) {
	e := newEnv(t, fastStep)

	// Creation order a1 b1 a2 a3 b2; names map to the ids the service made.
	name := map[string]string{}
	for _, o := range []struct{ name, customer string }{
		{"a1", "alice"}, {"b1", "bob"}, {"a2", "alice"}, {"a3", "alice"}, {"b2", "bob"},
	} {
		created := e.create(t, o.customer, lines("p-1004", 1))
		name[created.GetId()] = o.name
	}

	tests := []struct {
		name      string
		customer  string
		size      int32
		wantPages [][]string
	}{
		{name: "all in pages of 2", size: 2,
			wantPages: [][]string{{"b2", "a3"}, {"a2", "b1"}, {"a1"}}},
		{name: "all default size", size: 0,
			wantPages: [][]string{{"b2", "a3", "a2", "b1", "a1"}}},
		{name: "all in pages of 5", size: 5,
			wantPages: [][]string{{"b2", "a3", "a2", "b1", "a1"}}},
		{name: "alice in pages of 2", customer: "alice", size: 2,
			wantPages: [][]string{{"a3", "a2"}, {"a1"}}},
		{name: "bob fills one page exactly", customer: "bob", size: 2,
			wantPages: [][]string{{"b2", "b1"}}},
		{name: "bob one by one", customer: "bob", size: 1,
			wantPages: [][]string{{"b2"}, {"b1"}}},
		{name: "nobody", customer: "carol", size: 2, wantPages: [][]string{nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pages [][]string
			token := ""
			for {
				if len(pages) > len(tc.wantPages) {
					t.Fatalf("more pages than the %d expected: %v", len(tc.wantPages), pages)
				}
				resp, err := e.orders.ListOrders(callCtx(t), &ordersv1.ListOrdersRequest{
					PageSize:   tc.size,
					PageToken:  token,
					CustomerId: tc.customer,
				})
				if err != nil {
					t.Fatalf("ListOrders page %d: %v", len(pages)+1, err)
				}
				var page []string
				for _, o := range resp.GetOrders() {
					page = append(page, name[o.GetId()])
				}
				pages = append(pages, page)
				token = resp.GetNextPageToken()
				if token == "" {
					break
				}
			}
			if !slices.EqualFunc(pages, tc.wantPages, slices.Equal) {
				t.Errorf("pages = %v, want %v", pages, tc.wantPages)
			}
		})
	}
}

func TestListOrdersInvalid(t *testing.T) {
	e := newEnv(t, fastStep)
	e.create(t, "alice", lines("p-1004", 1))

	tests := []struct {
		name       string
		req        *ordersv1.ListOrdersRequest
		wantFields []string // nil: no BadRequest detail expected
	}{
		{name: "garbage token", req: &ordersv1.ListOrdersRequest{PageToken: "***"}},
		{name: "token of unknown order",
			req: &ordersv1.ListOrdersRequest{PageToken: pagetoken.Encode(uuid.NewString())}},
		{name: "page size 101", req: &ordersv1.ListOrdersRequest{PageSize: 101},
			wantFields: []string{"page_size"}},
		{name: "customer id too long",
			req:        &ordersv1.ListOrdersRequest{CustomerId: strings.Repeat("c", 65)},
			wantFields: []string{"customer_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.orders.ListOrders(callCtx(t), tc.req)
			if err == nil {
				t.Fatalf("ListOrders(%v) = %v, want InvalidArgument", tc.req, resp)
			}
			st := wantCode(t, err, codes.InvalidArgument)
			if tc.wantFields == nil {
				if !strings.Contains(st.Message(), "page_token") {
					t.Errorf("message %q does not name page_token", st.Message())
				}
				return
			}
			if got := violationFields(t, st); !slices.Equal(got, tc.wantFields) {
				t.Errorf("violations on %v, want exactly %v", got, tc.wantFields)
			}
		})
	}
}

// watchAll reads a WatchOrder stream to its end and returns the statuses
// seen. It returns an error unless the stream ends with io.EOF after
// messages about order id only, with update times that never go back. It
// does not touch t, so it can run on any goroutine.
func watchAll(
	stream grpc.ServerStreamingClient[ordersv1.WatchOrderResponse],
	id string,
) ([]ordersv1.OrderStatus, error) {
	var (
		seen []ordersv1.OrderStatus
		last time.Time
	)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return seen, nil
		}
		if err != nil {
			return seen, fmt.Errorf("recv after %v: %w", seen, err)
		}
		o := resp.GetOrder()
		if o.GetId() != id {
			return seen, fmt.Errorf("watch of %s sent order %s", id, o.GetId())
		}
		ut := o.GetUpdateTime().AsTime()
		if ut.Before(last) {
			return seen, fmt.Errorf("update_time went back from %v to %v", last, ut)
		}
		last = ut
		seen = append(seen, o.GetStatus())
		if len(seen) > 10 {
			return seen, fmt.Errorf("stream does not end: %v", seen)
		}
	}
}

func (e *env) watch(
	t *testing.T,
	id string,
) grpc.ServerStreamingClient[ordersv1.WatchOrderResponse] {
	t.Helper()

	s, err := e.orders.WatchOrder(callCtx(t), &ordersv1.WatchOrderRequest{Id: id})
	if err != nil {
		t.Fatalf("WatchOrder(%s): %v", id, err)
	}

	return s
}

func TestWatchOrder(t *testing.T) {
	// Each status lasts at least this long, which is the time a watcher has
	// to open its stream before it could miss RESERVED.
	e := newEnv(t, 50*time.Millisecond)
	o := e.create(t, "watcher", lines("p-1006", 1))

	const watchers = 3
	streams := make([]grpc.ServerStreamingClient[ordersv1.WatchOrderResponse], watchers)
	for i := range streams {
		streams[i] = e.watch(t, o.GetId())
	}

	want := []ordersv1.OrderStatus{reserved, confirmed, shipped, delivered}
	results := make([][]ordersv1.OrderStatus, watchers)
	errs := make([]error, watchers)
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Go(func() { results[i], errs[i] = watchAll(s, o.GetId()) })
	}
	wg.Wait()
	for i, got := range results {
		if errs[i] != nil {
			t.Errorf("watcher %d: %v", i, errs[i])
		}
		if !slices.Equal(got, want) {
			t.Errorf("watcher %d saw %v, want %v", i, got, want)
		}
	}

	resp, err := e.orders.GetOrder(callCtx(t), &ordersv1.GetOrderRequest{Id: o.GetId()})
	if err != nil {
		t.Fatalf("GetOrder: %v", err)
	}
	if resp.GetOrder().GetStatus() != delivered {
		t.Errorf("GetOrder after the watch ended = %v, want DELIVERED",
			resp.GetOrder().GetStatus())
	}
}

func TestWatchDeliveredOrder(t *testing.T) {
	e := newEnv(t, fastStep)
	o := e.create(t, "late", lines("p-1006", 1))

	// The first watch ends once the order is delivered.
	seen, err := watchAll(e.watch(t, o.GetId()), o.GetId())
	if err != nil {
		t.Fatalf("first watch: %v", err)
	}
	if len(seen) == 0 || seen[len(seen)-1] != delivered {
		t.Fatalf("first watch saw %v, want it to end with DELIVERED", seen)
	}

	// A watch of a delivered order sends it once and ends.
	got, err := watchAll(e.watch(t, o.GetId()), o.GetId())
	if err != nil {
		t.Fatalf("second watch: %v", err)
	}
	if !slices.Equal(got, []ordersv1.OrderStatus{delivered}) {
		t.Errorf("watch of a delivered order saw %v, want [DELIVERED]", got)
	}
}

func TestWatchOrderRefused(t *testing.T) {
	e := newEnv(t, fastStep)

	tests := []struct {
		name       string
		id         string
		wantCode   codes.Code
		wantFields []string
	}{
		{name: "unknown order", id: uuid.NewString(), wantCode: codes.NotFound},
		{name: "not a uuid", id: "nope", wantCode: codes.InvalidArgument,
			wantFields: []string{"id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := e.orders.WatchOrder(callCtx(t), &ordersv1.WatchOrderRequest{Id: tc.id})
			if err == nil {
				var resp *ordersv1.WatchOrderResponse
				resp, err = s.Recv()
				if err == nil {
					t.Fatalf("WatchOrder(%q) sent %v, want %v", tc.id, resp, tc.wantCode)
				}
			}
			st := wantCode(t, err, tc.wantCode)
			if tc.wantFields != nil {
				if got := violationFields(t, st); !slices.Equal(got, tc.wantFields) {
					t.Errorf("violations on %v, want exactly %v", got, tc.wantFields)
				}
			}
		})
	}
}

func TestCloseEndsWatchesAndIsIdempotent(t *testing.T) {
	// A step of an hour: nothing moves during the test.
	e := newEnv(t, time.Hour)
	o := e.create(t, "closer", lines("p-1007", 1))

	s := e.watch(t, o.GetId())
	first, err := s.Recv()
	if err != nil {
		t.Fatalf("first Recv: %v", err)
	}
	if first.GetOrder().GetStatus() != reserved {
		t.Fatalf("first status = %v, want RESERVED", first.GetOrder().GetStatus())
	}

	closed := make(chan struct{})
	go func() {
		e.svc.Close()
		e.svc.Close() // a second Close must return as well
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s")
	}

	resp, err := s.Recv()
	if err == nil {
		t.Fatalf("Recv after Close = %v, want Unavailable", resp)
	}
	wantCode(t, err, codes.Unavailable)
}
