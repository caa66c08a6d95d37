package orders

import (
	"errors"
	"fmt"
	"sync"
	"time"

	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrNotFound means no order has the given id.
var ErrNotFound = errors.New("order not found")

// Store keeps orders in memory and tells watchers about changes. It is safe
// for concurrent use; callers get copies, never stored messages.
type Store struct {
	mu sync.Mutex
	// orders by id, and ids in creation order (oldest first).
	orders map[string]*storedOrder
	ids    []string
}

type storedOrder struct {
	order *ordersv1.Order
	// changed is closed and replaced on every update, waking all watchers.
	changed chan struct{}
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{orders: make(map[string]*storedOrder)}
}

// Add stores a copy of o, whose id must be new.
func (s *Store) Add(o *ordersv1.Order) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if _, ok := s.orders[o.GetId()]; ok {
		return fmt.Errorf("add order %q: id already used", o.GetId())
	}
	s.orders[o.GetId()] = &storedOrder{order: proto.CloneOf(o), changed: make(chan struct{})}
	s.ids = append(s.ids, o.GetId())

	return nil
}

// Get returns a copy of the order and a channel closed at its next change.
func (s *Store) Get(id string) (*ordersv1.Order, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	so, ok := s.orders[id]
	if !ok {
		return nil, nil, fmt.Errorf("get order %q: %w", id, ErrNotFound)
	}

	return proto.CloneOf(so.order), so.changed, nil
}

// List returns up to limit orders, newest first, starting after the order
// with id "after" (empty for the first page), keeping only customerID's
// orders when it is set. It reports whether more follow.
func (s *Store) List(after, customerID string, limit int) ([]*ordersv1.Order, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	i := len(s.ids) - 1
	if after != "" {
		if _, ok := s.orders[after]; !ok {
			return nil, false, fmt.Errorf("list after %q: %w", after, ErrNotFound)
		}
		for i >= 0 && s.ids[i] != after {
			i--
		}
		i--
	}

	var out []*ordersv1.Order
	for ; i >= 0; i-- {
		o := s.orders[s.ids[i]].order
		if customerID != "" && o.GetCustomerId() != customerID {
			continue
		}
		if len(out) == limit {
			return out, true, nil
		}
		out = append(out, proto.CloneOf(o))
	}

	return out, false, nil
}

// Advance moves every order that is not final one status forward, if it was
// last updated at or before due. It returns how many orders moved.
func (s *Store) Advance(now, due time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()

	moved := 0
	for _, so := range s.orders {
		o := so.order
		if isFinal(o.GetStatus()) || o.GetUpdateTime().AsTime().After(due) {
			continue
		}
		o.Status = nextStatus(o.GetStatus())
		o.UpdateTime = timestamppb.New(now)
		close(so.changed)
		so.changed = make(chan struct{})
		moved++
	}

	return moved
}

func isFinal(st ordersv1.OrderStatus) bool {
	return st == ordersv1.OrderStatus_ORDER_STATUS_DELIVERED
}

func nextStatus(st ordersv1.OrderStatus) ordersv1.OrderStatus {
	switch st {
	case ordersv1.OrderStatus_ORDER_STATUS_RESERVED:
		return ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED
	case ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED:
		return ordersv1.OrderStatus_ORDER_STATUS_SHIPPED
	default:
		return ordersv1.OrderStatus_ORDER_STATUS_DELIVERED
	}
}
