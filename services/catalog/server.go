// Package catalog implements gatehouse.catalog.v1.CatalogService over an
// in-memory Store: product reads for the REST edge and stock reservation for
// the orders service.
package catalog

import (
	"context"
	"errors"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/services/pagetoken"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	defaultPageSize = 20
)

// Server is the gRPC CatalogService. It is safe for concurrent use.
type Server struct {
	catalogv1.UnimplementedCatalogServiceServer

	store  *Store
	logger *zap.Logger
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the server's logger.
func WithLogger(logger *zap.Logger) Option {
	return func(s *Server) {
		if logger != nil {
			s.logger = logger.Named("catalog")
		}
	}
}

// NewServer returns a CatalogService backed by store.
func NewServer(store *Store, opts ...Option) (*Server, error) {
	if store == nil {
		return nil, errors.New("catalog: nil store")
	}

	s := &Server{store: store, logger: zap.NewNop()}
	for _, opt := range opts {
		opt(s)
	}

	return s, nil
}

// GetProduct implements CatalogService.GetProduct.
func (s *Server) GetProduct(
	_ context.Context,
	req *catalogv1.GetProductRequest,
) (*catalogv1.GetProductResponse, error) {
	p, err := s.store.Get(req.GetId())
	if err != nil {
		return nil, storeStatus(err)
	}

	return &catalogv1.GetProductResponse{Product: p}, nil
}

// ListProducts implements CatalogService.ListProducts.
func (s *Server) ListProducts(
	_ context.Context,
	req *catalogv1.ListProductsRequest,
) (*catalogv1.ListProductsResponse, error) {
	after, err := pagetoken.Decode(req.GetPageToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "page_token is not valid")
	}

	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultPageSize
	}

	products, more := s.store.List(after, size)
	resp := &catalogv1.ListProductsResponse{Products: products}
	if more && len(products) > 0 {
		resp.NextPageToken = pagetoken.Encode(products[len(products)-1].GetId())
	}

	return resp, nil
}

// ReserveStock implements CatalogService.ReserveStock.
func (s *Server) ReserveStock(
	_ context.Context,
	req *catalogv1.ReserveStockRequest,
) (*catalogv1.ReserveStockResponse, error) {
	res, err := s.store.Reserve(req.GetOrderId(), req.GetItems())
	if err != nil {
		return nil, storeStatus(err)
	}

	s.logger.Info("stock reserved",
		zap.String("order_id", req.GetOrderId()),
		zap.String("reservation_id", res.GetReservationId()),
		zap.Int("items", len(res.GetItems())))

	return res, nil
}

// storeStatus turns a Store error into a status whose message names the
// product but nothing internal.
func storeStatus(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrInvalidQuantity):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrInsufficientStock):
		return status.Error(codes.FailedPrecondition, err.Error())
	default:
		return status.Error(codes.Internal, "catalog store failed")
	}
}
