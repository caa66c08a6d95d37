package clientip

import (
	"iter"
	"net/netip"
	"strings"
)

// fromForwarded reads RFC 7239 Forwarded lines. Only the last maxHops
// elements are kept, so a long header written by the client costs no more
// than a short one; they are walked right to left as for X-Forwarded-For.
func (r *Resolver) fromForwarded(values []string) (netip.Addr, bool) {
	var ring [maxHops]string
	n := 0
	for _, line := range values {
		for elem := range fields(line, ',') {
			ring[n%maxHops] = forParam(elem)
			n++
		}
	}

	for i := 1; i <= min(n, maxHops); i++ {
		addr, ok := parseNode(ring[(n-i)%maxHops])
		if !ok {
			return netip.Addr{}, false
		}

		if !r.Trusted(addr) || i == n {
			// The first untrusted hop from the right, or, when every hop
			// is a trusted proxy, the first of them.
			return addr, true
		}
	}

	return netip.Addr{}, false
}

// forParam returns the value of an element's for= parameter, unquoted, or
// "" when there is none or it is malformed.
func forParam(elem string) string {
	for pair := range fields(elem, ';') {
		name, value, ok := strings.Cut(pair, "=")
		if ok && strings.EqualFold(strings.TrimSpace(name), "for") {
			return unquote(strings.TrimSpace(value))
		}
	}

	return ""
}

// fields yields the parts of s between the separators sep that are not
// inside a quoted string. An unterminated quote runs to the end of s.
func fields(s string, sep byte) iter.Seq[string] {
	return func(yield func(string) bool) {
		quoted, escaped := false, false
		start := 0
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case escaped:
				escaped = false
			case quoted && c == '\\':
				escaped = true
			case c == '"':
				quoted = !quoted
			case !quoted && c == sep:
				if !yield(s[start:i]) {
					return
				}

				start = i + 1
			}
		}

		yield(s[start:])
	}
}

// unquote returns a token as it is and a quoted string without its quotes
// and escapes; a malformed quoted string gives "".
func unquote(v string) string {
	if !strings.HasPrefix(v, `"`) {
		return v
	}

	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case c == '"':
			if i != len(v)-1 {
				return ""
			}

			return b.String()
		default:
			b.WriteByte(c)
		}
	}

	return ""
}
