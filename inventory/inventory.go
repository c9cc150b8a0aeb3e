// Package inventory reads the YAML file that says what to deploy and where:
// the app, its local source and build, the remote layout, the hooks and, per
// environment, the hosts and their roles. It reports every problem it finds,
// each at a line of the file, so a user fixes them all in one go; it does no
// I/O besides reading the file and looking up the home directory that ~ stands
// for (and, in FillDefaults, the local user).
package inventory

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
	name     string
	line     int
	set      settings
	hosts    []hostSpec
	roleMap  []roleAssignment
	declared []string // the roles its roles map names, hosts or not
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

// LoadNames lists the environments of the inventory at path, in file order,
// e.g. for a command given none. An inventory with problems gives its Errors.
func LoadNames(path string) ([]string, error) {
	inv, err := Load(path)
	if err != nil {
		return nil, err
	}
	return inv.Environments(), nil
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
// fills in defaults (but not the login settings ssh_config may supply: see
// Host) and checks what only the merged settings can show: a missing app or
// root, duplicate hosts, roles of hooks and of the health check that no host
// has, a health check's run and interval.
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

		OutsideSymlinks: RefuseOutside,
		LockLease:       s.lockLease.val,
		SSHConfig:       s.sshConfig.val,
	}
	if s.outsideSymlinks.set {
		out.OutsideSymlinks = s.outsideSymlinks.val
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
	for i, p := range phases {
		*out.Hooks.list(p) = withTimeout(s.hooks[i].val, timeout)
	}

	out.Hosts = resolveHosts(d, e, s)
	out.roles = slices.Clone(e.declared)
	out.roles = out.Roles()
	checkHookRoles(d, out)
	resolveHealth(d, out, s.health)
	if len(d.problems) > 0 {
		return nil, d.errors()
	}
	return out, nil
}

// resolveHosts gives each host of e its settings: its own, else the merged
// ones; a login setting that neither writes stays empty for ssh_config. It
// reports hosts that are there twice.
func resolveHosts(d *decoder, e environment, s settings) []Host {
	var (
		hosts    []Host
		rootless []string
		seen     = map[string]Host{}
		named    = map[string]Host{}
	)
	for _, hs := range e.hosts {
		h := Host{
			Name:    hs.name,
			Address: hs.address,
			Root:    s.root.or(hs.root).val,
			Line:    hs.line,
		}
		s.login.merge(hs.login).apply(&h)
		if len(hs.roles) > 0 {
			h.Roles = slices.Clone(hs.roles)
			slices.Sort(h.Roles)
			h.Roles = slices.Compact(h.Roles)
		}
		if h.Root == "" {
			rootless = append(rootless, h.Name)
		}
		if first, dup := seen[h.identity()]; dup {
			d.addf(h.Line, "duplicate host %q: %s is already on line %d as %q", h.Name, h.Key(), first.Line, first.Name)
		} else if first, dup := named[strings.ToLower(h.Name)]; dup {
			// Same address, different jumps: maybe two machines, but no message could tell them apart.
			d.addf(h.Line, "duplicate host name %q (first on line %d): give each its own name, e.g. a Host alias in ssh_config",
				h.Name, first.Line)
		} else {
			seen[h.identity()] = h
			named[strings.ToLower(h.Name)] = h
		}
		hosts = append(hosts, h)
	}
	if len(rootless) > 0 {
		d.addf(e.line, "environment %q has no root for %s (set root at the top level, in the environment or on each host)",
			e.name, strings.Join(rootless, ", "))
	}
	return hosts
}

// clone is a deep copy of e, so that editing one cannot change the other.
func (e *Environment) clone() *Environment {
	out := *e
	out.Build = slices.Clone(e.Build)
	out.Exclude = slices.Clone(e.Exclude)
	out.Shared = slices.Clone(e.Shared)
	out.Hooks = e.Hooks.clone()
	if e.HealthCheck != nil {
		hc := *e.HealthCheck
		hc.Roles = slices.Clone(hc.Roles)
		out.HealthCheck = &hc
	}
	out.roles = slices.Clone(e.roles)
	out.Hosts = make([]Host, len(e.Hosts))
	for i, h := range e.Hosts {
		out.Hosts[i] = cloneHost(h)
	}
	return &out
}

func cloneHost(h Host) Host {
	h.Roles = slices.Clone(h.Roles)
	if h.IdentitiesOnly != nil {
		v := *h.IdentitiesOnly
		h.IdentitiesOnly = &v
	}
	return h
}

func (h Hooks) clone() Hooks {
	for _, p := range phases {
		*h.list(p) = cloneHooks(*h.list(p))
	}
	return h
}

func cloneHooks(hooks []Hook) []Hook {
	out := slices.Clone(hooks)
	for i := range out {
		out[i].Roles = slices.Clone(out[i].Roles)
	}
	return out
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
	c := h
	c.Address = canonicalAddress(h.Address)
	return c.Key()
}

// unreadable reports a file that cannot be read, without repeating its name;
// a missing one with the ways to make one.
func unreadable(file string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return Errors{{File: file, Msg: `the inventory does not exist: write one with "fleetdeploy init", ` +
			"or start from a copy of hosts.example.yml"}}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return Errors{{File: file, Msg: fmt.Sprintf("cannot read inventory: %v", err)}}
}
