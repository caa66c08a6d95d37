// Package mtls builds mutual TLS for Gatehouse's internal gRPC calls from a
// certificate source that may rotate at any time.
//
// Servers accept TLS 1.3 only and require a client certificate that chains
// to a trusted CA; which identities may call which methods is decided later,
// per call, by interceptors/peerauth. Clients dial instances by the IP and
// port Consul returns, so host names prove nothing: a client is built for
// one service and accepts only a server whose certificate carries that
// service's identity (its URI SAN, and the matching DNS SAN that standard
// verification checks).
//
// Every handshake takes the source's current bundle, so a rotated
// certificate or CA bundle is used from the next handshake on, while open
// connections carry on. Handshake failures are logged on both sides, with
// the peer's address and the reason.
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/identity"
)

// alpnHTTP2 is the ALPN protocol id of HTTP/2, which gRPC requires.
const alpnHTTP2 = "h2"

var (
	// ErrNotReady is returned by handshakes before the source has loaded its
	// first bundle.
	ErrNotReady = errors.New("no certificate loaded yet")

	// ErrWrongServer is returned by a client handshake when the server's
	// verified certificate carries another identity than the one dialed.
	ErrWrongServer = errors.New("server presented another identity than expected")

	// ErrNoHTTP2 is returned by a client handshake when the server did not
	// agree to HTTP/2 by ALPN.
	ErrNoHTTP2 = errors.New("server did not negotiate http/2")
)

// Source supplies the current bundle, or nil before the first one is
// loaded. *certsource.Source implements it.
type Source interface {
	Bundle() *certsource.Bundle
}

// Option configures the credentials of this package.
type Option func(*options)

type options struct {
	logger *zap.Logger
}

// WithLogger sets the logger that records failed handshakes; the default is
// zap.NewNop().
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) { o.logger = logger }
}

func newOptions(opts []Option) (options, error) {
	o := options{logger: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}

	if o.logger == nil {
		return o, errors.New("logger must not be nil")
	}

	o.logger = o.logger.Named("mtls")

	return o, nil
}

// ServerConfig returns the server side of mutual TLS for src: TLS 1.3 only,
// a client certificate required and verified against the trusted CAs. The
// certificate and CAs are taken from src at each handshake; before src is
// ready every handshake fails with ErrNotReady.
func ServerConfig(src Source) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			b := src.Bundle()
			if b == nil {
				return nil, ErrNotReady
			}

			return serverConfigFor(b), nil
		},
	}
}

func serverConfigFor(b *certsource.Bundle) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		Certificates: []tls.Certificate{*b.Certificate},
		ClientCAs:    b.Roots,
	}
}

// ClientConfig returns the client side of mutual TLS with bundle b, for a
// server that must carry identity server: TLS 1.3 only, b's certificate
// presented, the server's chain verified against b's CAs with server's DNS
// name, and its URI SAN required to be server exactly. It offers HTTP/2 by
// ALPN, as gRPC needs.
func ClientConfig(b *certsource.Bundle, server identity.ID) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*b.Certificate},
		RootCAs:      b.Roots,
		ServerName:   server.DNSName(),
		NextProtos:   []string{alpnHTTP2},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkServer(cs.PeerCertificates, server)
		},
	}
}

// checkServer runs after the chain and DNS name were verified.
func checkServer(certs []*x509.Certificate, want identity.ID) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: no certificate", ErrWrongServer)
	}

	got, err := identity.FromCertificate(certs[0])
	if err != nil {
		return fmt.Errorf("%w: want %s: %w", ErrWrongServer, want, err)
	}

	if got != want {
		return fmt.Errorf("%w: got %s, want %s", ErrWrongServer, got, want)
	}

	return nil
}

// serverCreds is gRPC server credentials that log refused handshakes.
type serverCreds struct {
	credentials.TransportCredentials
	logger *zap.Logger
}

// NewServerCredentials returns gRPC server credentials for ServerConfig(src).
// A refused handshake (plaintext, no or untrusted client certificate,
// expired, not yet valid) is logged at warn level with the client's address
// and the reason. They are safe for concurrent use.
func NewServerCredentials(src Source, opts ...Option) (credentials.TransportCredentials, error) {
	if src == nil {
		return nil, errors.New("new server credentials: source must not be nil")
	}

	o, err := newOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("new server credentials: %w", err)
	}

	return &serverCreds{
		TransportCredentials: credentials.NewTLS(ServerConfig(src)),
		logger:               o.logger,
	}, nil
}

// ServerHandshake implements credentials.TransportCredentials.
func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.logger.Warn("tls handshake refused", zap.Stringer("peer_addr", raw.RemoteAddr()),
			zap.Error(err))

		return nil, nil, err
	}

	return conn, info, nil
}

// Clone implements credentials.TransportCredentials.
func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), logger: c.logger}
}

// clientCreds is gRPC client credentials for one server identity.
type clientCreds struct {
	src    Source
	server identity.ID
	logger *zap.Logger
}

// NewClientCredentials returns gRPC client credentials that present src's
// certificate and accept only a server carrying identity server (see
// ClientConfig). Use one per target service. A refused handshake is logged
// at warn level with the server's address, the expected identity and the
// reason. They are safe for concurrent use.
func NewClientCredentials(
	src Source,
	server identity.ID,
	opts ...Option,
) (credentials.TransportCredentials, error) {
	if src == nil {
		return nil, errors.New("new client credentials: source must not be nil")
	}

	if server.IsZero() {
		return nil, errors.New("new client credentials: server identity must not be empty")
	}

	o, err := newOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("new client credentials for %s: %w", server, err)
	}

	return &clientCreds{src: src, server: server, logger: o.logger}, nil
}

// ClientHandshake implements credentials.TransportCredentials. It runs the
// handshake itself rather than through credentials.NewTLS, which replaces
// the configured server name with the channel's authority (an IP and port
// here): the name verified must always be the dialed service's.
func (c *clientCreds) ClientHandshake(
	ctx context.Context,
	_ string,
	raw net.Conn,
) (net.Conn, credentials.AuthInfo, error) {
	b := c.src.Bundle()
	if b == nil {
		c.logger.Warn("tls handshake not attempted", zap.Stringer("server", c.server),
			zap.Stringer("peer_addr", raw.RemoteAddr()), zap.Error(ErrNotReady))

		return nil, nil, ErrNotReady
	}

	conn := tls.Client(raw, ClientConfig(b, c.server))

	err := conn.HandshakeContext(ctx)
	if err == nil && conn.ConnectionState().NegotiatedProtocol != alpnHTTP2 {
		err = ErrNoHTTP2
	}

	if err != nil {
		_ = conn.Close()
		c.logger.Warn("tls handshake with server refused", zap.Stringer("server", c.server),
			zap.Stringer("peer_addr", raw.RemoteAddr()), zap.Error(err))

		return nil, nil, err
	}

	info := credentials.TLSInfo{
		State:          conn.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}

	return conn, info, nil
}

// ServerHandshake implements credentials.TransportCredentials; client
// credentials cannot serve.
func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("mtls: client credentials used on a server")
}

// Info implements credentials.TransportCredentials.
func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

// Clone implements credentials.TransportCredentials.
func (c *clientCreds) Clone() credentials.TransportCredentials {
	clone := *c
	return &clone
}

// OverrideServerName implements credentials.TransportCredentials. It is
// refused: the server's identity is fixed when the credentials are built.
func (c *clientCreds) OverrideServerName(string) error {
	return errors.New("mtls: the server identity of client credentials cannot be overridden")
}
