package inventory

import (
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// Health check defaults: the command is retried every interval until it
// passes or the timeout runs out.
const (
	DefaultHealthTimeout  = 60 * time.Second
	DefaultHealthInterval = 2 * time.Second
)

// HealthCheck is the command run on every host (of its roles) after the
// cutover and the after_cutover hooks; a host that fails it switches the
// whole fleet back.
type HealthCheck struct {
	Run      string
	Timeout  time.Duration // DefaultHealthTimeout unless set
	Interval time.Duration // DefaultHealthInterval unless set; always shorter than Timeout
	Roles    []string      // only on hosts with any of these roles (sorted); none means every host
	Line     int           // line of its run, for messages
}

// HealthCheckFor is the health check of host (its Name), nil when there is
// none, the host lacks its roles, or e has no such host.
func (e *Environment) HealthCheckFor(host string) *HealthCheck {
	if e.HealthCheck == nil {
		return nil
	}
	i := slices.IndexFunc(e.Hosts, func(h Host) bool { return h.Name == host })
	if i < 0 || !e.Hosts[i].HasRole(e.HealthCheck.Roles) {
		return nil
	}
	hc := *e.HealthCheck
	hc.Roles = slices.Clone(hc.Roles)
	return &hc
}

// health is health_check: as written at one level. Each key is a setting of
// its own, like a hook phase; `health_check: none` drops what is inherited.
type health struct {
	written           bool // health_check: is written at this level, or inherited
	off               bool // written as none
	line              int  // of health_check:
	run               opt[string]
	timeout, interval opt[time.Duration]
	roles             opt[[]string]
	// lines of the keys, for problems only Resolve sees
	runLine, timeoutLine, intervalLine, rolesLine int
}

func (h health) merge(env health) health {
	switch {
	case !env.written:
		return h
	case env.off:
		return env
	}
	out := env
	if !env.run.set {
		out.run, out.runLine = h.run, h.runLine
	}
	if !env.timeout.set {
		out.timeout, out.timeoutLine = h.timeout, h.timeoutLine
	}
	if !env.interval.set {
		out.interval, out.intervalLine = h.interval, h.intervalLine
	}
	if !env.roles.set {
		out.roles, out.rolesLine = h.roles, h.rolesLine
	}
	return out
}

var healthKeys = []string{"run", "timeout", "interval", "roles"}

func (d *decoder) health(p pair, s *settings) {
	h := health{written: true, line: p.line}
	if p.val.Kind == yaml.ScalarNode && p.val.Value == None {
		h.off = true
		s.health = h
		return
	}
	pairs, ok := d.mapping(p.val, "health_check")
	if !ok {
		return
	}
	for _, hp := range pairs {
		key := "health_check." + hp.key
		line := hp.val.Line
		switch hp.key {
		case "run":
			if v, ok := d.command(hp.val, key); ok {
				h.run, h.runLine = some(v), line
			}
		case "timeout":
			if v, ok := d.duration(hp.val, key); ok {
				h.timeout, h.timeoutLine = some(v), line
			}
		case "interval":
			if v, ok := d.duration(hp.val, key); ok {
				h.interval, h.intervalLine = some(v), line
			}
		case "roles":
			if v, ok := d.roleList(hp.val, key, true); ok {
				h.roles, h.rolesLine = some(v), line
			}
		default:
			d.unknown(hp, "health_check", healthKeys)
		}
	}
	s.health = h
}

// resolveHealth makes the merged health_check of e, checking what only the
// merge shows: a run, an interval shorter than the timeout, known roles.
func resolveHealth(d *decoder, e *Environment, h health) {
	if !h.written || h.off {
		return
	}
	if !h.run.set {
		d.addf(h.line, "environment %q: health_check has no run (the command that checks a host)", e.Name)
		return
	}
	hc := &HealthCheck{
		Run:      h.run.val,
		Timeout:  DefaultHealthTimeout,
		Interval: DefaultHealthInterval,
		Roles:    slices.Clone(h.roles.val),
		Line:     h.runLine,
	}
	if h.timeout.set {
		hc.Timeout = h.timeout.val
	}
	if h.interval.set {
		hc.Interval = h.interval.val
	}
	if hc.Interval >= hc.Timeout {
		line := h.intervalLine
		if line == 0 {
			line = h.timeoutLine
		}
		d.addf(line, "health_check: interval (%s) must be shorter than timeout (%s)", hc.Interval, hc.Timeout)
	}
	known := e.Roles()
	for _, r := range hc.Roles {
		if !slices.Contains(known, r) {
			d.addf(h.rolesLine, "health_check.roles: unknown role %q in environment %q (%s)", r, e.Name, e.knownRoles())
		}
	}
	e.HealthCheck = hc
}
