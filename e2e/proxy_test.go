package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestBehindTrustedProxy runs the gateway trusting 127.0.0.1 as a proxy,
// so that X-Forwarded-For names the client, and checks that the abuse
// guard, the security events and the access log all use that client, not
// the proxy: failures of a client behind the proxy block that client
// alone.
func TestBehindTrustedProxy(t *testing.T) {
	const (
		client = "203.0.113.50"
		other  = "203.0.113.51"
		third  = "203.0.113.52"
	)
	stack, output, _ := startStack(t, "-trusted-proxies", "127.0.0.1/32",
		"-abuse-max-failures", "3")
	gw := stack.GatewayURL

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	token, err := stack.Token(ctx, "orders.read")
	if err != nil {
		t.Fatal(err)
	}

	get := func(xff, auth string) int {
		t.Helper()
		var headers []string
		if auth != "" {
			headers = append(headers, "Authorization", auth)
		}
		if xff != "" {
			headers = append(headers, "X-Forwarded-For", xff)
		}

		return call(t, "GET", gw+"/v1/orders", "", headers...).status
	}

	if got := get(client, "Bearer "+token); got != http.StatusOK {
		t.Fatalf("valid request from %s: %d, want 200", client, got)
	}

	// The fourth failure within the window exceeds -abuse-max-failures.
	for i := range 4 {
		if got := get(client, "Bearer not.a.token"); got != http.StatusUnauthorized {
			t.Fatalf("bad request %d from %s: %d, want 401", i, client, got)
		}
	}

	if got := get(client, "Bearer "+token); got != http.StatusTooManyRequests {
		t.Errorf("valid request from the blocked %s: %d, want 429", client, got)
	}
	if got := get(other, "Bearer "+token); got != http.StatusOK {
		t.Errorf("valid request from %s behind the same proxy: %d, want 200", other, got)
	}
	if got := get("", "Bearer "+token); got != http.StatusOK {
		t.Errorf("valid request from the proxy itself: %d, want 200", got)
	}

	// Lines are flushed every 100 ms; wait for the block's event.
	var started, failure, access map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for started == nil || failure == nil || access == nil {
		if time.Now().After(deadline) {
			t.Fatalf("missing lines: block started %v, auth failure %v, access %v",
				started, failure, access)
		}
		for _, l := range logLines(output.String()) {
			if l.proc != "gateway" {
				continue
			}
			switch {
			case l.fields["event"] == "abuse_block_started":
				started = l.fields
			case l.fields["event"] == "auth_failure":
				failure = l.fields
			case l.fields["msg"] == "http request" && l.fields["status"] == float64(401):
				access = l.fields
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	if started["client"] != client {
		t.Errorf("abuse_block_started names %v, want %s", started["client"], client)
	}
	if failure["client_ip"] != client {
		t.Errorf("auth_failure names %v, want %s", failure["client_ip"], client)
	}
	if access["client_ip"] != client {
		t.Errorf("access line of a refused request names %v, want %s", access["client_ip"],
			client)
	}

	// Requests without any token are refused (401) but are no guessing of
	// credentials: they do not count towards a block, so a client that
	// forgot its token, or others behind the same address, stay served.
	for i := range 5 {
		if got := get(third, ""); got != http.StatusUnauthorized {
			t.Fatalf("request %d without a token from %s: %d, want 401", i, third, got)
		}
	}
	if got := get(third, "Bearer "+token); got != http.StatusOK {
		t.Errorf("valid request from %s after requests without a token: %d, want 200",
			third, got)
	}
}
