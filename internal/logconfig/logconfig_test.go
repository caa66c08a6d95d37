package logconfig

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestMain fails the package when a flusher goroutine outlives the tests:
// every test closes the loggers it builds.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for flushers() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := flushers(); n > 0 {
			fmt.Fprintf(os.Stderr, "logconfig: %d flusher goroutines leaked\n", n)
			code = 1
		}
	}

	os.Exit(code)
}

// flushers counts the goroutines running writer.run.
func flushers() int {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "logconfig.(*writer).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// output is a temporary file the logger under test writes to.
type output struct {
	t    *testing.T
	file *os.File
}

func newOutput(t *testing.T) *output {
	t.Helper()

	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })

	return &output{t: t, file: f}
}

// String returns everything written so far.
func (o *output) String() string {
	o.t.Helper()

	b, err := os.ReadFile(o.file.Name())
	if err != nil {
		o.t.Fatal(err)
	}

	return string(b)
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newLogger builds a JSON debug logger with interval writing to a
// temporary file, closed when the test ends.
func newLogger(t *testing.T, interval time.Duration) (*zap.Logger, func() error, *output) {
	t.Helper()

	out := newOutput(t)
	errOut := newOutput(t)
	f := Flags{Level: "debug", Format: "json", FlushInterval: interval}
	logger, closeLog, err := f.build("test", out.file, errOut.file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = closeLog()
		if s := errOut.String(); s != "" {
			t.Errorf("zap's error output: %s", s)
		}
	})

	return logger, closeLog, out
}

func TestLinesWrittenAfterInterval(t *testing.T) {
	logger, _, out := newLogger(t, 20*time.Millisecond)

	logger.Info("first")
	logger.Debug("second")

	waitFor(t, "both lines written without Sync", func() bool {
		s := out.String()
		return strings.Contains(s, `"msg":"first"`) && strings.Contains(s, `"msg":"second"`)
	})
}

func TestLinesWaitForInterval(t *testing.T) {
	logger, _, out := newLogger(t, time.Hour)

	logger.Info("buffered")
	logger.Warn("also buffered")

	if s := out.String(); s != "" {
		t.Errorf("written before the interval: %q", s)
	}
}

func TestErrorsWrittenAtOnce(t *testing.T) {
	tests := []struct {
		name string
		log  func(*zap.Logger)
	}{
		{"error", func(l *zap.Logger) { l.Error("boom") }},
		{"dpanic", func(l *zap.Logger) { l.DPanic("boom") }},
		{"error through With", func(l *zap.Logger) { l.With(zap.Int("n", 1)).Error("boom") }},
		{"error through Named", func(l *zap.Logger) { l.Named("sub").Error("boom") }},
		{"error through Check", func(l *zap.Logger) {
			if ce := l.Check(zap.ErrorLevel, "boom"); ce != nil {
				ce.Write()
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, _, out := newLogger(t, time.Hour)

			logger.Info("before")
			tc.log(logger)

			s := out.String()
			before, boom := strings.Index(s, `"msg":"before"`), strings.Index(s, `"msg":"boom"`)
			if before < 0 || boom < 0 || before > boom {
				t.Errorf("want the earlier line, then the error, at once; got %q", s)
			}
		})
	}
}

func TestCloseWritesPending(t *testing.T) {
	logger, closeLog, out := newLogger(t, time.Hour)

	for i := range 100 {
		logger.Info("pending", zap.Int("i", i))
	}
	if err := closeLog(); err != nil {
		t.Fatalf("close: %v", err)
	}

	if got := strings.Count(out.String(), `"msg":"pending"`); got != 100 {
		t.Errorf("%d lines written at close, want 100", got)
	}
	waitFor(t, "flusher stopped", func() bool { return flushers() == 0 })

	logger.Info("after close")
	if !strings.Contains(out.String(), `"msg":"after close"`) {
		t.Error("a line logged after close was not written at once")
	}
	if err := closeLog(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestSyncWritesPending(t *testing.T) {
	logger, _, out := newLogger(t, time.Hour)

	logger.Info("pending")
	if err := logger.Sync(); err != nil {
		t.Fatalf("sync: %v", err)
	}

	if !strings.Contains(out.String(), `"msg":"pending"`) {
		t.Error("Sync did not write the pending line")
	}
}

func TestIntervalZeroWritesEachLine(t *testing.T) {
	before := flushers()
	logger, _, out := newLogger(t, 0)

	if n := flushers(); n != before {
		t.Errorf("%d flusher goroutines started with interval 0", n-before)
	}
	for i := range 3 {
		logger.Info("line", zap.Int("i", i))
		if got := strings.Count(out.String(), `"msg":"line"`); got != i+1 {
			t.Fatalf("after %d lines, %d written", i+1, got)
		}
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		args    []string
		want    time.Duration
		wantErr string // in the error of Parse or Build
	}{
		{name: "default", want: DefaultFlushInterval},
		{name: "flag", args: []string{"-log-flush-interval", "250ms"}, want: 250 * time.Millisecond},
		{name: "zero", args: []string{"-log-flush-interval=0"}, want: 0},
		{name: "env", env: "2s", want: 2 * time.Second},
		{name: "flag over env", env: "2s", args: []string{"-log-flush-interval=1s"},
			want: time.Second},
		{name: "flag over bad env", env: "soon", args: []string{"-log-flush-interval=1s"},
			want: time.Second},
		{name: "not a duration", args: []string{"-log-flush-interval=fast"},
			wantErr: `invalid value "fast" for flag -log-flush-interval: want a duration`},
		{name: "no unit", args: []string{"-log-flush-interval=100"},
			wantErr: `invalid value "100" for flag -log-flush-interval: want a duration`},
		{name: "negative", args: []string{"-log-flush-interval=-1s"},
			wantErr: `invalid value "-1s" for flag -log-flush-interval: want 0`},
		{name: "bad env", env: "soon",
			wantErr: `log flush interval: GATEHOUSE_LOG_FLUSH_INTERVAL="soon": want a duration`},
		{name: "negative env", env: "-5ms",
			wantErr: `GATEHOUSE_LOG_FLUSH_INTERVAL="-5ms": want 0`},
		{name: "bad level", args: []string{"-log-level=loud"}, wantErr: `log level "loud"`},
		{name: "bad format", args: []string{"-log-format=xml"},
			wantErr: `log format "xml": want json or console`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envFlushInterval, tc.env)
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			var f Flags
			f.Register(fs)

			err := fs.Parse(tc.args)
			if err == nil {
				err = checkBuild(t, &f)
			}

			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("unexpected error: %v", err)
			case f.FlushInterval != tc.want:
				t.Errorf("interval %v, want %v", f.FlushInterval, tc.want)
			}
		})
	}
}

// checkBuild builds a logger from f and closes it.
func checkBuild(t *testing.T, f *Flags) error {
	t.Helper()

	out := newOutput(t)
	_, closeLog, err := f.build("test", out.file, out.file)
	if err != nil {
		return err
	}

	return closeLog()
}

// countingFile counts the writes that reach a file.
type countingFile struct {
	*os.File
	writes atomic.Int64
}

func (f *countingFile) Write(p []byte) (int, error) {
	f.writes.Add(1)
	return f.File.Write(p)
}

// BenchmarkAccessLine logs one access-log-like line per op, at once and
// buffered, to a real file and to a pipe drained by another goroutine (how
// the binaries' stderr usually ends), from one goroutine and from 16 per
// CPU as a busy gateway does; writes/op is write(2) calls per line.
func BenchmarkAccessLine(b *testing.B) {
	for _, dest := range []string{"file", "pipe"} {
		for _, interval := range []time.Duration{0, DefaultFlushInterval} {
			for _, parallel := range []int{0, 16} {
				name := fmt.Sprintf("dest=%s/interval=%v/parallel=%d", dest, interval, parallel)
				b.Run(name, func(b *testing.B) {
					benchmarkAccessLine(b, openDest(b, dest), interval, parallel)
				})
			}
		}
	}
}

// openDest returns a file in a temporary folder, or the write end of a
// pipe whose read end is drained until the benchmark ends.
func openDest(b *testing.B, dest string) *os.File {
	b.Helper()

	if dest == "file" {
		f, err := os.Create(filepath.Join(b.TempDir(), "log"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = f.Close() })

		return f
	}

	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, r)
	}()
	b.Cleanup(func() {
		_ = w.Close()
		<-drained
		_ = r.Close()
	})

	return w
}

// benchmarkAccessLine logs to file, from parallel goroutines per CPU when
// positive.
func benchmarkAccessLine(b *testing.B, file *os.File, interval time.Duration, parallel int) {
	out := &countingFile{File: file}
	f := Flags{Level: "info", Format: "json", FlushInterval: interval}
	logger, closeLog, err := f.build("bench", out, os.Stderr)
	if err != nil {
		b.Fatal(err)
	}
	logger = logger.Named("access")

	logLine := func() {
		logger.Info("request",
			zap.String("request_id", "7f0c2d9e4b1a4c3e"),
			zap.String("http_method", "GET"),
			zap.String("route", "/v1/products/{id}"),
			zap.Int("status", 200),
			zap.Float64("latency_ms", 1.25),
			zap.Int64("bytes_out", 512),
			zap.String("client_ip", "127.0.0.1"),
		)
	}

	b.ReportAllocs()
	if parallel > 0 {
		b.SetParallelism(parallel)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				logLine()
			}
		})
	} else {
		for b.Loop() {
			logLine()
		}
	}
	b.StopTimer()

	if err := closeLog(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(out.writes.Load())/float64(b.N), "writes/op")
}
