// Package certsource keeps a workload's TLS material current from files: a
// certificate, its key and a CA bundle, as written by the gatehouse CLI or
// any other tool. The files are read at start and again whenever they
// change, so certificates and CAs rotate without a restart: new handshakes
// use the new material, open connections are not touched.
//
// Changes are noticed through file system events on the files' directories
// and, as a fallback (a directory that did not exist yet, a missed event),
// by re-reading every poll interval. A reload that fails (a half-rotated
// pair, a leaf the new bundle does not trust, an expired certificate)
// keeps the current bundle and logs why. A warning is logged well before
// the leaf or a CA expires.
package certsource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/gatehouse-dev/gatehouse/identity"
)

const (
	// DefaultPollInterval is how often the files are re-read regardless of
	// file system events.
	DefaultPollInterval = 30 * time.Second

	// debounce lets a burst of events (a rotation writes several files)
	// settle before the files are read.
	debounce = 50 * time.Millisecond
)

// ErrClosed is returned by WaitReady once the source is closed.
var ErrClosed = errors.New("certificate source closed")

// Files names the three files of a source.
type Files struct {
	// Cert is the PEM certificate (leaf first, intermediates may follow).
	Cert string
	// Key is the PEM PKCS #8 private key of the leaf.
	Key string
	// CA is the PEM bundle of trusted CA certificates.
	CA string
}

// Validate reports a missing file name.
func (f Files) Validate() error {
	switch {
	case f.Cert == "":
		return errors.New("certificate file name is empty")
	case f.Key == "":
		return errors.New("key file name is empty")
	case f.CA == "":
		return errors.New("ca bundle file name is empty")
	}

	return nil
}

// Option configures a Source.
type Option func(*options)

type options struct {
	logger       *zap.Logger
	expected     identity.ID
	pollInterval time.Duration
	warnBefore   time.Duration
	now          func() time.Time
}

// WithLogger sets the logger; the default is zap.NewNop(). It logs loads,
// failed reloads and expiry warnings, never key material.
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) { o.logger = logger }
}

// WithExpectedID makes the source refuse a certificate that carries another
// identity, e.g. a file of another service passed by mistake.
func WithExpectedID(id identity.ID) Option {
	return func(o *options) { o.expected = id }
}

// WithPollInterval sets how often the files are re-read even without file
// system events; the default is DefaultPollInterval.
func WithPollInterval(d time.Duration) Option {
	return func(o *options) { o.pollInterval = d }
}

// WithExpiryWarning sets how long before a certificate's expiry a warning is
// logged. The default, zero, warns once a third of the certificate's
// lifetime is left (8h for a 24h leaf).
func WithExpiryWarning(d time.Duration) Option {
	return func(o *options) { o.warnBefore = d }
}

// Source is a Bundle kept current from files. Create it with New and stop
// it with Close. It is safe for concurrent use.
type Source struct {
	files   Files
	opts    options
	logger  *zap.Logger
	watcher *fsnotify.Watcher // nil when events are not available

	current   atomic.Pointer[Bundle]
	ready     chan struct{}
	readyOnce sync.Once

	// lastDigest is the digest of the file contents last tried, so an
	// unchanged set is not parsed (or complained about) again. Only the
	// watch goroutine and New touch it, never concurrently.
	lastDigest [sha256.Size]byte
	// warned records, per certificate serial, that its expiry warning was
	// logged. Only the watch goroutine and New touch it.
	warned map[string]bool

	cancel context.CancelFunc
	done   chan struct{}
}

// New validates files and opts, reads the files once and starts watching
// them. Missing or unusable files are not an error: the source is simply
// not ready (see Ready) until they become usable. Call Close to stop it.
func New(files Files, opts ...Option) (*Source, error) {
	if err := files.Validate(); err != nil {
		return nil, fmt.Errorf("new certificate source: %w", err)
	}

	o := options{
		logger:       zap.NewNop(),
		pollInterval: DefaultPollInterval,
		now:          time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}

	switch {
	case o.logger == nil:
		return nil, errors.New("new certificate source: logger must not be nil")
	case o.pollInterval <= 0:
		return nil, fmt.Errorf("new certificate source: poll interval %v must be positive",
			o.pollInterval)
	case o.warnBefore < 0:
		return nil, fmt.Errorf("new certificate source: expiry warning %v is negative",
			o.warnBefore)
	}

	s := &Source{
		files: files,
		opts:  o,
		logger: o.logger.Named("certsource").With(zap.String("cert_file", files.Cert),
			zap.String("ca_file", files.CA)),
		ready:  make(chan struct{}),
		warned: map[string]bool{},
		done:   make(chan struct{}),
	}

	s.watcher = s.newWatcher()
	s.reload()

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel

	go s.run(ctx)

	return s, nil
}

// Bundle returns the current bundle, or nil before the first successful
// load. Callers should fetch it per handshake, not keep it.
func (s *Source) Bundle() *Bundle {
	return s.current.Load()
}

// Ready is closed once the first bundle is loaded.
func (s *Source) Ready() <-chan struct{} {
	return s.ready
}

// WaitReady blocks until the first bundle is loaded, ctx ends or the source
// is closed.
func (s *Source) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("wait for certificate %q: %w", s.files.Cert, ctx.Err())
	}
}

// Close stops watching the files and waits for the watch to end. The last
// bundle stays available. Closing twice is safe.
func (s *Source) Close() error {
	s.cancel()
	<-s.done

	return nil
}

// newWatcher watches the directories of the files, or returns nil (and the
// poll interval does the work) when that is not possible.
func (s *Source) newWatcher() *fsnotify.Watcher {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.logger.Warn("file events unavailable; relying on polling", zap.Error(err),
			zap.Duration("poll_interval", s.opts.pollInterval))
		return nil
	}

	dirs := map[string]bool{}
	for _, f := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		dirs[filepath.Dir(f)] = true
	}

	for dir := range dirs {
		if err := w.Add(dir); err != nil {
			s.logger.Warn("cannot watch directory; relying on polling", zap.String("dir", dir),
				zap.Duration("poll_interval", s.opts.pollInterval), zap.Error(err))
		}
	}

	return w
}

// run reloads on file events (debounced) and on every poll tick until ctx
// ends.
func (s *Source) run(ctx context.Context) {
	defer close(s.done)

	var events <-chan fsnotify.Event
	var errs <-chan error
	if s.watcher != nil {
		defer func() { _ = s.watcher.Close() }()
		events, errs = s.watcher.Events, s.watcher.Errors
	}

	ticker := time.NewTicker(s.opts.pollInterval)
	defer ticker.Stop()

	settle := time.NewTimer(debounce)
	settle.Stop()
	defer settle.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}

			// Any change in the directories may be ours (editors and
			// symlink swaps rename things); the digest tells.
			settle.Reset(debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}

			s.logger.Warn("file watch error; polling continues", zap.Error(err))
		case <-settle.C:
			s.reload()
		case <-ticker.C:
			s.reload()
			s.checkExpiry(s.current.Load())
		}
	}
}

// reload reads the files and, if their content changed since the last
// attempt, parses them and swaps the bundle in when usable.
func (s *Source) reload() {
	certPEM, keyPEM, caPEM, err := s.read()
	if err != nil {
		s.failed(err)
		return
	}

	digest := sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM, caPEM}, []byte{0}))
	if digest == s.lastDigest {
		return
	}

	s.lastDigest = digest

	b, err := ParseBundle(certPEM, keyPEM, caPEM, s.opts.now())
	if err == nil && !s.opts.expected.IsZero() && b.ID != s.opts.expected {
		err = fmt.Errorf("%w: certificate carries %s, want %s", ErrUnusable, b.ID, s.opts.expected)
	}

	if err != nil {
		s.failed(err)
		return
	}

	prev := s.current.Swap(b)
	s.readyOnce.Do(func() { close(s.ready) })

	msg := "certificate loaded"
	if prev != nil {
		msg = "certificate reloaded; new handshakes use it"
	}

	s.logger.Info(msg, zap.Stringer("id", b.ID),
		zap.String("serial", b.Leaf().SerialNumber.Text(16)),
		zap.Time("not_after", b.Leaf().NotAfter), zap.Int("trusted_cas", len(b.CAs)))

	s.checkExpiry(b)
}

func (s *Source) read() ([]byte, []byte, []byte, error) {
	certPEM, err := os.ReadFile(s.files.Cert)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read certificate: %w", err)
	}

	keyPEM, err := os.ReadFile(s.files.Key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read key: %w", err)
	}

	caPEM, err := os.ReadFile(s.files.CA)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read ca bundle: %w", err)
	}

	return certPEM, keyPEM, caPEM, nil
}

// failed logs a load that did not produce a bundle. Before the first bundle
// the workload is not ready; after it, the previous bundle stays in use.
func (s *Source) failed(err error) {
	if s.current.Load() == nil {
		s.logger.Warn("certificate not loaded yet; not ready", zap.Error(err))
		return
	}

	s.logger.Error("certificate reload failed; keeping the current certificate",
		zap.Error(err))
}

// checkExpiry warns once per certificate when its expiry is near, and says
// so again (as an error) once it has expired.
func (s *Source) checkExpiry(b *Bundle) {
	if b == nil {
		return
	}

	now := s.opts.now()
	check := func(kind, serial string, notBefore, notAfter time.Time) {
		left := notAfter.Sub(now)

		warnAt := s.opts.warnBefore
		if warnAt == 0 {
			warnAt = notAfter.Sub(notBefore) / 3
		}

		key := kind + "/" + serial
		switch {
		case left <= 0 && !s.warned[key+"/expired"]:
			s.warned[key+"/expired"] = true
			s.logger.Error(kind+" has expired; new handshakes fail until it is replaced",
				zap.String("serial", serial), zap.Time("not_after", notAfter))
		case left > 0 && left <= warnAt && !s.warned[key]:
			s.warned[key] = true
			s.logger.Warn(kind+" expires soon; replace it", zap.String("serial", serial),
				zap.Time("not_after", notAfter), zap.Duration("left", left.Round(time.Second)))
		}
	}

	leaf := b.Leaf()
	check("certificate", leaf.SerialNumber.Text(16), leaf.NotBefore, leaf.NotAfter)

	for _, ca := range b.CAs {
		check("ca certificate", ca.SerialNumber.Text(16), ca.NotBefore, ca.NotAfter)
	}
}
