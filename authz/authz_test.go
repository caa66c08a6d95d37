package authz_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/authz"
	_ "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1" // registers the descriptors
	_ "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"  // registers the descriptors
	policyv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/policy/v1"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

func TestEvaluate(t *testing.T) {
	alice := &jwtauth.Principal{
		Subject: "alice",
		Scopes:  []string{"orders.read", "orders.write"},
		Roles:   []string{"clerk"},
		Claims:  map[string]any{"tenant": "acme", "level": 3},
	}
	claim := func(name, value string) *policyv1.ClaimMatch {
		return &policyv1.ClaimMatch{Name: name, Value: value}
	}

	tests := []struct {
		name        string
		rule        *policyv1.UserRule
		p           *jwtauth.Principal
		wantErr     error
		wantReq     string
		wantMissing []string
	}{
		{name: "public without principal", rule: &policyv1.UserRule{Public: true}},
		{name: "public ignores other fields",
			rule: &policyv1.UserRule{Public: true, Scopes: []string{"x"}}},
		{name: "nil rule", p: alice, wantErr: authz.ErrNoRule},
		{name: "any authenticated caller", rule: &policyv1.UserRule{}, p: alice},
		{name: "no principal on a private rule", rule: &policyv1.UserRule{},
			wantErr: authz.ErrForbidden},
		{name: "all scopes present", p: alice,
			rule: &policyv1.UserRule{Scopes: []string{"orders.read", "orders.write"}}},
		{name: "one scope missing", p: alice,
			rule:    &policyv1.UserRule{Scopes: []string{"orders.read", "orders.admin"}},
			wantErr: authz.ErrForbidden, wantReq: authz.RequirementScopes,
			wantMissing: []string{"orders.admin"}},
		{name: "one of the roles", p: alice,
			rule: &policyv1.UserRule{Roles: []string{"admin", "clerk"}}},
		{name: "none of the roles", p: alice,
			rule:    &policyv1.UserRule{Roles: []string{"admin", "ops"}},
			wantErr: authz.ErrForbidden, wantReq: authz.RequirementRoles,
			wantMissing: []string{"admin", "ops"}},
		{name: "claim matches", p: alice,
			rule: &policyv1.UserRule{Claims: []*policyv1.ClaimMatch{claim("tenant", "acme")}}},
		{name: "claim differs", p: alice,
			rule:    &policyv1.UserRule{Claims: []*policyv1.ClaimMatch{claim("tenant", "other")}},
			wantErr: authz.ErrForbidden, wantReq: authz.RequirementClaims,
			wantMissing: []string{"tenant"}},
		{name: "claim absent", p: alice,
			rule:    &policyv1.UserRule{Claims: []*policyv1.ClaimMatch{claim("region", "eu")}},
			wantErr: authz.ErrForbidden, wantReq: authz.RequirementClaims,
			wantMissing: []string{"region"}},
		{name: "non-string claim never matches", p: alice,
			rule:    &policyv1.UserRule{Claims: []*policyv1.ClaimMatch{claim("level", "3")}},
			wantErr: authz.ErrForbidden, wantReq: authz.RequirementClaims,
			wantMissing: []string{"level"}},
		{name: "scopes are checked before roles", p: alice,
			rule:    &policyv1.UserRule{Scopes: []string{"x"}, Roles: []string{"y"}},
			wantErr: authz.ErrForbidden, wantReq: authz.RequirementScopes,
			wantMissing: []string{"x"}},
		{name: "everything at once", p: alice, rule: &policyv1.UserRule{
			Scopes: []string{"orders.write"}, Roles: []string{"clerk"},
			Claims: []*policyv1.ClaimMatch{claim("tenant", "acme")}}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := authz.Evaluate(tt.rule, tt.p)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Evaluate error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && !errors.Is(err, authz.ErrForbidden) {
				t.Errorf("Evaluate error %v does not wrap ErrForbidden", err)
			}
			if tt.wantReq == "" {
				return
			}

			denied, ok := errors.AsType[*authz.DeniedError](err)
			if !ok {
				t.Fatalf("Evaluate error %v is not a *DeniedError", err)
			}
			if denied.Requirement != tt.wantReq || !slices.Equal(denied.Missing, tt.wantMissing) {
				t.Errorf("denied %s %q, want %s %q",
					denied.Requirement, denied.Missing, tt.wantReq, tt.wantMissing)
			}
		})
	}
}

func gatehouseServices(t *testing.T) []protoreflect.ServiceDescriptor {
	t.Helper()

	services, err := authz.FindServices(protoregistry.GlobalFiles,
		"gatehouse.catalog.v1.CatalogService", "gatehouse.orders.v1.OrderService")
	if err != nil {
		t.Fatalf("FindServices: %v", err)
	}

	return services
}

func TestLoadGatehouseServices(t *testing.T) {
	p, err := authz.Load(gatehouseServices(t))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	want := []string{
		"/gatehouse.catalog.v1.CatalogService/GetProduct",
		"/gatehouse.catalog.v1.CatalogService/ListProducts",
		"/gatehouse.catalog.v1.CatalogService/ReserveStock",
		"/gatehouse.orders.v1.OrderService/CreateOrder",
		"/gatehouse.orders.v1.OrderService/GetOrder",
		"/gatehouse.orders.v1.OrderService/ListOrders",
		"/gatehouse.orders.v1.OrderService/WatchOrder",
	}
	if got := p.Methods(); !slices.Equal(got, want) {
		t.Fatalf("Methods = %q, want %q", got, want)
	}

	tests := []struct {
		method     string
		wantPublic bool
		wantScopes []string
	}{
		{"/gatehouse.catalog.v1.CatalogService/GetProduct", true, nil},
		{"/gatehouse.catalog.v1.CatalogService/ReserveStock", false, []string{"orders.write"}},
		{"/gatehouse.orders.v1.OrderService/CreateOrder", false, []string{"orders.write"}},
		{"/gatehouse.orders.v1.OrderService/WatchOrder", false, []string{"orders.read"}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			r, ok := p.Rule(tt.method)
			if !ok {
				t.Fatal("no rule")
			}
			if r.GetPublic() != tt.wantPublic || !slices.Equal(r.GetScopes(), tt.wantScopes) {
				t.Errorf("rule = %v, want public %v scopes %q", r, tt.wantPublic, tt.wantScopes)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	p, err := authz.Load(gatehouseServices(t))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	reader := &jwtauth.Principal{Subject: "bob", Scopes: []string{"orders.read"}}

	tests := []struct {
		name    string
		method  string
		p       *jwtauth.Principal
		wantErr error
	}{
		{"public read without token", "/gatehouse.catalog.v1.CatalogService/GetProduct", nil, nil},
		{"reader reads", "/gatehouse.orders.v1.OrderService/GetOrder", reader, nil},
		{"reader writes", "/gatehouse.orders.v1.OrderService/CreateOrder", reader,
			authz.ErrForbidden},
		{"unknown method", "/gatehouse.orders.v1.OrderService/DeleteOrder", reader,
			authz.ErrNoRule},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Authorize(tt.method, tt.p); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Authorize error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestLoadRefusesMethodsWithoutRule(t *testing.T) {
	health := grpc_health_v1.File_grpc_health_v1_health_proto.Services().Get(0)
	services := append(gatehouseServices(t), health)

	_, err := authz.Load(services)
	if !errors.Is(err, authz.ErrNoRule) {
		t.Fatalf("Load error = %v, want %v", err, authz.ErrNoRule)
	}
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("Load error %q does not name %s", err, m)
		}
	}

	var opts []authz.Option
	methods := health.Methods()
	for i := range methods.Len() {
		opts = append(opts, authz.WithRule(authz.FullMethod(methods.Get(i)),
			&policyv1.UserRule{Public: true}))
	}
	p, err := authz.Load(services, opts...)
	if err != nil {
		t.Fatalf("Load with WithRule for every health method: %v", err)
	}
	if err := p.Authorize("/grpc.health.v1.Health/Check", nil); err != nil {
		t.Errorf("Authorize health check: %v", err)
	}
}

// serviceWith builds a real descriptor of a one-method service whose
// method carries opts, for rules no checked-in proto should have.
func serviceWith(t *testing.T, opts *descriptorpb.MethodOptions) protoreflect.ServiceDescriptor {
	t.Helper()

	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("authz_test/probe.proto"),
		Package:    proto.String("authz.test"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/empty.proto"},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Probe"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name:       proto.String("Poke"),
				InputType:  proto.String(".google.protobuf.Empty"),
				OutputType: proto.String(".google.protobuf.Empty"),
				Options:    opts,
			}},
		}},
	}

	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("build descriptor: %v", err)
	}

	return fd.Services().Get(0)
}

func TestLoadRefusesMalformedRules(t *testing.T) {
	withPolicy := func(mp *policyv1.MethodPolicy) *descriptorpb.MethodOptions {
		o := &descriptorpb.MethodOptions{}
		proto.SetExtension(o, policyv1.E_Method, mp)
		return o
	}

	tests := []struct {
		name    string
		opts    *descriptorpb.MethodOptions
		wantErr error
	}{
		{"no options", nil, authz.ErrNoRule},
		{"callers only", withPolicy(&policyv1.MethodPolicy{Callers: []string{"orders"}}),
			authz.ErrNoRule},
		{"empty scope", withPolicy(&policyv1.MethodPolicy{
			User: &policyv1.UserRule{Scopes: []string{"a", ""}}}), authz.ErrInvalidRule},
		{"empty role", withPolicy(&policyv1.MethodPolicy{
			User: &policyv1.UserRule{Roles: []string{""}}}), authz.ErrInvalidRule},
		{"claim without name", withPolicy(&policyv1.MethodPolicy{
			User: &policyv1.UserRule{Claims: []*policyv1.ClaimMatch{{Value: "x"}}}}),
			authz.ErrInvalidRule},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authz.Load([]protoreflect.ServiceDescriptor{serviceWith(t, tt.opts)})
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Load error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "/authz.test.Probe/Poke") {
				t.Errorf("Load error %q does not name the method", err)
			}
		})
	}
}

func TestWithRuleMistakes(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		rule    *policyv1.UserRule
		wantErr error
	}{
		{"overrides a proto rule", "/gatehouse.catalog.v1.CatalogService/GetProduct",
			&policyv1.UserRule{Public: true}, authz.ErrInvalidRule},
		{"not a full method", "grpc.health.v1.Health/Check", &policyv1.UserRule{Public: true},
			authz.ErrInvalidRule},
		{"nil rule", "/grpc.health.v1.Health/Check", nil, authz.ErrNoRule},
		{"empty scope", "/grpc.health.v1.Health/Check", &policyv1.UserRule{Scopes: []string{""}},
			authz.ErrInvalidRule},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authz.Load(gatehouseServices(t), authz.WithRule(tt.method, tt.rule))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestFindServicesErrors(t *testing.T) {
	for _, name := range []string{"gatehouse.nope.v1.Nope", "gatehouse.catalog.v1.Product"} {
		t.Run(name, func(t *testing.T) {
			if _, err := authz.FindServices(protoregistry.GlobalFiles, name); err == nil {
				t.Fatal("FindServices succeeded")
			}
		})
	}
}
