package e2e

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/certsource"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/internal/devstack"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/pki"
)

// checkMutualTLS calls every registered instance directly: a plaintext
// client is refused, a client with the gateway's certificate from the
// stack's PKI may check health but not reserve stock.
func checkMutualTLS(t *testing.T, stack *devstack.Stack) {
	client, err := stack.Consul.Client()
	if err != nil {
		t.Fatal(err)
	}

	dir := pki.Dir(stack.CertDir)

	gatewayID, err := identity.New(identity.DefaultTrustDomain, "gateway")
	if err != nil {
		t.Fatal(err)
	}

	src, err := certsource.New(certsource.Files{Cert: dir.Cert("gateway"),
		Key: dir.Key("gateway"), CA: dir.CACert()}, certsource.WithExpectedID(gatewayID))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()

	for _, svc := range []string{"catalog", "orders"} {
		entries, _, err := client.Health().Service(svc, "", true, nil)
		if err != nil {
			t.Fatalf("health of %s: %v", svc, err)
		}

		serverID, err := identity.New(identity.DefaultTrustDomain, svc)
		if err != nil {
			t.Fatal(err)
		}

		creds, err := mtls.NewClientCredentials(src, serverID)
		if err != nil {
			t.Fatal(err)
		}

		for _, e := range entries {
			addr := net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))

			if err := healthCheck(t, addr, insecure.NewCredentials()); status.Code(err) !=
				codes.Unavailable {
				t.Errorf("%s %s: plaintext health check = %v, want Unavailable", svc, addr, err)
			}

			if err := healthCheck(t, addr, creds); err != nil {
				t.Errorf("%s %s: health check as gateway over mTLS: %v", svc, addr, err)
			}

			if svc != "catalog" {
				continue
			}

			conn := dialInstance(t, addr, creds)
			_, err := catalogv1.NewCatalogServiceClient(conn).ReserveStock(context.Background(),
				&catalogv1.ReserveStockRequest{OrderId: "o-e2e",
					Items: []*catalogv1.StockItem{{ProductId: "p-1001", Quantity: 1}}})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("catalog %s: ReserveStock as gateway = %v, want PermissionDenied", addr, err)
			}
		}
	}
}

func dialInstance(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()

	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}

	t.Cleanup(func() { _ = conn.Close() })

	return conn
}

func healthCheck(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := healthpb.NewHealthClient(dialInstance(t, addr, creds)).Check(ctx,
		&healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}

	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return status.Errorf(codes.Unavailable, "status %v", resp.GetStatus())
	}

	return nil
}
