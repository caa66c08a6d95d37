package consulagent

import (
	"fmt"
	"io"

	"github.com/gatehouse-dev/gatehouse/internal/freeport"
)

// loopback is the only address the agent binds to and advertises.
const loopback = "127.0.0.1"

// Ports are the loopback ports one agent uses, all picked free at Start.
// HTTPS and GRPCTLS are picked even when their listeners are disabled.
type Ports struct {
	// HTTP is the HTTP API and UI port.
	HTTP int
	// HTTPS is the HTTPS API port; only listened on when enabled.
	HTTPS int
	// DNS is the DNS interface port (TCP and UDP).
	DNS int
	// SerfLAN is the LAN gossip port (TCP and UDP).
	SerfLAN int
	// SerfWAN is the WAN gossip port (TCP and UDP).
	SerfWAN int
	// Server is the server RPC and Raft port.
	Server int
	// GRPC is the plaintext xDS/gRPC port.
	GRPC int
	// GRPCTLS is the TLS gRPC port; only listened on when enabled.
	GRPCTLS int
}

// pickPorts reserves distinct free loopback ports for every slot, checking
// UDP as well where Consul uses both protocols. All probe sockets are held
// until every port is chosen so no port is handed out twice.
func pickPorts() (Ports, error) {
	var (
		p       Ports
		holders []io.Closer
	)

	defer func() {
		for _, h := range holders {
			_ = h.Close()
		}
	}()

	slots := []struct {
		name    string
		dst     *int
		withUDP bool
	}{
		{"http", &p.HTTP, false},
		{"https", &p.HTTPS, false},
		{"dns", &p.DNS, true},
		{"serf_lan", &p.SerfLAN, true},
		{"serf_wan", &p.SerfWAN, true},
		{"server", &p.Server, false},
		{"grpc", &p.GRPC, false},
		{"grpc_tls", &p.GRPCTLS, false},
	}

	for _, s := range slots {
		port, held, err := reservePort(s.withUDP)
		if err != nil {
			return Ports{}, fmt.Errorf("reserve loopback port for %s: %w", s.name, err)
		}

		holders = append(holders, held...)
		*s.dst = port
	}

	return p, nil
}

// reservePort holds a free TCP port on loopback (and the same UDP port
// when withUDP is set) and returns the sockets holding it.
func reservePort(withUDP bool) (int, []io.Closer, error) {
	return freeport.Hold(loopback, withUDP)
}
