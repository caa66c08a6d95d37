package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    int64
		wantErr bool
	}{
		{name: "plain", want: 357,
			stat: "1234 (gateway) S 1 1234 1234 0 -1 4194560 1 0 0 0 300 57 0 0 20 0 9 0"},
		{name: "name with spaces and parentheses", want: 12,
			stat: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 10 2 0 0 20 0 1 0"},
		{name: "no name", stat: "7 R 1", wantErr: true},
		{name: "truncated", stat: "7 (x) R 1 7", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatTicks(tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStatTicks error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseStatTicks = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseTCPLine(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		local  string
		remote string
		state  int
		inode  uint64
		ok     bool
	}{
		{name: "ipv4 established", ok: true, local: "127.0.0.1:8080",
			remote: "127.0.0.1:41202", state: tcpEstablished, inode: 98765,
			line: "  3: 0100007F:1F90 0100007F:A0F2 01 00000000:00000000 00:00000000 " +
				"00000000     0        0 98765 1 0000000000000000 20 4 30 10 -1"},
		{name: "ipv6 loopback listening", ok: true, local: "[::1]:9090", remote: "[::]:0",
			state: tcpListen, inode: 42,
			line: "  0: 00000000000000000000000001000000:2382 " +
				"00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 " +
				"00000000     0        0 42 1 0000000000000000 100 0 0 10 0"},
		{name: "short", line: "  0: 0100007F:1F90"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := parseTCPLine(tt.line)
			if ok != tt.ok {
				t.Fatalf("parseTCPLine ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if e.local.String() != tt.local || e.remote.String() != tt.remote ||
				e.state != tt.state || e.inode != tt.inode {
				t.Errorf("parseTCPLine = %v %v %x %d, want %s %s %x %d", e.local, e.remote,
					e.state, e.inode, tt.local, tt.remote, tt.state, tt.inode)
			}
		})
	}
}

func TestParseWrk(t *testing.T) {
	out := "Running 10s test @ http://127.0.0.1:1/v1/products/p-1001\n" +
		"  1 threads and 32 connections\n" +
		"BENCH requests=50000 duration_us=10000000 p50_us=3000 p90_us=4000 p99_us=9000 " +
		"max_us=20000 status_errors=2 connect_errors=0 read_errors=1 write_errors=0 " +
		"timeouts=0\n"

	got, err := parseWrk(out)
	if err != nil {
		t.Fatalf("parseWrk: %v", err)
	}

	switch {
	case got.Requests != 50000 || got.Seconds != 10:
		t.Errorf("requests %d in %vs", got.Requests, got.Seconds)
	case got.RPS() != 5000:
		t.Errorf("RPS = %v", got.RPS())
	case got.P50 != 3000 || got.P99 != 9000 || got.Max != 20000:
		t.Errorf("latencies = %+v", got)
	case got.Errors != 3:
		t.Errorf("Errors = %d, want 3", got.Errors)
	}

	if _, err := parseWrk("no figures here\n"); err == nil {
		t.Error("parseWrk accepted output without a BENCH line")
	}
}

func TestParseGhz(t *testing.T) {
	report := `{"count": 1000, "total": 2000000000, "slowest": 9000000,
		"statusCodeDistribution": {"OK": 967, "Unavailable": 32, "Canceled": 1},
		"errorDistribution": {"rpc error: code = Unavailable desc = transport is closing": 32,
			"rpc error: code = Canceled desc = grpc: the client connection is closing": 1},
		"latencyDistribution": [{"percentage": 50, "latency": 1500000},
			{"percentage": 90, "latency": 2500000}, {"percentage": 99, "latency": 7000000}],
		"details": [{"latency": 1}]}`

	got, err := parseGhz([]byte(report))
	if err != nil {
		t.Fatalf("parseGhz: %v", err)
	}

	switch {
	case got.RPS() != 500:
		t.Errorf("RPS = %v", got.RPS())
	case got.P50 != 1500 || got.P90 != 2500 || got.P99 != 7000 || got.Max != 9000:
		t.Errorf("latencies = %+v", got)
	case got.Errors != 0:
		t.Errorf("Errors = %d: calls cut at the end are not errors", got.Errors)
	}
}

func TestMedianOf(t *testing.T) {
	rps := func(s sample) float64 { return s.RPS() }
	at := func(requests int64) sample { return sample{load: load{Requests: requests, Seconds: 1}} }

	tests := []struct {
		name    string
		samples []sample
		want    float64
	}{
		{name: "none", want: 0},
		{name: "odd", samples: []sample{at(5), at(1), at(3)}, want: 3},
		{name: "even", samples: []sample{at(4), at(1), at(2), at(3)}, want: 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := medianOf(tt.samples, rps); got != tt.want {
				t.Errorf("medianOf = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestThousands(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {999.4, "999"}, {1000, "1,000"}, {1234567.8, "1,234,568"}, {-12345, "-12,345"},
	}
	for _, tt := range tests {
		if got := thousands(tt.in); got != tt.want {
			t.Errorf("thousands(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.md")
	doc := "# Title\n\nbefore\n\n" + beginMarker + "\nold figures\n" + endMarker + "\n\nafter\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	section := beginMarker + "\nnew figures\n" + endMarker + "\n"
	if err := replaceSection(path, section); err != nil {
		t.Fatalf("replaceSection: %v", err)
	}

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Title\n\nbefore\n\n" + beginMarker + "\nnew figures\n" + endMarker + "\n\nafter\n"
	if string(got) != want {
		t.Errorf("document =\n%s\nwant\n%s", got, want)
	}

	if err := os.WriteFile(path, []byte("no markers\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := replaceSection(path, section); err == nil ||
		!strings.Contains(err.Error(), "no generated section") {
		t.Errorf("replaceSection without markers: %v", err)
	}
}

func TestField(t *testing.T) {
	tests := []struct {
		in   string
		i    int
		want string
	}{
		{"wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer", 1, "debian/4.1.0-3+b2"},
		{"HAProxy version 2.6.12-1+deb12u4 2026/10/17", 2, "2.6.12-1+deb12u4"},
		{"", 1, "?"},
	}
	for _, tt := range tests {
		if got := field(tt.in, tt.i); got != tt.want {
			t.Errorf("field(%q, %d) = %q, want %q", tt.in, tt.i, got, tt.want)
		}
	}
}

func TestSelected(t *testing.T) {
	keys := func(cfg runConfig) []string {
		var out []string
		for _, s := range newRunner(cfg, nil, nil, nil).selected() {
			out = append(out, s.key)
		}

		return out
	}

	only := keys(runConfig{only: regexp.MustCompile(`^get-(bare|full)-hot-es256$`)})
	if !slices.Equal(only, []string{"get-bare-hot-es256", "get-full-hot-es256"}) {
		t.Errorf("-only selected %v", only)
	}

	// -only wins over -quick; -quick alone keeps only the quick cases.
	quickOnly := keys(runConfig{quick: true, only: regexp.MustCompile(`^get-full-hot-rs256$`)})
	if !slices.Equal(quickOnly, []string{"get-full-hot-rs256"}) {
		t.Errorf("-quick -only selected %v", quickOnly)
	}
	all, quick := keys(runConfig{}), keys(runConfig{quick: true})
	if len(quick) == 0 || len(quick) >= len(all) {
		t.Errorf("quick selects %d of %d scenarios", len(quick), len(all))
	}
	if slices.Contains(quick, "get-full-hot-rs256") {
		t.Errorf("quick selects get-full-hot-rs256, which is not a quick case")
	}
}
