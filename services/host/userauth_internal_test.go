package host

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/authz"
)

func TestGuardScope(t *testing.T) {
	served := func(methods map[string][]string) map[string]grpc.ServiceInfo {
		info := make(map[string]grpc.ServiceInfo)
		for svc, names := range methods {
			var ms []grpc.MethodInfo
			for _, n := range names {
				ms = append(ms, grpc.MethodInfo{Name: n})
			}
			info[svc] = grpc.ServiceInfo{Methods: ms}
		}

		return info
	}

	tests := []struct {
		name         string
		served       map[string][]string
		wantServices []string
		wantRules    int
		// wantErr names a method that must be refused; "" for no error.
		wantErr string
	}{
		{
			name: "what a host registers",
			served: map[string][]string{
				"gatehouse.catalog.v1.CatalogService":      {"GetProduct"},
				"grpc.health.v1.Health":                    {"Check", "List", "Watch"},
				"grpc.reflection.v1.ServerReflection":      {"ServerReflectionInfo"},
				"grpc.reflection.v1alpha.ServerReflection": {"ServerReflectionInfo"},
			},
			wantServices: []string{"gatehouse.catalog.v1.CatalogService"},
			wantRules:    5,
		},
		{
			name: "a new health method is not public by accident",
			served: map[string][]string{
				"grpc.health.v1.Health": {"Check", "Drain"},
			},
			wantErr: "/grpc.health.v1.Health/Drain",
		},
		{
			name: "a new reflection method is not public by accident",
			served: map[string][]string{
				"grpc.reflection.v2.ServerReflection": {"ServerReflectionInfo"},
			},
			wantErr: "/grpc.reflection.v2.ServerReflection/ServerReflectionInfo",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			services, rules, err := guardScope(served(tt.served))

			if tt.wantErr != "" {
				if !errors.Is(err, authz.ErrNoRule) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("guardScope error %v, want ErrNoRule naming %s", err, tt.wantErr)
				}

				return
			}

			if err != nil {
				t.Fatalf("guardScope: %v", err)
			}

			if strings.Join(services, ",") != strings.Join(tt.wantServices, ",") {
				t.Errorf("services %v, want %v", services, tt.wantServices)
			}

			if len(rules) != tt.wantRules {
				t.Errorf("%d public rules, want %d", len(rules), tt.wantRules)
			}
		})
	}
}

// TestGuardNotLoaded checks the guard's place in the chain before Run
// built it: nothing passes.
func TestGuardNotLoaded(t *testing.T) {
	var g servedGuard

	ran := false
	_, err := g.unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/a.B/C"},
		func(context.Context, any) (any, error) {
			ran = true
			return nil, nil
		})
	if status.Code(err) != codes.Unavailable || ran {
		t.Errorf("unary before loading: %v, handler ran: %v", err, ran)
	}

	err = g.stream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/a.B/C"},
		func(any, grpc.ServerStream) error {
			ran = true
			return nil
		})
	if status.Code(err) != codes.Unavailable || ran {
		t.Errorf("stream before loading: %v, handler ran: %v", err, ran)
	}
}
