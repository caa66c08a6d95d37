package catalog

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"google.golang.org/protobuf/proto"
)

// Sentinel errors returned by Store; the gRPC layer maps them to codes.
var (
	// ErrNotFound means no product has the given id.
	ErrNotFound = errors.New("product not found")
	// ErrInsufficientStock means a reservation asked for more than is left.
	ErrInsufficientStock = errors.New("insufficient stock")
	// ErrInvalidQuantity means a reservation line asked for no units or fewer.
	ErrInvalidQuantity = errors.New("quantity must be positive")
)

// Store is an in-memory product catalog with stock. It is safe for
// concurrent use; every method works on copies, never on stored messages.
type Store struct {
	mu           sync.Mutex
	products     map[string]*catalogv1.Product
	ids          []string // sorted, for stable paging
	reservations map[string]*catalogv1.ReserveStockResponse
	nextResID    int
}

// NewStore returns a Store holding copies of products. Product ids must be
// unique and non-empty.
func NewStore(products []*catalogv1.Product) (*Store, error) {
	s := &Store{
		products:     make(map[string]*catalogv1.Product, len(products)),
		reservations: make(map[string]*catalogv1.ReserveStockResponse),
	}

	for _, p := range products {
		if p.GetId() == "" {
			return nil, errors.New("catalog: product with empty id")
		}
		if _, dup := s.products[p.GetId()]; dup {
			return nil, fmt.Errorf("catalog: duplicate product id %q", p.GetId())
		}
		s.products[p.GetId()] = proto.CloneOf(p)
		s.ids = append(s.ids, p.GetId())
	}
	sort.Strings(s.ids)

	return s, nil
}

// Get returns a copy of the product with the given id, or ErrNotFound.
func (s *Store) Get(id string) (*catalogv1.Product, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	p, ok := s.products[id]
	if !ok {
		return nil, fmt.Errorf("get product %q: %w", id, ErrNotFound)
	}

	return proto.CloneOf(p), nil
}

// List returns up to limit products whose id sorts after the id "after"
// (empty for the first page), and whether more follow.
func (s *Store) List(after string, limit int) ([]*catalogv1.Product, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()

	limit = max(limit, 0)
	start := sort.SearchStrings(s.ids, after)
	if start < len(s.ids) && s.ids[start] == after {
		start++
	}

	end := min(start+limit, len(s.ids))
	out := make([]*catalogv1.Product, 0, end-start)
	for _, id := range s.ids[start:end] {
		out = append(out, proto.CloneOf(s.products[id]))
	}

	return out, end < len(s.ids)
}

// Reserve takes stock for every item, all or nothing. A second call with the
// same orderID returns the first reservation and takes nothing.
func (s *Store) Reserve(
	orderID string,
	items []*catalogv1.StockItem,
) (*catalogv1.ReserveStockResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if prev, ok := s.reservations[orderID]; ok {
		return proto.CloneOf(prev), nil
	}

	// Sum per product first so repeated lines cannot overdraw stock.
	want := make(map[string]int64, len(items))
	for _, it := range items {
		if it.GetQuantity() <= 0 {
			return nil, fmt.Errorf("reserve %d of %q: %w",
				it.GetQuantity(), it.GetProductId(), ErrInvalidQuantity)
		}
		p, ok := s.products[it.GetProductId()]
		if !ok {
			return nil, fmt.Errorf("reserve %q: %w", it.GetProductId(), ErrNotFound)
		}
		want[p.GetId()] += it.GetQuantity()
		if want[p.GetId()] > p.GetStock() {
			return nil, fmt.Errorf("reserve %d of %q (%d left): %w",
				want[p.GetId()], p.GetId(), p.GetStock(), ErrInsufficientStock)
		}
	}

	s.nextResID++
	res := &catalogv1.ReserveStockResponse{ReservationId: fmt.Sprintf("res-%06d", s.nextResID)}
	for _, it := range items {
		p := s.products[it.GetProductId()]
		p.Stock -= it.GetQuantity()
		res.Items = append(res.Items, &catalogv1.ReservedItem{
			ProductId:      p.GetId(),
			Quantity:       it.GetQuantity(),
			UnitPriceCents: p.GetPriceCents(),
			Currency:       p.GetCurrency(),
		})
	}
	s.reservations[orderID] = res

	return proto.CloneOf(res), nil
}

// SampleProducts returns the products a catalog instance is seeded with when
// it runs as a demo.
func SampleProducts() []*catalogv1.Product {
	return []*catalogv1.Product{
		{Id: "p-1001", Name: "Espresso beans 1 kg", Description: "Dark roast, whole bean",
			PriceCents: 2450, Currency: "EUR", Stock: 500},
		{Id: "p-1002", Name: "Burr grinder", Description: "Conical steel burrs, 40 settings",
			PriceCents: 12900, Currency: "EUR", Stock: 40},
		{Id: "p-1003", Name: "Pour-over kettle", Description: "Gooseneck, 1 l, stovetop",
			PriceCents: 3900, Currency: "EUR", Stock: 120},
		{Id: "p-1004", Name: "Paper filters (100)", Description: "Size 02, unbleached",
			PriceCents: 650, Currency: "EUR", Stock: 2000},
		{Id: "p-1005", Name: "Milk jug 600 ml", Description: "Stainless steel",
			PriceCents: 1890, Currency: "EUR", Stock: 75},
		{Id: "p-1006", Name: "Tamper 58 mm", Description: "Flat base, walnut handle",
			PriceCents: 3400, Currency: "EUR", Stock: 60},
		{Id: "p-1007", Name: "Scale 0.1 g", Description: "With timer",
			PriceCents: 4500, Currency: "EUR", Stock: 90},
		{Id: "p-1008", Name: "Cleaning tablets", Description: "For espresso machines, 60 pcs",
			PriceCents: 1200, Currency: "EUR", Stock: 300},
	}
}
