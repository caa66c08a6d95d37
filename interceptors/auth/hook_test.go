package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

func TestRefusalHook(t *testing.T) {
	tests := []struct {
		name  string
		token string
		// wantErr is what the refusal must wrap; nil when the call passes
		// and the hook must not run.
		wantErr     error
		wantSubject string
	}{
		{name: "allowed", token: "writer"},
		{name: "no token", wantErr: jwtauth.ErrNoToken},
		{name: "bad token", token: "junk", wantErr: jwtauth.ErrBadSignature},
		{name: "scope missing", token: "reader", wantErr: authz.ErrForbidden, wantSubject: "r"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []auth.Refusal

			g, err := auth.New(fakeVerifier, gatehousePolicy(t),
				auth.WithRefusalHook(func(_ context.Context, r auth.Refusal) {
					got = append(got, r)
				}))
			if err != nil {
				t.Fatalf("auth.New: %v", err)
			}

			// The same call over gRPC, then over HTTP.
			ctx := context.Background()
			req := httptest.NewRequest(http.MethodPost, "/v1/reserve", nil)
			if tt.token != "" {
				ctx = metadata.NewIncomingContext(ctx,
					metadata.Pairs("authorization", "Bearer "+tt.token))
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}

			_, _ = g.UnaryServerInterceptor()(ctx, nil,
				&grpc.UnaryServerInfo{FullMethod: reserveStock},
				func(context.Context, any) (any, error) { return "done", nil })

			resolve := func(*http.Request) (string, bool) { return reserveStock, true }
			backend := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
			g.HTTPMiddleware(resolve)(backend).ServeHTTP(httptest.NewRecorder(), req)

			if tt.wantErr == nil {
				if len(got) != 0 {
					t.Fatalf("hook saw %+v, want no refusal", got)
				}

				return
			}

			if len(got) != 2 {
				t.Fatalf("hook ran %d times, want twice (grpc, http)", len(got))
			}

			for i, transport := range []string{"grpc", "http"} {
				r := got[i]
				if r.Transport != transport || r.Method != reserveStock {
					t.Errorf("refusal %d: transport %q method %q, want %q %q", i,
						r.Transport, r.Method, transport, reserveStock)
				}

				if !errors.Is(r.Err, tt.wantErr) {
					t.Errorf("refusal %d: error %v, want it to wrap %v", i, r.Err, tt.wantErr)
				}

				subject := ""
				if r.Principal != nil {
					subject = r.Principal.Subject
				}

				if subject != tt.wantSubject {
					t.Errorf("refusal %d: principal %q, want %q", i, subject, tt.wantSubject)
				}
			}
		})
	}
}
