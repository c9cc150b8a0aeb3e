package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/link"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/report"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// planDeploy is `plan` (up --dry-run): per host, the new build, what it
// would be sent, its hooks, what cleanup would remove and what is in the
// way; with -v, every remote operation in order (plan.Print). built is the
// build being made, nil when the build has commands (not run in a dry run).
func (c *common) planDeploy(ctx context.Context, env *inventory.Environment, f *fleet.Fleet, targets []plan.Target,
	release string, by steps.Holder, built <-chan buildResult, cache fleet.Cache, from buildFrom) error {
	view := report.PlanView{Action: "deploy", App: env.App, Env: env.Name, Release: release,
		Next: fmt.Sprintf("`fleetdeploy up %s` does it; -v lists every remote operation", env.Name)}
	b := plan.Build{Checksum: "(computed by the build)", Source: "(recorded by the build)"}
	known := map[string]report.PlannedHost{}
	if built == nil {
		view.Build = fmt.Sprintf("made when deployed, by %s in a scratch copy of %s: what each host is sent is known then",
			count(len(env.Build), "build command", "build commands"), describeFrom(env, from))
	} else {
		r := <-built
		if r.err != nil {
			return fmt.Errorf("building: %w", r.err)
		}
		defer r.art.Remove()
		art := r.art
		b = plan.Build{Checksum: art.Checksum, Source: art.Source.String(), Manifest: art.Manifest}
		view.Build = fmt.Sprintf("%s (%d files, %s), from %s", art.Checksum, art.Manifest.Files(), report.Bytes(contentBytes(art.Manifest)), builtFrom(env, art))
		c.reportBuild(env, from, art)
		c.chooseCompression(env, f, link.NewStore(cache.Base()), true)
		s := shipping{c: c, f: f, env: env, cache: cache}
		ships, _ := s.decide(ctx, targets, art)
		for _, t := range targets {
			sh := ships[t.Host.Name]
			ph := report.PlannedHost{Known: true, From: sh.From, Gzip: sh.Gzip}
			for path := range sh.Transfer.Send {
				if e, ok := art.Manifest.Get(path); ok {
					ph.Files++
					ph.Bytes += e.Size
				}
			}
			known[t.Host.Name] = ph
		}
	}
	p, perr := plan.Deploy(env, targets, release, b, by, c.now())
	hooks := func(host string) []string {
		var out []string
		for _, ph := range inventory.Phases() {
			if ph.Local() {
				continue
			}
			for _, hk := range env.HooksFor(ph, host) {
				out = append(out, fmt.Sprintf("%s: %s", ph, remote.Sanitize(hk.Run)))
			}
		}
		return out
	}
	return c.showPlan(view, targets, p, perr, known, hooks)
}

// planRollback is `rollback --dry-run`.
func (c *common) planRollback(env *inventory.Environment, targets []plan.Target, p *plan.Plan, perr error) error {
	view := report.PlanView{Action: "rollback", App: env.App, Env: env.Name,
		Next: fmt.Sprintf("`fleetdeploy rollback %s` does it; -v lists every remote operation", env.Name)}
	if p != nil {
		view.Release = p.Release
	}
	hooks := func(host string) []string {
		var out []string
		for _, hk := range env.HooksFor(inventory.AfterCutover, host) {
			out = append(out, fmt.Sprintf("%s: %s", inventory.AfterCutover, remote.Sanitize(hk.Run)))
		}
		return out
	}
	if p == nil && !hasHostErrors(perr) {
		return perr // no target at all: nothing per host to show
	}
	known := map[string]report.PlannedHost{}
	for _, t := range targets {
		known[t.Host.Name] = report.PlannedHost{Known: true} // a rollback sends nothing
	}
	return c.showPlan(view, targets, p, perr, known, hooks)
}

// showPlan prints a dry run's view (or, with -v, every operation), and
// sends the planned event. A plan refused on some hosts still shows every
// host, each with its problems, and returns the refusal (its exit code).
func (c *common) showPlan(view report.PlanView, targets []plan.Target, p *plan.Plan, perr error,
	known map[string]report.PlannedHost, hooks func(string) []string) error {
	if c.verbose && p != nil {
		plan.Print(c.out, p)
		return perr
	}
	problems := map[string][]string{}
	var others []error
	for _, e := range hostErrors(perr) {
		var he *plan.HostError
		if errors.As(e, &he) {
			problems[he.Host] = append(problems[he.Host], remote.SanitizeLines(fmt.Sprintf("%s: %v", he.Step, he.Err)))
			continue
		}
		others = append(others, e)
	}
	planned := report.Planned{Action: view.Action, App: view.App, Release: view.Release}
	for _, t := range targets {
		name := t.Host.Name
		h := report.PlanHost{PlannedHost: known[name], Hooks: hooks(name), Problems: problems[name]}
		h.Host, h.Live = name, t.State.Latest
		if p != nil {
			h.Remove = p.Removes[name]
			for _, n := range p.Notes {
				if rest, ok := strings.CutPrefix(n, name+": "); ok {
					h.Notes = append(h.Notes, remote.Sanitize(rest))
				}
			}
		}
		view.Hosts = append(view.Hosts, h)
		planned.Hosts = append(planned.Hosts, h.PlannedHost)
	}
	c.rep.Planned(planned)
	var b strings.Builder
	report.WritePlan(&b, view)
	c.out.flush()
	c.rep.Answer(b.String())
	if perr == nil {
		return nil
	}
	if len(others) > 0 {
		return perr
	}
	return &refusedError{hosts: len(problems), err: perr}
}

// refusedError is a dry run that found hosts where the run would stop: the
// view has shown each problem, so the message only counts them; the
// underlying errors still decide the exit code (a locked host: 3).
type refusedError struct {
	hosts int
	err   error
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("the plan found problems on %s (listed above)", count(e.hosts, "host", "hosts"))
}

func (e *refusedError) Unwrap() error { return e.err }

// hostErrors are the errors joined in err (plan.JoinHostErrors), one per host and problem.
func hostErrors(err error) []error {
	if err == nil {
		return nil
	}
	if m, ok := err.(interface{ WrappedErrors() []error }); ok {
		return m.WrappedErrors()
	}
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		return m.Unwrap()
	}
	return []error{err}
}

func hasHostErrors(err error) bool {
	for _, e := range hostErrors(err) {
		if errors.As(e, new(*plan.HostError)) {
			return true
		}
	}
	return false
}

// count says "1 host", "3 hosts".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
