package gateway_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzGatewayRequest sends arbitrary method, target, Content-Type and body
// to a running gateway with healthy backends (no injected faults). Whatever arrives, the
// gateway must answer, never with a 5xx, errors must have the JSON status
// shape, and no answer may show internal detail.
//
// The seed corpus runs in every `go test`; to search longer:
//
//	go test ./gateway -run '^$' -fuzz '^FuzzGatewayRequest$' -fuzztime 5m
func FuzzGatewayRequest(f *testing.F) {
	seeds := []struct {
		method, target, contentType, body string
	}{
		{"GET", "/v1/products/p-1001", "", ""},
		{"GET", "/v1/products?page_size=3&page_token=", "", ""},
		{"GET", "/v1/orders?customer_id=alice&page_size=100", "", ""},
		{"GET", "/v1/orders/" + orderUUID, "", ""},
		{"GET", "/v1/orders/" + orderUUID + ":watch", "", ""},
		{"POST", "/v1/orders", "application/json", validOrder},
		{"POST", "/v1/orders", "application/json", `{"customerId":`},
		{"POST", "/v1/orders", "application/json", validOrder + "{}"},
		{"POST", "/v1/orders", "application/json; charset=utf-8",
			orderWith(`{"productId":"p-1002","quantity":"1e3"}`)},
		{"POST", "/v1/orders", "text/plain", validOrder},
		{"PUT", "/v1/orders", "application/json", "{}"},
		{"GET", "/v1/products/%FF%2F%2e%2e", "", ""},
		{"GET", "/v1/orders?customer_id=%C3%28&customer_id=b", "", ""},
		{"OPTIONS", "*", "", ""},
		{"GET", "/healthz", "", ""},
		{"POST", "/readyz", "application/json", "[]"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.contentType, []byte(s.body))
	}

	s := newStack(f, stackOptions{noFaults: true})
	client := &keepAliveClient{addr: s.addr}
	f.Cleanup(client.close)

	f.Fuzz(func(t *testing.T, method, target, contentType string, body []byte) {
		if len(body) > 256<<10 {
			body = body[:256<<10]
		}

		req := oneLine(method) + " " + oneLine(target) + " HTTP/1.1\r\nHost: gatehouse.test\r\n"
		if ct := oneLine(contentType); ct != "" {
			req += "Content-Type: " + ct + "\r\n"
		}
		req += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"

		r := client.roundTrip(t, req+string(body), isHead(method))
		if r.status < 100 {
			t.Fatalf("no answer to %q", req)
		}
		if r.status >= 500 {
			t.Fatalf("status %d for %q: %s", r.status, req, r.body)
		}
		checkNoLeak(t, r)

		if r.status >= 400 && r.header.Get("Content-Type") == "application/json" &&
			r.header.Get("Allow") != "x" && !isHead(method) {
			decodeStatus(t, r)
		}
		if r.status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
			t.Fatalf("405 without Allow for %q", req)
		}
	})
}

// oneLine keeps a fuzzed value on its line of the request.
func oneLine(s string) string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(s)
}

func isHead(method string) bool {
	return strings.EqualFold(oneLine(method), http.MethodHead)
}

// keepAliveClient sends requests over one kept-alive connection and dials
// again only when the server closes it, so a long fuzzing run does not
// fill the machine with TIME_WAIT sockets. It is used by one goroutine.
type keepAliveClient struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
}

func (c *keepAliveClient) roundTrip(t *testing.T, request string, head bool) rawResponse {
	t.Helper()

	// A kept-alive connection the server has just closed fails the first
	// attempt; a fresh one must not.
	for attempt := 0; ; attempt++ {
		r, err := c.try(request, head)
		if err == nil {
			return r
		}
		c.close()
		if attempt > 0 {
			t.Fatalf("no answer to %q: %v", request, err)
		}
	}
}

func (c *keepAliveClient) try(request string, head bool) (rawResponse, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return rawResponse{}, err
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	_ = c.conn.SetDeadline(time.Now().Add(15 * time.Second))

	// A server that answers early (413, say) may close before the whole
	// request is written; its answer is still there to read.
	_, writeErr := io.WriteString(c.conn, request)

	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return rawResponse{}, errors.Join(writeErr, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return rawResponse{}, err
	}
	if resp.Close {
		c.close()
	}

	return rawResponse{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func (c *keepAliveClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}
