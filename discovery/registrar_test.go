package discovery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/gatehouse-dev/gatehouse/discovery"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
)

// offlineClient returns a client for an address nothing is asked of; it is
// only used where no request is made.
func offlineClient(t *testing.T) *api.Client {
	t.Helper()

	client, err := api.NewClient(&api.Config{Address: "127.0.0.1:1", Scheme: "http"})
	if err != nil {
		t.Fatalf("create consul client: %v", err)
	}

	return client
}

func validRegistration() discovery.Registration {
	return discovery.Registration{
		Service: "echo",
		ID:      "echo-1",
		Address: "127.0.0.1",
		Port:    8080,
	}
}

func TestNewRegistrarValidation(t *testing.T) {
	longMeta := map[string]string{}
	for i := range 65 {
		longMeta["k"+strings.Repeat("x", i)] = "v"
	}

	tests := []struct {
		name    string
		mutate  func(*discovery.Registration)
		wantErr string // empty means valid
	}{
		{name: "valid minimal", mutate: func(*discovery.Registration) {}},
		{name: "valid ipv6", mutate: func(r *discovery.Registration) { r.Address = "::1" }},
		{name: "valid full", mutate: func(r *discovery.Registration) {
			r.Tags = []string{"grpc", "v1"}
			r.Meta = map[string]string{"version": "1.2.3", "grpc_services": "a.v1.A,b.v1.B"}
			r.CheckInterval = 2 * time.Second
			r.CheckTimeout = 500 * time.Millisecond
			r.DeregisterCriticalAfter = 5 * time.Minute
			r.CheckTLS = true
			r.TLSServerName = "echo.internal"
		}},
		{name: "valid id from NewInstanceID", mutate: func(r *discovery.Registration) {
			r.ID = discovery.NewInstanceID(r.Service)
		}},
		{name: "empty service", mutate: func(r *discovery.Registration) { r.Service = "" },
			wantErr: "service name"},
		{name: "uppercase service", mutate: func(r *discovery.Registration) { r.Service = "Echo" },
			wantErr: "service name"},
		{name: "service with dot", mutate: func(r *discovery.Registration) { r.Service = "echo.v1" },
			wantErr: "service name"},
		{name: "service leading hyphen", mutate: func(r *discovery.Registration) { r.Service = "-echo" },
			wantErr: "service name"},
		{name: "service trailing hyphen", mutate: func(r *discovery.Registration) { r.Service = "echo-" },
			wantErr: "service name"},
		{name: "service too long", mutate: func(r *discovery.Registration) {
			r.Service = strings.Repeat("a", 64)
		}, wantErr: "service name"},
		{name: "empty id", mutate: func(r *discovery.Registration) { r.ID = "" },
			wantErr: "instance id is empty"},
		{name: "id with slash", mutate: func(r *discovery.Registration) { r.ID = "echo/1" },
			wantErr: "instance id"},
		{name: "id with space", mutate: func(r *discovery.Registration) { r.ID = "echo 1" },
			wantErr: "instance id"},
		{name: "empty address", mutate: func(r *discovery.Registration) { r.Address = "" },
			wantErr: "not a literal IP"},
		{name: "hostname address", mutate: func(r *discovery.Registration) { r.Address = "localhost" },
			wantErr: "not a literal IP"},
		{name: "address with port", mutate: func(r *discovery.Registration) {
			r.Address = "127.0.0.1:80"
		}, wantErr: "not a literal IP"},
		{name: "unspecified address", mutate: func(r *discovery.Registration) { r.Address = "0.0.0.0" },
			wantErr: "unspecified"},
		{name: "port zero", mutate: func(r *discovery.Registration) { r.Port = 0 },
			wantErr: "port 0 out of range"},
		{name: "port too big", mutate: func(r *discovery.Registration) { r.Port = 65536 },
			wantErr: "port 65536 out of range"},
		{name: "blank tag", mutate: func(r *discovery.Registration) { r.Tags = []string{"a", " "} },
			wantErr: "tag 1 is blank"},
		{name: "meta bad key", mutate: func(r *discovery.Registration) {
			r.Meta = map[string]string{"grpc.services": "x"}
		}, wantErr: "meta key"},
		{name: "meta reserved key", mutate: func(r *discovery.Registration) {
			r.Meta = map[string]string{"consul-version": "x"}
		}, wantErr: "reserved prefix"},
		{name: "meta long value", mutate: func(r *discovery.Registration) {
			r.Meta = map[string]string{"k": strings.Repeat("v", 513)}
		}, wantErr: "meta value"},
		{name: "meta too many pairs", mutate: func(r *discovery.Registration) { r.Meta = longMeta },
			wantErr: "65 pairs"},
		{name: "interval below minimum", mutate: func(r *discovery.Registration) {
			r.CheckInterval = 500 * time.Millisecond
		}, wantErr: "check interval"},
		{name: "negative timeout", mutate: func(r *discovery.Registration) {
			r.CheckTimeout = -time.Second
		}, wantErr: "check timeout"},
		{name: "deregister below minimum", mutate: func(r *discovery.Registration) {
			r.DeregisterCriticalAfter = 30 * time.Second
		}, wantErr: "deregister critical after"},
		{name: "server name without tls", mutate: func(r *discovery.Registration) {
			r.TLSServerName = "echo.internal"
		}, wantErr: "check tls is off"},
	}

	client := offlineClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := validRegistration()
			tt.mutate(&reg)

			r, err := discovery.NewRegistrar(client, reg)

			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewRegistrar(%+v) = %v, want success", reg, err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("NewRegistrar(%+v) succeeded, want error containing %q", reg, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("NewRegistrar(%+v) error = %q, want it to contain %q", reg, err, tt.wantErr)
			}

			if err == nil && r.ID() != reg.ID {
				t.Errorf("ID() = %q, want %q", r.ID(), reg.ID)
			}
		})
	}
}

func TestNewRegistrarDefaults(t *testing.T) {
	r, err := discovery.NewRegistrar(offlineClient(t), validRegistration())
	if err != nil {
		t.Fatalf("NewRegistrar: %v", err)
	}

	got := r.Registration()
	if got.CheckInterval != time.Second || got.CheckTimeout != time.Second ||
		got.DeregisterCriticalAfter != time.Minute {
		t.Errorf("defaults: interval %v timeout %v deregister %v, want 1s 1s 1m",
			got.CheckInterval, got.CheckTimeout, got.DeregisterCriticalAfter)
	}
}

func TestNewRegistrarRejectsNilClientAndBadOptions(t *testing.T) {
	if _, err := discovery.NewRegistrar(nil, validRegistration()); err == nil {
		t.Errorf("NewRegistrar(nil client) succeeded, want error")
	}

	_, err := discovery.NewRegistrar(offlineClient(t), validRegistration(), discovery.WithLogger(nil))
	if err == nil {
		t.Errorf("NewRegistrar(WithLogger(nil)) succeeded, want error")
	}
}

func TestNewInstanceID(t *testing.T) {
	seen := map[string]bool{}

	for range 1000 {
		id := discovery.NewInstanceID("echo")

		if !strings.HasPrefix(id, "echo-") || len(id) != len("echo-")+16 {
			t.Fatalf("NewInstanceID(echo) = %q, want echo-<16 hex digits>", id)
		}

		if seen[id] {
			t.Fatalf("NewInstanceID(echo) repeated %q", id)
		}

		seen[id] = true
	}
}

func TestRegisterAndDeregister(t *testing.T) {
	agent := testsupport.StartConsul(t)
	client := consulClient(t, agent)
	srv := startServer(t, "one")

	reg := discovery.Registration{
		Service: "echo",
		ID:      discovery.NewInstanceID("echo"),
		Address: "127.0.0.1",
		Port:    srv.port,
		Tags:    []string{"grpc"},
		Meta:    map[string]string{"version": "1.2.3", "grpc_services": "grpc.health.v1.Health"},
	}

	r, err := discovery.NewRegistrar(client, reg)
	if err != nil {
		t.Fatalf("NewRegistrar: %v", err)
	}

	ctx := testContext(t)

	if err := r.Register(ctx); err != nil {
		t.Fatalf("Register: %v", err)
	}

	svc, _, err := client.Agent().Service(reg.ID, nil)
	if err != nil {
		t.Fatalf("read back service %q: %v", reg.ID, err)
	}

	if svc.Service != "echo" || svc.Address != "127.0.0.1" || svc.Port != srv.port {
		t.Errorf("registered %s %s:%d, want echo 127.0.0.1:%d",
			svc.Service, svc.Address, svc.Port, srv.port)
	}

	if len(svc.Tags) != 1 || svc.Tags[0] != "grpc" {
		t.Errorf("tags = %v, want [grpc]", svc.Tags)
	}

	for k, want := range reg.Meta {
		if svc.Meta[k] != want {
			t.Errorf("meta[%q] = %q, want %q", k, svc.Meta[k], want)
		}
	}

	check := serviceCheck(t, client, reg.ID)
	if check.Type != "grpc" || check.Definition.GRPC != srv.addr || check.Definition.GRPCUseTLS {
		t.Errorf("check type %q grpc %q tls %v, want grpc %q plaintext",
			check.Type, check.Definition.GRPC, check.Definition.GRPCUseTLS, srv.addr)
	}

	waitPassing(t, client, "echo", reg.ID)

	if err := r.Deregister(ctx); err != nil {
		t.Fatalf("Deregister: %v", err)
	}

	services, err := client.Agent().Services()
	if err != nil {
		t.Fatalf("list agent services: %v", err)
	}

	if _, ok := services[reg.ID]; ok {
		t.Errorf("service %q still registered after Deregister", reg.ID)
	}

	if err := r.Deregister(ctx); err != nil {
		t.Errorf("second Deregister: %v", err)
	}
}

func TestRegisterWithTLSCheck(t *testing.T) {
	agent := testsupport.StartConsul(t)
	client := consulClient(t, agent)
	srv := startServer(t, "plain")

	r, err := discovery.NewRegistrar(client, discovery.Registration{
		Service:       "echo",
		ID:            "echo-tls",
		Address:       "127.0.0.1",
		Port:          srv.port,
		CheckTLS:      true,
		TLSServerName: "echo.internal",
	})
	if err != nil {
		t.Fatalf("NewRegistrar: %v", err)
	}

	if err := r.Register(testContext(t)); err != nil {
		t.Fatalf("Register: %v", err)
	}

	check := serviceCheck(t, client, "echo-tls")
	if !check.Definition.GRPCUseTLS || check.Definition.TLSServerName != "echo.internal" {
		t.Errorf("check tls %v server name %q, want true echo.internal",
			check.Definition.GRPCUseTLS, check.Definition.TLSServerName)
	}

	// A TLS check against a plaintext server must fail, and keep failing.
	waitFor(t, 10*time.Second, "tls check critical with output", func() (bool, string) {
		c := serviceCheck(t, client, "echo-tls")
		return c.Status == api.HealthCritical && c.Output != "", c.Status + ": " + c.Output
	})
}

// serviceCheck returns the single check of the service instance id.
func serviceCheck(t *testing.T, client *api.Client, id string) *api.AgentCheck {
	t.Helper()

	checks, err := client.Agent().Checks()
	if err != nil {
		t.Fatalf("list agent checks: %v", err)
	}

	var found *api.AgentCheck

	for _, c := range checks {
		if c.ServiceID != id {
			continue
		}

		if found != nil {
			t.Fatalf("service %q has more than one check", id)
		}

		found = c
	}

	if found == nil {
		t.Fatalf("service %q has no check", id)
	}

	return found
}

// waitPassing waits until Consul reports instance id of service passing.
func waitPassing(t *testing.T, client *api.Client, service, id string) {
	t.Helper()

	waitFor(t, 10*time.Second, service+" instance "+id+" passing", func() (bool, string) {
		ids, err := passingIDs(client, service)
		if err != nil {
			return false, err.Error()
		}

		for _, got := range ids {
			if got == id {
				return true, ""
			}
		}

		return false, "passing: " + strings.Join(ids, ",")
	})
}

// passingIDs lists the ids of the passing instances of service.
func passingIDs(client *api.Client, service string) ([]string, error) {
	entries, _, err := client.Health().Service(service, "", true, nil)
	if err != nil {
		return nil, err
	}

	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.Service.ID)
	}

	return ids, nil
}

func testContext(t *testing.T) context.Context {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)

	return ctx
}
