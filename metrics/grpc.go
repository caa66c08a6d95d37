package metrics

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// NewGRPCServer returns go-grpc-middleware's server metrics, with the
// handling-time histogram on, registered with reg. They are
// grpc_server_started_total, grpc_server_handled_total{grpc_code},
// grpc_server_msg_received_total, grpc_server_msg_sent_total and
// grpc_server_handling_seconds, all by grpc_service, grpc_method and
// grpc_type.
//
// Use its UnaryServerInterceptor and StreamServerInterceptor, and call
// InitializeMetrics(server) after registering services so every method shows
// up at zero before its first call.
func NewGRPCServer(
	reg prometheus.Registerer,
	opts ...Option,
) (*grpcprom.ServerMetrics, error) {
	o := newOptions(opts)
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(o.buckets),
	))
	if err := register(reg, m); err != nil {
		return nil, err
	}

	return m, nil
}

// NewGRPCClient returns go-grpc-middleware's client metrics, with the
// handling-time histogram on, registered with reg: grpc_client_started_total,
// grpc_client_handled_total{grpc_code}, grpc_client_msg_received_total,
// grpc_client_msg_sent_total and grpc_client_handling_seconds. Use its
// UnaryClientInterceptor and StreamClientInterceptor.
func NewGRPCClient(
	reg prometheus.Registerer,
	opts ...Option,
) (*grpcprom.ClientMetrics, error) {
	o := newOptions(opts)
	m := grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(o.buckets),
	))
	if err := register(reg, m); err != nil {
		return nil, err
	}

	return m, nil
}
