package inventory

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// hostSpec is one entry of an environment's hosts with only what it writes
// itself; Resolve fills the rest from the merged settings.
type hostSpec struct {
	name    string
	line    int
	address string
	root    opt[string]
	login   login
	roles   []string // from its map, then from the environment's roles map
}

// hosts decodes an environment's hosts; ok is false when any is left out for a problem.
func (d *decoder) hosts(p pair) (out []hostSpec, ok bool) {
	items, ok := d.list(p.val, "hosts")
	if !ok {
		return nil, false
	}
	if len(items) == 0 {
		d.addf(p.line, "hosts: at least one host is required")
		return nil, false
	}
	for _, it := range items {
		var (
			hs   hostSpec
			good bool
		)
		switch {
		case it.node.Kind == yaml.ScalarNode && !isNull(it.node):
			hs, good = d.hostString(it)
		case it.node.Kind == yaml.MappingNode:
			hs, good = d.hostMap(it)
		default:
			d.addf(it.line, "hosts: expected a host like web1.example.com:22 or a map with address, got %s", describe(it.node))
		}
		if good {
			out = append(out, hs)
		} else {
			ok = false
		}
	}
	return out, ok
}

// hostString decodes `[user@]address[:port]`, the address of IPv6 in brackets.
func (d *decoder) hostString(it item) (hostSpec, bool) {
	s := it.node.Value
	hs := hostSpec{name: s, line: it.line}
	if msg := badText(s, false); msg != "" {
		d.addf(it.line, "hosts: %s", msg)
		return hs, false
	}
	user, addr, port, hasPort, msg := splitHost(s)
	if msg == "" && user != "" {
		msg = checkUser(user)
	}
	if msg == "" {
		msg = checkAddress(addr)
	}
	if msg == "" && hasPort {
		var n int
		n, msg = parsePort(port)
		hs.login.port = some(n)
	}
	if msg != "" {
		d.addf(it.line, "host %q: %s", s, msg)
		return hs, false
	}
	hs.address = addr
	if user != "" {
		hs.login.user = some(user)
	}
	return hs, true
}

// splitHost splits `[user@]address[:port]`; msg says what is wrong, if anything.
func splitHost(s string) (user, addr, port string, hasPort bool, msg string) {
	if strings.TrimSpace(s) == "" {
		return "", "", "", false, "a host must not be empty"
	}
	rest := s
	if u, r, found := strings.Cut(s, "@"); found {
		user, rest = u, r
		if user == "" {
			return "", "", "", false, "empty user before @"
		}
	}
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "", "", false, "missing ] after the IPv6 address"
		}
		addr = rest[1:end]
		switch after := rest[end+1:]; {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return "", "", "", false, fmt.Sprintf("unexpected %q after ]", after)
		}
		if !isIPv6(addr) {
			return "", "", "", false, "brackets are only for IPv6 addresses"
		}
	case strings.Count(rest, ":") > 1:
		if !isIPv6(rest) {
			return "", "", "", false, "write an IPv6 address in brackets, as [2001:db8::1]:22"
		}
		addr = rest
	default:
		addr, port, hasPort = strings.Cut(rest, ":")
	}
	return user, addr, port, hasPort, ""
}

func parsePort(s string) (int, string) {
	if s == "" {
		return 0, "missing port after :"
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Sprintf("port must be a whole number, got %q", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Sprintf("port must be between 1 and 65535, got %s", s)
	}
	return n, ""
}

// hostMap decodes the map form, which can also set a host's root and its own login settings.
func (d *decoder) hostMap(it item) (hostSpec, bool) {
	hs := hostSpec{line: it.line}
	pairs, _ := d.mapping(it.node, "hosts")
	ok, haveAddr := true, false
	for _, p := range pairs {
		key := "hosts." + p.key
		handled, good := d.loginKey(p, key, &hs.login)
		switch {
		case handled:
		case p.key == "address":
			haveAddr = true
			var a string
			if a, good = d.nonEmpty(p.val, key); good {
				if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
					a = a[1 : len(a)-1]
				}
				if msg := checkAddress(a); msg != "" {
					d.addf(p.val.Line, "%s: %s", key, msg)
					good = false
				}
				hs.address = a
			}
		case p.key == "root":
			var v string
			v, good = d.remoteRoot(p.val, key)
			hs.root = some(v)
		case p.key == "roles":
			hs.roles, good = d.roleList(p.val, key, false)
		case p.key == "config":
			d.addf(p.line, "hosts: config is not set per host: ssh.config names one ssh_config file for the environment")
		default:
			d.unknown(p, "hosts", hostKeys)
		}
		ok = ok && good
	}
	if !haveAddr {
		d.addf(it.line, "hosts: a host written as a map needs an address")
		ok = false
	}
	if !ok {
		return hs, false
	}
	// The name is what the map says, in the string form: [user@]address[:port].
	hs.name = Hop{User: hs.login.user.val, Address: hs.address, Port: hs.login.port.val}.String()
	return hs, true
}

// checkAddress accepts host names and IP addresses, nothing that ssh could
// read as an option or a shell could read as syntax.
func checkAddress(a string) string {
	if a == "" {
		return "missing address"
	}
	if strings.HasPrefix(a, "-") || strings.HasPrefix(a, ".") {
		return fmt.Sprintf("address %q must start with a letter or digit", a)
	}
	for _, r := range a {
		if !isAlnum(r) && !strings.ContainsRune(".-_:%", r) {
			return fmt.Sprintf("address %q has %q, which no host name or IP address has", a, r)
		}
	}
	if strings.Contains(a, ":") && !isIPv6(a) {
		return fmt.Sprintf("address %q is neither a host name nor an IP address (a port goes in port:)", a)
	}
	return ""
}

// checkUser keeps login names to the portable set, so none can be read as an ssh option.
func checkUser(u string) string {
	if u == "" {
		return "user must not be empty"
	}
	if strings.HasPrefix(u, "-") {
		return fmt.Sprintf("user %q must not start with -", u)
	}
	for _, r := range u {
		if !isAlnum(r) && !strings.ContainsRune("._-+", r) {
			return fmt.Sprintf("user %q has %q; only letters, digits, '.', '_', '-' and '+' are allowed", u, r)
		}
	}
	return ""
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

func isIPv6(a string) bool {
	ip, err := netip.ParseAddr(a)
	return err == nil && ip.Is6()
}

// canonicalAddress spells an address one way: host names are case-blind and
// an IP address has many spellings.
func canonicalAddress(a string) string {
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(a)
}
