package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/devissuer"
	"github.com/gatehouse-dev/gatehouse/internal/logconfig"
	"go.uber.org/zap"
)

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var (
		logFlags    logconfig.Flags
		clientSpecs listFlag
		listen      = fs.String("listen", "127.0.0.1:8081", "HTTP listen address (loopback only)")
		issuerURL   = fs.String("issuer", "", "issuer URL (default http://<listen>)")
		keyFile     = fs.String("keys", defaultKeyFile, "key file, created 0600 when missing")
		clientsFile = fs.String("clients", "", "JSON file with an array of clients")
		audience    = fs.String("audience", "gatehouse", "aud of issued tokens")
		ttl         = fs.Duration("ttl", devissuer.DefaultTokenTTL, "token lifetime")
		rotateEvery = fs.Duration("rotate-every", 0, "rotate keys this often (0: only on SIGHUP)")
		grace       = fs.Duration("grace", time.Hour, "how long rotated-out keys stay published")
	)
	fs.Var(&clientSpecs, "client", "client ID:SECRET[:SCOPES[:ROLES]] (repeatable; "+
		"scopes and roles comma-separated)")
	logFlags.Register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	if err := checkLoopback(*listen); err != nil {
		return err
	}

	clients, err := collectClients(clientSpecs, *clientsFile)
	if err != nil {
		return err
	}

	logger, closeLog, err := logFlags.Build("devissuer")
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()

	// Listening first lets -listen 127.0.0.1:0 work: the default issuer URL
	// takes the port actually bound.
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", *listen, err)
	}
	defer func() { _ = lis.Close() }()
	if *issuerURL == "" {
		*issuerURL = "http://" + lis.Addr().String()
	}

	keys, created, err := devissuer.LoadOrCreateKeyRing(*keyFile)
	if err != nil {
		return err
	}
	logger.Info("keys ready", zap.String("file", *keyFile), zap.Bool("created", created))

	iss, err := devissuer.New(devissuer.Config{
		Issuer:   *issuerURL,
		Audience: *audience,
		Clients:  clients,
		TokenTTL: *ttl,
	}, keys, devissuer.WithLogger(logger), devissuer.WithKeyFile(*keyFile),
		devissuer.WithRotationGrace(*grace))
	if err != nil {
		return err
	}

	return serveUntilSignal(logger, lis, iss, *rotateEvery)
}

func collectClients(specs []string, file string) ([]devissuer.Client, error) {
	var clients []devissuer.Client
	if file != "" {
		loaded, err := loadClients(file)
		if err != nil {
			return nil, err
		}
		clients = append(clients, loaded...)
	}

	for _, spec := range specs {
		c, err := parseClient(spec)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
	}

	if len(clients) == 0 {
		return nil, errors.New("no client: give -client ID:SECRET[:SCOPES[:ROLES]] or -clients")
	}

	return clients, nil
}

// serveUntilSignal serves iss until SIGINT or SIGTERM, rotating keys on SIGHUP and
// every rotateEvery when positive.
func serveUntilSignal(
	logger *zap.Logger,
	lis net.Listener,
	iss *devissuer.Issuer,
	rotateEvery time.Duration,
) error {
	srv := &http.Server{
		Handler:           iss,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(logger.Named("http")),
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var tick <-chan time.Time
	if rotateEvery > 0 {
		ticker := time.NewTicker(rotateEvery)
		defer ticker.Stop()
		tick = ticker.C
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	logger.Info("serving", zap.Stringer("addr", lis.Addr()), zap.String("issuer", iss.URL()))

	for {
		select {
		case err := <-served:
			return fmt.Errorf("serve http: %w", err)
		case <-hup:
			rotate(logger, iss)
		case <-tick:
			rotate(logger, iss)
		case <-ctx.Done():
			return shutdown(logger, srv, served)
		}
	}
}

func rotate(logger *zap.Logger, iss *devissuer.Issuer) {
	if err := iss.Rotate(); err != nil {
		logger.Error("key rotation failed", zap.Error(err))
	}
}

func shutdown(logger *zap.Logger, srv *http.Server, served <-chan error) error {
	logger.Info("shutting down")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}

	return nil
}
