package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/emptypb" // registers google/protobuf/empty.proto

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	policyv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/policy/v1"
	"github.com/gatehouse-dev/gatehouse/policy"
)

// servedByRealServer is what a binary serving catalog, orders, health and
// reflection hands to Load.
func servedByRealServer() map[string]grpc.ServiceInfo {
	s := grpc.NewServer()
	catalogv1.RegisterCatalogServiceServer(s, catalogv1.UnimplementedCatalogServiceServer{})
	ordersv1.RegisterOrderServiceServer(s, ordersv1.UnimplementedOrderServiceServer{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)

	return s.GetServiceInfo()
}

func TestLoadFromGeneratedDescriptors(t *testing.T) {
	p, err := policy.Load(servedByRealServer())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	all := []string{"catalog", "consul", "gateway", "orders"}

	tests := []struct {
		method  string
		callers []string
		origin  policy.Origin
	}{
		{"/gatehouse.catalog.v1.CatalogService/ReserveStock", []string{"orders"}, policy.FromProto},
		{"/gatehouse.catalog.v1.CatalogService/GetProduct", []string{"gateway", "orders"},
			policy.FromProto},
		{"/gatehouse.catalog.v1.CatalogService/ListProducts", []string{"gateway", "orders"},
			policy.FromProto},
		{"/gatehouse.orders.v1.OrderService/CreateOrder", []string{"gateway"}, policy.FromProto},
		{"/gatehouse.orders.v1.OrderService/WatchOrder", []string{"gateway"}, policy.FromProto},
		{"/grpc.health.v1.Health/Check", all, policy.BuiltIn},
		{"/grpc.health.v1.Health/Watch", all, policy.BuiltIn},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", nil, policy.BuiltIn},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", nil, policy.BuiltIn},
	}

	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			r, ok := p.Rule(tt.method)
			if !ok {
				t.Fatalf("no rule")
			}

			if !slices.Equal(r.Callers, tt.callers) || r.Origin != tt.origin || r.Method != tt.method {
				t.Errorf("rule %+v, want callers %v from %s", r, tt.callers, tt.origin)
			}

			for _, caller := range all {
				want := slices.Contains(tt.callers, caller)

				err := p.Check(tt.method, caller)
				if got := err == nil; got != want {
					t.Errorf("Check(%s) allowed = %v, want %v (%v)", caller, got, want, err)
				}

				if err != nil && !errors.Is(err, policy.ErrNotAllowed) {
					t.Errorf("Check(%s) = %v, want ErrNotAllowed", caller, err)
				}
			}
		})
	}

	r, _ := p.Rule("/gatehouse.catalog.v1.CatalogService/ReserveStock")
	if !slices.Equal(r.User.GetScopes(), []string{"orders.write"}) {
		t.Errorf("user rule of ReserveStock = %v, want scope orders.write", r.User)
	}

	if err := p.Check("/gatehouse.nothing.v1.X/Y", "gateway"); !errors.Is(err, policy.ErrNoRule) {
		t.Errorf("Check of an unknown method = %v, want ErrNoRule", err)
	}
}

// rule is the policy option of a synthetic method; nil means none.
type rule *policyv1.MethodPolicy

// testFiles registers a service test.v1.Svc with one method per entry of
// rules and returns the registry and what a server serving it would list.
func testFiles(t *testing.T, rules map[string]rule) (*protoregistry.Files, map[string]grpc.ServiceInfo) {
	t.Helper()

	svc := &descriptorpb.ServiceDescriptorProto{Name: proto.String("Svc")}
	info := grpc.ServiceInfo{}

	for name, r := range rules {
		m := &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(name),
			InputType:  proto.String(".google.protobuf.Empty"),
			OutputType: proto.String(".google.protobuf.Empty"),
		}

		if r != nil {
			m.Options = &descriptorpb.MethodOptions{}
			proto.SetExtension(m.Options, policyv1.E_Method, (*policyv1.MethodPolicy)(r))
		}

		svc.Method = append(svc.Method, m)
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: name})
	}

	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("test/v1/svc.proto"),
		Package:    proto.String("test.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/empty.proto"},
		Service:    []*descriptorpb.ServiceDescriptorProto{svc},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("build test descriptor: %v", err)
	}

	files := &protoregistry.Files{}
	if err := files.RegisterFile(fd); err != nil {
		t.Fatalf("register test descriptor: %v", err)
	}

	return files, map[string]grpc.ServiceInfo{"test.v1.Svc": info}
}

func TestLoadRefuses(t *testing.T) {
	ok := &policyv1.MethodPolicy{Callers: []string{"gateway"}}

	tests := []struct {
		name    string
		rules   map[string]rule
		served  map[string]grpc.ServiceInfo // overrides the synthetic service
		opts    []policy.Option
		wantErr error
		wantIn  []string // in the error message
	}{
		{
			name:    "method without rule",
			rules:   map[string]rule{"Fine": ok, "Open": nil},
			wantErr: policy.ErrMissingRule,
			wantIn:  []string{"/test.v1.Svc/Open", "test.v1.Svc.Open"},
		},
		{
			name: "rule naming an unknown service",
			rules: map[string]rule{"Pay": &policyv1.MethodPolicy{
				Callers: []string{"orders", "billing"}}},
			wantErr: policy.ErrUnknownService,
			wantIn:  []string{"/test.v1.Svc/Pay", `"billing"`},
		},
		{
			name:    "every problem at once",
			rules:   map[string]rule{"A": nil, "B": &policyv1.MethodPolicy{Callers: []string{"x"}}},
			wantErr: policy.ErrMissingRule,
			wantIn:  []string{"/test.v1.Svc/A", "/test.v1.Svc/B", `"x"`},
		},
		{
			name:    "service without descriptor",
			rules:   map[string]rule{"Fine": ok},
			served:  map[string]grpc.ServiceInfo{"ghost.v1.Svc": {Methods: []grpc.MethodInfo{{Name: "M"}}}},
			wantErr: policy.ErrMissingRule,
			wantIn:  []string{"/ghost.v1.Svc/M"},
		},
		{
			name:  "reflection caller unknown",
			rules: map[string]rule{"Fine": ok},
			served: map[string]grpc.ServiceInfo{policy.ReflectionService: {
				Methods: []grpc.MethodInfo{{Name: "ServerReflectionInfo"}}}},
			opts:    []policy.Option{policy.WithReflectionCallers("grpcurl")},
			wantErr: policy.ErrUnknownService,
			wantIn:  []string{"ServerReflectionInfo", `"grpcurl"`},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, served := testFiles(t, tt.rules)
			if tt.served != nil {
				served = tt.served
			}

			p, err := policy.Load(served, append(tt.opts, policy.WithFiles(files))...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load = %v, %v; want %v", p, err, tt.wantErr)
			}

			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
		})
	}
}

func TestLoadOptions(t *testing.T) {
	files, served := testFiles(t, map[string]rule{
		"Pay":    &policyv1.MethodPolicy{Callers: []string{"billing"}},
		"Nobody": &policyv1.MethodPolicy{},
	})
	served[policy.ReflectionService] = grpc.ServiceInfo{
		Methods: []grpc.MethodInfo{{Name: "ServerReflectionInfo"}}}

	p, err := policy.Load(served, policy.WithFiles(files),
		policy.WithKnownServices("billing", "gateway"), policy.WithReflectionCallers("gateway"))
	if err != nil {
		t.Fatalf("Load with billing known: %v", err)
	}

	tests := []struct {
		method, caller string
		allowed        bool
	}{
		{"/test.v1.Svc/Pay", "billing", true},
		{"/test.v1.Svc/Pay", "gateway", false},
		{"/test.v1.Svc/Nobody", "billing", false},
		{"/" + policy.ReflectionService + "/ServerReflectionInfo", "gateway", true},
		{"/" + policy.ReflectionService + "/ServerReflectionInfo", "billing", false},
	}

	for _, tt := range tests {
		t.Run(tt.method+" by "+tt.caller, func(t *testing.T) {
			if err := p.Check(tt.method, tt.caller); (err == nil) != tt.allowed {
				t.Errorf("Check = %v, want allowed %v", err, tt.allowed)
			}
		})
	}

	for _, bad := range [][]string{{}, {"Not_A_Name"}} {
		if _, err := policy.Load(served, policy.WithFiles(files),
			policy.WithKnownServices(bad...)); err == nil {
			t.Errorf("Load with known services %q succeeded", bad)
		}
	}
}
