package gateway_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"google.golang.org/grpc/codes"
)

const (
	validOrder = `{"customerId":"alice","lineItems":[{"productId":"p-1001","quantity":1}]}`
	jsonType   = "Content-Type: application/json"
	// orderUUID is well formed but names no order.
	orderUUID = "7a0f4e2c-94d4-4f9b-8d55-1f0e2f8b9c01"
)

// Codes of the JSON status body; notJSON marks answers net/http writes
// itself, in plain text, before the gateway sees the request.
const (
	notJSON            = -1
	codeInvalid        = 3
	codeDeadline       = 4
	codeNotFound       = 5
	codeExhausted      = 8
	codeUnimplemented  = 12
	codeInternal       = 13
	codeOK             = 0
	closedWithoutReply = 0
)

type hostileCase struct {
	name string
	// request is sent raw on a fresh connection, unless send is set.
	request string
	send    func(t *testing.T, s *stack) rawResponse

	status int // closedWithoutReply: the server hung up without a word
	code   int // gRPC code in the JSON body, or notJSON
	inMsg  string
	field  string // a BadRequest field violation the body must carry
	allow  string // the Allow header a 405 must carry

	// reachesBackend: the request may cost a backend call. Every other
	// case must be refused at the edge.
	reachesBackend bool
	// fault: the case injects a failure, so a 5xx is the right answer.
	fault bool
}

func orderWith(lineItems string) string {
	return `{"customerId":"alice","lineItems":[` + lineItems + `]}`
}

func postOrder(body string, headers ...string) string {
	return request("POST", "/v1/orders", append([]string{jsonType}, headers...), body)
}

func get(target string, headers ...string) string {
	return request("GET", target, headers, "")
}

// TestHostileRequests sends hostile or broken requests to a running
// gateway and checks each answer exactly: status, JSON shape, code, a
// message that names the problem, and whether a backend was bothered.
func TestHostileRequests(t *testing.T) {
	s := newStack(t, stackOptions{})

	cases := []hostileCase{
		// Size limits.
		{name: "huge body declared, barely sent",
			request: postOrder(strings.Repeat("x", 1024), "Content-Length: 10485760"),
			status:  413, code: codeExhausted, inMsg: "exceeds 65536 bytes"},
		{name: "huge chunked body",
			request: postOrder(chunked(strings.Repeat(" ", maxBodyBytes+1024)),
				"Transfer-Encoding: chunked"),
			status: 413, code: codeExhausted, inMsg: "exceeds 65536 bytes"},
		{name: "body one byte over the limit",
			request: postOrder(`{"customerId":"alice"}` + strings.Repeat(" ", maxBodyBytes-21)),
			status:  413, code: codeExhausted, inMsg: "exceeds"},
		{name: "body on a route that takes none",
			request: request("GET", "/v1/products", []string{jsonType}, "{}"),
			status:  413, code: codeExhausted, inMsg: "takes no request body"},
		{name: "chunked body on a route that takes none",
			request: request("GET", "/v1/products", []string{"Transfer-Encoding: chunked"},
				chunked("hello")),
			status: 413, code: codeExhausted, inMsg: "takes no request body"},
		{name: "header over the gateway limit",
			request: get("/v1/products", "X-Pad: "+strings.Repeat("a", 20<<10)),
			status:  431, code: codeExhausted, inMsg: "exceed 16384 bytes"},
		{name: "many small headers over the gateway limit",
			request: get("/v1/products", manyHeaders(600)...),
			status:  431, code: codeExhausted, inMsg: "exceed 16384 bytes"},
		{name: "URL over the gateway limit",
			request: get("/v1/products?page_token=" + strings.Repeat("a", 20<<10)),
			status:  431, code: codeExhausted, inMsg: "exceed 16384 bytes"},
		{name: "header over the server cap",
			request: get("/v1/products", "X-Pad: "+strings.Repeat("a", 100<<10)),
			status:  431, code: notJSON},

		// Malformed JSON bodies.
		{name: "truncated JSON", request: postOrder(`{"customerId":`),
			status: 400, code: codeInvalid, inMsg: "ends at byte 14"},
		{name: "JSON with trailing garbage", request: postOrder(validOrder + " garbage"),
			status: 400, code: codeInvalid, inMsg: "unexpected data after the value"},
		{name: "two JSON objects", request: postOrder(validOrder + validOrder),
			status: 400, code: codeInvalid, inMsg: "unexpected data after the value"},
		{name: "JSON syntax error", request: postOrder(`{"customerId" "alice"}`),
			status: 400, code: codeInvalid, inMsg: "malformed JSON at byte"},
		{name: "form data sent as JSON", request: postOrder(`customerId=alice`),
			status: 400, code: codeInvalid, inMsg: "malformed JSON"},
		{name: "deeply nested arrays",
			request: postOrder(`{"lineItems":` + strings.Repeat("[", 20000) +
				strings.Repeat("]", 20000) + `}`),
			status: 400, code: codeInvalid, inMsg: "exceeded max depth"},
		{name: "deeply nested objects in an unknown field",
			request: postOrder(strings.Repeat(`{"x":`, 5000) + "1" + strings.Repeat("}", 5000)),
			status:  400, code: codeInvalid, inMsg: `unknown field "x"`},
		{name: "unknown JSON field",
			request: postOrder(`{"customerId":"a","lineItems":[],"isAdmin":true}`),
			status:  400, code: codeInvalid, inMsg: `unknown field "isAdmin"`},
		{name: "invalid UTF-8 in a JSON string",
			request: postOrder(`{"customerId":"al` + "\xff" + `ice","lineItems":[]}`),
			status:  400, code: codeInvalid, inMsg: "UTF-8"},

		// Wrong types and numbers out of range.
		{name: "string where a number belongs",
			request: postOrder(orderWith(`{"productId":"p-1001","quantity":"lots"}`)),
			status:  400, code: codeInvalid, inMsg: "quantity"},
		{name: "object where a list belongs",
			request: postOrder(`{"customerId":"alice","lineItems":{"productId":"p-1001"}}`),
			status:  400, code: codeInvalid, inMsg: "syntax error (line 1:35): unexpected token {"},
		{name: "array as the whole body", request: postOrder(`[1,2]`),
			status: 400, code: codeInvalid, inMsg: "invalid request body"},
		{name: "number beyond int64",
			request: postOrder(orderWith(`{"productId":"p-1001","quantity":9223372036854775808}`)),
			status:  400, code: codeInvalid, inMsg: "quantity"},
		{name: "number beyond float64",
			request: postOrder(orderWith(`{"productId":"p-1001","quantity":1e400}`)),
			status:  400, code: codeInvalid, inMsg: "quantity"},
		{name: "fractional count",
			request: postOrder(orderWith(`{"productId":"p-1001","quantity":1.5}`)),
			status:  400, code: codeInvalid, inMsg: "quantity"},
		{name: "number above the validation rule",
			request: postOrder(orderWith(`{"productId":"p-1001","quantity":5000}`)),
			status:  400, code: codeInvalid, field: "line_items[0].quantity"},
		{name: "order id that is not a UUID", request: get("/v1/orders/nope"),
			status: 400, code: codeInvalid, field: "id"},
		{name: "watch of an id that is not a UUID", request: get("/v1/orders/nope:watch"),
			status: 400, code: codeInvalid, field: "id"},
		{name: "watch of an order that does not exist",
			request: get("/v1/orders/" + orderUUID + ":watch"),
			status:  404, code: codeNotFound, inMsg: "order not found", reachesBackend: true},
		{name: "page size beyond int32", request: get("/v1/products?page_size=99999999999"),
			status: 400, code: codeInvalid, inMsg: "page_size"},
		{name: "negative page size", request: get("/v1/products?page_size=-1"),
			status: 400, code: codeInvalid, field: "page_size"},
		{name: "page size not a number", request: get("/v1/products?page_size=ten"),
			status: 400, code: codeInvalid, inMsg: "page_size"},
		{name: "repeated query parameter", request: get("/v1/products?page_size=1&page_size=2"),
			status: 400, code: codeInvalid, inMsg: "page_size"},

		// URLs: encoding, dots and slashes.
		{name: "invalid UTF-8 in a path parameter", request: get("/v1/products/%FF"),
			status: 400, code: codeInvalid, inMsg: "not valid UTF-8"},
		{name: "raw invalid UTF-8 in the path", request: get("/v1/orders/\xff\xfe"),
			status: 400, code: codeInvalid, inMsg: "not valid UTF-8"},
		{name: "invalid UTF-8 in a query value", request: get("/v1/orders?customer_id=%C3%28"),
			status: 400, code: codeInvalid, inMsg: `"customer_id" is not valid UTF-8`},
		{name: "bad percent-encoding in the query", request: get("/v1/products?page_size=%zz"),
			status: 400, code: codeInvalid, inMsg: "invalid percent-encoding"},
		{name: "encoded slashes in a path parameter",
			request: get("/v1/products/p-1%2F..%2F..%2Fadmin"),
			status:  400, code: codeInvalid, inMsg: "encoded slash"},
		{name: "encoded slash in a watched id", request: get("/v1/orders/abc%2fdef:watch"),
			status: 400, code: codeInvalid, inMsg: "encoded slash"},
		// The mux would route this to GetProduct, while a per-route rate
		// limit, matching net/http patterns, would not know the route.
		{name: "encoded slashes between segments", request: get("/v1%2Fproducts%2Fp-1001"),
			status: 400, code: codeInvalid, inMsg: "encoded slash"},
		{name: "encoded dots as a path parameter", request: get("/v1/products/%2E%2E"),
			status: 400, code: codeInvalid, inMsg: ". or .. segment"},
		{name: "dot segments in the path", request: get("/v1/orders/../products"),
			status: 400, code: codeInvalid, inMsg: ". or .. segment"},
		// A per-route limit would clean this to "/v1/products/" and match no
		// rule, while the mux would take "." as the product id.
		{name: "a trailing dot segment", request: get("/v1/products/."),
			status: 400, code: codeInvalid, inMsg: ". or .. segment"},
		{name: "dots inside a segment are left to validation",
			request: get("/v1/products/p..1"), status: 400, code: codeInvalid, field: "id"},
		{name: "path parameter far too long",
			request: get("/v1/products/" + strings.Repeat("p", 4096)),
			status:  400, code: codeInvalid, field: "id"},

		// Content types, routes and methods.
		{name: "wrong Content-Type",
			request: request("POST", "/v1/orders", []string{"Content-Type: text/plain"},
				validOrder),
			status: 415, code: codeInvalid, inMsg: "application/json"},
		{name: "missing Content-Type", request: request("POST", "/v1/orders", nil, validOrder),
			status: 415, code: codeInvalid, inMsg: "application/json"},
		{name: "JSON in a foreign charset",
			request: request("POST", "/v1/orders",
				[]string{"Content-Type: application/json; charset=iso-8859-1"}, validOrder),
			status: 415, code: codeInvalid, inMsg: "utf-8"},
		{name: "form-encoded body",
			request: request("POST", "/v1/orders",
				[]string{"Content-Type: application/x-www-form-urlencoded"}, "customerId=alice"),
			status: 415, code: codeInvalid},
		{name: "compressed body", request: postOrder("\x1f\x8b\x08\x00", "Content-Encoding: gzip"),
			status: 415, code: codeInvalid, inMsg: "Content-Encoding"},
		{name: "unknown route", request: get("/v1/nothing"),
			status: 404, code: codeNotFound},
		{name: "root path", request: get("/"), status: 404, code: codeNotFound},
		{name: "asterisk target", request: request("OPTIONS", "*", nil, ""),
			status: 400, code: codeInvalid},
		{name: "wrong method on a product",
			request: request("DELETE", "/v1/products/p-1001", nil, ""),
			status:  405, code: codeUnimplemented, allow: "GET"},
		{name: "wrong method on orders", request: request("PUT", "/v1/orders", nil, ""),
			status: 405, code: codeUnimplemented, allow: "GET, POST"},
		{name: "wrong method on a watch",
			request: request("POST", "/v1/orders/"+orderUUID+":watch", []string{jsonType}, "{}"),
			status:  405, code: codeUnimplemented, allow: "GET"},
		{name: "method override header is ignored",
			request: request("POST", "/v1/products/p-1001",
				[]string{"X-HTTP-Method-Override: GET", jsonType}, "{}"),
			status: 405, code: codeUnimplemented, allow: "GET"},
		{name: "write to an operational endpoint",
			request: request("POST", "/healthz", []string{jsonType}, "{}"),
			status:  405, code: codeUnimplemented, allow: "GET, HEAD"},

		// Deadlines.
		{name: "malformed Grpc-Timeout", request: get("/v1/products/p-1001", "Grpc-Timeout: soon"),
			status: 400, code: codeInvalid, inMsg: "Grpc-Timeout"},
		{name: "zero Grpc-Timeout", request: get("/v1/products/p-1001", "Grpc-Timeout: 0S"),
			status: 400, code: codeInvalid, inMsg: "Grpc-Timeout"},
		{name: "Grpc-Timeout of nine digits",
			request: get("/v1/products/p-1001", "Grpc-Timeout: 999999999S"),
			status:  400, code: codeInvalid, inMsg: "Grpc-Timeout"},
		{name: "slow backend past the client's deadline",
			request: get("/v1/products/"+slowProduct, "Grpc-Timeout: 50m"),
			status:  504, code: codeDeadline, inMsg: "deadline exceeded",
			reachesBackend: true, fault: true},

		// Broken HTTP that net/http refuses before the gateway sees it.
		{name: "conflicting Content-Length headers",
			request: postOrder(validOrder, "Content-Length: 5", "Content-Length: 6"),
			status:  400, code: notJSON},
		// RFC 9112 section 6.3: chunked framing wins over Content-Length.
		{name: "Content-Length and chunked together",
			request: postOrder(chunked(validOrder), "Content-Length: 5",
				"Transfer-Encoding: chunked"),
			status: 200, reachesBackend: true},
		{name: "control character in a header",
			request: get("/v1/products", "X-Evil: a\x00b"),
			status:  400, code: notJSON},

		// Failures inside: panics become 500s without detail.
		{name: "backend panics", request: get("/v1/products/" + backendPanic),
			status: 500, code: codeInternal, inMsg: "internal error",
			reachesBackend: true, fault: true},
		{name: "gateway panics", request: get("/v1/products/" + gatewayPanic),
			status: 500, code: codeInternal, inMsg: "internal error", fault: true},

		// Slow and vanishing clients.
		{name: "slow-loris headers", send: slowLoris, status: closedWithoutReply},
		{name: "slow body", send: slowBody, status: 408, code: codeDeadline,
			inMsg: "not received in time"},
		{name: "client disconnects mid-stream", send: disconnectMidStream, status: 200,
			code: codeOK, reachesBackend: true},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d hostile cases", len(cases))
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.catalogCalls.calls.Load() + s.ordersCalls.calls.Load()

			var r rawResponse
			if tc.send != nil {
				r = tc.send(t, s)
			} else {
				r = s.roundTrip(t, tc.request)
			}

			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %q", r.status, tc.status, r.body)
			}
			if r.status >= 500 && !tc.fault {
				t.Errorf("5xx for a case that is not a backend failure")
			}
			if hops := s.catalogCalls.calls.Load() + s.ordersCalls.calls.Load() - before; hops != 0 &&
				!tc.reachesBackend {
				t.Errorf("refused at the edge, yet %d backend calls were made", hops)
			}
			if tc.allow != "" && r.header.Get("Allow") != tc.allow {
				t.Errorf("Allow %q, want %q", r.header.Get("Allow"), tc.allow)
			}
			checkNoLeak(t, r)
			t.Logf("%d %s", r.status, r.body)

			if r.status < 400 || tc.code == notJSON {
				return
			}
			checkStatusBody(t, r, tc.code, tc.inMsg, tc.field)
		})
	}

	// The gateway survived all of the above.
	if r := s.roundTrip(t, get("/v1/products/p-1001")); r.status != http.StatusOK {
		t.Fatalf("after the hostile cases: status %d %s", r.status, r.body)
	}
}

// checkStatusBody checks the JSON status of an error answer.
func checkStatusBody(t *testing.T, r rawResponse, code int, inMsg, field string) {
	t.Helper()

	st := decodeStatus(t, r)
	if *st.Code != code {
		t.Errorf("code %d, want %d: %s", *st.Code, code, r.body)
	}
	if *st.Message == "" || !strings.Contains(*st.Message, inMsg) {
		t.Errorf("message %q does not contain %q", *st.Message, inMsg)
	}
	if field != "" && !hasFieldViolation(t, st, field) {
		t.Errorf("no violation on field %q in %s", field, r.body)
	}
}

func hasFieldViolation(t *testing.T, st jsonStatus, field string) bool {
	t.Helper()

	for _, d := range st.Details {
		var br struct {
			Type       string `json:"@type"`
			Violations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		}
		if err := json.Unmarshal(d, &br); err != nil {
			t.Fatalf("detail %s: %v", d, err)
		}
		for _, v := range br.Violations {
			if strings.HasSuffix(br.Type, "google.rpc.BadRequest") && v.Field == field {
				return true
			}
		}
	}

	return false
}

// chunked encodes body as one chunk and the last chunk.
func chunked(body string) string {
	return strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"
}

func manyHeaders(n int) []string {
	h := make([]string, n)
	for i := range h {
		h[i] = "X-Filler-" + strconv.Itoa(i) + ": " + strings.Repeat("f", 20)
	}

	return h
}

// slowLoris sends its headers a few bytes at a time and never finishes
// them. The server must hang up once ReadHeaderTimeout has passed.
func slowLoris(t *testing.T, s *stack) rawResponse {
	conn := s.connect(t)
	if _, err := io.WriteString(conn, "GET /v1/products HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatalf("write: %v", err)
	}

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(conn, "X-Drip-"+strconv.Itoa(i)+": y\r\n"); err != nil {
				return // the server hung up
			}
		}
	}()

	return readResponse(t, conn, false)
}

// slowBody sends complete headers, then the body a byte at a time. The
// server must give up once ReadTimeout has passed and answer 408.
func slowBody(t *testing.T, s *stack) rawResponse {
	conn := s.connect(t)
	head := "POST /v1/orders HTTP/1.1\r\nHost: x\r\n" + jsonType + "\r\n" +
		"Content-Length: " + strconv.Itoa(len(validOrder)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatalf("write: %v", err)
	}

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(validOrder)-1; i++ { // never the last byte
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{validOrder[i]}); err != nil {
				return
			}
		}
	}()

	return readResponse(t, conn, false)
}

// disconnectMidStream opens a watch, reads its first event and hangs up.
// The watch on the orders backend must end as a result.
func disconnectMidStream(t *testing.T, s *stack) rawResponse {
	id := s.createOrder(t)

	conn := s.connect(t)
	if _, err := io.WriteString(conn, get("/v1/orders/"+id+":watch")); err != nil {
		t.Fatalf("write: %v", err)
	}
	st := readFirstStreamLine(t, conn)
	if !strings.Contains(st.first, "ORDER_STATUS_RESERVED") {
		t.Fatalf("first stream line %q lacks the order's status", st.first)
	}
	_ = conn.Close()

	s.awaitWatchEnd(t, id, codes.Canceled)

	return rawResponse{status: http.StatusOK, header: st.header}
}

// A body over the limit is refused without reading the rest of it, so the
// connection cannot carry another request: the answer says so and the
// server closes it, whether the length was declared or the body chunked,
// also behind the layers that wrap the response writer.
func TestOversizedBodyClosesConnection(t *testing.T) {
	s := newStack(t, stackOptions{accessLog: true})
	huge := strings.Repeat(" ", maxBodyBytes+1024)

	for _, tc := range []struct{ name, request string }{
		{"declared length", postOrder(huge)},
		{"chunked", postOrder(chunked(huge), "Transfer-Encoding: chunked")},
		{"chunked, 300 KB", postOrder(chunked(strings.Repeat(" ", 300<<10)),
			"Transfer-Encoding: chunked")},
		{"chunked on a route that takes none", request("GET", "/v1/products",
			[]string{"Transfer-Encoding: chunked"}, chunked("hello"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := s.connect(t)
			_, _ = io.WriteString(conn, tc.request)

			resp := readResponse(t, conn, false)
			if resp.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status = %d, want 413", resp.status)
			}
			if !resp.close {
				t.Errorf("response without Connection: close")
			}

			// The server must hang up rather than wait for a next request;
			// the connection's deadline bounds the wait.
			buf := make([]byte, 1)
			if _, err := conn.Read(buf); !errors.Is(err, io.EOF) &&
				!errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read after the answer: %v, want EOF or reset", err)
			}
		})
	}
}

// TestRefusedMethodIsLabelled checks that a 405 on a known path is labelled
// with that path's route template in the access log (and so in metrics),
// not left "unmatched", as an unknown path is.
func TestRefusedMethodIsLabelled(t *testing.T) {
	s := newStack(t, stackOptions{accessLog: true})

	tests := []labelCase{
		{request("DELETE", "/v1/products/p-1001", nil, ""), 405, "/v1/products/{id}"},
		{request("POST", "/v1/orders/"+orderUUID+":watch", []string{jsonType}, "{}"), 405,
			"/v1/orders/{id}:watch"},
		{get("/v1/nothing"), 404, "unmatched"},
	}
	checkLabels(t, s, tests)
}

// TestRefusedInFrontIsLabelled checks that a request the per-IP limit
// refuses, in front of the gateway and before any route is matched, is
// labelled with the route template its path belongs to; an unknown path
// stays unmatched.
func TestRefusedInFrontIsLabelled(t *testing.T) {
	s := newStack(t, stackOptions{accessLog: true,
		perIP: &ratelimit.Policy{Default: oncePerHour(1)}})

	tests := []labelCase{
		{get("/v1/products/p-1001"), 200, "/v1/products/{id}"},
		// The client's one request is spent: everything below is a 429.
		{get("/v1/products/p-1002"), 429, "/v1/products/{id}"},
		{request("POST", "/v1/orders/"+orderUUID+":watch", []string{jsonType}, "{}"), 429,
			"/v1/orders/{id}:watch"},
		{get("/v1/orders/" + orderUUID), 429, "/v1/orders/{id}"},
		{get("/healthz"), 429, "/healthz"},
		{get("/v1/products/p-1001/extra"), 429, "unmatched"},
		{get("/v1/nothing"), 429, "unmatched"},
	}
	checkLabels(t, s, tests)
}

// TestPerIPMethodRule checks that the per-IP stage, in front of the
// gateway, applies a per-method rule: it learns the RPC from
// Gateway.Method before the mux has matched anything.
func TestPerIPMethodRule(t *testing.T) {
	s := newStack(t, stackOptions{accessLog: true, perIP: &ratelimit.Policy{
		Default: ratelimit.Rule{Rate: 1000, Burst: 1000},
		Methods: map[string]ratelimit.Rule{
			catalogv1.CatalogService_GetProduct_FullMethodName: oncePerHour(2),
		},
	}})

	checkLabels(t, s, []labelCase{
		{get("/v1/products/p-1001"), 200, "/v1/products/{id}"},
		{get("/v1/products/p-1002"), 200, "/v1/products/{id}"},
		// GetProduct's two are spent; other RPCs keep the default.
		{get("/v1/products/p-1001"), 429, "/v1/products/{id}"},
		{get("/v1/products"), 200, "/v1/products"},
		{get("/v1/products/p-1003"), 429, "/v1/products/{id}"},
	})
}

// labelCase is a raw request, the status it gets and the route label its
// access line must carry.
type labelCase struct {
	request string
	status  int
	route   string
}

// checkLabels sends each test's request in order and checks its status,
// then waits for one access line per test and checks the route each
// carries.
func checkLabels(t *testing.T, s *stack, tests []labelCase) {
	t.Helper()

	for _, tc := range tests {
		resp := s.roundTrip(t, tc.request)
		if resp.status != tc.status {
			t.Fatalf("%q: status %d, want %d", tc.request, resp.status, tc.status)
		}
	}

	// The access line is written when the handler returns, after the
	// answer; wait for all of them.
	deadline := time.Now().Add(5 * time.Second)
	for s.logs.FilterMessage("http request").Len() < len(tests) {
		if time.Now().After(deadline) {
			t.Fatalf("access lines: %d, want %d", s.logs.FilterMessage("http request").Len(),
				len(tests))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, e := range s.logs.FilterMessage("http request").All() {
		if got := e.ContextMap()["route"]; got != tests[i].route {
			t.Errorf("access line %d (%s, status %v): route %q, want %q", i,
				e.ContextMap()["path"], e.ContextMap()["status"], got, tests[i].route)
		}
	}
}
