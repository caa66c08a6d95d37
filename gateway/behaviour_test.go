package gateway_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestValidRequests checks that the limits leave ordinary use alone.
func TestValidRequests(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})

	tests := []struct {
		name    string
		request string
		status  int
		inBody  string
	}{
		{"read a product", get("/v1/products/p-1001"), 200, `"id":"p-1001"`},
		{"list products", get("/v1/products?page_size=2"), 200, `"nextPageToken"`},
		{"place an order", postOrder(validOrder), 200, `"ORDER_STATUS_RESERVED"`},
		{"order with charset and spacing",
			request("POST", "/v1/orders", []string{"Content-Type: application/json; charset=UTF-8"},
				"\n  "+validOrder+"\n"), 200, `"reservationId"`},
		{"chunked order", postOrder(chunked(validOrder), "Transfer-Encoding: chunked"), 200,
			`"reservationId"`},
		{"empty body is an empty request", postOrder(""), 400, `"field":"customer_id"`},
		{"sane Grpc-Timeout", get("/v1/products/p-1002", "Grpc-Timeout: 900m"), 200, `p-1002`},
		{"liveness", get("/healthz"), 200, `"ok"`},
		{"readiness", get("/readyz"), 200, `"ready"`},
		{"OpenAPI document", get("/openapi.json"), 200, `"/v1/orders/{id}:watch"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.roundTrip(t, tc.request)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.inBody) {
				t.Fatalf("got %d %s; want %d with %s", r.status, r.body, tc.status, tc.inBody)
			}
		})
	}

	t.Run("HEAD on an operational endpoint", func(t *testing.T) {
		r := s.roundTrip(t, request("HEAD", "/healthz", nil, ""))
		if r.status != http.StatusOK || len(r.body) != 0 {
			t.Fatalf("got %d %q; want 200 without a body", r.status, r.body)
		}
	})

	t.Run("keep-alive survives a refusal", func(t *testing.T) {
		conn := s.connect(t)
		br := bufio.NewReader(conn)
		for i, req := range []string{
			"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET /v1/products/p-1001 HTTP/1.1\r\nHost: x\r\n\r\n",
		} {
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatalf("write request %d: %v", i, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read response %d: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if want := []int{404, 200}[i]; resp.StatusCode != want {
				t.Fatalf("response %d: status %d, want %d", i, resp.StatusCode, want)
			}
		}
	})
}

// TestHeaderFiltering checks both directions: only allowlisted client
// headers reach a backend, and only allowlisted backend metadata reaches
// the client.
func TestHeaderFiltering(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})

	r := s.roundTrip(t, get("/v1/products/p-1001",
		"Authorization: Bearer abc",
		"X-Request-Id: client-chosen",
		"Grpc-Metadata-X-Gatehouse-Caller: admin",
		"Grpc-Metadata-Authorization: Bearer forged",
		"X-Forwarded-For: 198.51.100.7",
		"X-Forwarded-Host: admin.internal",
		"Cookie: session=secret",
		"Te: trailers",
		"Grpc-Timeout: 5S",
	))
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	md, deadline := s.catalogCalls.lastCall()

	backend := []struct {
		key  string
		want []string // nil: the key must be absent
	}{
		{"authorization", []string{"Bearer abc"}},
		{"x-gatehouse-caller", nil},
		{"x-request-id", nil},
		{"grpcgateway-cookie", nil},
		{"cookie", nil},
		{"x-forwarded-for", []string{"127.0.0.1"}},
		{"x-forwarded-host", []string{"gatehouse.test"}},
		{"grpcgateway-user-agent", nil},
	}
	for _, tc := range backend {
		t.Run("backend sees "+tc.key, func(t *testing.T) {
			got := md.Get(tc.key)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("metadata %s = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
	t.Run("backend deadline is the client's, capped by the route", func(t *testing.T) {
		// Grpc-Timeout asked for 5s; GetProduct allows at most 2s.
		if deadline.IsZero() || time.Until(deadline) > productMaxTimeout {
			t.Errorf("backend deadline %v, want one at most %v away", deadline, productMaxTimeout)
		}
	})

	client := []struct {
		header string
		want   string
	}{
		{"Grpc-Metadata-X-Gatehouse-Instance", backendInstanceID},
		{"Grpc-Metadata-X-Backend-Secret", ""},
		{"Grpc-Metadata-Content-Type", ""},
		{"Grpc-Trailer-Content-Type", ""},
	}
	for _, tc := range client {
		t.Run("client sees "+tc.header, func(t *testing.T) {
			if got := r.header.Get(tc.header); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.header, got, tc.want)
			}
		})
	}
	for k := range r.header {
		if strings.HasPrefix(k, "Grpc-Trailer-") || k == "Trailer" {
			t.Errorf("response carries trailer header %s", k)
		}
	}
}

// TestDeadlines checks that every call runs under a deadline that reaches
// the last backend, that its expiry answers 504, and that the backend
// stops work when it expires.
func TestDeadlines(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})

	tests := []struct {
		name    string
		request string
		method  string // the slow backend method that must see the deadline
	}{
		{"client's Grpc-Timeout", get("/v1/products/"+slowProduct, "Grpc-Timeout: 100m"),
			"GetProduct"},
		{"route default without Grpc-Timeout", get("/v1/products/" + slowProduct),
			"GetProduct"},
		{"Grpc-Timeout above the route maximum is capped",
			get("/v1/products/"+slowProduct, "Grpc-Timeout: 99999999H"), "GetProduct"},
		{"deadline travels gateway to orders to catalog",
			postOrder(orderWith(`{"productId":"`+slowProduct+`","quantity":1}`),
				"Grpc-Timeout: 300m"), "ReserveStock"},
		// Longer than the server's ReadTimeout: the read deadline must not
		// cut a call that is still within its own deadline.
		{"call outlives the read timeout",
			postOrder(orderWith(`{"productId":"`+slowProduct+`","quantity":1}`),
				"Grpc-Timeout: 2500m"), "ReserveStock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.roundTrip(t, tc.request)
			if r.status != http.StatusGatewayTimeout {
				t.Fatalf("status %d %s, want 504", r.status, r.body)
			}
			checkStatusBody(t, r, codeDeadline, "deadline exceeded", "")
			checkNoLeak(t, r)

			// The backend's context ends: by its own deadline timer or by
			// the gateway cancelling the call, whichever comes first.
			call := s.awaitSlowCall(t)
			if call.method != tc.method || !call.hadDeadline || call.err == nil {
				t.Errorf("backend call %+v; want %s with a deadline, ended", call, tc.method)
			}
		})
	}

	t.Run("stream outlives the read timeout, then ends at its deadline", func(t *testing.T) {
		id := s.createOrder(t)
		conn := s.connect(t)
		if _, err := io.WriteString(conn, get("/v1/orders/"+id+":watch",
			"Grpc-Timeout: 2500m")); err != nil {
			t.Fatalf("write: %v", err)
		}
		st := readFirstStreamLine(t, conn)
		if !strings.Contains(st.first, "ORDER_STATUS_RESERVED") {
			t.Fatalf("first line %q", st.first)
		}

		rest, err := io.ReadAll(st.rest)
		if err != nil {
			t.Fatalf("stream did not end cleanly: %v", err)
		}
		var last struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rest, &last); err != nil {
			t.Fatalf("last stream line %q: %v", rest, err)
		}
		if last.Error.Code != codeDeadline || last.Error.Message != "deadline exceeded" {
			t.Errorf("stream ended with %s, want code 4 deadline exceeded", rest)
		}

		s.awaitWatchEnd(t, id, codes.DeadlineExceeded, codes.Canceled)
	})
}

// TestUnreachableBackend checks that a backend nobody listens for answers
// 503 at once (not 504 after the deadline) and names no address.
func TestUnreachableBackend(t *testing.T) {
	t.Parallel()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	closed := lis.Addr().String()
	_ = lis.Close()

	s := newStack(t, stackOptions{catalogTarget: closed})

	tests := []struct {
		name    string
		request string
		status  int
		inBody  string
	}{
		{"read", get("/v1/products/p-1001"), 503, "service unavailable, try again"},
		{"list", get("/v1/products"), 503, "service unavailable, try again"},
		{"readiness", get("/readyz"), 503, `"backend":"catalog"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.roundTrip(t, tc.request)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.inBody) {
				t.Fatalf("got %d %s; want %d with %s", r.status, r.body, tc.status, tc.inBody)
			}
			_, port, _ := net.SplitHostPort(closed)
			if strings.Contains(string(r.body), port) {
				t.Errorf("body names the backend port: %s", r.body)
			}
			checkNoLeak(t, r)
		})
	}

	// The failure is logged in detail on the gateway.
	if n := s.logs.FilterMessage("backend call failed").Len(); n == 0 {
		t.Error("no log entry for the failed backend calls")
	}
}

// TestPanicIsLogged checks that a panic in the gateway leaves a log entry
// with its stack, a 500 for the client and a gateway that keeps serving.
func TestPanicIsLogged(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})

	r := s.roundTrip(t, get("/v1/products/"+gatewayPanic))
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status %d %s, want 500", r.status, r.body)
	}
	checkStatusBody(t, r, codeInternal, "internal error", "")
	checkNoLeak(t, r)

	entries := s.logs.FilterMessage("panic while serving a request").All()
	if len(entries) != 1 {
		t.Fatalf("%d panic log entries, want 1", len(entries))
	}
	fields := entries[0].ContextMap()
	if p, _ := fields["panic"].(string); !strings.Contains(p, leakMarker) {
		t.Errorf("log entry lacks the panic value: %v", fields["panic"])
	}
	if st, _ := fields["stack"].(string); !strings.Contains(st, "panickyConn.Invoke") {
		t.Errorf("log entry lacks the stack of the panic: %q", st)
	}

	if r := s.roundTrip(t, get("/v1/products/p-1001")); r.status != http.StatusOK {
		t.Fatalf("after the panic: status %d %s", r.status, r.body)
	}
}
