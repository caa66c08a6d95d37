package ratelimit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
)

func TestParseConfig(t *testing.T) {
	cfg, err := ratelimit.ParseConfig([]byte(`{
		"maxKeys": 5000,
		"redis": {"addr": "127.0.0.1:6379", "failureMode": "closed", "probeInterval": "2s",
			"timeout": "50ms"},
		"perIP": {"default": {"rate": 50, "burst": 100}},
		"perPrincipal": {
			"default": {"rate": 10, "burst": 20},
			"routes": {"POST /v1/orders": {"rate": 1, "burst": 2}},
			"classes": {"gold": {"default": {"rate": 100, "burst": 200}}},
			"dryRun": true
		}
	}`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}

	switch {
	case cfg.MaxKeys != 5000:
		t.Errorf("MaxKeys = %d", cfg.MaxKeys)
	case cfg.Redis.FailureMode != ratelimit.FailClosed:
		t.Errorf("FailureMode = %q", cfg.Redis.FailureMode)
	case time.Duration(cfg.Redis.ProbeInterval) != 2*time.Second:
		t.Errorf("ProbeInterval = %v", time.Duration(cfg.Redis.ProbeInterval))
	case time.Duration(cfg.Redis.Timeout) != 50*time.Millisecond:
		t.Errorf("Timeout = %v", time.Duration(cfg.Redis.Timeout))
	case cfg.PerPrincipal.Routes["POST /v1/orders"] != (ratelimit.Rule{Rate: 1, Burst: 2}):
		t.Errorf("route rule = %+v", cfg.PerPrincipal.Routes)
	case cfg.PerPrincipal.Classes["gold"].Default.Burst != 200:
		t.Errorf("gold = %+v", cfg.PerPrincipal.Classes["gold"])
	case !cfg.PerPrincipal.DryRun:
		t.Errorf("DryRun not set")
	}
}

func TestParseConfigRefuses(t *testing.T) {
	tests := []struct {
		name string
		json string
		want string
	}{
		{name: "unknown field", json: `{"perClient": {}}`, want: `unknown field "perClient"`},
		{name: "numeric duration", json: `{"redis": {"addr": "127.0.0.1:1", "timeout": 5}}`,
			want: `want a string such as "250ms"`},
		{name: "classes in the IP stage", json: `{"perIP": {"default": {"rate": 1, "burst": 1},
			"classes": {"gold": {}}}}`, want: "perIP.classes: the per-IP stage runs before"},
		{name: "bad redis address", json: `{"redis": {"addr": "localhost"}}`,
			want: `redis.addr "localhost": want host:port`},
		{name: "bad failure mode", json: `{"redis": {"addr": "127.0.0.1:1",
			"failureMode": "sometimes"}}`, want: `failure mode "sometimes"`},
		{name: "negative key ceiling", json: `{"maxKeys": -1}`, want: "maxKeys: -1 is negative"},
		{name: "every problem at once", json: `{"maxKeys": -1, "perPrincipal": {}}`,
			want: "maxKeys: -1 is negative\nperPrincipal: invalid rate limit policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ratelimit.ParseConfig([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseConfig: got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestConfigValidateWrapsSentinel(t *testing.T) {
	c := ratelimit.Config{PerPrincipal: &ratelimit.Policy{}}
	err := c.Validate()
	if !errors.Is(err, ratelimit.ErrInvalidConfig) || !errors.Is(err, ratelimit.ErrInvalidPolicy) {
		t.Fatalf("Validate: got %v, want ErrInvalidConfig wrapping ErrInvalidPolicy", err)
	}

	d := ratelimit.DefaultConfig()
	if err := d.Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate(): %v", err)
	}
}

func TestOpen(t *testing.T) {
	srv := startRedisServer(t)

	tests := []struct {
		name      string
		cfg       ratelimit.Config
		wantRedis bool
	}{
		{name: "local", cfg: ratelimit.DefaultConfig()},
		{name: "redis", cfg: ratelimit.Config{Redis: &ratelimit.RedisConfig{Addr: srv.Addr()}},
			wantRedis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ratelimit.Open(tt.cfg)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}

			r, isRedis := b.(*ratelimit.Redis)
			if isRedis != tt.wantRedis {
				t.Fatalf("Open returned %T", b)
			}

			d, err := b.Allow(context.Background(), "k", ratelimit.Rule{Rate: 1, Burst: 1})
			if err != nil || !d.Allowed {
				t.Fatalf("Allow: %+v, %v", d, err)
			}

			if isRedis && !r.Reachable() {
				t.Errorf("Redis limiter from Open did not reach Redis")
			}

			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}

	if _, err := ratelimit.Open(ratelimit.Config{MaxKeys: -1}); !errors.Is(err,
		ratelimit.ErrInvalidConfig) {
		t.Errorf("Open with an invalid config: got %v, want ErrInvalidConfig", err)
	}
}
