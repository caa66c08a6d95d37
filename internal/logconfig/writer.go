package logconfig

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
)

// writer keeps log lines in memory and hands them to out in batches: when
// the next line would not fit, interval after a line lands in an empty
// buffer, on Flush and Sync, and on Close. With interval 0, and from Close
// on, every line goes to out at once. It is safe for concurrent use.
//
// zapcore.BufferedWriteSyncer is not used because its timer calls Sync on
// the destination, an fsync(2) of stderr every interval even when idle; it
// holds its lock while writing, so every logging goroutine waits for a slow
// reader; and its bufio.Writer keeps the first write error, so one failed
// write (a full disk) silences every later line. Here the flusher sleeps
// while nothing is pending, batches are written outside the lock lines are
// appended under, and a failed batch is reported and dropped.
type writer struct {
	out      zapcore.WriteSyncer
	errOut   zapcore.WriteSyncer
	interval time.Duration

	// kick wakes the flusher when a line lands in an empty buffer; stop ends
	// it and done is closed when it has returned. All nil with interval 0.
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	// outMu serializes writes to out, so batches keep their order. It is
	// taken before mu, never while holding it.
	outMu sync.Mutex
	// spare is the empty buffer the next flush swaps in.
	spare []byte

	mu sync.Mutex
	// buf holds the lines not written yet; its capacity is the batch size.
	buf []byte
	// direct sends every line to out at once: interval 0, or closed.
	direct bool
}

// newWriter returns a writer to out batching up to size bytes, and starts
// its flusher when interval is positive. errOut receives the errors of
// flushes nobody waits for. Close stops the flusher.
func newWriter(out, errOut zapcore.WriteSyncer, size int, interval time.Duration) *writer {
	w := &writer{out: out, errOut: errOut, interval: interval}
	if interval <= 0 {
		w.direct = true
		return w
	}

	w.buf = make([]byte, 0, size)
	w.spare = make([]byte, 0, size)
	w.kick = make(chan struct{}, 1)
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	go w.run()

	return w
}

// Write copies p into the buffer. When p does not fit, the buffer is
// written to out first, on the caller's goroutine; p goes to out on its
// own only when it is larger than the buffer, or after Close.
func (w *writer) Write(p []byte) (int, error) {
	if w.tryAppend(p) {
		return len(p), nil
	}

	w.outMu.Lock()
	defer w.outMu.Unlock()

	// Writers that found the buffer full queue here; the first one makes
	// room for the others.
	if w.tryAppend(p) {
		return len(p), nil
	}
	if err := w.flushLocked(); err != nil {
		return 0, err
	}
	if w.tryAppend(p) {
		return len(p), nil
	}

	return w.out.Write(p)
}

// tryAppend copies p into the buffer if it fits, and wakes the flusher
// when p is the first line in it. It reports whether p was taken.
func (w *writer) tryAppend(p []byte) bool {
	w.mu.Lock()
	ok := !w.direct && len(w.buf)+len(p) <= cap(w.buf)
	first := ok && len(w.buf) == 0
	if ok {
		w.buf = append(w.buf, p...)
	}
	w.mu.Unlock()

	if first {
		select {
		case w.kick <- struct{}{}:
		default: // the flusher has been woken already
		}
	}

	return ok
}

// Flush writes the buffered lines to out, without syncing it.
func (w *writer) Flush() error {
	w.outMu.Lock()
	defer w.outMu.Unlock()

	return w.flushLocked()
}

// flushLocked swaps the buffer for the spare one and writes the lines it
// held. A batch that fails is dropped: keeping it would resend its lines
// with the next one, or grow without bound. The caller holds outMu.
func (w *writer) flushLocked() error {
	w.mu.Lock()
	batch := w.buf
	w.buf = w.spare
	w.mu.Unlock()

	w.spare = batch[:0]
	if len(batch) == 0 {
		return nil
	}

	if _, err := w.out.Write(batch); err != nil {
		return fmt.Errorf("write %d bytes of log lines: %w", len(batch), err)
	}

	return nil
}

// Sync writes the buffered lines and syncs out. A destination that cannot
// be synced (a pipe or a terminal) is not an error.
func (w *writer) Sync() error {
	if err := w.Flush(); err != nil {
		return err
	}

	err := w.out.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sync log output: %w", err)
	}

	return nil
}

// Close stops the flusher, writes what is pending and syncs out. Lines
// logged afterwards are written at once. Safe to call more than once.
func (w *writer) Close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.direct = true
		w.mu.Unlock()

		if w.stop != nil {
			close(w.stop)
			<-w.done
		}
	})

	return w.Sync()
}

// run flushes the buffer interval after each line that found it empty,
// until Close. It does not wake while nothing is pending.
func (w *writer) run() {
	defer close(w.done)

	timer := time.NewTimer(w.interval)
	timer.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}

		timer.Reset(w.interval)
		select {
		case <-w.stop:
			timer.Stop()
			return
		case <-timer.C:
		}

		if err := w.Flush(); err != nil {
			// Like zap's own write errors, to the unbuffered error output.
			_, _ = fmt.Fprintf(w.errOut, "%v log flush error: %v\n", time.Now().UTC(), err)
			_ = w.errOut.Sync()
		}
	}
}

// flushCore passes entries to its Core and then, for errors and above,
// flushes the writer, so such a line is written at once together with every
// line before it, in order. (zap's ioCore syncs only above error level.)
type flushCore struct {
	zapcore.Core
	w *writer
}

// Level reports the minimum enabled level, for zap.Logger.Level.
func (c *flushCore) Level() zapcore.Level {
	return zapcore.LevelOf(c.Core)
}

// With returns the core with fields added, still flushing on errors.
func (c *flushCore) With(fields []zapcore.Field) zapcore.Core {
	return &flushCore{Core: c.Core.With(fields), w: c.w}
}

// Check adds c itself, not its Core, so that Write below runs. c is a
// pointer so that adding it allocates nothing.
func (c *flushCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}

	return ce
}

// Write writes the entry, then flushes if it is at error level or above.
func (c *flushCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(ent, fields)
	if ent.Level < zapcore.ErrorLevel {
		return err
	}

	return errors.Join(err, c.w.Flush())
}
