package consulagent

import (
	"io"
	"sync"
)

// tailSize is how much of the agent's most recent output is kept for error
// messages.
const tailSize = 8 << 10

// tailBuffer keeps the last max bytes written to it. It is safe for
// concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newTailBuffer(max int) *tailBuffer {
	return &tailBuffer{max: max}
}

// Write implements io.Writer and never fails.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}

	return len(p), nil
}

// String returns the kept output.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()

	return string(t.buf)
}

// forgivingWriter passes writes on to w but never reports a failure: a
// broken log sink must not stop the copy of the agent's output, or the
// agent would block writing to a full pipe.
type forgivingWriter struct {
	w io.Writer
}

// Write implements io.Writer.
func (f forgivingWriter) Write(p []byte) (int, error) {
	_, _ = f.w.Write(p)

	return len(p), nil
}
