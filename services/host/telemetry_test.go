package host_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/discovery"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/services/catalog"
	"github.com/gatehouse-dev/gatehouse/services/host"
	"github.com/gatehouse-dev/gatehouse/services/orders"
)

// service is a host serving real services, with its telemetry kit and its
// access log.
type service struct {
	*host.Host
	kit    *telemetry.Kit
	access *testsupport.LogSink
	logs   *observer.ObservedLogs
}

// startService starts the telemetry kit of service (admin listener on
// 127.0.0.1) and a host wired to it the way the binaries do, trusting the
// test's token issuer; register adds the services before Run.
func startService(
	t *testing.T,
	p *testsupport.TestPKI,
	name string,
	register func(h *host.Host, tel host.Telemetry),
) *service {
	t.Helper()

	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	accessLogger, access := testsupport.NewJSONLogger(t)

	flags := telemetry.Flags{}
	flags.Admin.Listen = "127.0.0.1:0"
	id := discovery.NewInstanceID(name)

	kit, err := flags.Start(name, id, logger)
	if err != nil {
		t.Fatalf("telemetry of %s: %v", name, err)
	}
	t.Cleanup(func() { _ = kit.Close() })

	tel := host.Telemetry{
		Metrics:   kit.Registry,
		Tracing:   kit.Tracing,
		AccessLog: accessLogger,
		Events:    kit.Events,
	}

	p.Issue(t, name)
	h, err := host.New(host.Config{
		Service:      name,
		ListenAddr:   "127.0.0.1:0",
		DrainTimeout: time.Second,
		Logger:       logger,
		Certificates: p.Source(t, name),
		Tokens:       tokenIssuer(t).Verifier(t),
		InstanceID:   id,
		Telemetry:    tel,
	})
	if err != nil {
		t.Fatalf("host.New(%s): %v", name, err)
	}

	register(h, tel)
	runHost(t, h)

	return &service{Host: h, kit: kit, access: access, logs: logs}
}

// scrape returns the text of /metrics on the admin listener of s.
func (s *service) scrape(t *testing.T) string {
	t.Helper()

	resp, err := http.Get("http://" + s.kit.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()

	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
	}

	return string(body)
}

// accessLine waits for the access line of method with code.
func (s *service) accessLine(t *testing.T, method string, code codes.Code) map[string]any {
	t.Helper()

	return s.access.WaitFor(t, 5*time.Second, method+" "+code.String(),
		func(e map[string]any) bool {
			return e["msg"] == "grpc request" && e["grpc_method"] == method &&
				e["grpc_code"] == code.String()
		})
}

func registerRealCatalog(t *testing.T) func(*host.Host, host.Telemetry) {
	return func(h *host.Host, _ host.Telemetry) {
		store, err := catalog.NewStore(catalog.SampleProducts())
		if err != nil {
			t.Fatal(err)
		}

		svc, err := catalog.NewServer(store)
		if err != nil {
			t.Fatal(err)
		}

		catalogv1.RegisterCatalogServiceServer(h.Server(), svc)
	}
}

// TestTelemetry makes allowed and refused calls and checks what the
// operator sees: the access lines name the calling service and the end
// user, and a scrape of the admin listener counts every call by code, and
// the refusals as security events.
func TestTelemetry(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	svc := startService(t, p, "catalog", registerRealCatalog(t))
	tokens := tokenIssuer(t)

	asOrders := dial(t, svc.Addr().String(), workloadCreds(t, p, "orders", "catalog"))
	asGateway := dial(t, svc.Addr().String(), workloadCreds(t, p, "gateway", "catalog"))

	calls := []struct {
		conn  *grpc.ClientConn
		token string
		code  codes.Code
	}{
		{asOrders, tokens.Token(t, "alice", "orders.write"), codes.OK},
		{asOrders, tokens.Token(t, "bob", "orders.read"), codes.PermissionDenied},
		{asOrders, "", codes.Unauthenticated},
		{asGateway, tokens.Token(t, "alice", "orders.write"), codes.PermissionDenied},
	}
	for _, c := range calls {
		ctx := context.Background()
		if c.token != "" {
			ctx = testsupport.WithToken(ctx, c.token)
		}

		if err := reserveStock(ctx, c.conn); status.Code(err) != c.code {
			t.Fatalf("ReserveStock: %v, want %v", err, c.code)
		}
	}

	if err := checkHealth(context.Background(), asOrders); err != nil {
		t.Fatalf("health check: %v", err)
	}

	const reserve = "/gatehouse.catalog.v1.CatalogService/ReserveStock"

	t.Run("access log", func(t *testing.T) {
		ok := svc.accessLine(t, reserve, codes.OK)
		want := map[string]any{
			"caller":    "spiffe://gatehouse.local/svc/orders",
			"principal": "alice",
			"instance":  svc.ID(),
		}
		for k, v := range want {
			if ok[k] != v {
				t.Errorf("access line %s = %v, want %v", k, ok[k], v)
			}
		}

		for _, k := range []string{"request_id", "trace_id", "peer"} {
			if s, _ := ok[k].(string); s == "" {
				t.Errorf("access line has no %s: %v", k, ok)
			}
		}

		// Refused by the token check: the caller is known, the user not.
		denied := svc.accessLine(t, reserve, codes.Unauthenticated)
		if denied["caller"] != "spiffe://gatehouse.local/svc/orders" || denied["principal"] != "" {
			t.Errorf("refused call's line: caller %v, principal %v", denied["caller"],
				denied["principal"])
		}

		if strings.Contains(svc.access.String(), "/grpc.health.v1.Health/Check") {
			t.Errorf("health checks are access-logged")
		}
	})

	t.Run("metrics", func(t *testing.T) {
		text := svc.scrape(t)

		series := func(code codes.Code, method string) string {
			return `grpc_server_handled_total{grpc_code="` + code.String() + `",grpc_method="` +
				method + `",grpc_service="gatehouse.catalog.v1.CatalogService",grpc_type="unary"}`
		}

		want := []string{
			series(codes.OK, "ReserveStock") + " 1",
			series(codes.PermissionDenied, "ReserveStock") + " 2",
			series(codes.Unauthenticated, "ReserveStock") + " 1",
			// Registered methods show before their first call.
			`grpc_server_started_total{grpc_method="ListProducts",` +
				`grpc_service="gatehouse.catalog.v1.CatalogService",grpc_type="unary"} 0`,
			`gatehouse_security_events_total{event="authz_denied"} 1`,
			`gatehouse_security_events_total{event="auth_failure"} 1`,
			`gatehouse_security_events_total{event="peer_refused"} 1`,
			`gatehouse_auth_failures_total{reason="missing_credentials"} 1`,
			`gatehouse_peer_denials_total{reason="not_allowed"} 1`,
		}
		for _, w := range want {
			if !strings.Contains(text, w+"\n") {
				t.Errorf("scrape lacks %s", w)
			}
		}
	})
}

// TestForwardedToken places orders through a real orders service, which
// reserves stock on a real catalog over the connection the binaries dial
// (host.DialOptions): the user's token travels with the call, so the
// catalog checks the same user, and the request id and trace follow.
func TestForwardedToken(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	tokens := tokenIssuer(t)

	catalogSvc := startService(t, p, "catalog", registerRealCatalog(t))

	ordersSvc := startService(t, p, "orders", func(h *host.Host, tel host.Telemetry) {
		opts, err := host.DialOptions(tel)
		if err != nil {
			t.Fatal(err)
		}

		conn := dial(t, catalogSvc.Addr().String(), workloadCreds(t, p, "orders", "catalog"),
			opts...)

		svc, err := orders.NewServer(orders.NewStore(), catalogv1.NewCatalogServiceClient(conn))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)

		ordersv1.RegisterOrderServiceServer(h.Server(), svc)
	})

	client := ordersv1.NewOrderServiceClient(
		dial(t, ordersSvc.Addr().String(), workloadCreds(t, p, "gateway", "orders")))
	asOrders := dial(t, catalogSvc.Addr().String(), workloadCreds(t, p, "orders", "catalog"))

	create := func(token string) error {
		ctx := context.Background()
		if token != "" {
			ctx = testsupport.WithToken(ctx, token)
		}

		_, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
			CustomerId: "alice",
			LineItems:  []*ordersv1.LineItem{{ProductId: "p-1001", Quantity: 1}},
		})

		return err
	}

	const (
		createOrder  = "/gatehouse.orders.v1.OrderService/CreateOrder"
		reserveStock = "/gatehouse.catalog.v1.CatalogService/ReserveStock"
	)

	t.Run("forwarded token", func(t *testing.T) {
		if err := create(tokens.Token(t, "alice", "orders.write")); err != nil {
			t.Fatalf("CreateOrder: %v", err)
		}

		outer := ordersSvc.accessLine(t, createOrder, codes.OK)
		inner := catalogSvc.accessLine(t, reserveStock, codes.OK)

		const ordersID = "spiffe://gatehouse.local/svc/orders"
		if inner["principal"] != "alice" || inner["caller"] != ordersID {
			t.Errorf("catalog saw principal %v from %v, want alice from orders",
				inner["principal"], inner["caller"])
		}

		for _, k := range []string{"request_id", "trace_id"} {
			if outer[k] == nil || outer[k] != inner[k] {
				t.Errorf("%s: orders logged %v, catalog %v", k, outer[k], inner[k])
			}
		}

		text := ordersSvc.scrape(t)
		if !strings.Contains(text, `grpc_client_handled_total{grpc_code="OK",`+
			`grpc_method="ReserveStock",grpc_service="gatehouse.catalog.v1.CatalogService",`+
			`grpc_type="unary"} 1`) {
			t.Errorf("orders' scrape does not count its call to the catalog")
		}
	})

	t.Run("scope missing at orders", func(t *testing.T) {
		err := create(tokens.Token(t, "bob", "orders.read"))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("CreateOrder without orders.write: %v, want PermissionDenied", err)
		}
	})

	t.Run("scope missing at catalog", func(t *testing.T) {
		// Orders itself cannot reserve stock for a user who lacks the scope.
		ctx := testsupport.WithToken(context.Background(),
			tokens.Token(t, "bob", "orders.read"))
		_, err := catalogv1.NewCatalogServiceClient(asOrders).ReserveStock(ctx,
			&catalogv1.ReserveStockRequest{OrderId: "o-2",
				Items: []*catalogv1.StockItem{{ProductId: "p-1001", Quantity: 1}}})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("ReserveStock without orders.write: %v, want PermissionDenied", err)
		}
	})
}
