package catalog_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"google.golang.org/protobuf/proto"
)

// newStore returns a Store seeded with products, failing the test on error.
func newStore(t *testing.T, products []*catalogv1.Product) *catalog.Store {
	t.Helper()

	s, err := catalog.NewStore(products)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}

	return s
}

// stockOf returns the current stock of product id.
func stockOf(t *testing.T, s *catalog.Store, id string) int64 {
	t.Helper()

	p, err := s.Get(id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}

	return p.GetStock()
}

func items(pairs ...any) []*catalogv1.StockItem {
	var out []*catalogv1.StockItem
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &catalogv1.StockItem{
			ProductId: pairs[i].(string),
			Quantity:  int64(pairs[i+1].(int)),
		})
	}

	return out
}

func sampleIDs() []string {
	var ids []string
	for _, p := range catalog.SampleProducts() {
		ids = append(ids, p.GetId())
	}
	slices.Sort(ids)

	return ids
}

func TestNewStoreRejectsBadIDs(t *testing.T) {
	tests := []struct {
		name     string
		products []*catalogv1.Product
	}{
		{name: "empty id", products: []*catalogv1.Product{{Id: "p-1"}, {Id: ""}}},
		{name: "duplicate id",
			products: []*catalogv1.Product{{Id: "p-1"}, {Id: "p-2"}, {Id: "p-1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := catalog.NewStore(tc.products)
			if err == nil {
				t.Fatalf("NewStore(%v) = %v, nil; want an error", tc.products, s)
			}
		})
	}
}

func TestStoreGet(t *testing.T) {
	s := newStore(t, catalog.SampleProducts())

	tests := []struct {
		name     string
		id       string
		wantName string
		wantErr  error
	}{
		{name: "found", id: "p-1002", wantName: "Burr grinder"},
		{name: "found last", id: "p-1008", wantName: "Cleaning tablets"},
		{name: "not found", id: "p-9999", wantErr: catalog.ErrNotFound},
		{name: "empty id", id: "", wantErr: catalog.ErrNotFound},
		{name: "case matters", id: "P-1002", wantErr: catalog.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.Get(tc.id)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Get(%q) = %v, %v; want error %v", tc.id, p, err, tc.wantErr)
				}
				if p != nil {
					t.Errorf("Get(%q) returned product %v along with its error", tc.id, p)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q): %v", tc.id, err)
			}
			if p.GetId() != tc.id || p.GetName() != tc.wantName {
				t.Errorf("Get(%q) = id %q name %q, want name %q",
					tc.id, p.GetId(), p.GetName(), tc.wantName)
			}
		})
	}
}

func TestStoreWorksOnCopies(t *testing.T) {
	seed := []*catalogv1.Product{{Id: "p-1", Name: "One", Stock: 5, PriceCents: 100}}
	s := newStore(t, seed)

	// Changing the seed slice after NewStore must not reach the store.
	seed[0].Stock = 999
	seed[0].Name = "changed seed"

	got, err := s.Get("p-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.GetStock() != 5 || got.GetName() != "One" {
		t.Fatalf("store follows the seed slice: got %v", got)
	}

	// Changing a returned product must not reach the store either.
	got.Stock = 0
	got.Name = "changed copy"
	listed, _ := s.List("", 10)
	listed[0].Stock = 0

	again, err := s.Get("p-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if again.GetStock() != 5 || again.GetName() != "One" {
		t.Errorf("store shares messages with callers: got %v", again)
	}
}

func TestStoreListPaging(t *testing.T) {
	// Seed out of order: List must page in id order regardless.
	products := catalog.SampleProducts()
	slices.Reverse(products)
	products[2], products[5] = products[5], products[2]
	s := newStore(t, products)
	want := sampleIDs()

	for _, size := range []int{1, 2, 3, 7, 8, 9, 100} {
		t.Run(fmt.Sprintf("size %d", size), func(t *testing.T) {
			var got []string
			after := ""
			for page := 1; ; page++ {
				if page > len(want)+1 {
					t.Fatalf("more than %d pages: paging does not end", len(want)+1)
				}
				list, more := s.List(after, size)
				if len(list) > size {
					t.Fatalf("page %d has %d products, limit %d", page, len(list), size)
				}
				for _, p := range list {
					got = append(got, p.GetId())
				}
				if !more {
					break
				}
				if len(list) != size {
					t.Fatalf("page %d has %d products and more follow; want a full page of %d",
						page, len(list), size)
				}
				after = list[len(list)-1].GetId()
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages of %d gave %v, want each product once in id order %v",
					size, got, want)
			}
		})
	}
}

func TestStoreListAfter(t *testing.T) {
	s := newStore(t, catalog.SampleProducts())

	tests := []struct {
		name     string
		after    string
		limit    int
		wantIDs  []string
		wantMore bool
	}{
		{name: "first page", after: "", limit: 2,
			wantIDs: []string{"p-1001", "p-1002"}, wantMore: true},
		{name: "after existing id", after: "p-1003", limit: 2,
			wantIDs: []string{"p-1004", "p-1005"}, wantMore: true},
		{name: "after removed or unknown id", after: "p-1003a", limit: 2,
			wantIDs: []string{"p-1004", "p-1005"}, wantMore: true},
		{name: "exactly the rest", after: "p-1006", limit: 2,
			wantIDs: []string{"p-1007", "p-1008"}, wantMore: false},
		{name: "after last", after: "p-1008", limit: 5, wantIDs: nil, wantMore: false},
		{name: "after everything", after: "zzz", limit: 5, wantIDs: nil, wantMore: false},
		{name: "zero limit", after: "", limit: 0, wantIDs: nil, wantMore: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list, more := s.List(tc.after, tc.limit)
			var ids []string
			for _, p := range list {
				ids = append(ids, p.GetId())
			}
			if !slices.Equal(ids, tc.wantIDs) || more != tc.wantMore {
				t.Errorf("List(%q, %d) = %v, more=%t; want %v, more=%t",
					tc.after, tc.limit, ids, more, tc.wantIDs, tc.wantMore)
			}
		})
	}
}

func TestStoreReserve(t *testing.T) {
	products := []*catalogv1.Product{
		{Id: "p-a", PriceCents: 250, Currency: "EUR", Stock: 10},
		{Id: "p-b", PriceCents: 1999, Currency: "EUR", Stock: 3},
	}

	tests := []struct {
		name      string
		items     []*catalogv1.StockItem
		wantErr   error
		wantStock map[string]int64
	}{
		{
			name:      "takes every item",
			items:     items("p-a", 4, "p-b", 3),
			wantStock: map[string]int64{"p-a": 6, "p-b": 0},
		},
		{
			name:      "insufficient second item takes nothing",
			items:     items("p-a", 4, "p-b", 4),
			wantErr:   catalog.ErrInsufficientStock,
			wantStock: map[string]int64{"p-a": 10, "p-b": 3},
		},
		{
			name:      "unknown second item takes nothing",
			items:     items("p-a", 4, "p-zzz", 1),
			wantErr:   catalog.ErrNotFound,
			wantStock: map[string]int64{"p-a": 10, "p-b": 3},
		},
		{
			name:      "repeated lines are summed",
			items:     items("p-b", 2, "p-a", 1, "p-b", 1),
			wantStock: map[string]int64{"p-a": 9, "p-b": 0},
		},
		{
			name:      "repeated lines summed past stock take nothing",
			items:     items("p-a", 1, "p-b", 2, "p-b", 2),
			wantErr:   catalog.ErrInsufficientStock,
			wantStock: map[string]int64{"p-a": 10, "p-b": 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, products)

			res, err := s.Reserve("order-1", tc.items)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Reserve = %v, %v; want error %v", res, err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Reserve: %v", err)
			}
			for id, want := range tc.wantStock {
				if got := stockOf(t, s, id); got != want {
					t.Errorf("stock of %s = %d, want %d", id, got, want)
				}
			}
		})
	}
}

func TestStoreReserveResponse(t *testing.T) {
	s := newStore(t, []*catalogv1.Product{
		{Id: "p-a", PriceCents: 250, Currency: "EUR", Stock: 10},
		{Id: "p-b", PriceCents: 1999, Currency: "USD", Stock: 3},
	})

	res, err := s.Reserve("order-1", items("p-b", 2, "p-a", 5))
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if res.GetReservationId() == "" {
		t.Error("reservation has no id")
	}
	want := []*catalogv1.ReservedItem{
		{ProductId: "p-b", Quantity: 2, UnitPriceCents: 1999, Currency: "USD"},
		{ProductId: "p-a", Quantity: 5, UnitPriceCents: 250, Currency: "EUR"},
	}
	if len(res.GetItems()) != len(want) {
		t.Fatalf("reserved %d items, want %d: %v", len(res.GetItems()), len(want), res)
	}
	for i := range want {
		if !proto.Equal(res.GetItems()[i], want[i]) {
			t.Errorf("item %d = %v, want %v", i, res.GetItems()[i], want[i])
		}
	}

	other, err := s.Reserve("order-2", items("p-a", 1))
	if err != nil {
		t.Fatalf("Reserve order-2: %v", err)
	}
	if other.GetReservationId() == res.GetReservationId() {
		t.Errorf("two orders share reservation id %q", res.GetReservationId())
	}
}

func TestStoreReserveIsIdempotentByOrderID(t *testing.T) {
	s := newStore(t, []*catalogv1.Product{
		{Id: "p-a", PriceCents: 250, Currency: "EUR", Stock: 10},
	})

	first, err := s.Reserve("order-1", items("p-a", 4))
	if err != nil {
		t.Fatalf("first Reserve: %v", err)
	}

	// The retry carries other items on purpose: it must still take nothing
	// and answer with the first reservation.
	second, err := s.Reserve("order-1", items("p-a", 6))
	if err != nil {
		t.Fatalf("second Reserve: %v", err)
	}
	if !proto.Equal(first, second) {
		t.Errorf("retry answered %v, want the first reservation %v", second, first)
	}
	if got := stockOf(t, s, "p-a"); got != 6 {
		t.Errorf("stock after retry = %d, want 6 (taken once)", got)
	}

	// The returned reservation is a copy: changing it changes no later answer.
	second.ReservationId = "changed"
	third, err := s.Reserve("order-1", items("p-a", 4))
	if err != nil {
		t.Fatalf("third Reserve: %v", err)
	}
	if third.GetReservationId() != first.GetReservationId() {
		t.Errorf("stored reservation changed through a returned copy: %v", third)
	}
}

func TestStoreReserveFailureIsNotRemembered(t *testing.T) {
	s := newStore(t, []*catalogv1.Product{{Id: "p-a", Stock: 2}})

	_, err := s.Reserve("order-1", items("p-a", 3))
	if !errors.Is(err, catalog.ErrInsufficientStock) {
		t.Fatalf("Reserve 3 of 2: %v, want ErrInsufficientStock", err)
	}
	// A failed attempt must not block a corrected retry of the same order.
	if _, err := s.Reserve("order-1", items("p-a", 2)); err != nil {
		t.Fatalf("retry with 2 of 2: %v", err)
	}
	if got := stockOf(t, s, "p-a"); got != 0 {
		t.Errorf("stock = %d, want 0", got)
	}
}

func TestStoreReserveConcurrentNeverOversells(t *testing.T) {
	const (
		stockA     = 30
		stockB     = 50
		goroutines = 16
		perWorker  = 8
	)
	s := newStore(t, []*catalogv1.Product{
		{Id: "p-a", PriceCents: 100, Stock: stockA},
		{Id: "p-b", PriceCents: 100, Stock: stockB},
	})

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		succeeded int
		otherErrs []error
	)
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range perWorker {
				orderID := fmt.Sprintf("order-%d-%d", g, i)
				_, err := s.Reserve(orderID, items("p-a", 1, "p-b", 1))
				// Every worker also retries each order once: a retry
				// must never take stock again.
				_, retryErr := s.Reserve(orderID, items("p-a", 1, "p-b", 1))

				mu.Lock()
				switch {
				case err == nil:
					succeeded++
					if retryErr != nil {
						otherErrs = append(otherErrs, retryErr)
					}
				case !errors.Is(err, catalog.ErrInsufficientStock):
					otherErrs = append(otherErrs, err)
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()

	for _, err := range otherErrs {
		t.Errorf("unexpected error: %v", err)
	}
	// 128 orders compete for 30 units of p-a: exactly 30 can succeed, and
	// each success takes one of each product.
	if succeeded != stockA {
		t.Errorf("%d reservations succeeded, want %d", succeeded, stockA)
	}
	if got := stockOf(t, s, "p-a"); got != 0 {
		t.Errorf("p-a stock = %d, want 0", got)
	}
	if got := stockOf(t, s, "p-b"); got != stockB-stockA {
		t.Errorf("p-b stock = %d, want %d (no partial reservations)", got, stockB-stockA)
	}
}
