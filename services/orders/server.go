// Package orders implements gatehouse.orders.v1.OrderService. CreateOrder
// reserves stock through the catalog's gRPC API before storing the order;
// a background loop then walks each order through fulfilment so WatchOrder
// has status changes to stream.
package orders

import (
	"context"
	"errors"
	"sync"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/services/pagetoken"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	defaultPageSize     = 20
	defaultStepInterval = 3 * time.Second
)

// Server is the gRPC OrderService. It is safe for concurrent use. It owns a
// fulfilment goroutine: call Close to stop it.
type Server struct {
	ordersv1.UnimplementedOrderServiceServer

	store   *Store
	catalog catalogv1.CatalogServiceClient
	logger  *zap.Logger
	step    time.Duration
	now     func() time.Time

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the server's logger.
func WithLogger(logger *zap.Logger) Option {
	return func(s *Server) {
		if logger != nil {
			s.logger = logger.Named("orders")
		}
	}
}

// WithStepInterval sets how long an order stays in each status before the
// fulfilment loop moves it on (default 3s).
func WithStepInterval(d time.Duration) Option {
	return func(s *Server) { s.step = d }
}

// NewServer returns an OrderService that stores orders in store and reserves
// stock through catalog. It starts the fulfilment loop.
func NewServer(
	store *Store,
	catalog catalogv1.CatalogServiceClient,
	opts ...Option,
) (*Server, error) {
	s := &Server{
		store:   store,
		catalog: catalog,
		logger:  zap.NewNop(),
		step:    defaultStepInterval,
		now:     time.Now,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, opt := range opts {
		opt(s)
	}

	switch {
	case store == nil:
		return nil, errors.New("orders: nil store")
	case catalog == nil:
		return nil, errors.New("orders: nil catalog client")
	case s.step <= 0:
		return nil, errors.New("orders: step interval must be positive")
	}

	go s.fulfil()

	return s, nil
}

// Close stops the fulfilment loop and waits for it. It is safe to call twice.
func (s *Server) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

func (s *Server) fulfil() {
	defer close(s.done)

	tick := time.NewTicker(s.step / 4)
	defer tick.Stop()

	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			now := s.now()
			s.store.Advance(now, now.Add(-s.step))
		}
	}
}

// CreateOrder implements OrderService.CreateOrder.
func (s *Server) CreateOrder(
	ctx context.Context,
	req *ordersv1.CreateOrderRequest,
) (*ordersv1.CreateOrderResponse, error) {
	id := uuid.NewString()

	items := make([]*catalogv1.StockItem, 0, len(req.GetLineItems()))
	for _, li := range req.GetLineItems() {
		items = append(items, &catalogv1.StockItem{
			ProductId: li.GetProductId(),
			Quantity:  li.GetQuantity(),
		})
	}

	res, err := s.catalog.ReserveStock(ctx, &catalogv1.ReserveStockRequest{
		OrderId: id,
		Items:   items,
	})
	if err != nil {
		return nil, s.reserveStatus(id, err)
	}

	now := timestamppb.New(s.now())
	order := &ordersv1.Order{
		Id:            id,
		CustomerId:    req.GetCustomerId(),
		Status:        ordersv1.OrderStatus_ORDER_STATUS_RESERVED,
		ReservationId: res.GetReservationId(),
		CreateTime:    now,
		UpdateTime:    now,
	}
	for _, ri := range res.GetItems() {
		order.LineItems = append(order.LineItems, &ordersv1.LineItem{
			ProductId:      ri.GetProductId(),
			Quantity:       ri.GetQuantity(),
			UnitPriceCents: ri.GetUnitPriceCents(),
		})
		order.TotalCents += ri.GetQuantity() * ri.GetUnitPriceCents()
		order.Currency = ri.GetCurrency()
	}

	if err := s.store.Add(order); err != nil {
		s.logger.Error("store order", zap.String("order_id", id), zap.Error(err))
		return nil, status.Error(codes.Internal, "order could not be stored")
	}

	s.logger.Info("order created", zap.String("order_id", id),
		zap.String("reservation_id", order.GetReservationId()),
		zap.Int64("total_cents", order.GetTotalCents()))

	return &ordersv1.CreateOrderResponse{Order: order}, nil
}

// reserveStatus passes on the catalog's answer where it concerns the
// caller's request, and hides transport detail behind Unavailable otherwise.
func (s *Server) reserveStatus(orderID string, err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.NotFound, codes.FailedPrecondition, codes.InvalidArgument:
		return status.Error(st.Code(), st.Message())
	case codes.DeadlineExceeded, codes.Canceled:
		return status.Error(st.Code(), "stock reservation did not finish in time")
	default:
		s.logger.Warn("reserve stock failed", zap.String("order_id", orderID),
			zap.Stringer("code", st.Code()), zap.String("detail", st.Message()))
		return status.Error(codes.Unavailable, "catalog is unavailable, try again")
	}
}

// GetOrder implements OrderService.GetOrder.
func (s *Server) GetOrder(
	_ context.Context,
	req *ordersv1.GetOrderRequest,
) (*ordersv1.GetOrderResponse, error) {
	o, _, err := s.store.Get(req.GetId())
	if err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}

	return &ordersv1.GetOrderResponse{Order: o}, nil
}

// ListOrders implements OrderService.ListOrders.
func (s *Server) ListOrders(
	_ context.Context,
	req *ordersv1.ListOrdersRequest,
) (*ordersv1.ListOrdersResponse, error) {
	after, err := pagetoken.Decode(req.GetPageToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "page_token is not valid")
	}

	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultPageSize
	}

	list, more, err := s.store.List(after, req.GetCustomerId(), size)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "page_token is not valid")
	}

	resp := &ordersv1.ListOrdersResponse{Orders: list}
	if more && len(list) > 0 {
		resp.NextPageToken = pagetoken.Encode(list[len(list)-1].GetId())
	}

	return resp, nil
}

// WatchOrder implements OrderService.WatchOrder: the current order first,
// then one message per status change, ending after the final status.
func (s *Server) WatchOrder(
	req *ordersv1.WatchOrderRequest,
	stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse],
) error {
	ctx := stream.Context()
	last := ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED

	for {
		o, changed, err := s.store.Get(req.GetId())
		if err != nil {
			return status.Error(codes.NotFound, err.Error())
		}

		if o.GetStatus() != last {
			if err := stream.Send(&ordersv1.WatchOrderResponse{Order: o}); err != nil {
				return err
			}
			last = o.GetStatus()
		}
		if isFinal(last) {
			return nil
		}

		select {
		case <-changed:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stop:
			return status.Error(codes.Unavailable, "server is shutting down")
		}
	}
}
