package inventory

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The inventory records only what it says: a login setting it leaves out stays
// empty, so that ssh_config (read by the caller) can supply it, and OpenSSH's
// defaults come last. Precedence: the inventory's explicit value, then
// ssh_config, then the defaults below.

// DefaultPort is the port used when neither the inventory nor ssh_config names one.
const DefaultPort = 22

// None is the value that turns a setting off where ssh_config would otherwise
// supply one: `config: none` reads no ssh_config, `jump: none` goes direct.
const None = "none"

// StrictHostKeyChecking values the inventory accepts; "no" is never one,
// because host keys are always checked.
const (
	StrictYes       = "yes"
	StrictAcceptNew = "accept-new"
)

// Keys of ssh: (at the top level and in an environment) and the ssh keys a
// host in map form may set for itself.
var (
	sshLoginKeys = []string{"user", "port", "identity", "known_hosts", "jump", "strict_host_key_checking", "identities_only"}
	sshKeys      = append([]string{"config"}, sshLoginKeys...)
)

// login is the login settings as written, under ssh: or on a host.
type login struct {
	user, identity, knownHosts, jump, strict opt[string]
	port                                     opt[int]
	identitiesOnly                           opt[bool]
}

// merge overrides l with over key by key.
func (l login) merge(over login) login {
	return login{
		user:           l.user.or(over.user),
		identity:       l.identity.or(over.identity),
		knownHosts:     l.knownHosts.or(over.knownHosts),
		jump:           l.jump.or(over.jump),
		strict:         l.strict.or(over.strict),
		port:           l.port.or(over.port),
		identitiesOnly: l.identitiesOnly.or(over.identitiesOnly),
	}
}

// apply fills h's login fields with what l sets; the rest stays empty.
func (l login) apply(h *Host) {
	h.User = l.user.val
	h.Port = l.port.val
	h.Identity = l.identity.val
	h.KnownHosts = l.knownHosts.val
	h.Jump = l.jump.val
	h.StrictHostKeyChecking = l.strict.val
	if l.identitiesOnly.set {
		v := l.identitiesOnly.val
		h.IdentitiesOnly = &v
	}
}

func (d *decoder) ssh(n *yaml.Node, s *settings) {
	pairs, _ := d.mapping(n, "ssh")
	for _, p := range pairs {
		key := "ssh." + p.key
		switch handled, _ := d.loginKey(p, key, &s.login); {
		case handled:
		case p.key == "config":
			if v, ok := d.sshConfig(p.val, key); ok {
				s.sshConfig = some(v)
			}
		default:
			d.unknown(p, "ssh", sshKeys)
		}
	}
}

// loginKey decodes p into l if it is a login key: handled is false if it is
// not one, good is false if its value is wrong (the problem is recorded).
func (d *decoder) loginKey(p pair, key string, l *login) (handled, good bool) {
	switch p.key {
	case "user":
		var v string
		if v, good = d.user(p.val, key); good {
			l.user = some(v)
		}
	case "port":
		var v int
		if v, good = d.port(p.val, key); good {
			l.port = some(v)
		}
	case "identity":
		var v string
		if v, good = d.identity(p.val, key); good {
			l.identity = some(v)
		}
	case "known_hosts":
		var v string
		if v, good = d.localPath(p.val, key); good {
			l.knownHosts = some(v)
		}
	case "jump":
		var v string
		if v, good = d.jump(p.val, key); good {
			l.jump = some(v)
		}
	case "strict_host_key_checking":
		var v string
		if v, good = d.strict(p.val, key); good {
			l.strict = some(v)
		}
	case "identities_only":
		var v bool
		if v, good = d.boolean(p.val, key); good {
			l.identitiesOnly = some(v)
		}
	default:
		return false, false
	}
	return true, good
}

// sshConfig is `none` or a local path; a file really named none is written ./none.
func (d *decoder) sshConfig(n *yaml.Node, key string) (string, bool) {
	if n.Kind == yaml.ScalarNode && n.Value == None {
		return None, true
	}
	return d.localPath(n, key)
}

// jump is a ProxyJump value: `none`, or hops [user@]host[:port] separated by commas.
func (d *decoder) jump(n *yaml.Node, key string) (string, bool) {
	v, ok := d.nonEmpty(n, key)
	if !ok {
		return "", false
	}
	hops, err := ParseJump(v)
	if err != nil {
		d.addf(n.Line, "%s: %v", key, err)
		return "", false
	}
	if hops == nil {
		return None, true
	}
	return JoinJump(hops), true
}

func (d *decoder) strict(n *yaml.Node, key string) (string, bool) {
	v, ok := d.nonEmpty(n, key)
	if !ok {
		return "", false
	}
	switch low := strings.ToLower(v); low {
	case StrictYes, StrictAcceptNew:
		return low, true
	case "no", "off", "false":
		d.addf(n.Line, "%s: host keys are always checked; use yes or accept-new (which records the keys of new hosts), got %q", key, v)
	default:
		d.addf(n.Line, "%s: expected yes or accept-new, got %q", key, v)
	}
	return "", false
}

// Hop is one host of a jump chain, written [user@]address[:port] as ProxyJump writes it.
type Hop struct {
	User    string // "" when the chain names none: ssh_config, then the local user
	Address string
	Port    int // 0 when the chain names none: ssh_config, then DefaultPort
}

// String writes the hop back in ProxyJump form, an IPv6 address in brackets when a port follows.
func (h Hop) String() string {
	s := h.Address
	if h.Port != 0 {
		if isIPv6(s) {
			s = "[" + s + "]"
		}
		s += ":" + strconv.Itoa(h.Port)
	}
	if h.User != "" {
		s = h.User + "@" + s
	}
	return s
}

// ParseJump reads a ProxyJump value, from the inventory or from ssh_config:
// hops separated by commas, the first reached first, each [user@]host[:port]
// or ssh://[user@]host[:port]. "none" gives no hops and no error.
func ParseJump(s string) ([]Hop, error) {
	if s == None {
		return nil, nil
	}
	if msg := badText(s, false); msg != "" {
		return nil, errors.New(msg)
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("a jump host must not be empty")
	}
	var hops []Hop
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == None {
			return nil, errors.New("none turns jumping off and cannot be part of a chain")
		}
		hop, err := parseHop(strings.TrimPrefix(part, "ssh://"))
		if err != nil {
			return nil, fmt.Errorf("jump host %q: %w", part, err)
		}
		hops = append(hops, hop)
	}
	return hops, nil
}

func parseHop(s string) (Hop, error) {
	user, addr, port, hasPort, msg := splitHost(s)
	if msg == "" && user != "" {
		msg = checkUser(user)
	}
	if msg == "" {
		msg = checkAddress(addr)
	}
	var n int
	if msg == "" && hasPort {
		n, msg = parsePort(port)
	}
	if msg != "" {
		return Hop{}, errors.New(msg)
	}
	return Hop{User: user, Address: addr, Port: n}, nil
}

// JoinJump writes hops as one ProxyJump value; no hops is "none".
func JoinJump(hops []Hop) string {
	if len(hops) == 0 {
		return None
	}
	parts := make([]string, len(hops))
	for i, h := range hops {
		parts[i] = h.String()
	}
	return strings.Join(parts, ",")
}

// DefaultUser is the login used when neither the inventory nor ssh_config
// names one: the local user name, as ssh(1) does.
func DefaultUser() (string, error) {
	if u, err := user.Current(); err == nil && u.Username != "" {
		name := u.Username
		if i := strings.LastIndexByte(name, '\\'); i >= 0 { // DOMAIN\user on Windows
			name = name[i+1:]
		}
		return name, nil
	}
	if name := os.Getenv("USER"); name != "" {
		return name, nil
	}
	return "", errors.New("no user entry and $USER is unset")
}

// DefaultKnownHosts is OpenSSH's own default file, so hosts the user already trusts are trusted.
func DefaultKnownHosts() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".ssh", "known_hosts"), nil
}

// FillDefaults gives every host's unset user, port and known_hosts the
// defaults (DefaultUser, DefaultPort, DefaultKnownHosts): what Resolve did
// before it left them to ssh_config. Use it only where ssh_config is not read.
func (e *Environment) FillDefaults() error {
	var (
		me, known       string
		meErr, knownErr error
		looked          bool
	)
	for i := range e.Hosts {
		h := &e.Hosts[i]
		if !looked && (h.User == "" || h.KnownHosts == "") {
			me, meErr = DefaultUser()
			known, knownErr = DefaultKnownHosts()
			looked = true
		}
		if h.Port == 0 {
			h.Port = DefaultPort
		}
		if h.User == "" {
			if meErr != nil {
				return fmt.Errorf("%s: cannot tell the local user name to log in with (%w); set ssh.user", h.Name, meErr)
			}
			h.User = me
		}
		if h.KnownHosts == "" {
			if knownErr != nil {
				return fmt.Errorf("%s: cannot locate ~/.ssh/known_hosts (%w); set ssh.known_hosts", h.Name, knownErr)
			}
			h.KnownHosts = known
		}
	}
	return nil
}
