package certsource_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/pki"
)

// newSource starts a source with an observed logger; it is closed at
// cleanup.
func newSource(
	t *testing.T,
	files certsource.Files,
	opts ...certsource.Option,
) (*certsource.Source, *observer.ObservedLogs) {
	t.Helper()

	core, logs := observer.New(zapcore.DebugLevel)

	src, err := certsource.New(files, append(opts, certsource.WithLogger(zap.New(core)))...)
	if err != nil {
		t.Fatalf("certsource.New: %v", err)
	}

	t.Cleanup(func() { _ = src.Close() })

	return src, logs
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 10s", what)
		}

		time.Sleep(5 * time.Millisecond)
	}
}

func hasLog(logs *observer.ObservedLogs, level zapcore.Level, msg string) bool {
	for _, e := range logs.FilterMessage(msg).All() {
		if e.Level == level {
			return true
		}
	}

	return false
}

func TestLoadAndReload(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	first := p.Issue(t, "catalog")

	src, logs := newSource(t, p.Files("catalog"),
		certsource.WithExpectedID(testsupport.ID(t, "catalog")),
		certsource.WithPollInterval(time.Hour)) // only file events can cause a reload

	select {
	case <-src.Ready():
	default:
		t.Fatalf("not ready after New with usable files")
	}

	if b := src.Bundle(); b.ID != testsupport.ID(t, "catalog") || !b.Leaf().Equal(first.Cert) {
		t.Fatalf("bundle holds %s, want the issued catalog certificate", b.ID)
	}

	second := p.Issue(t, "catalog")
	waitFor(t, "new certificate loaded", func() bool {
		return src.Bundle().Leaf().Equal(second.Cert)
	})

	if !hasLog(logs, zapcore.InfoLevel, "certificate reloaded; new handshakes use it") {
		t.Errorf("no reload log line")
	}

	// A broken file is refused; the current bundle stays.
	if err := os.WriteFile(p.Dir.Cert("catalog"), []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "failed reload logged", func() bool {
		return hasLog(logs, zapcore.ErrorLevel,
			"certificate reload failed; keeping the current certificate")
	})

	if !src.Bundle().Leaf().Equal(second.Cert) {
		t.Errorf("bundle changed after a failed reload")
	}
}

func TestRefusedMaterial(t *testing.T) {
	now := time.Now()
	other := testsupport.NewTestPKI(t)

	tests := []struct {
		name    string
		prepare func(t *testing.T, p *testsupport.TestPKI)
		want    string // in the logged error
	}{
		{name: "another identity than expected", prepare: func(t *testing.T, p *testsupport.TestPKI) {
			leaf := p.Leaf(t, testsupport.ID(t, "orders"))
			if err := leaf.WriteFiles(p.Dir.Cert("catalog"), p.Dir.Key("catalog")); err != nil {
				t.Fatal(err)
			}
		}, want: "want spiffe://gatehouse.local/svc/catalog"},
		{name: "not trusted by the bundle", prepare: func(t *testing.T, p *testsupport.TestPKI) {
			leaf := other.Leaf(t, testsupport.ID(t, "catalog"))
			if err := leaf.WriteFiles(p.Dir.Cert("catalog"), p.Dir.Key("catalog")); err != nil {
				t.Fatal(err)
			}
		}, want: "not trusted by the ca bundle"},
		{name: "expired", prepare: func(t *testing.T, p *testsupport.TestPKI) {
			p.Issue(t, "catalog", pki.WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour)))
		}, want: "expired"},
		{name: "key of another certificate", prepare: func(t *testing.T, p *testsupport.TestPKI) {
			p.Issue(t, "catalog")
			p.Issue(t, "orders")
			if err := os.Rename(p.Dir.Key("orders"), p.Dir.Key("catalog")); err != nil {
				t.Fatal(err)
			}
		}, want: "key does not match"},
		{name: "missing files", prepare: func(*testing.T, *testsupport.TestPKI) {},
			want: "no such file"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testsupport.NewTestPKI(t)
			tt.prepare(t, p)

			src, logs := newSource(t, p.Files("catalog"),
				certsource.WithExpectedID(testsupport.ID(t, "catalog")))

			if src.Bundle() != nil {
				t.Fatalf("bundle loaded from refused material")
			}

			entries := logs.FilterMessage("certificate not loaded yet; not ready").All()
			if len(entries) == 0 {
				t.Fatalf("no log line about the refused material")
			}

			if got := entries[0].ContextMap()["error"]; !contains(got, tt.want) {
				t.Errorf("logged error %q, want it to mention %q", got, tt.want)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()

			if err := src.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("WaitReady = %v, want the context's deadline", err)
			}
		})
	}
}

func contains(v any, want string) bool {
	s, ok := v.(string)
	return ok && strings.Contains(s, want)
}

func TestBecomesReadyWhenFilesAppear(t *testing.T) {
	tests := []struct {
		name string
		// dirExists: file events work; otherwise only polling can see it.
		dirExists bool
		poll      time.Duration
	}{
		{name: "file events", dirExists: true, poll: time.Hour},
		{name: "polling", dirExists: false, poll: 20 * time.Millisecond},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testsupport.NewTestPKI(t)
			dir := pki.Dir(filepath.Join(t.TempDir(), "later"))
			if tt.dirExists {
				if err := os.Mkdir(string(dir), 0o700); err != nil {
					t.Fatal(err)
				}
			}

			files := certsource.Files{Cert: dir.Cert("catalog"), Key: dir.Key("catalog"),
				CA: dir.CACert()}
			src, _ := newSource(t, files, certsource.WithPollInterval(tt.poll))

			if src.Bundle() != nil {
				t.Fatalf("ready without files")
			}

			leaf := p.Leaf(t, testsupport.ID(t, "catalog"))
			if err := leaf.WriteFiles(files.Cert, files.Key); err != nil {
				t.Fatal(err)
			}

			if err := p.CA.WriteFiles(files.CA, dir.CAKey()); err != nil {
				t.Fatal(err)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			if err := src.WaitReady(ctx); err != nil {
				t.Fatalf("WaitReady: %v", err)
			}
		})
	}
}

func TestExpiryWarning(t *testing.T) {
	now := time.Now()

	tests := []struct {
		name  string
		opts  []pki.Option
		warn  time.Duration
		wantW bool
	}{
		{name: "default: a third of the lifetime left", wantW: true,
			opts: []pki.Option{pki.WithValidity(now.Add(-20*time.Hour), now.Add(4*time.Hour))}},
		{name: "default: plenty left", wantW: false,
			opts: []pki.Option{pki.WithValidity(now.Add(-time.Hour), now.Add(23*time.Hour))}},
		{name: "configured", warn: 2 * time.Hour, wantW: true,
			opts: []pki.Option{pki.WithTTL(time.Hour)}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testsupport.NewTestPKI(t)
			p.Issue(t, "catalog", tt.opts...)

			_, logs := newSource(t, p.Files("catalog"), certsource.WithExpiryWarning(tt.warn))

			got := hasLog(logs, zapcore.WarnLevel, "certificate expires soon; replace it")
			if got != tt.wantW {
				t.Errorf("expiry warning logged = %v, want %v", got, tt.wantW)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	good := certsource.Files{Cert: "c", Key: "k", CA: "a"}

	tests := []struct {
		name  string
		files certsource.Files
		opts  []certsource.Option
	}{
		{name: "no cert", files: certsource.Files{Key: "k", CA: "a"}},
		{name: "no key", files: certsource.Files{Cert: "c", CA: "a"}},
		{name: "no ca", files: certsource.Files{Cert: "c", Key: "k"}},
		{name: "nil logger", files: good, opts: []certsource.Option{certsource.WithLogger(nil)}},
		{name: "zero poll", files: good, opts: []certsource.Option{certsource.WithPollInterval(0)}},
		{name: "negative warning", files: good,
			opts: []certsource.Option{certsource.WithExpiryWarning(-time.Second)}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := certsource.New(tt.files, tt.opts...)
			if err == nil {
				_ = src.Close()
				t.Fatalf("New succeeded")
			}
		})
	}
}

func TestWaitReadyAfterClose(t *testing.T) {
	src, _ := newSource(t, certsource.Files{Cert: "/nonexistent/c", Key: "/nonexistent/k",
		CA: "/nonexistent/a"})

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}

	if err := src.WaitReady(context.Background()); !errors.Is(err, certsource.ErrClosed) {
		t.Errorf("WaitReady after Close = %v, want ErrClosed", err)
	}
}

func TestParseBundleIdentity(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	id, err := identity.New("other.local", "catalog")
	if err != nil {
		t.Fatal(err)
	}

	leaf := p.Leaf(t, id)
	key, err := pki.EncodeKey(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}

	b, err := certsource.ParseBundle(pki.EncodeCerts(leaf.Cert), key, pki.EncodeCerts(p.CA.Cert),
		time.Now())
	if err != nil {
		t.Fatal(err)
	}

	if b.ID != id || len(b.CAs) != 1 || b.Certificate.Leaf != b.Leaf() {
		t.Errorf("bundle %s with %d CAs", b.ID, len(b.CAs))
	}
}
