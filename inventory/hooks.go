package inventory

import (
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// HookPhase names when hooks run; its value is the key under hooks:.
type HookPhase string

// The hook phases, in the order a run meets them.
const (
	BeforeCutover HookPhase = "before_cutover" // on the hosts, once every host holds the new build
	AfterCutover  HookPhase = "after_cutover"  // on the hosts, once every host has switched
	AfterRollback HookPhase = "after_rollback" // on the hosts, after any rollback, an automatic one included
	OnSuccess     HookPhase = "on_success"     // on this machine, when a run succeeds
	OnFailure     HookPhase = "on_failure"     // on this machine, when a run fails
)

// phases is every HookPhase, in order; settings index their hook lists by it.
var phases = [...]HookPhase{BeforeCutover, AfterCutover, AfterRollback, OnSuccess, OnFailure}

// Phases lists every hook phase, in the order a run meets them.
func Phases() []HookPhase { return slices.Clone(phases[:]) }

// Local is true for the phases whose hooks run on the machine that runs
// fleetdeploy (for notifications) rather than on the hosts.
func (p HookPhase) Local() bool { return p == OnSuccess || p == OnFailure }

// Phase lists the hooks of p, in inventory order.
func (h Hooks) Phase(p HookPhase) []Hook {
	if l := h.list(p); l != nil {
		return *l
	}
	return nil
}

func (h *Hooks) list(p HookPhase) *[]Hook {
	switch p {
	case BeforeCutover:
		return &h.BeforeCutover
	case AfterCutover:
		return &h.AfterCutover
	case AfterRollback:
		return &h.AfterRollback
	case OnSuccess:
		return &h.OnSuccess
	case OnFailure:
		return &h.OnFailure
	}
	return nil
}

// HooksFor lists, in order, the hooks of phase that run on the host named
// host (its Name): a hook with roles only if the host has one of them, and a
// `once` hook only if the host is the first in e.Hosts that has one of its
// roles (the first host at all, for a hook without roles). After Select, that
// is the first *selected* host among the hook's roles. For a local phase,
// host "" stands for this machine and gets every hook of the phase; a host
// name gets none. Nil too when no host of e has that name.
func (e *Environment) HooksFor(phase HookPhase, host string) []Hook {
	hooks := e.Hooks.Phase(phase)
	if phase.Local() {
		if host != "" {
			return nil
		}
		return cloneHooks(hooks)
	}
	i := slices.IndexFunc(e.Hosts, func(h Host) bool { return h.Name == host })
	if i < 0 {
		return nil
	}
	var out []Hook
	for _, hk := range hooks {
		if !e.Hosts[i].HasRole(hk.Roles) {
			continue
		}
		if hk.Once && slices.IndexFunc(e.Hosts, func(h Host) bool { return h.HasRole(hk.Roles) }) != i {
			continue
		}
		hk.Roles = slices.Clone(hk.Roles)
		out = append(out, hk)
	}
	return out
}

// mergeHooks overrides top with env phase by phase: each phase's list is a setting of its own.
func mergeHooks(top, env [len(phases)]opt[[]Hook]) [len(phases)]opt[[]Hook] {
	for i := range top {
		top[i] = top[i].or(env[i])
	}
	return top
}

// Keys of a hook in map form.
var hookMapKeys = []string{"run", "once", "timeout", "roles"}

func (d *decoder) hooks(n *yaml.Node, s *settings) {
	pairs, _ := d.mapping(n, "hooks")
	names := make([]string, len(phases))
	for i, p := range phases {
		names[i] = string(p)
	}
	for _, p := range pairs {
		i := slices.Index(names, p.key)
		if i < 0 {
			d.unknown(p, "hooks", names)
			continue
		}
		if v, ok := d.hookList(p.val, "hooks."+p.key, phases[i].Local()); ok {
			s.hooks[i] = some(v)
		}
	}
}

func (d *decoder) hookList(n *yaml.Node, key string, local bool) ([]Hook, bool) {
	items, ok := d.list(n, key)
	if !ok {
		return nil, false
	}
	hooks := []Hook{}
	for _, it := range items {
		h, good := d.hook(it.node, it.line, key, local)
		ok = ok && good
		hooks = append(hooks, h)
	}
	return hooks, ok
}

// hook decodes one hook: a command string, or a map with run, once, timeout
// and roles. A local hook (on this machine) takes neither once nor roles.
func (d *decoder) hook(n *yaml.Node, line int, key string, local bool) (Hook, bool) {
	h := Hook{Line: line}
	if n.Kind != yaml.MappingNode {
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.addf(line, "%s: expected a command or a map with run, once, timeout and roles, got %s", key, describe(n))
			return h, false
		}
		v, ok := d.command(n, key)
		h.Run = v
		return h, ok
	}
	if d.unquotedColon(n, line, key, "a hook") {
		return h, false
	}
	pairs, _ := d.mapping(n, key)
	ok, haveRun := true, false
	for _, p := range pairs {
		good := true
		switch p.key {
		case "run":
			haveRun = true
			h.Run, good = d.command(p.val, key+".run")
		case "once":
			h.Once, good = d.boolean(p.val, key+".once")
			if good && local {
				d.addf(p.line, "%s: once does not apply here: a local hook runs once, on this machine", key)
				good = false
			}
		case "timeout":
			h.Timeout, good = d.duration(p.val, key+".timeout")
		case "roles":
			h.Roles, good = d.roleList(p.val, key+".roles", true)
			if good && local {
				d.addf(p.line, "%s: roles does not apply here: a local hook runs on this machine, not on hosts", key)
				good = false
			}
		default:
			d.unknown(p, key, hookMapKeys)
			good = false
		}
		ok = ok && good
	}
	if !haveRun {
		d.addf(line, "%s: a hook needs run: the command to run", key)
		ok = false
	}
	return h, ok
}

// unquotedColon reports a command that YAML read as a map because it holds
// ': ' (`- echo "live: $(date)"` is the map {`echo "live`: `$(date)"`}),
// with the command quoted as it should be written; what names the command
// ("a hook"). False when n does not look like one.
func (d *decoder) unquotedColon(n *yaml.Node, line int, key, what string) bool {
	if len(n.Content) < 2 {
		return false
	}
	k, v := n.Content[0], n.Content[1]
	if k.Kind != yaml.ScalarNode || slices.Contains(hookMapKeys, k.Value) || !strings.ContainsAny(k.Value, " \t\"'$`|;&<>()=/") {
		return false
	}
	cmd := k.Value + ":"
	switch {
	case v.Kind == yaml.ScalarNode && !isNull(v):
		cmd += " " + v.Value
	case !isNull(v):
		cmd += " ..."
	}
	quoted := "'" + strings.ReplaceAll(cmd, "'", "''") + "'"
	if badText(quoted, true) != "" {
		quoted = "'...'"
	}
	d.addf(line, "%s: %s with ': ' in it must be quoted: - %s", key, what, quoted)
	return true
}

// checkHookRoles reports hooks naming a role that no host
// of e has and its roles map does not declare: a typo would silently skip them.
func checkHookRoles(d *decoder, e *Environment) {
	known := e.Roles()
	for _, p := range phases {
		for _, hk := range e.Hooks.Phase(p) {
			for _, r := range hk.Roles {
				if !slices.Contains(known, r) {
					d.addf(hk.Line, "hooks.%s: unknown role %q in environment %q (%s)", p, r, e.Name, e.knownRoles())
				}
			}
		}
	}
}
