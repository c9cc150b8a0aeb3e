// Package inventory reads the YAML file that says what to deploy and where:
// the app, its local source and build, the remote layout, the hooks and, per
// environment, the hosts. It reports every problem it finds, each at a line of
// the file, so a user fixes them all in one go; it does no I/O besides reading
// the file and looking up the local user and home directory.
package inventory

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Inventory is a parsed, structurally valid inventory file; Resolve turns one
// of its environments into the settings a deploy uses.
type Inventory struct {
	file    string
	top     settings
	envs    []environment
	envLine int // line of `environments:`, where an unknown name is reported
}

// environment is one entry of `environments:` before it is merged with the top level.
type environment struct {
	name  string
	line  int
	set   settings
	hosts []hostSpec
}

// Load reads and validates an inventory file; path is used verbatim in messages.
func Load(path string) (*Inventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unreadable(path, err)
	}
	defer f.Close()
	return Parse(f, path)
}

// LoadEnvironment is Load followed by Resolve, for callers that deploy one environment.
func LoadEnvironment(path, env string) (*Environment, error) {
	inv, err := Load(path)
	if err != nil {
		return nil, err
	}
	return inv.Resolve(env)
}

// Parse reads an inventory from r. file names it in messages, and its directory
// anchors the relative local paths the inventory contains.
func Parse(r io.Reader, file string) (*Inventory, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, unreadable(file, err)
	}
	d := &decoder{file: file}
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		d.addf(0, "cannot locate the inventory's directory: %v", err)
	}
	d.dir = dir

	inv := &Inventory{file: file}
	if root := d.parseYAML(data); root != nil {
		d.inventory(root, inv)
	} else if len(d.problems) == 0 {
		d.addf(1, "inventory is empty: expected app, source, root and environments")
	}
	if len(d.problems) > 0 {
		return nil, d.errors()
	}
	return inv, nil
}

// Environments lists the environment names in file order, e.g. for a usage message.
func (inv *Inventory) Environments() []string {
	if inv == nil {
		return nil
	}
	names := make([]string, len(inv.envs))
	for i, e := range inv.envs {
		names[i] = e.name
	}
	return names
}

// Resolve merges the top-level settings with environment env's overrides,
// fills in defaults and checks what only the merged settings can show
// (a missing app or root, duplicate hosts).
func (inv *Inventory) Resolve(env string) (*Environment, error) {
	if inv == nil {
		return nil, Errors{{Msg: "no inventory"}}
	}
	i := slices.IndexFunc(inv.envs, func(e environment) bool { return e.name == env })
	if i < 0 {
		return nil, Errors{{File: inv.file, Line: inv.envLine,
			Msg: fmt.Sprintf("unknown environment %q (have: %s)", env, strings.Join(inv.Environments(), ", "))}}
	}
	e := inv.envs[i]
	s := inv.top.merge(e.set)
	d := &decoder{file: inv.file}

	out := &Environment{
		Name:    e.name,
		File:    inv.file,
		App:     s.app.val,
		Source:  s.source.val,
		Build:   slices.Clone(s.build.val),
		Exclude: slices.Clone(s.exclude.val),
		Root:    s.root.val,
		Keep:    DefaultKeep,
		Shared:  slices.Clone(s.shared.val),
	}
	for _, req := range []struct {
		key string
		v   opt[string]
	}{{"app", s.app}, {"source", s.source}} {
		if !req.v.set {
			d.addf(e.line, "environment %q has no %s (set it at the top level or in the environment)", e.name, req.key)
		}
	}
	if s.keep.set {
		out.Keep = s.keep.val
	}
	timeout := DefaultHookTimeout
	if s.hookTimeout.set {
		timeout = s.hookTimeout.val
	}
	out.Hooks = Hooks{
		BeforeCutover: withTimeout(s.beforeCutover.val, timeout),
		AfterCutover:  withTimeout(s.afterCutover.val, timeout),
	}

	out.Hosts = resolveHosts(d, e, s)
	if len(d.problems) > 0 {
		return nil, d.errors()
	}
	return out, nil
}

// resolveHosts gives each host of e its settings: its own, else the merged
// ones, else the local defaults, and reports hosts that are there twice.
func resolveHosts(d *decoder, e environment, s settings) []Host {
	user := lazy{get: localUser}
	known := lazy{get: defaultKnownHosts}
	var (
		hosts    []Host
		rootless []string
		seen     = map[string]Host{}
	)
	for _, hs := range e.hosts {
		h := Host{
			Name:     hs.name,
			Address:  hs.address,
			Port:     pick(s.port, hs.port, 22),
			Root:     pick(s.root, hs.root, ""),
			Identity: pick(s.identity, hs.identity, ""),
			Line:     hs.line,
		}
		if u := s.user.or(hs.user); u.set {
			h.User = u.val
		} else {
			h.User = user.value()
		}
		if k := s.knownHosts.or(hs.knownHosts); k.set {
			h.KnownHosts = k.val
		} else {
			h.KnownHosts = known.value()
		}
		if h.Root == "" {
			rootless = append(rootless, h.Name)
		}
		if first, dup := seen[h.identity()]; dup {
			d.addf(h.Line, "duplicate host %q: %s is already on line %d as %q", h.Name, h.Key(), first.Line, first.Name)
		} else {
			seen[h.identity()] = h
		}
		hosts = append(hosts, h)
	}
	if len(rootless) > 0 {
		d.addf(e.line, "environment %q has no root for %s (set root at the top level, in the environment or on each host)",
			e.name, strings.Join(rootless, ", "))
	}
	if user.err != nil {
		d.addf(e.line, "environment %q: cannot tell the local user name to log in with (%v); set ssh.user", e.name, user.err)
	}
	if known.err != nil {
		d.addf(e.line, "environment %q: cannot locate ~/.ssh/known_hosts (%v); set ssh.known_hosts", e.name, known.err)
	}
	return hosts
}

// lazy is a local default, looked up only when some host needs it, and once.
type lazy struct {
	get  func() (string, error)
	done bool
	val  string
	err  error
}

func (l *lazy) value() string {
	if !l.done {
		l.val, l.err = l.get()
		l.done = true
	}
	return l.val
}

// pick returns a host's own value, else the merged setting, else def.
func pick[T any](merged, own opt[T], def T) T {
	if o := merged.or(own); o.set {
		return o.val
	}
	return def
}

// withTimeout copies hooks, giving each that set no timeout the default.
func withTimeout(hooks []Hook, def time.Duration) []Hook {
	out := slices.Clone(hooks)
	for i := range out {
		if out[i].Timeout == 0 {
			out[i].Timeout = def
		}
	}
	return out
}

// identity is how duplicates are found: like Key, but blind to the case of a
// host name and to the spelling of an IP address.
func (h Host) identity() string {
	return fmt.Sprintf("%s@%s:%d", h.User, canonicalAddress(h.Address), h.Port)
}

// localUser is the SSH login used when the inventory names none, as ssh(1) does.
func localUser() (string, error) {
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

// defaultKnownHosts is OpenSSH's own default, so hosts the user already trusts are trusted.
func defaultKnownHosts() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".ssh", "known_hosts"), nil
}

// unreadable reports a file that cannot be read, without repeating its name.
func unreadable(file string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return Errors{{File: file, Msg: fmt.Sprintf("cannot read inventory: %v", err)}}
}
