package discovery

// ServiceConfig is the default gRPC service config for connections dialed
// through this package's resolver: round-robin over every passing instance,
// so load spreads and a failed instance's share moves to the others.
const ServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}]}`
