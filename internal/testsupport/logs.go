package testsupport

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// LogSink keeps everything a JSON zap logger writes, so a test can read the
// entries as maps or search the raw output. It is safe for concurrent use.
type LogSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// written is closed at the next write; WaitFor sleeps on it.
	written chan struct{}
}

// NewJSONLogger returns a debug-level logger that writes production-style
// JSON lines (the encoder the binaries use) into the returned sink.
func NewJSONLogger(t testing.TB) (*zap.Logger, *LogSink) {
	t.Helper()

	sink := &LogSink{}
	cfg := zap.NewProductionEncoderConfig()
	cfg.TimeKey = "ts"
	cfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(cfg), zapcore.AddSync(sink), zap.DebugLevel)

	return zap.New(core), sink
}

// Write implements io.Writer.
func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.written != nil {
		close(s.written)
		s.written = nil
	}

	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *LogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.buf.String()
}

// Entries decodes every line written so far; a line that is not JSON fails
// the test.
func (s *LogSink) Entries(t testing.TB) []map[string]any {
	t.Helper()

	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}

		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		entries = append(entries, e)
	}

	return entries
}

// Find returns the entries whose message is msg.
func (s *LogSink) Find(t testing.TB, msg string) []map[string]any {
	t.Helper()

	var found []map[string]any
	for _, e := range s.Entries(t) {
		if e["msg"] == msg {
			found = append(found, e)
		}
	}

	return found
}

// WaitFor returns the first entry for which match is true, waiting up to
// timeout for it to be written; it fails the test when none comes.
func (s *LogSink) WaitFor(
	t testing.TB,
	timeout time.Duration,
	what string,
	match func(map[string]any) bool,
) map[string]any {
	t.Helper()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()

	for {
		s.mu.Lock()
		if s.written == nil {
			s.written = make(chan struct{})
		}
		written := s.written
		s.mu.Unlock()

		for _, e := range s.Entries(t) {
			if match(e) {
				return e
			}
		}

		select {
		case <-written:
		case <-deadline.C:
			t.Fatalf("no log entry %s within %v; log:\n%s", what, timeout, s.String())
		}
	}
}
