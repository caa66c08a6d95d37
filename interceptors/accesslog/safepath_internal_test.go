package accesslog

import "testing"

func TestSafePath(t *testing.T) {
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
	tests := []struct {
		name, path, want string
	}{
		{"product", "/v1/products/p-1001", "/v1/products/p-1001"},
		{"order uuid", "/v1/orders/7a0f4e2c-94d4-4f9b-8d55-1f0e2f8b9c01",
			"/v1/orders/7a0f4e2c-94d4-4f9b-8d55-1f0e2f8b9c01"},
		{"jwt as id", "/v1/orders/" + jwt, "/v1/orders/[redacted]"},
		{"jwt with verb", "/v1/orders/" + jwt + ":watch", "/v1/orders/[redacted]"},
		{"long opaque key", "/v1/x/" + "AKIAabcdefghijklmnopqrstuvwxyz0123456789XYZ",
			"/v1/x/[redacted]"},
		{"root", "/", "/"},
		{"secret between clean segments", "/v1/" + jwt + "/items", "/v1/[redacted]/items"},
		{"no leading slash", jwt, "[redacted]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := safePath(tc.path); got != tc.want {
				t.Fatalf("safePath(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}
