package e2e

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/devstack"
)

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lis.Close() }()

	return lis.Addr().String()
}

// logLine is one JSON log line of a process, with the process name.
type logLine struct {
	proc   string
	fields map[string]any
}

// logLines parses every JSON line in the stack's output.
func logLines(out string) []logLine {
	var lines []logLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), "| ")
		if !ok {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(rest), &m) != nil {
			continue
		}
		lines = append(lines, logLine{proc: strings.TrimSpace(name), fields: m})
	}

	return lines
}

func checkObservability(
	t *testing.T,
	stack *devstack.Stack,
	output *lockedBuffer,
	metricsURL, token string,
) {
	const (
		requestID = "e2e-observability-0001"
		traceID   = "4bf92f3577b34da6a3ce929d0e0e4736"
	)
	r := call(t, "POST", stack.GatewayURL+"/v1/orders",
		`{"customerId":"olive","lineItems":[{"productId":"p-1005","quantity":1}]}`,
		"Authorization", "Bearer "+token,
		"X-Request-Id", requestID,
		"Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01",
		"Cookie", "session=e2e-cookie-secret")
	if r.status != 200 {
		t.Fatalf("create order: %d %s", r.status, r.body)
	}
	if got := r.header.Get("X-Request-Id"); got != requestID {
		t.Errorf("X-Request-Id answered %q, want %q", got, requestID)
	}

	// One access line per hop: gateway (HTTP), orders and catalog (gRPC).
	want := map[string]string{
		"gateway":  "POST /v1/orders",
		"orders-1": "/gatehouse.orders.v1.OrderService/CreateOrder",
		"catalog":  "/gatehouse.catalog.v1.CatalogService/ReserveStock",
	}
	deadline := time.Now().Add(10 * time.Second)
	var found map[string]logLine
	for {
		found = hopLines(logLines(output.String()), requestID)
		if len(found) == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // log lines are flushed asynchronously
	}
	for hop := range want {
		l, ok := found[hop]
		if !ok {
			t.Errorf("no access line with request id %s from %s", requestID, hop)
			continue
		}
		if l.fields["trace_id"] != traceID {
			t.Errorf("%s: trace_id %v, want %s", hop, l.fields["trace_id"], traceID)
		}
		if hop != "gateway" && l.fields["principal"] == "" {
			t.Errorf("%s: no principal in %v", hop, l.fields)
		}
	}
	if l, ok := found["gateway"]; ok {
		for _, k := range []string{"client_ip", "route", "status", "latency_ms", "upstream",
			"principal", "user_agent", "bytes_in", "bytes_out"} {
			if _, ok := l.fields[k]; !ok {
				t.Errorf("gateway access line lacks %s: %v", k, l.fields)
			}
		}
		if l.fields["route"] != "/v1/orders" {
			t.Errorf("gateway route %v", l.fields["route"])
		}
	}
	if l, ok := found["catalog"]; ok {
		if caller, _ := l.fields["caller"].(string); !strings.HasSuffix(caller, "/svc/orders") {
			t.Errorf("catalog saw caller %q, want the orders identity", caller)
		}
	}

	// A token pasted into the path is refused and must not be logged either.
	if r := call(t, "GET", stack.GatewayURL+"/v1/orders/"+token, "",
		"Authorization", "Bearer "+token); r.status != 400 {
		t.Errorf("token as order id: status %d, want 400", r.status)
	}

	checkMetrics(t, metricsURL)
	checkNoSecrets(t, stack, output.String(), token)
}

// checkRefusalNamed waits for the gateway's access line of the refused
// request with requestID and for its authz_denied security event, and
// checks that both name the caller of the (valid) token.
func checkRefusalNamed(t *testing.T, output *lockedBuffer, requestID string) {
	t.Helper()

	var access, event *logLine
	deadline := time.Now().Add(10 * time.Second)
	for (access == nil || event == nil) && time.Now().Before(deadline) {
		for _, l := range logLines(output.String()) {
			if l.proc != "gateway" {
				continue
			}
			switch {
			case l.fields["msg"] == "http request" && l.fields["request_id"] == requestID:
				access = &l
			case l.fields["event"] == "authz_denied" && l.fields["request_id"] == requestID:
				event = &l
			}
		}
		if access == nil || event == nil {
			time.Sleep(50 * time.Millisecond) // log lines are flushed asynchronously
		}
	}

	if access == nil || event == nil {
		t.Fatalf("request %s: access line found %v, authz_denied event found %v",
			requestID, access != nil, event != nil)
	}
	if access.fields["status"] != float64(403) {
		t.Errorf("access line status %v, want 403", access.fields["status"])
	}
	principal, _ := access.fields["principal"].(string)
	if principal == "" {
		t.Errorf("403 access line names no principal: %v", access.fields)
	}
	if event.fields["principal"] != principal {
		t.Errorf("authz_denied principal %v, access line %q", event.fields["principal"], principal)
	}
}

// hopLines finds the access line of each hop carrying requestID, keyed by
// hop ("gateway", "orders-1", "catalog" for any catalog instance).
func hopLines(lines []logLine, requestID string) map[string]logLine {
	found := map[string]logLine{}
	for _, l := range lines {
		if l.fields["request_id"] != requestID {
			continue
		}
		msg, _ := l.fields["msg"].(string)
		if msg != "http request" && msg != "grpc request" {
			continue
		}
		hop := l.proc
		if strings.HasPrefix(hop, "catalog") {
			hop = "catalog"
		}
		found[hop] = l
	}

	return found
}

func checkMetrics(t *testing.T, metricsURL string) {
	t.Helper()

	r := call(t, "GET", metricsURL, "")
	if r.status != 200 {
		t.Fatalf("metrics scrape: %d", r.status)
	}
	body := string(r.body)
	for _, want := range []string{
		`gatehouse_http_requests_total{code="200",method="POST",route="/v1/orders"}`,
		`gatehouse_http_requests_total{code="401",method="GET",route="/v1/orders"}`,
		`grpc_client_handled_total{grpc_code="OK",grpc_method="CreateOrder"`,
		`gatehouse_auth_failures_total{reason="missing_credentials"}`,
		`gatehouse_certificate_expiry_seconds{cert="gateway"}`,
		`gatehouse_discovery_healthy_endpoints{service="orders"} 1`,
		`gatehouse_auth_failures_total{reason="malformed_token"}`,
		`gatehouse_certificate_expiry_seconds{cert="gateway-ca"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// checkNoSecrets greps everything every process logged for the bearer
// token, the cookie and private key material.
func checkNoSecrets(t *testing.T, stack *devstack.Stack, out, token string) {
	t.Helper()

	secrets := map[string]string{
		"bearer token": token,
		"cookie":       "e2e-cookie-secret",
	}
	for _, f := range []string{"gateway-key.pem", "catalog-key.pem", "ca-key.pem"} {
		key, err := os.ReadFile(filepath.Join(stack.CertDir, f))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(key)), "\n")
		secrets[f] = lines[1] // a line of the base64 key body
	}
	for name, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("the logs contain the %s", name)
		}
	}
}
