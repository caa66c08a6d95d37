// Package e2e runs the platform as real processes (a Consul dev agent, two
// catalog instances, orders and the gateway, all on 127.0.0.1) and drives
// every REST route through a real HTTP client. Every gRPC hop, Consul's
// health checks included, is mutual TLS with certificates from a
// development PKI in a temporary directory.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/devstack"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/hashicorp/consul/api"
)

const instanceHeader = "Grpc-Metadata-X-Gatehouse-Instance"

// startStack starts the platform for one test; gatewayArgs are added to the
// gateway's command line.
func startStack(t *testing.T, gatewayArgs ...string) (*devstack.Stack, *lockedBuffer, string) {
	t.Helper()

	consulBin, err := testsupport.ConsulBin()
	if err != nil {
		t.Fatalf("consul binary: %v", err)
	}

	out := &lockedBuffer{buf: &bytes.Buffer{}}
	admin := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	stack, err := devstack.Start(ctx, devstack.Config{
		BinDir:           binDir,
		ConsulBin:        consulBin,
		GatewayAddr:      "127.0.0.1:0",
		GatewayAdminAddr: admin,
		Catalogs:         2,
		StepInterval:     100 * time.Millisecond,
		Output:           out,
		CertDir:          t.TempDir(),
		GatewayArgs:      gatewayArgs,
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("stop stack: %v", err)
		}
		if t.Failed() {
			t.Logf("process output:\n%s", out.String())
		}
	})

	return stack, out, "http://" + admin + "/metrics"
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()

	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}

	return m
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// call sends one request; headers are name, value pairs.
func call(t *testing.T, method, url, body string, headers ...string) response {
	t.Helper()

	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}

	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()

	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", method, url, err)
	}

	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func TestPlatform(t *testing.T) {
	stack, output, metricsURL := startStack(t)
	gw := stack.GatewayURL

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	token, err := stack.Token(ctx, "orders.read orders.write")
	if err != nil {
		t.Fatal(err)
	}
	readOnly, err := stack.Token(ctx, "orders.read")
	if err != nil {
		t.Fatal(err)
	}
	bearer := []string{"Authorization", "Bearer " + token}

	t.Run("order routes need a token with the right scope", func(t *testing.T) {
		order := `{"customerId":"eve","lineItems":[{"productId":"p-1001","quantity":1}]}`
		cases := []struct {
			name, method, path, body, auth string
			status                         int
			challenge                      string
		}{
			{"no token", "GET", "/v1/orders", "", "", 401, "Bearer"},
			{"wrong scheme", "GET", "/v1/orders", "", "Basic ZGVtbzpkZW1v", 401, "Bearer"},
			{"garbage token", "GET", "/v1/orders", "", "Bearer not.a.token", 401,
				"invalid_token"},
			{"token lacking orders.write", "POST", "/v1/orders", order,
				"Bearer " + readOnly, 403, "insufficient_scope"},
			{"read-only token may read", "GET", "/v1/orders", "", "Bearer " + readOnly, 200, ""},
			{"public route needs none", "GET", "/v1/products/p-1001", "", "", 200, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				hdr := []string{"X-Request-Id", "e2e-auth-" + strings.ReplaceAll(tc.name, " ", "-")}
				if tc.auth != "" {
					hdr = append(hdr, "Authorization", tc.auth)
				}
				r := call(t, tc.method, gw+tc.path, tc.body, hdr...)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, tc.challenge) {
					t.Errorf("WWW-Authenticate %q lacks %q", got, tc.challenge)
				}
			})
		}

		// Who was refused matters most when the token itself was valid.
		checkRefusalNamed(t, output, "e2e-auth-token-lacking-orders.write")
	})

	t.Run("one request id and trace id across every hop; no secret logged", func(t *testing.T) {
		checkObservability(t, stack, output, metricsURL, token)
	})

	t.Run("services registered and passing in consul", func(t *testing.T) {
		client, err := stack.Consul.Client()
		if err != nil {
			t.Fatal(err)
		}
		for svc, want := range map[string]int{"catalog": 2, "orders": 1} {
			entries, _, err := client.Health().Service(svc, "", true, nil)
			if err != nil {
				t.Fatalf("health of %s: %v", svc, err)
			}
			if len(entries) != want {
				t.Fatalf("%s: %d passing instances, want %d", svc, len(entries), want)
			}
			for _, e := range entries {
				checkRegistration(t, svc, e)
			}
		}
	})

	t.Run("every internal hop is mutual TLS", func(t *testing.T) {
		checkMutualTLS(t, stack)
	})

	t.Run("operational endpoints", func(t *testing.T) {
		if r := call(t, "GET", gw+"/healthz", ""); r.status != 200 {
			t.Errorf("/healthz = %d", r.status)
		}
		if r := call(t, "GET", gw+"/readyz", ""); r.status != 200 {
			t.Errorf("/readyz = %d %s", r.status, r.body)
		}
		r := call(t, "GET", gw+"/openapi.json", "")
		if r.status != 200 {
			t.Fatalf("/openapi.json = %d", r.status)
		}
		paths, _ := r.json(t)["paths"].(map[string]any)
		for _, p := range []string{"/v1/products", "/v1/products/{id}", "/v1/orders",
			"/v1/orders/{id}", "/v1/orders/{id}:watch"} {
			if _, ok := paths[p]; !ok {
				t.Errorf("openapi document lacks path %s", p)
			}
		}
	})

	t.Run("list products pages through the whole catalog", func(t *testing.T) {
		seen := map[string]bool{}
		token := ""
		for page := 0; page < 10; page++ {
			r := call(t, "GET", gw+"/v1/products?page_size=3&page_token="+token, "")
			if r.status != 200 {
				t.Fatalf("page %d: status %d %s", page, r.status, r.body)
			}
			m := r.json(t)
			for _, p := range m["products"].([]any) {
				id := p.(map[string]any)["id"].(string)
				if seen[id] {
					t.Fatalf("product %s listed twice", id)
				}
				seen[id] = true
			}
			token, _ = m["nextPageToken"].(string)
			if token == "" {
				break
			}
		}
		if len(seen) != 8 {
			t.Fatalf("saw %d products, want the 8 sample products", len(seen))
		}
	})

	t.Run("get product", func(t *testing.T) {
		r := call(t, "GET", gw+"/v1/products/p-1001", "")
		if r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		p := r.json(t)["product"].(map[string]any)
		if p["id"] != "p-1001" || p["priceCents"] != "2450" {
			t.Fatalf("unexpected product %v", p)
		}
	})

	t.Run("errors map to statuses with JSON bodies", func(t *testing.T) {
		cases := []struct {
			name, method, path, body string
			status                   int
			code                     float64
			field                    string
		}{
			{"unknown product", "GET", "/v1/products/p-9999", "", 404, 5, ""},
			{"bad product id", "GET", "/v1/products/Bad_Id", "", 400, 3, "id"},
			{"page size too big", "GET", "/v1/products?page_size=101", "", 400, 3, "page_size"},
			{"bad page token", "GET", "/v1/products?page_token=zzz", "", 400, 3, ""},
			{"unknown order", "GET", "/v1/orders/7a0f4e2c-94d4-4f9b-8d55-1f0e2f8b9c01",
				"", 404, 5, ""},
			{"order id not a uuid", "GET", "/v1/orders/nope", "", 400, 3, "id"},
			{"no line items", "POST", "/v1/orders", `{"customerId":"alice","lineItems":[]}`,
				400, 3, "line_items"},
			{"zero quantity", "POST", "/v1/orders",
				`{"customerId":"alice","lineItems":[{"productId":"p-1001","quantity":0}]}`,
				400, 3, "line_items[0].quantity"},
			{"malformed json", "POST", "/v1/orders", `{"customerId":`, 400, 3, ""},
			{"unknown json field", "POST", "/v1/orders",
				`{"customerId":"a","lineItems":[{"productId":"p-1001","quantity":1}],"x":1}`,
				400, 3, ""},
			{"unknown product in order", "POST", "/v1/orders",
				`{"customerId":"alice","lineItems":[{"productId":"p-0000","quantity":1}]}`,
				404, 5, ""},
			{"more than in stock", "POST", "/v1/orders",
				`{"customerId":"alice","lineItems":[{"productId":"p-1002","quantity":999}]}`,
				400, 9, ""},
			{"unknown route", "GET", "/v1/nothing", "", 404, 5, ""},
			{"wrong method", "DELETE", "/v1/products/p-1001", "", 405, 12, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := call(t, tc.method, gw+tc.path, tc.body, bearer...)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				m := r.json(t)
				if m["code"] != tc.code {
					t.Errorf("code %v, want %v: %s", m["code"], tc.code, r.body)
				}
				if msg, _ := m["message"].(string); msg == "" {
					t.Errorf("error without message: %s", r.body)
				}
				if tc.field != "" && !hasFieldViolation(m, tc.field) {
					t.Errorf("no field violation for %q in %s", tc.field, r.body)
				}
			})
		}
	})

	var orderID string
	t.Run("create order reserves stock in catalog", func(t *testing.T) {
		r := call(t, "POST", gw+"/v1/orders",
			`{"customerId":"alice","lineItems":[{"productId":"p-1001","quantity":2},`+
				`{"productId":"p-1004","quantity":1}]}`, bearer...)
		if r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		o := r.json(t)["order"].(map[string]any)
		orderID, _ = o["id"].(string)
		if orderID == "" {
			t.Fatalf("order without id: %s", r.body)
		}
		if res, _ := o["reservationId"].(string); !strings.HasPrefix(res, "res-") {
			t.Errorf("reservation id %q does not come from catalog", res)
		}
		// Prices come from catalog's ReserveStock answer: 2 x 2450 + 650.
		if o["totalCents"] != "5550" || o["currency"] != "EUR" {
			t.Errorf("total %v %v, want 5550 EUR", o["totalCents"], o["currency"])
		}
		if o["status"] != "ORDER_STATUS_RESERVED" {
			t.Errorf("status %v", o["status"])
		}
	})
	if orderID == "" {
		t.Fatal("no order created; later steps need one")
	}

	t.Run("get and list orders", func(t *testing.T) {
		r := call(t, "GET", gw+"/v1/orders/"+orderID, "", bearer...)
		if r.status != 200 {
			t.Fatalf("get: status %d %s", r.status, r.body)
		}
		r = call(t, "GET", gw+"/v1/orders?customer_id=alice", "", bearer...)
		if r.status != 200 {
			t.Fatalf("list: status %d %s", r.status, r.body)
		}
		list := r.json(t)["orders"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["id"] != orderID {
			t.Fatalf("list = %s, want just %s", r.body, orderID)
		}
	})

	t.Run("watch order streams every status as NDJSON", func(t *testing.T) {
		// A fresh order, so the watch sees it from its first status.
		r := call(t, "POST", gw+"/v1/orders",
			`{"customerId":"bob","lineItems":[{"productId":"p-1003","quantity":1}]}`, bearer...)
		if r.status != 200 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		id := r.json(t)["order"].(map[string]any)["id"].(string)

		w := call(t, "GET", gw+"/v1/orders/"+id+":watch", "", bearer...)
		if w.status != 200 {
			t.Fatalf("watch: status %d %s", w.status, w.body)
		}
		var got []string
		dec := json.NewDecoder(bytes.NewReader(w.body))
		for dec.More() {
			var line struct {
				Result struct {
					Order struct{ Status string } `json:"order"`
				} `json:"result"`
				Error any `json:"error"`
			}
			if err := dec.Decode(&line); err != nil {
				t.Fatalf("decode stream line: %v\n%s", err, w.body)
			}
			if line.Error != nil {
				t.Fatalf("stream error: %v", line.Error)
			}
			got = append(got, line.Result.Order.Status)
		}
		want := []string{"ORDER_STATUS_RESERVED", "ORDER_STATUS_CONFIRMED",
			"ORDER_STATUS_SHIPPED", "ORDER_STATUS_DELIVERED"}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("statuses %v, want %v", got, want)
		}

		if w := call(t, "GET", gw+"/v1/orders/not-a-uuid:watch", "", bearer...); w.status != 400 {
			t.Errorf("watch of invalid id: status %d, want 400: %s", w.status, w.body)
		}
	})

	t.Run("instances come and go without a restart", func(t *testing.T) {
		url := gw + "/v1/products/p-1002"

		// Both instances share the reads.
		before := settle(t, "two instances", url, 2)

		// SIGTERM: NOT_SERVING, deregistration, drain. No request may fail.
		if err := stack.Process("catalog-2").Stop(15 * time.Second); err != nil {
			t.Fatalf("stop catalog-2: %v", err)
		}
		after := settle(t, "after SIGTERM", url, 1)
		if after.failed != 0 {
			t.Errorf("%d requests failed across a graceful stop", after.failed)
		}

		// A new instance registers and starts receiving reads.
		if _, err := stack.StartProcess("catalog-3", "catalog"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := stack.WaitReady(ctx, 2, 1); err != nil {
			t.Fatalf("catalog-3 never became ready: %v", err)
		}
		grown := settle(t, "after catalog-3 joined", url, 2)
		for id := range grown.instances {
			if before.instances[id] && after.instances[id] {
				continue // the survivor, catalog-1
			}
			if before.instances[id] {
				t.Errorf("stopped instance %s still receives traffic", id)
			}
		}

		// SIGKILL: only calls in flight at the kill may fail.
		if err := stack.Process("catalog-1").Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := settle(t, "after SIGKILL", url, 1)
		if killed.failed > 2 {
			t.Errorf("%d requests failed; only calls in flight at the kill may", killed.failed)
		}
		for id := range killed.instances {
			if before.instances[id] {
				t.Errorf("traffic settled on %s, an instance that is gone", id)
			}
		}

		// Consul marks the killed instance critical through its gRPC check.
		if err := stack.WaitReady(ctx, 1, 1); err != nil {
			t.Fatalf("consul never saw the kill: %v", err)
		}
	})
}

type settled struct {
	sent, failed int
	instances    map[string]bool
}

// settle sends reads until the last 30 all succeeded and came from exactly
// want instances, and reports what it took. It fails the test after 15s.
func settle(t *testing.T, phase, url string, want int) settled {
	t.Helper()

	const window = 30
	start := time.Now()
	var res settled
	var recent []string // instance per request; "" for a failure
	for time.Since(start) < 15*time.Second {
		r := call(t, "GET", url, "")
		res.sent++
		inst := ""
		if r.status == 200 {
			inst = r.header.Get(instanceHeader)
		} else {
			res.failed++
		}
		recent = append(recent, inst)
		if len(recent) > window {
			recent = recent[1:]
		}
		if len(recent) < window {
			continue
		}

		set := map[string]bool{}
		for _, id := range recent {
			set[id] = true
		}
		if !set[""] && len(set) == want {
			res.instances = set
			t.Logf("%s: %d requests, %d failed, settled on %d instances in %s",
				phase, res.sent, res.failed, want, time.Since(start).Round(time.Millisecond))
			return res
		}
	}

	t.Fatalf("%s: traffic did not settle on %d instances within 15s (last: %v)",
		phase, want, recent)
	return res
}

func checkRegistration(t *testing.T, svc string, e *api.ServiceEntry) {
	t.Helper()

	if !strings.HasPrefix(e.Service.ID, svc+"-") {
		t.Errorf("instance id %q does not name the service", e.Service.ID)
	}
	if e.Service.Address != "127.0.0.1" || e.Service.Port == 0 {
		t.Errorf("%s address %s:%d", svc, e.Service.Address, e.Service.Port)
	}
	if !strings.Contains(e.Service.Meta["grpc_services"], "gatehouse.") {
		t.Errorf("%s meta grpc_services = %q", svc, e.Service.Meta["grpc_services"])
	}
	grpcCheck := false
	for _, c := range e.Checks {
		if c.Type == "grpc" && c.Status == api.HealthPassing {
			grpcCheck = true
		}
	}
	if !grpcCheck {
		t.Errorf("%s instance %s has no passing grpc check", svc, e.Service.ID)
	}
}

func hasFieldViolation(m map[string]any, field string) bool {
	details, _ := m["details"].([]any)
	for _, d := range details {
		fvs, _ := d.(map[string]any)["fieldViolations"].([]any)
		for _, fv := range fvs {
			if fv.(map[string]any)["field"] == field {
				return true
			}
		}
	}

	return false
}
