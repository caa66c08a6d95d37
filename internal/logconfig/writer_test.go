package logconfig

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder keeps each write it receives, failing while fail is set.
type recorder struct {
	mu     sync.Mutex
	writes []string
	fail   bool
	syncs  int
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()

	if r.fail {
		return 0, errors.New("disk full")
	}
	r.writes = append(r.writes, string(p))

	return len(p), nil
}

func (r *recorder) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()

	r.syncs++

	return nil
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()

	return append([]string(nil), r.writes...)
}

func (r *recorder) syncCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()

	return r.syncs
}

func (r *recorder) setFail(fail bool) {
	r.mu.Lock()
	defer r.mu.Unlock()

	r.fail = fail
}

func newTestWriter(t *testing.T, size int, interval time.Duration) (*writer, *recorder) {
	t.Helper()

	out := &recorder{}
	w := newWriter(out, &recorder{}, size, interval)
	t.Cleanup(func() { _ = w.Close() })

	return w, out
}

func TestWriterBatches(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string // writes that reach out before any flush
	}{
		{"fits", []string{"aaaa\n", "bbbb\n"}, nil},
		{"full buffer written, the line kept", []string{"aaaa\n", "bbbb\n", "cc\n"},
			[]string{"aaaa\nbbbb\n"}},
		{"line larger than the buffer", []string{"a\n", strings.Repeat("x", 20) + "\n"},
			[]string{"a\n", strings.Repeat("x", 20) + "\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, out := newTestWriter(t, 10, time.Hour)

			for _, l := range tc.lines {
				if _, err := w.Write([]byte(l)); err != nil {
					t.Fatal(err)
				}
			}

			if got := out.snapshot(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("writes %q, want %q", got, tc.want)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(out.snapshot(), ""); got != strings.Join(tc.lines, "") {
				t.Errorf("after Flush %q, want every line in order", got)
			}
		})
	}
}

func TestWriterSyncsOnlyOnSync(t *testing.T) {
	w, out := newTestWriter(t, 1<<10, time.Millisecond)

	_, _ = w.Write([]byte("line\n"))
	waitFor(t, "interval flush", func() bool { return len(out.snapshot()) == 1 })
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := out.syncCount(); n != 0 {
		t.Errorf("%d syncs from flushes, want 0", n)
	}

	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := out.syncCount(); n != 1 {
		t.Errorf("%d syncs after Sync, want 1", n)
	}
}

func TestWriterDropsFailedBatch(t *testing.T) {
	w, out := newTestWriter(t, 1<<10, time.Hour)

	_, _ = w.Write([]byte("lost\n"))
	out.setFail(true)
	if err := w.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("flush error %v, want the write error", err)
	}

	out.setFail(false)
	_, _ = w.Write([]byte("kept\n"))
	if err := w.Flush(); err != nil {
		t.Errorf("flush after recovery: %v", err)
	}
	if got := strings.Join(out.snapshot(), ""); got != "kept\n" {
		t.Errorf("written %q, want only the line after the failure", got)
	}
}

func TestWriterReportsFlusherErrors(t *testing.T) {
	out, errOut := &recorder{fail: true}, &recorder{}
	w := newWriter(out, errOut, 1<<10, time.Millisecond)
	defer func() { _ = w.Close() }()

	_, _ = w.Write([]byte("line\n"))

	waitFor(t, "error reported", func() bool {
		got := strings.Join(errOut.snapshot(), "")
		return strings.Contains(got, "log flush error: write 5 bytes of log lines: disk full")
	})
}

func TestWriterConcurrent(t *testing.T) {
	w, out := newTestWriter(t, 1<<10, time.Millisecond)

	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				_, _ = fmt.Fprintf(w, "g%d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	all := strings.Join(out.snapshot(), "")
	next := make([]int, writers)
	for l := range strings.Lines(all) {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d line %d\n", &g, &i); err != nil {
			t.Fatalf("torn line %q: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
	for g, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines, want %d", g, n, lines)
		}
	}
}
