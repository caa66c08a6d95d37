package mtls_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-dev/gatehouse/interceptors/peerauth"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/mtls"
)

// allowAll is a policy that lets every caller through, so the benchmark
// measures the interceptor's own work.
type allowAll struct{}

func (allowAll) Check(string, string) error { return nil }

// countingListener counts accepted connections, to prove that calls reuse
// one connection.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}

	return c, err
}

type benchSetup struct {
	name   string
	server []grpc.ServerOption
	client credentials.TransportCredentials
}

func benchSetups(b *testing.B) []benchSetup {
	p := testsupport.NewTestPKI(b)
	serverSrc := testsupport.StaticSource{B: p.Bundle(p.Leaf(b, testsupport.ID(b, "catalog")))}
	clientSrc := testsupport.StaticSource{B: p.Bundle(p.Leaf(b, testsupport.ID(b, "orders")))}

	serverCreds, err := mtls.NewServerCredentials(serverSrc)
	if err != nil {
		b.Fatal(err)
	}

	clientCreds, err := mtls.NewClientCredentials(clientSrc, testsupport.ID(b, "catalog"))
	if err != nil {
		b.Fatal(err)
	}

	auth, err := peerauth.New(allowAll{})
	if err != nil {
		b.Fatal(err)
	}

	return []benchSetup{
		{name: "plaintext", client: insecure.NewCredentials()},
		{name: "mtls", server: []grpc.ServerOption{grpc.Creds(serverCreds)}, client: clientCreds},
		{name: "mtls+peerauth", client: clientCreds, server: []grpc.ServerOption{
			grpc.Creds(serverCreds), grpc.UnaryInterceptor(auth.UnaryServerInterceptor())}},
	}
}

// startBench serves health with opts and returns a connection to it, and
// the listener that counts connections.
func startBench(b *testing.B, s benchSetup) (*grpc.ClientConn, *countingListener) {
	b.Helper()

	srv := grpc.NewServer(s.server...)
	healthpb.RegisterHealthServer(srv, health.NewServer())

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}

	counting := &countingListener{Listener: lis}

	go func() { _ = srv.Serve(counting) }()
	b.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(s.client))
	if err != nil {
		b.Fatal(err)
	}

	b.Cleanup(func() { _ = conn.Close() })

	// The handshake happens here, outside the measured loop.
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(),
		&healthpb.HealthCheckRequest{}); err != nil {
		b.Fatal(err)
	}

	return conn, counting
}

func checkReuse(b *testing.B, l *countingListener) {
	b.Helper()

	if n := l.accepted.Load(); n != 1 {
		b.Fatalf("%d connections accepted, want 1: calls must reuse the connection", n)
	}
}

// BenchmarkUnary is the latency of one unary call at a time over one
// reused connection; BenchmarkUnaryParallel is the throughput of concurrent
// calls over it.
func BenchmarkUnary(b *testing.B) {
	for _, s := range benchSetups(b) {
		b.Run(s.name, func(b *testing.B) {
			conn, counting := startBench(b, s)
			client := healthpb.NewHealthClient(conn)
			ctx := context.Background()
			req := &healthpb.HealthCheckRequest{}

			b.ReportAllocs()

			for b.Loop() {
				if _, err := client.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}

			checkReuse(b, counting)
		})
	}
}

// BenchmarkUnaryParallel measures throughput: GOMAXPROCS goroutines call
// concurrently on one reused connection.
func BenchmarkUnaryParallel(b *testing.B) {
	for _, s := range benchSetups(b) {
		b.Run(s.name, func(b *testing.B) {
			conn, counting := startBench(b, s)
			client := healthpb.NewHealthClient(conn)
			req := &healthpb.HealthCheckRequest{}

			b.ReportAllocs()
			b.ResetTimer()

			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.Check(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})

			checkReuse(b, counting)
		})
	}
}

// BenchmarkHandshake is the cost of one new connection: a TCP connect and
// a one-byte exchange as the baseline, and the same with a full mutual TLS
// 1.3 handshake (no session resumption) on both ends before the byte.
func BenchmarkHandshake(b *testing.B) {
	p := testsupport.NewTestPKI(b)
	serverSrc := testsupport.StaticSource{B: p.Bundle(p.Leaf(b, testsupport.ID(b, "catalog")))}
	clientBundle := p.Bundle(p.Leaf(b, testsupport.ID(b, "orders")))

	tests := []struct {
		name   string
		server func(net.Conn) net.Conn
		client func(net.Conn) net.Conn
	}{
		{name: "tcp", server: identityConn, client: identityConn},
		{
			name: "mtls",
			server: func(c net.Conn) net.Conn {
				return tls.Server(c, mtls.ServerConfig(serverSrc))
			},
			client: func(c net.Conn) net.Conn {
				return tls.Client(c, mtls.ClientConfig(clientBundle, testsupport.ID(b, "catalog")))
			},
		},
	}

	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			addr := echoOneByte(b, tt.server)
			buf := make([]byte, 1)

			b.ReportAllocs()

			for b.Loop() {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}

				c := tt.client(raw)
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}

				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}

				_ = c.Close()
			}
		})
	}
}

func identityConn(c net.Conn) net.Conn { return c }

// echoOneByte accepts connections, wraps each with wrap (a TLS server
// completes its handshake on the first read) and echoes one byte.
func echoOneByte(b *testing.B, wrap func(net.Conn) net.Conn) string {
	b.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}

	b.Cleanup(func() { _ = lis.Close() })

	go func() {
		for {
			raw, err := lis.Accept()
			if err != nil {
				return
			}

			go func() {
				c := wrap(raw)
				defer func() { _ = c.Close() }()

				buf := make([]byte, 1)
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}

				_, _ = c.Write(buf)
			}()
		}
	}()

	return lis.Addr().String()
}
