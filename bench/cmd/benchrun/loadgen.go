package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// loadCore is the core of the load generators and backends; the subject
// under test gets core 0.
const loadCore = 1

// load is what one load-generator run measured.
type load struct {
	Requests int64
	Seconds  float64
	// Latency percentiles and maximum, in microseconds.
	P50, P90, P99, Max float64
	// Errors counts non-2xx answers and socket errors.
	Errors int64
	// GeneratorCPU is the CPU time the load generator used.
	GeneratorCPU time.Duration
}

// RPS is requests per second.
func (l load) RPS() float64 {
	if l.Seconds == 0 {
		return 0
	}

	return float64(l.Requests) / l.Seconds
}

// wrkJob is one wrk run: method and path on base, with the token and body
// files (empty for none), starting at token start, pausing pauseMS after
// each answer when set.
type wrkJob struct {
	base     string
	method   string
	path     string
	tokens   string
	body     string
	start    int64
	pauseMS  int
	conns    int
	duration time.Duration
}

// runWrk runs wrk pinned to the load core with the harness's Lua script and
// reads the figures done() prints. wrk's own report goes to log.
func runWrk(ctx context.Context, luaDir string, j wrkJob, log io.Writer) (load, error) {
	script := filepath.Join(luaDir, "bench.lua")
	if j.pauseMS > 0 {
		script = filepath.Join(luaDir, "paced.lua")
	}
	seconds := max(1, int(j.duration.Round(time.Second)/time.Second))

	args := []string{"-c", strconv.Itoa(loadCore), "wrk",
		"-t", "1", "-c", strconv.Itoa(j.conns), "-d", strconv.Itoa(seconds) + "s",
		"--latency", "--timeout", "5s", "-s", script, j.base + j.path,
		"--", j.method, j.path, orDash(j.tokens), orDash(j.body),
		strconv.FormatInt(j.start, 10)}
	if j.pauseMS > 0 {
		args = append(args, strconv.Itoa(j.pauseMS))
	}

	cmd := exec.CommandContext(ctx, "taskset", args...)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return load{}, fmt.Errorf("wrk %s %s: %w", j.method, j.base+j.path, err)
	}

	l, err := parseWrk(out.String())
	l.GeneratorCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

	return l, err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}

	return s
}

// parseWrk reads the "BENCH key=value …" line bench.lua's done() prints.
func parseWrk(out string) (load, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "BENCH ")
		if !ok {
			continue
		}

		v := map[string]int64{}
		for _, kv := range strings.Fields(rest) {
			k, val, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return load{}, fmt.Errorf("wrk figure %q: %w", kv, err)
			}
			v[k] = n
		}

		return load{
			Requests: v["requests"],
			Seconds:  float64(v["duration_us"]) / 1e6,
			P50:      float64(v["p50_us"]),
			P90:      float64(v["p90_us"]),
			P99:      float64(v["p99_us"]),
			Max:      float64(v["max_us"]),
			Errors: v["status_errors"] + v["connect_errors"] + v["read_errors"] +
				v["write_errors"] + v["timeouts"],
		}, nil
	}

	return load{}, errors.New("wrk printed no BENCH line: is bench.lua's done() intact?")
}

// ghzJob is one ghz run of CatalogService.GetProduct against addr, over
// plaintext or, when tls is set, mutual TLS.
type ghzJob struct {
	bin      string
	protoset string
	addr     string
	tls      *ghzTLS
	conns    int
	duration time.Duration
}

// ghzTLS is the client side of mutual TLS for ghz.
type ghzTLS struct {
	ca, cert, key, serverName string
}

// runGhz runs ghz pinned to the load core and reads its JSON report.
func runGhz(ctx context.Context, j ghzJob, outPath string, log io.Writer) (load, error) {
	args := []string{"-c", strconv.Itoa(loadCore), j.bin,
		"--protoset", j.protoset,
		"--call", "gatehouse.catalog.v1.CatalogService/GetProduct",
		"-d", `{"id":"p-1001"}`,
		"-c", strconv.Itoa(j.conns), "--connections", "1",
		"-z", j.duration.String(), "--format", "json", "-o", outPath}
	if j.tls == nil {
		args = append(args, "--insecure")
	} else {
		args = append(args, "--cacert", j.tls.ca, "--cert", j.tls.cert, "--key", j.tls.key,
			"--cname", j.tls.serverName)
	}
	args = append(args, j.addr)

	cmd := exec.CommandContext(ctx, "taskset", args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return load{}, fmt.Errorf("ghz %s: %w", j.addr, err)
	}

	data, err := os.ReadFile(outPath)
	if err != nil {
		return load{}, fmt.Errorf("ghz report: %w", err)
	}

	l, err := parseGhz(data)
	l.GeneratorCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

	return l, err
}

// parseGhz reads the figures of a ghz JSON report (durations in ns).
func parseGhz(data []byte) (load, error) {
	var r struct {
		Count     int64            `json:"count"`
		Total     int64            `json:"total"`
		Slowest   int64            `json:"slowest"`
		Statuses  map[string]int64 `json:"statusCodeDistribution"`
		Errors    map[string]int64 `json:"errorDistribution"`
		Latencies []struct {
			Percentage int   `json:"percentage"`
			Latency    int64 `json:"latency"`
		} `json:"latencyDistribution"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return load{}, fmt.Errorf("decode ghz report: %w", err)
	}

	l := load{Requests: r.Count, Seconds: float64(r.Total) / 1e9, Max: float64(r.Slowest) / 1e3}
	for code, n := range r.Statuses {
		if code != "OK" {
			l.Errors += n
		}
	}
	// ghz closes its connection when the time is up, failing the calls
	// then in flight; those are not errors of the server.
	for msg, n := range r.Errors {
		if strings.Contains(msg, "transport is closing") ||
			strings.Contains(msg, "client connection is closing") {
			l.Errors -= n
		}
	}
	for _, p := range r.Latencies {
		switch p.Percentage {
		case 50:
			l.P50 = float64(p.Latency) / 1e3
		case 90:
			l.P90 = float64(p.Latency) / 1e3
		case 99:
			l.P99 = float64(p.Latency) / 1e3
		}
	}

	return l, nil
}
