package inventory

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Roles say what a host is for (web, worker), so hooks and health checks can
// run on some hosts only, and a run can be narrowed to some of them. A host
// gets roles in its map (roles: [web]) or from its environment's roles map
// (roles: {web: [web1, web2]}); both add up.

// roleAssignment is one entry of an environment's roles map before its names are matched.
type roleAssignment struct {
	role  string
	line  int
	hosts []item // names of hosts, as written in hosts:
}

// isRoleName is true for [a-z0-9][a-z0-9_-]*.
func isRoleName(s string) bool {
	if s == "" || s[0] == '_' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// roleName checks one role name where it is written.
func (d *decoder) roleName(s string, line int, key string) bool {
	if !isRoleName(s) {
		d.addf(line, "%s: %q is not a role name: use lowercase letters, digits, _ and -, starting with a letter or digit", key, s)
		return false
	}
	return true
}

// roleList decodes `roles: [web, worker]` into sorted, distinct names.
// required says an empty list is refused (a hook's roles: every host is written by leaving roles out).
func (d *decoder) roleList(n *yaml.Node, key string, required bool) ([]string, bool) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		d.addf(n.Line, "%s: expected a list like [web, worker], got %s", key, describe(n))
		return nil, false
	}
	items, ok := d.list(n, key)
	if !ok {
		return nil, false
	}
	out := []string{}
	for _, it := range items {
		v, good := d.nonEmpty(it.node, key)
		if good {
			good = d.roleName(v, it.line, key)
		}
		if !good {
			ok = false
			continue
		}
		out = append(out, v)
	}
	if ok && required && len(out) == 0 {
		d.addf(n.Line, "%s: name at least one role, or leave roles out to mean every host", key)
		return nil, false
	}
	slices.Sort(out)
	return slices.Compact(out), ok
}

// roleMap decodes an environment's `roles: {web: [web1, web2], ...}`.
func (d *decoder) roleMap(p pair) ([]roleAssignment, bool) {
	pairs, ok := d.mapping(p.val, "roles")
	if !ok {
		return nil, false
	}
	var out []roleAssignment
	for _, rp := range pairs {
		key := "roles." + rp.key
		if !d.roleName(rp.key, rp.line, "roles") {
			ok = false
			continue
		}
		if rp.val.Kind == yaml.ScalarNode && !isNull(rp.val) {
			d.addf(rp.val.Line, "%s: expected a list of hosts like [web1, web2], got %s", key, describe(rp.val))
			ok = false
			continue
		}
		items, good := d.list(rp.val, key)
		ra := roleAssignment{role: rp.key, line: rp.line}
		for _, it := range items {
			if _, ok := d.nonEmpty(it.node, key); !ok {
				good = false
				continue
			}
			ra.hosts = append(ra.hosts, it)
		}
		if !good {
			ok = false
			continue
		}
		out = append(out, ra)
	}
	return out, ok
}

// assignRoles gives the hosts of e the roles its roles map names them for.
// Names that match no host are reported only when every host was read, as a
// host written wrong is already reported.
func (d *decoder) assignRoles(e *environment, hostsRead bool) {
	names := make([]string, len(e.hosts))
	for i, hs := range e.hosts {
		names[i] = hs.name
	}
	for _, ra := range e.roleMap {
		e.declared = append(e.declared, ra.role)
		for _, it := range ra.hosts {
			name := it.node.Value
			idx := matchHosts(name, len(e.hosts), func(i int) (string, string) { return e.hosts[i].name, e.hosts[i].address })
			if len(idx) == 0 {
				if hostsRead {
					d.addf(it.line, "roles.%s: unknown host %q (hosts: %s)", ra.role, name, listNames(names))
				}
				continue
			}
			for _, i := range idx {
				e.hosts[i].roles = append(e.hosts[i].roles, ra.role)
			}
		}
	}
}

// matchHosts finds hosts by a name from the user: the host written exactly
// so, else every host at that address (web1 names web1:2201 and web1:2202).
// host(i) gives the name and address of host i.
func matchHosts(name string, n int, host func(i int) (name, address string)) []int {
	for i := range n {
		if hn, _ := host(i); hn == name {
			return []int{i}
		}
	}
	want := strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if !isIPv6(want) {
		want = name
	}
	want = canonicalAddress(want)
	var out []int
	for i := range n {
		if _, addr := host(i); canonicalAddress(addr) == want {
			out = append(out, i)
		}
	}
	return out
}

// listNames joins names for a message, at most 20 of them, so a fleet of 200 stays readable.
func listNames(names []string) string {
	const most = 20
	if len(names) == 0 {
		return "none"
	}
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], ", "), len(names)-most)
}

// HasRole is true when h has any of roles, or when roles is empty (no roles
// means every host).
func (h Host) HasRole(roles []string) bool {
	if len(roles) == 0 {
		return true
	}
	for _, r := range h.Roles {
		if slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

// Roles lists every role name of the environment, sorted: those of its hosts
// and those its roles map declares (maybe for no host yet).
func (e *Environment) Roles() []string {
	out := slices.Clone(e.roles)
	for _, h := range e.Hosts {
		out = append(out, h.Roles...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// knownRoles lists e's roles for a message about one it lacks.
func (e *Environment) knownRoles() string {
	if known := e.Roles(); len(known) > 0 {
		return "roles: " + strings.Join(known, ", ")
	}
	return fmt.Sprintf("environment %q has no roles", e.Name)
}

// SelectError is a selection (--roles, --hosts) that names what the
// environment does not have, or that leaves no host: a usage error, so it
// carries no file:line.
type SelectError struct {
	Problems []string
}

func (e *SelectError) Error() string { return strings.Join(e.Problems, "\n") }

// Select returns a copy of e narrowed to the hosts that have any of roles
// and, when names are given too, are among names (each the host's Name as
// the inventory writes it, or its bare address, which names every host at it).
// Hosts keep their inventory order, so `once` means the first selected host
// among a hook's roles. Empty roles and names select every host; blank
// entries are ignored.
func (e *Environment) Select(roles, names []string) (*Environment, error) {
	roles, names = nonBlank(roles), nonBlank(names)
	known := e.Roles()
	var problems []string
	for _, r := range roles {
		if !slices.Contains(known, r) {
			problems = append(problems, fmt.Sprintf("unknown role %q (%s)", r, e.knownRoles()))
		}
	}
	named := make([]bool, len(e.Hosts))
	for _, name := range names {
		idx := matchHosts(name, len(e.Hosts), func(i int) (string, string) { return e.Hosts[i].Name, e.Hosts[i].Address })
		if len(idx) == 0 {
			problems = append(problems, fmt.Sprintf("unknown host %q (hosts: %s)", name, listNames(e.hostNames())))
		}
		for _, i := range idx {
			named[i] = true
		}
	}
	if len(problems) > 0 {
		return nil, &SelectError{Problems: problems}
	}
	out := e.clone()
	out.Hosts = out.Hosts[:0]
	for i, h := range e.Hosts {
		if h.HasRole(roles) && (len(names) == 0 || named[i]) {
			out.Hosts = append(out.Hosts, cloneHost(h))
		}
	}
	if len(out.Hosts) == 0 {
		msg := fmt.Sprintf("no host has role %s", strings.Join(roles, " or "))
		if len(names) > 0 {
			msg = fmt.Sprintf("none of %s has role %s", strings.Join(names, ", "), strings.Join(roles, " or "))
		}
		return nil, &SelectError{Problems: []string{msg}}
	}
	return out, nil
}

func (e *Environment) hostNames() []string {
	out := make([]string, len(e.Hosts))
	for i, h := range e.Hosts {
		out[i] = h.Name
	}
	return out
}

// nonBlank trims the entries of a list split from a flag and drops the empty ones.
func nonBlank(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
