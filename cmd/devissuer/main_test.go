package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/devissuer"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
)

func TestParseClient(t *testing.T) {
	tests := []struct {
		spec    string
		want    devissuer.Client
		wantErr bool
	}{
		{spec: "web:pw", want: devissuer.Client{ID: "web", Secret: "pw"}},
		{spec: "web:pw:a,b", want: devissuer.Client{ID: "web", Secret: "pw",
			Scopes: []string{"a", "b"}}},
		{spec: "web:pw:a:admin, ops", want: devissuer.Client{ID: "web", Secret: "pw",
			Scopes: []string{"a"}, Roles: []string{"admin", "ops"}}},
		{spec: "web", wantErr: true},
		{spec: "a:b:c:d:e", wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := parseClient(tt.spec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseClient error = %v, want error %v", err, tt.wantErr)
			}
			if got.ID != tt.want.ID || got.Secret != tt.want.Secret ||
				!slices.Equal(got.Scopes, tt.want.Scopes) || !slices.Equal(got.Roles, tt.want.Roles) {
				t.Errorf("parseClient = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseClientHidesSecretInErrors(t *testing.T) {
	_, err := parseClient("web:topsecret:a:b:c")
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("parseClient error = %v, want one without the secret", err)
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8081", true},
		{"[::1]:8081", true},
		{"localhost:0", true},
		{"0.0.0.0:8081", false},
		{":8081", false},
		{"10.1.2.3:8081", false},
		{"nonsense", false},
	}

	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if err := checkLoopback(tt.addr); (err == nil) != tt.ok {
				t.Fatalf("checkLoopback(%q) = %v, want ok %v", tt.addr, err, tt.ok)
			}
		})
	}
}

func TestParseClaims(t *testing.T) {
	got, err := parseClaims([]string{"tenant=acme", "note=a=b"})
	if err != nil {
		t.Fatalf("parseClaims: %v", err)
	}
	if got["tenant"] != "acme" || got["note"] != "a=b" {
		t.Errorf("parseClaims = %v", got)
	}

	for _, bad := range []string{"novalue", "=x"} {
		if _, err := parseClaims([]string{bad}); err == nil {
			t.Errorf("parseClaims(%q) succeeded", bad)
		}
	}
}

// buildBinary compiles this command into a temporary folder, so the test
// runs the code under test.
func buildBinary(t *testing.T) string {
	t.Helper()

	bin := filepath.Join(t.TempDir(), "devissuer")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	return bin
}

// TestServeAndMint runs the real binary: serve on a loopback port, get a
// token with the client-credentials grant, mint another with the same key
// file, and verify both against the served keys.
func TestServeAndMint(t *testing.T) {
	bin := buildBinary(t)
	keyFile := filepath.Join(t.TempDir(), "keys", "keys.json")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	serve := exec.CommandContext(ctx, bin, "serve", "-listen", "127.0.0.1:0", "-keys", keyFile,
		"-client", "web:web-secret:orders.read,orders.write:clerk")
	stderr, err := serve.StderrPipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	if err := serve.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	exited := make(chan error, 1)
	stopped := false
	defer func() {
		if !stopped {
			_ = serve.Process.Kill()
			if err := <-exited; err != nil {
				t.Logf("serve killed: %v", err)
			}
		}
	}()
	issuer := waitForIssuer(t, stderr, exited, serve)

	info, err := os.Stat(keyFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want it written 0600", err, info.Mode().Perm())
	}

	v, err := jwtauth.New([]jwtauth.IssuerConfig{{
		Issuer: issuer, Audiences: []string{"gatehouse"}, Discovery: true,
	}})
	if err != nil {
		t.Fatalf("jwtauth.New: %v", err)
	}
	defer func() { _ = v.Close() }()
	if err := v.Start(ctx); err != nil {
		t.Fatalf("verifier Start against the served discovery document: %v", err)
	}

	minted, err := exec.CommandContext(ctx, bin, "mint", "-keys", keyFile, "-iss", issuer,
		"-sub", "zoe", "-scope", "orders.read", "-roles", "admin", "-alg", "RS256",
		"-claim", "tenant=acme").Output()
	if err != nil {
		t.Fatalf("mint: %v", err)
	}

	tests := []struct {
		name      string
		token     string
		wantSub   string
		wantRoles []string
	}{
		{"client-credentials grant", grantToken(t, issuer), "web", []string{"clerk"}},
		{"minted", strings.TrimSpace(string(minted)), "zoe", []string{"admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(ctx, tt.token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Subject != tt.wantSub || !slices.Equal(p.Roles, tt.wantRoles) {
				t.Errorf("principal %q roles %q, want %q %q", p.Subject, p.Roles,
					tt.wantSub, tt.wantRoles)
			}
		})
	}

	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	err = <-exited
	stopped = true
	if err != nil {
		t.Fatalf("serve exit after SIGTERM: %v", err)
	}
}

// waitForIssuer reads serve's JSON log until the "serving" line and returns
// the issuer URL it names; the rest of the log is drained until exit.
func waitForIssuer(t *testing.T, stderr io.Reader, exited chan<- error, cmd *exec.Cmd) string {
	t.Helper()

	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg    string `json:"msg"`
				Issuer string `json:"issuer"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				found <- line.Issuer
			}
		}
		exited <- cmd.Wait()
	}()

	select {
	case issuer := <-found:
		return issuer
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not log its address")
	}

	return ""
}

func grantToken(t *testing.T, issuer string) string {
	t.Helper()

	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"web"},
		"client_secret": {"web-secret"}}
	resp, err := http.PostForm(issuer+devissuer.TokenPath, form)
	if err != nil {
		t.Fatalf("POST token: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()

	var body struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST token: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode: %v", err)
	}

	return body.AccessToken
}

func TestServeRefusesRemoteListen(t *testing.T) {
	bin := buildBinary(t)

	out, err := exec.Command(bin, "serve", "-listen", "0.0.0.0:0", "-client", "a:b",
		"-keys", filepath.Join(t.TempDir(), "k.json")).CombinedOutput()
	if err == nil {
		t.Fatalf("serve on 0.0.0.0 started; output:\n%s", out)
	}
	if !strings.Contains(string(out), "loopback only") {
		t.Errorf("output = %s, want the loopback refusal", out)
	}
}

// A bad command line exits 2 as the other binaries' flags do; -h exits 0.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no command", nil, 2},
		{"unknown command", []string{"issue"}, 2},
		{"bad duration", []string{"serve", "-log-flush-interval", "x"}, 2},
		{"unknown flag", []string{"mint", "-nope"}, 2},
		{"help", []string{"serve", "-h"}, 0},
		{"help of mint", []string{"mint", "-help"}, 0},
		{"refused after parsing", []string{"serve", "-listen", "0.0.0.0:0", "-client", "a:b"}, 1},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(run(tt.args)); got != tt.want {
				t.Errorf("exit code %d, want %d", got, tt.want)
			}
		})
	}
}
