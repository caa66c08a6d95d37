package orders_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/services/orders"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	reserved  = ordersv1.OrderStatus_ORDER_STATUS_RESERVED
	confirmed = ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED
	shipped   = ordersv1.OrderStatus_ORDER_STATUS_SHIPPED
	delivered = ordersv1.OrderStatus_ORDER_STATUS_DELIVERED
)

func addOrder(t *testing.T, s *orders.Store, id, customer string, updated time.Time) {
	t.Helper()

	err := s.Add(&ordersv1.Order{
		Id:         id,
		CustomerId: customer,
		Status:     reserved,
		CreateTime: timestamppb.New(updated),
		UpdateTime: timestamppb.New(updated),
	})
	if err != nil {
		t.Fatalf("Add(%q): %v", id, err)
	}
}

func TestStoreAddGet(t *testing.T) {
	s := orders.NewStore()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	addOrder(t, s, "o-1", "alice", t0)

	if err := s.Add(&ordersv1.Order{Id: "o-1", CustomerId: "mallory"}); err == nil {
		t.Fatal("Add with a used id succeeded")
	}

	o, changed, err := s.Get("o-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if o.GetCustomerId() != "alice" || o.GetStatus() != reserved {
		t.Errorf("Get = %v; the duplicate Add changed the stored order?", o)
	}
	if changed == nil {
		t.Error("Get returned a nil change channel")
	}

	// Callers get copies.
	o.CustomerId = "changed"
	again, _, err := s.Get("o-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if again.GetCustomerId() != "alice" {
		t.Errorf("stored order changed through a returned copy: %v", again)
	}

	if o, _, err := s.Get("o-2"); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, %v; want ErrNotFound", o, err)
	}
}

func TestStoreList(t *testing.T) {
	s := orders.NewStore()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// Creation order: a1 b1 a2 a3 b2.
	for i, o := range []struct{ id, customer string }{
		{"a1", "alice"}, {"b1", "bob"}, {"a2", "alice"}, {"a3", "alice"}, {"b2", "bob"},
	} {
		addOrder(t, s, o.id, o.customer, t0.Add(time.Duration(i)*time.Second))
	}

	tests := []struct {
		name     string
		after    string
		customer string
		limit    int
		wantIDs  []string
		wantMore bool
		wantErr  error
	}{
		{name: "newest first", limit: 10, wantIDs: []string{"b2", "a3", "a2", "b1", "a1"}},
		{name: "first page", limit: 2, wantIDs: []string{"b2", "a3"}, wantMore: true},
		{name: "middle page", after: "a3", limit: 2, wantIDs: []string{"a2", "b1"},
			wantMore: true},
		{name: "last page", after: "b1", limit: 2, wantIDs: []string{"a1"}},
		{name: "after oldest", after: "a1", limit: 2, wantIDs: nil},
		{name: "customer", customer: "alice", limit: 2, wantIDs: []string{"a3", "a2"},
			wantMore: true},
		{name: "customer after other's order", after: "b2", customer: "alice", limit: 5,
			wantIDs: []string{"a3", "a2", "a1"}},
		{name: "customer page exactly full", customer: "bob", limit: 2,
			wantIDs: []string{"b2", "b1"}},
		{name: "unknown customer", customer: "carol", limit: 2, wantIDs: nil},
		{name: "unknown after", after: "zz", limit: 2, wantErr: orders.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list, more, err := s.List(tc.after, tc.customer, tc.limit)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("List error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var ids []string
			for _, o := range list {
				ids = append(ids, o.GetId())
			}
			if !slices.Equal(ids, tc.wantIDs) || more != tc.wantMore {
				t.Errorf("List(%q, %q, %d) = %v more=%t; want %v more=%t",
					tc.after, tc.customer, tc.limit, ids, more, tc.wantIDs, tc.wantMore)
			}
		})
	}
}

func TestStoreAdvance(t *testing.T) {
	s := orders.NewStore()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	addOrder(t, s, "o-1", "alice", t0)
	addOrder(t, s, "o-2", "bob", t0.Add(time.Minute))

	_, changed, err := s.Get("o-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}

	// Nothing is due before t0.
	if n := s.Advance(t0.Add(time.Hour), t0.Add(-time.Millisecond)); n != 0 {
		t.Fatalf("Advance with nothing due moved %d orders", n)
	}
	select {
	case <-changed:
		t.Fatal("change channel closed although nothing moved")
	default:
	}

	// o-1 (updated at t0) is due at t0; o-2 is not.
	now := t0.Add(2 * time.Hour)
	if n := s.Advance(now, t0); n != 1 {
		t.Fatalf("Advance moved %d orders, want 1", n)
	}
	select {
	case <-changed:
	default:
		t.Fatal("change channel not closed after the order moved")
	}
	o1, _, _ := s.Get("o-1")
	o2, _, _ := s.Get("o-2")
	if o1.GetStatus() != confirmed || !o1.GetUpdateTime().AsTime().Equal(now) {
		t.Errorf("o-1 = %v at %v, want CONFIRMED at %v",
			o1.GetStatus(), o1.GetUpdateTime().AsTime(), now)
	}
	if !o1.GetCreateTime().AsTime().Equal(t0) {
		t.Errorf("Advance changed create_time to %v", o1.GetCreateTime().AsTime())
	}
	if o2.GetStatus() != reserved {
		t.Errorf("o-2 = %v, want RESERVED (not due)", o2.GetStatus())
	}

	// Walk o-1 to the end: SHIPPED, DELIVERED, then it stays.
	want := []ordersv1.OrderStatus{shipped, delivered, delivered}
	for i, st := range want {
		now = now.Add(time.Hour)
		s.Advance(now, now)
		o, _, _ := s.Get("o-1")
		if o.GetStatus() != st {
			t.Fatalf("step %d: o-1 = %v, want %v", i, o.GetStatus(), st)
		}
	}
	_, changed, _ = s.Get("o-1")
	o, _, _ := s.Get("o-2")
	if o.GetStatus() != delivered {
		t.Fatalf("o-2 = %v after three due steps, want DELIVERED", o.GetStatus())
	}
	if n := s.Advance(now.Add(time.Hour), now.Add(time.Hour)); n != 0 {
		t.Errorf("Advance moved %d delivered orders", n)
	}
	select {
	case <-changed:
		t.Error("delivered order's change channel closed again")
	default:
	}
}
