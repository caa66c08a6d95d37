package catalog_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/interceptors/validation"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/gatehouse-dev/gatehouse/services/pagetoken"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startServer serves a catalog over store on a real gRPC server on
// 127.0.0.1:0 with the validation interceptors, and returns a client of it.
// Server and connection are closed when the test ends.
func startServer(t *testing.T, store *catalog.Store) catalogv1.CatalogServiceClient {
	t.Helper()

	srv, err := catalog.NewServer(store)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
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
	catalogv1.RegisterCatalogServiceServer(gs, srv)

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	return catalogv1.NewCatalogServiceClient(conn)
}

func callCtx(t *testing.T) context.Context {
	t.Helper()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)

	return ctx
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
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		found = true
		for _, fv := range br.GetFieldViolations() {
			fields = append(fields, fv.GetField())
		}
	}
	if !found {
		t.Fatalf("status %v (%q) has no BadRequest detail", st.Code(), st.Message())
	}

	return fields
}

func TestServerGetProduct(t *testing.T) {
	client := startServer(t, newStore(t, catalog.SampleProducts()))

	tests := []struct {
		name       string
		id         string
		wantCode   codes.Code
		wantName   string
		wantPrice  int64
		wantFields []string
	}{
		{name: "found", id: "p-1003", wantCode: codes.OK, wantName: "Pour-over kettle",
			wantPrice: 3900},
		{name: "found other", id: "p-1007", wantCode: codes.OK, wantName: "Scale 0.1 g",
			wantPrice: 4500},
		{name: "not found", id: "p-9999", wantCode: codes.NotFound},
		{name: "bad characters", id: "P_1003!", wantCode: codes.InvalidArgument,
			wantFields: []string{"id"}},
		{name: "empty", id: "", wantCode: codes.InvalidArgument, wantFields: []string{"id"}},
		{name: "too long", id: strings.Repeat("p", 65), wantCode: codes.InvalidArgument,
			wantFields: []string{"id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.GetProduct(callCtx(t), &catalogv1.GetProductRequest{Id: tc.id})
			if tc.wantCode == codes.OK {
				if err != nil {
					t.Fatalf("GetProduct(%q): %v", tc.id, err)
				}
				p := resp.GetProduct()
				if p.GetId() != tc.id || p.GetName() != tc.wantName ||
					p.GetPriceCents() != tc.wantPrice || p.GetCurrency() != "EUR" {
					t.Errorf("GetProduct(%q) = %v, want name %q price %d EUR",
						tc.id, p, tc.wantName, tc.wantPrice)
				}
				return
			}

			st := wantCode(t, err, tc.wantCode)
			if tc.wantCode == codes.NotFound && !strings.Contains(st.Message(), tc.id) {
				t.Errorf("NotFound message %q does not name %q", st.Message(), tc.id)
			}
			if tc.wantFields != nil {
				got := violationFields(t, st)
				if !slices.Equal(got, tc.wantFields) {
					t.Errorf("violations on %v, want exactly %v", got, tc.wantFields)
				}
			}
		})
	}
}

func TestServerListProductsPaging(t *testing.T) {
	client := startServer(t, newStore(t, catalog.SampleProducts()))
	want := sampleIDs()

	for _, size := range []int32{0, 1, 3, 4, 8, 100} {
		t.Run(fmt.Sprintf("size %d", size), func(t *testing.T) {
			effective := int(size)
			if size == 0 {
				effective = 20 // the documented default
			}
			wantPages := (len(want) + effective - 1) / effective

			var got []string
			token := ""
			pages := 0
			for {
				pages++
				if pages > wantPages {
					t.Fatalf("more than %d pages for size %d", wantPages, size)
				}
				resp, err := client.ListProducts(callCtx(t), &catalogv1.ListProductsRequest{
					PageSize:  size,
					PageToken: token,
				})
				if err != nil {
					t.Fatalf("ListProducts page %d: %v", pages, err)
				}
				if n := len(resp.GetProducts()); n > effective || n == 0 {
					t.Fatalf("page %d has %d products, want 1..%d", pages, n, effective)
				}
				for _, p := range resp.GetProducts() {
					got = append(got, p.GetId())
				}
				token = resp.GetNextPageToken()
				if token == "" {
					break
				}
			}
			if pages != wantPages {
				t.Errorf("%d pages, want %d", pages, wantPages)
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages gave %v, want %v", got, want)
			}
		})
	}
}

func TestServerListProductsInvalid(t *testing.T) {
	client := startServer(t, newStore(t, catalog.SampleProducts()))

	tests := []struct {
		name       string
		req        *catalogv1.ListProductsRequest
		wantFields []string // nil: no BadRequest detail expected
	}{
		{name: "garbage page token", req: &catalogv1.ListProductsRequest{PageToken: "%%%garbage"}},
		{name: "base64 token without prefix",
			req: &catalogv1.ListProductsRequest{PageToken: "cC0xMDAx"}}, // "p-1001"
		{name: "page size 101", req: &catalogv1.ListProductsRequest{PageSize: 101},
			wantFields: []string{"page_size"}},
		{name: "negative page size", req: &catalogv1.ListProductsRequest{PageSize: -1},
			wantFields: []string{"page_size"}},
		{name: "page token too long",
			req:        &catalogv1.ListProductsRequest{PageToken: strings.Repeat("a", 257)},
			wantFields: []string{"page_token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.ListProducts(callCtx(t), tc.req)
			if err == nil {
				t.Fatalf("ListProducts(%v) = %v, want InvalidArgument", tc.req, resp)
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

func TestServerListProductsStableWithTokenOfServer(t *testing.T) {
	client := startServer(t, newStore(t, catalog.SampleProducts()))

	// A token made by pagetoken for any key is a valid cursor.
	resp, err := client.ListProducts(callCtx(t), &catalogv1.ListProductsRequest{
		PageSize:  2,
		PageToken: pagetoken.Encode("p-1006"),
	})
	if err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	var got []string
	for _, p := range resp.GetProducts() {
		got = append(got, p.GetId())
	}
	if !slices.Equal(got, []string{"p-1007", "p-1008"}) || resp.GetNextPageToken() != "" {
		t.Errorf("page after p-1006 = %v, next %q; want [p-1007 p-1008] and no next",
			got, resp.GetNextPageToken())
	}
}

func TestServerReserveStock(t *testing.T) {
	tests := []struct {
		name       string
		req        *catalogv1.ReserveStockRequest
		wantCode   codes.Code
		wantFields []string
		wantStock  map[string]int64
	}{
		{
			name: "reserved",
			req: &catalogv1.ReserveStockRequest{OrderId: "o-1",
				Items: items("p-1002", 40, "p-1001", 2)},
			wantCode:  codes.OK,
			wantStock: map[string]int64{"p-1002": 0, "p-1001": 498},
		},
		{
			name: "insufficient stock",
			req: &catalogv1.ReserveStockRequest{OrderId: "o-1",
				Items: items("p-1001", 2, "p-1002", 41)},
			wantCode:  codes.FailedPrecondition,
			wantStock: map[string]int64{"p-1002": 40, "p-1001": 500},
		},
		{
			name: "unknown product",
			req: &catalogv1.ReserveStockRequest{OrderId: "o-1",
				Items: items("p-1001", 2, "p-4242", 1)},
			wantCode:  codes.NotFound,
			wantStock: map[string]int64{"p-1001": 500},
		},
		{
			name:       "no items",
			req:        &catalogv1.ReserveStockRequest{OrderId: "o-1"},
			wantCode:   codes.InvalidArgument,
			wantFields: []string{"items"},
		},
		{
			name: "zero quantity and no order id",
			req: &catalogv1.ReserveStockRequest{
				Items: items("p-1001", 1, "p-1002", 0)},
			wantCode:   codes.InvalidArgument,
			wantFields: []string{"order_id", "items[1].quantity"},
			wantStock:  map[string]int64{"p-1001": 500, "p-1002": 40},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := newStore(t, catalog.SampleProducts())
			client := startServer(t, store)

			resp, err := client.ReserveStock(callCtx(t), tc.req)
			if tc.wantCode == codes.OK {
				if err != nil {
					t.Fatalf("ReserveStock: %v", err)
				}
				if resp.GetReservationId() == "" ||
					len(resp.GetItems()) != len(tc.req.GetItems()) {
					t.Errorf("ReserveStock = %v", resp)
				}
			} else {
				st := wantCode(t, err, tc.wantCode)
				if tc.wantFields != nil {
					got := violationFields(t, st)
					if !slices.Equal(got, tc.wantFields) {
						t.Errorf("violations on %v, want exactly %v", got, tc.wantFields)
					}
				}
			}
			for id, want := range tc.wantStock {
				if got := stockOf(t, store, id); got != want {
					t.Errorf("stock of %s = %d, want %d", id, got, want)
				}
			}
		})
	}
}

func TestServerReserveStockRetryIsIdempotent(t *testing.T) {
	store := newStore(t, catalog.SampleProducts())
	client := startServer(t, store)
	req := &catalogv1.ReserveStockRequest{OrderId: "o-7", Items: items("p-1005", 5)}

	first, err := client.ReserveStock(callCtx(t), req)
	if err != nil {
		t.Fatalf("first ReserveStock: %v", err)
	}
	second, err := client.ReserveStock(callCtx(t), req)
	if err != nil {
		t.Fatalf("retried ReserveStock: %v", err)
	}
	if first.GetReservationId() != second.GetReservationId() {
		t.Errorf("retry got reservation %q, want %q",
			second.GetReservationId(), first.GetReservationId())
	}
	if got := stockOf(t, store, "p-1005"); got != 70 {
		t.Errorf("stock of p-1005 = %d, want 70 (75 taken once)", got)
	}
}

func TestNewServerNilStore(t *testing.T) {
	srv, err := catalog.NewServer(nil)
	if err == nil {
		t.Fatalf("NewServer(nil) = %v, nil; want an error", srv)
	}
}
