// Package plan turns an inventory, an intent (deploy, rollback) and the state
// read off each host into a plan: data listing every step and remote operation
// per host, phase by phase, with the barrier before the cutover explicit. A dry
// run prints a plan; Execute runs the very same plan.
package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// Plan is everything a run will do, per phase and per host.
type Plan struct {
	Action  string // "deploy" or "rollback"
	Env     string
	App     string
	Release string   // the build that goes live
	Hosts   []string // inventory order

	// LockOrder is the order locks are taken: the first host alone, then the
	// rest together, so two concurrent runs cannot each hold half the fleet.
	LockOrder []string

	Lock    Phase // taking the deploy lock
	Prepare Phase // everything that can fail before any host switches
	Cutover Phase // after the barrier: one rename per host, released together
	Finish  Phase // after the cutover; failures here never switch back

	Notes []string // things worth telling the user (kept builds, skipped ones)
}

// Phase holds each host's steps for one phase.
type Phase struct {
	Name  string
	Steps map[string][]steps.Step
}

func newPhase(name string) Phase { return Phase{Name: name, Steps: map[string][]steps.Step{}} }

func (ph *Phase) add(host string, s ...steps.Step) { ph.Steps[host] = append(ph.Steps[host], s...) }

// Target is one host of the environment with its state as read.
type Target struct {
	Host  inventory.Host
	State *steps.State
}

// Build is the artifact a deploy ships, known only after the local build: a
// dry run plans with Checksum "(computed by the build)" and no payloads.
type Build struct {
	Checksum string
	Payloads map[string]steps.Payload // by host name
}

// Deploy plans a deploy of a new build with ID release.
func Deploy(env *inventory.Environment, targets []Target, release string, b Build, by string, now time.Time) (*Plan, error) {
	if err := refuse(env, targets, true); err != nil {
		return nil, err
	}
	p := newPlan("deploy", env, targets, release)
	for i, t := range targets {
		name, l, st := t.Host.Name, steps.Layout{Root: t.Host.Root}, t.State
		p.Lock.add(name, steps.Lock(l, lockHolder(by, "up", release, now), st.Fingerprint()))

		if st.Latest != "" && !st.WentLive(st.Latest) {
			p.Prepare.add(name, steps.Record(l, steps.HistoryEntry{Time: now, Action: "observed", Release: st.Latest, By: by}))
		}
		if s, ok := steps.Leftovers(l, st); ok {
			p.Prepare.add(name, s)
		}
		marker := steps.Marker{Release: release, Checksum: b.Checksum, Previous: st.Latest, Created: now.UTC().Format(time.RFC3339), By: by}
		p.Prepare.add(name, steps.Prepare(l, marker, b.Payloads[name], env.Shared))
		hookEnv := steps.HookEnv(t.Host.Root, release, st.Latest)
		for _, hk := range hooksFor(env.Hooks.BeforeCutover, i) {
			p.Prepare.add(name, steps.Hook(l, "before_cutover", release, hk, hookEnv))
		}
		p.Prepare.add(name, steps.Stage(l, release, st.Latest))

		p.Cutover.add(name, steps.Swap(l, st.Latest != ""))

		p.Finish.add(name, steps.Record(l, steps.HistoryEntry{Time: now, Action: "deploy", Release: release, By: by}))
		for _, hk := range hooksFor(env.Hooks.AfterCutover, i) {
			p.Finish.add(name, steps.Hook(l, "after_cutover", release, hk, hookEnv))
		}
		remove, notes := cleanup(st, release, env.Keep)
		for _, n := range notes {
			p.Notes = append(p.Notes, name+": "+n)
		}
		if s, ok := steps.Cleanup(l, remove); ok {
			p.Finish.add(name, s)
		}
		p.Finish.add(name, steps.Unlock(l, lockHolder(by, "up", release, now)))
	}
	return p, nil
}

// Rollback plans a coordinated switch of every host to one earlier build: to,
// or else the build live before the fleet's current one, read from the hosts'
// own records.
func Rollback(env *inventory.Environment, targets []Target, to string, by string, now time.Time) (*Plan, error) {
	if err := refuse(env, targets, false); err != nil {
		return nil, err
	}
	release, err := rollbackTarget(targets, to)
	if err != nil {
		return nil, err
	}
	p := newPlan("rollback", env, targets, release)
	for i, t := range targets {
		name, l, st := t.Host.Name, steps.Layout{Root: t.Host.Root}, t.State
		holder := lockHolder(by, "rollback", release, now)
		p.Lock.add(name, steps.Lock(l, holder, st.Fingerprint()))
		if st.Latest != "" && !st.WentLive(st.Latest) {
			p.Prepare.add(name, steps.Record(l, steps.HistoryEntry{Time: now, Action: "observed", Release: st.Latest, By: by}))
		}
		p.Prepare.add(name, steps.Stage(l, release, st.Latest))
		p.Cutover.add(name, steps.Swap(l, st.Latest != ""))
		p.Finish.add(name, steps.Record(l, steps.HistoryEntry{Time: now, Action: "rollback", Release: release, By: by}))
		hookEnv := steps.HookEnv(t.Host.Root, release, st.Latest)
		for _, hk := range hooksFor(env.Hooks.AfterCutover, i) {
			p.Finish.add(name, steps.Hook(l, "after_cutover", release, hk, hookEnv))
		}
		p.Finish.add(name, steps.Unlock(l, holder))
	}
	return p, nil
}

func newPlan(action string, env *inventory.Environment, targets []Target, release string) *Plan {
	p := &Plan{
		Action:  action,
		Env:     env.Name,
		App:     env.App,
		Release: release,
		Lock:    newPhase("locking"),
		Prepare: newPhase("preparing"),
		Cutover: newPhase("cutting over"),
		Finish:  newPhase("finishing"),
	}
	byKey := slices.Clone(targets)
	slices.SortFunc(byKey, func(a, b Target) int { return cmp.Compare(a.Host.Key(), b.Host.Key()) })
	for _, t := range targets {
		p.Hosts = append(p.Hosts, t.Host.Name)
	}
	for _, t := range byKey {
		p.LockOrder = append(p.LockOrder, t.Host.Name)
	}
	return p
}

// hooksFor drops `once` hooks on every host but the first in inventory order.
func hooksFor(hooks []inventory.Hook, hostIndex int) []inventory.Hook {
	var out []inventory.Hook
	for _, h := range hooks {
		if h.Once && hostIndex != 0 {
			continue
		}
		out = append(out, h)
	}
	return out
}

// sharedArgs are the shared paths whose presence the inspection reports.
func sharedArgs(env *inventory.Environment) []string {
	out := make([]string, len(env.Shared))
	for i, s := range env.Shared {
		out[i] = s.Path
	}
	return out
}

func lockHolder(by, action, release string, now time.Time) string {
	return fmt.Sprintf("%s, %s %s, since %s", by, action, release, now.UTC().Format(time.RFC3339))
}

// ChooseRelease names a new build after the UTC time, taking the next free
// second when any host already has a build, staging folder or record of that name.
func ChooseRelease(now time.Time, targets []Target) string {
	taken := map[string]bool{}
	for _, t := range targets {
		for _, list := range [][]string{t.State.Builds, t.State.Staging, t.State.Pending} {
			for _, id := range list {
				taken[id] = true
			}
		}
		for _, e := range t.State.History {
			taken[e.Release] = true
		}
	}
	now = now.UTC().Truncate(time.Second)
	for taken[now.Format(steps.ReleaseFormat)] {
		now = now.Add(time.Second)
	}
	return now.Format(steps.ReleaseFormat)
}

// cleanup picks the builds to remove after release goes live: builds that went
// live, beyond the newest keep by live history, never the new one nor the one
// live before it. Builds fleetdeploy knows nothing of are left alone.
func cleanup(st *steps.State, release string, keep int) (remove []string, notes []string) {
	order := append(st.LiveOrder(), release)
	if keep < 1 {
		keep = 1
	}
	kept := map[string]bool{release: true, st.Latest: true}
	for i := len(order) - 1; i >= 0 && i >= len(order)-keep; i-- {
		kept[order[i]] = true
	}
	live := map[string]bool{}
	for _, id := range order {
		live[id] = true
	}
	for _, id := range st.Builds {
		switch {
		case kept[id]:
		case live[id]:
			remove = append(remove, id)
		case slices.Contains(st.Pending, id):
			// never live: removed as a leftover before the upload
		default:
			notes = append(notes, fmt.Sprintf("leaving builds/%s alone: it is not in this host's live history", id))
		}
	}
	return remove, notes
}

// rollbackTarget is the one build the whole fleet goes back to.
func rollbackTarget(targets []Target, to string) (string, error) {
	var errs []error
	if to != "" {
		if !steps.IsRelease(to) {
			return "", fmt.Errorf("--to %q is not a build ID (like 20150129-142832)", to)
		}
		for _, t := range targets {
			switch {
			case !t.State.HasBuild(to):
				errs = append(errs, hostErr(t, fmt.Errorf("has no build %s", to)))
			case slices.Contains(t.State.Pending, to) && !t.State.WentLive(to):
				errs = append(errs, hostErr(t, fmt.Errorf("build %s never went live: it cannot be a rollback target", to)))
			}
		}
		return to, JoinHostErrors(errs)
	}
	// The fleet's current build is the one most hosts run; ties go to the one live last.
	count := map[string]int{}
	var current string
	var from Target
	for _, t := range targets {
		id := t.State.Latest
		if id == "" {
			continue
		}
		count[id]++
		if current == "" || count[id] > count[current] || (count[id] == count[current] && lastLive(t.State, id).After(lastLive(from.State, current))) {
			current, from = id, t
		}
	}
	if current == "" {
		return "", fmt.Errorf("nothing to roll back: no host has a live build")
	}
	prev := from.State.Marker.Previous
	if prev == "" || from.State.Marker.Release != current {
		return "", fmt.Errorf("%s: no record of the build live before %s: roll back with --to ID", from.Host.Name, current)
	}
	for _, t := range targets {
		if !t.State.HasBuild(prev) {
			errs = append(errs, hostErr(t, fmt.Errorf("has no build %s (the one live before %s): roll back with --to ID to a build every host has", prev, current)))
		}
	}
	return prev, JoinHostErrors(errs)
}

func lastLive(st *steps.State, id string) time.Time {
	var t time.Time
	if st == nil {
		return t
	}
	for _, e := range st.History {
		if e.Release == id {
			t = e.Time
		}
	}
	return t
}

// refuse reports hosts whose state rules out any change: a lock held by
// another run, a latest that is a real directory, missing shared files.
func refuse(env *inventory.Environment, targets []Target, deploy bool) error {
	var errs []error
	for _, t := range targets {
		st, l := t.State, steps.Layout{Root: t.Host.Root}
		if st.Lock != "" {
			errs = append(errs, &HostError{Host: t.Host.Name, Step: "checking lock", Err: &steps.LockedError{Holder: st.Lock}})
		}
		switch st.LatestKind {
		case "dir":
			errs = append(errs, &HostError{Host: t.Host.Name, Step: "checking layout", Err: fmt.Errorf(
				"%s is a real directory, not a symlink: this host was deployed in place. To migrate: "+
					"mkdir -p %s && mv %s %s && ln -s %s %s (serve the same files), then deploy again",
				l.Latest(), l.Builds(), l.Latest(), l.Build("00000000-000000"), steps.LinkTarget("00000000-000000"), l.Latest())})
		case "other":
			errs = append(errs, &HostError{Host: t.Host.Name, Step: "checking layout", Err: fmt.Errorf("%s exists and is not a symlink: move it away, then deploy again", l.Latest())})
		case "link":
			if st.Latest == "" {
				errs = append(errs, &HostError{Host: t.Host.Name, Step: "checking layout", Err: fmt.Errorf("%s points to %s, not to a build under builds/: fix or remove it", l.Latest(), st.LatestLink)})
			}
		}
		if deploy {
			for _, sp := range env.Shared {
				p := sp.Path
				if sp.Dir || !slices.Contains(st.NoShared, p) {
					continue
				}
				errs = append(errs, &HostError{Host: t.Host.Name, Step: "checking shared files", Err: fmt.Errorf(
					"shared file %s is missing: create %s on this host (fleetdeploy never ships one from the build)", p, l.Shared()+"/"+p)})
			}
		}
	}
	return JoinHostErrors(errs)
}

func hostErr(t Target, err error) error {
	return &HostError{Host: t.Host.Name, Step: "planning", Err: err}
}

// SharedArgs are the shared paths to name when reading a host's state.
func SharedArgs(env *inventory.Environment) []string { return sharedArgs(env) }

// Describe is a one-line summary of the plan.
func (p *Plan) Describe() string {
	return fmt.Sprintf("%s %s %s to %s (%d hosts: %s)", p.Action, p.App, p.Release, p.Env, len(p.Hosts), strings.Join(p.Hosts, ", "))
}
