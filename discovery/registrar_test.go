package discovery_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-dev/gatehouse/discovery"
	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
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
	type reg = discovery.Registration

	longMeta := map[string]string{}
	for i := range 65 {
		longMeta["k"+strings.Repeat("x", i)] = "v"
	}

	tests := []struct {
		name    string
		mutate  func(*reg)
		wantErr string // empty means valid
	}{
		{"valid minimal", func(*reg) {}, ""},
		{"valid ipv6", func(r *reg) { r.Address = "::1" }, ""},
		{"valid full", func(r *reg) {
			r.Tags = []string{"grpc", "v1"}
			r.Meta = map[string]string{"version": "1.2.3", "grpc_services": "a.v1.A,b.v1.B"}
			r.CheckInterval = 2 * time.Second
			r.CheckTimeout = 500 * time.Millisecond
			r.DeregisterCriticalAfter = 5 * time.Minute
			r.CheckTLS = true
			r.TLSServerName = "echo.internal"
		}, ""},
		{"valid generated id", func(r *reg) { r.ID = discovery.NewInstanceID(r.Service) }, ""},
		{"empty service", func(r *reg) { r.Service = "" }, "service name"},
		{"uppercase service", func(r *reg) { r.Service = "Echo" }, "service name"},
		{"service with dot", func(r *reg) { r.Service = "echo.v1" }, "service name"},
		{"service leading hyphen", func(r *reg) { r.Service = "-echo" }, "service name"},
		{"service trailing hyphen", func(r *reg) { r.Service = "echo-" }, "service name"},
		{"service too long", func(r *reg) { r.Service = strings.Repeat("a", 64) }, "service name"},
		{"empty id", func(r *reg) { r.ID = "" }, "instance id is empty"},
		{"id with slash", func(r *reg) { r.ID = "echo/1" }, "instance id"},
		{"id with space", func(r *reg) { r.ID = "echo 1" }, "instance id"},
		{"empty address", func(r *reg) { r.Address = "" }, "not a literal IP"},
		{"hostname address", func(r *reg) { r.Address = "localhost" }, "not a literal IP"},
		{"address with port", func(r *reg) { r.Address = "127.0.0.1:80" }, "not a literal IP"},
		{"unspecified address", func(r *reg) { r.Address = "0.0.0.0" }, "unspecified"},
		{"port zero", func(r *reg) { r.Port = 0 }, "port 0 out of range"},
		{"port too big", func(r *reg) { r.Port = 65536 }, "port 65536 out of range"},
		{"blank tag", func(r *reg) { r.Tags = []string{"a", " "} }, "tag 1 is blank"},
		{"meta bad key", func(r *reg) { r.Meta = map[string]string{"a.b": "x"} }, "meta key"},
		{"meta reserved key", func(r *reg) {
			r.Meta = map[string]string{"consul-version": "x"}
		}, "reserved prefix"},
		{"meta long value", func(r *reg) {
			r.Meta = map[string]string{"k": strings.Repeat("v", 513)}
		}, "meta value"},
		{"meta too many pairs", func(r *reg) { r.Meta = longMeta }, "65 pairs"},
		{"interval below minimum", func(r *reg) {
			r.CheckInterval = 500 * time.Millisecond
		}, "check interval"},
		{"negative timeout", func(r *reg) { r.CheckTimeout = -time.Second }, "check timeout"},
		{"deregister below minimum", func(r *reg) {
			r.DeregisterCriticalAfter = 30 * time.Second
		}, "deregister critical after"},
		{"server name without tls", func(r *reg) {
			r.TLSServerName = "echo.internal"
		}, "check tls is off"},
	}

	client := offlineClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validRegistration()
			tt.mutate(&in)

			r, err := discovery.NewRegistrar(client, in)

			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewRegistrar(%+v) = %v, want success", in, err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("NewRegistrar(%+v) succeeded, want error containing %q", in, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("NewRegistrar(%+v) error = %q, want it to contain %q",
					in, err, tt.wantErr)
			}

			if err == nil && r.ID() != in.ID {
				t.Errorf("ID() = %q, want %q", r.ID(), in.ID)
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

	_, err := discovery.NewRegistrar(offlineClient(t), validRegistration(),
		discovery.WithLogger(nil))
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
	t.Parallel()

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

	if check := serviceCheck(t, client, reg.ID); check.Type != "grpc" {
		t.Errorf("check type %q, want grpc", check.Type)
	}

	checkTimings(t, client, reg.ID, "1s", "1s")

	waitPassing(t, client, "echo", reg.ID)

	// Consul does not return the check's definition; its output names the
	// target, which shows it is the overall health of addr:port (a service
	// name would appear as addr:port/name).
	check := serviceCheck(t, client, reg.ID)
	if want := "gRPC check " + srv.addr + ": success"; check.Output != want {
		t.Errorf("check output %q, want %q", check.Output, want)
	}

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
	t.Parallel()

	pki := newTestPKI(t, "echo.internal")

	// Consul verifies TLS checks against its own CA only when told to.
	agent := testsupport.StartConsulWith(t, consulagent.Config{ExtraHCL: fmt.Sprintf(
		"enable_agent_tls_for_checks = true\ntls {\n  internal_rpc {\n    ca_file = %q\n  }\n}\n",
		pki.caFile)})
	client := consulClient(t, agent)

	tlsSrv := startServer(t, "tls", grpc.Creds(credentials.NewTLS(pki.serverTLS)))
	plainSrv := startServer(t, "plain")

	tests := []struct {
		id         string
		srv        *testServer
		checkTLS   bool
		serverName string
		wantPass   bool
		wantOutput string // substring of the check output
	}{
		{id: "tls-right-name", srv: tlsSrv, checkTLS: true, serverName: "echo.internal",
			wantPass: true, wantOutput: "success"},
		{id: "tls-wrong-name", srv: tlsSrv, checkTLS: true, serverName: "other.internal",
			wantOutput: "other.internal"},
		{id: "tls-no-name", srv: tlsSrv, checkTLS: true, wantOutput: "certificate"},
		{id: "plaintext-to-tls", srv: tlsSrv},
		{id: "tls-to-plaintext", srv: plainSrv, checkTLS: true, serverName: "echo.internal"},
	}

	for _, tt := range tests {
		r, err := discovery.NewRegistrar(client, discovery.Registration{
			Service:       "echo",
			ID:            tt.id,
			Address:       "127.0.0.1",
			Port:          tt.srv.port,
			CheckTLS:      tt.checkTLS,
			TLSServerName: tt.serverName,
		})
		if err != nil {
			t.Fatalf("NewRegistrar(%s): %v", tt.id, err)
		}

		if err := r.Register(testContext(t)); err != nil {
			t.Fatalf("Register(%s): %v", tt.id, err)
		}
	}

	for _, tt := range tests {
		want := api.HealthCritical
		if tt.wantPass {
			want = api.HealthPassing
		}

		// A new check starts critical, so wait for an output as well.
		waitFor(t, 10*time.Second, tt.id+" check "+want, func() (bool, string) {
			c := serviceCheck(t, client, tt.id)
			ok := c.Status == want && c.Output != "" && strings.Contains(c.Output, tt.wantOutput)

			return ok, c.Status + ": " + c.Output
		})

		c := serviceCheck(t, client, tt.id)
		t.Logf("%s: %s: %s", tt.id, c.Status, c.Output)
	}
}

// checkTimings asserts the interval and timeout of the check of instance id,
// which the typed API does not expose.
func checkTimings(t *testing.T, client *api.Client, id, interval, timeout string) {
	t.Helper()

	var checks map[string]map[string]any
	if _, err := client.Raw().Query("/v1/agent/checks", &checks, nil); err != nil {
		t.Fatalf("list agent checks: %v", err)
	}

	for _, c := range checks {
		if c["ServiceID"] != id {
			continue
		}

		if c["Interval"] != interval || c["Timeout"] != timeout {
			t.Errorf("check of %s: interval %v timeout %v, want %s %s",
				id, c["Interval"], c["Timeout"], interval, timeout)
		}

		return
	}

	t.Errorf("no check for %s", id)
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
