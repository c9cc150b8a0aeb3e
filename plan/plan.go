// Package plan turns an inventory, an intent (deploy, rollback) and the state
// read off each host into a plan: data listing every step and remote operation
// per host, phase by phase, with the barrier before the cutover explicit. A dry
// run prints a plan; Execute runs the very same plan.
package plan

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// Plan is everything a run will do, phase by phase and host by host.
type Plan struct {
	Action  string // "deploy" or "rollback"
	Env     string
	App     string
	Release string   // the build that goes live
	Before  string   // the fleet's build before the run ("" when none): where a revert goes back to
	Hosts   []string // inventory order

	// Phases run in order; the barrier is a phase of its own.
	Phases []Phase

	Notes []string // things worth telling the user (kept builds, skipped ones)
	// Removes are the old builds the finishing removes, by host.
	Removes map[string][]string
}

// Policy says how a phase runs and what a failure in it means.
type Policy int

const (
	// Undone phases come before the barrier: the first failure on any host
	// stops the others, and everything done on every host is undone.
	Undone Policy = iota
	// Barrier waits for every host to be prepared; from there on Ctrl-C no
	// longer stops the run, which finishes or switches back.
	Barrier
	// Switch is the cutover: every host's steps are released at once and
	// timed; a failure switches the hosts that switched back.
	Switch
	// Reported phases come after the cutover: every step runs on every host,
	// and failures are reported; nothing switches back.
	Reported
	// Guard phases come after the cutover (health checks): every host's
	// steps start at once, and the first failure, a host lost, or Ctrl-C
	// stops the others; then the phase's OnFailure phases run instead of the
	// rest of the plan: the whole fleet switches back.
	Guard
)

// Phase holds each host's steps for one phase.
type Phase struct {
	Name   string
	Policy Policy
	// Waves are the hosts in the order they run: each wave once the one
	// before has finished, the hosts of a wave concurrently.
	Waves [][]string
	Steps map[string][]steps.Step
	// OnFailure, for a Guard phase, are the phases run when it fails,
	// instead of the rest of the plan: a Switch (timed, all hosts at once,
	// never switched back in turn), then Reported phases, which skip the
	// hosts that did not switch.
	OnFailure []Phase
}

func newPhase(name string, policy Policy, waves ...[]string) *Phase {
	return &Phase{Name: name, Policy: policy, Waves: waves, Steps: map[string][]steps.Step{}}
}

func (ph *Phase) add(host string, s ...steps.Step) { ph.Steps[host] = append(ph.Steps[host], s...) }

// Phase returns the phase with this name (nil when there is none).
func (p *Plan) Phase(name string) *Phase {
	for i := range p.Phases {
		if p.Phases[i].Name == name {
			return &p.Phases[i]
		}
	}
	return nil
}

// Walk visits the plan in the order Execute runs it when all goes well: each
// phase (with host ""), then the hosts of its waves in order, with their
// steps. A Guard phase's OnFailure phases are not visited (Print shows
// them); Execute runs the same phases and waves.
func (p *Plan) Walk(visit func(ph *Phase, host string, list []steps.Step)) {
	for i := range p.Phases {
		ph := &p.Phases[i]
		visit(ph, "", nil)
		for _, h := range ph.Hosts() {
			if list, ok := ph.Steps[h]; ok {
				visit(ph, h, list)
			}
		}
	}
}

// Hosts lists the phase's hosts in the order of its waves.
func (ph *Phase) Hosts() []string {
	var out []string
	for _, w := range ph.Waves {
		out = append(out, w...)
	}
	return out
}

// Ops lists every operation of a phase for one host, as Print shows them.
func (ph *Phase) Ops(host string) []string {
	var out []string
	for _, s := range ph.Steps[host] {
		for _, op := range s.Ops {
			out = append(out, steps.Describe(op))
		}
	}
	return out
}

// Target is one host of the environment with its state as read.
type Target struct {
	Host  inventory.Host
	State *steps.State
}

// Build is the artifact a deploy ships, known only after the local build: a
// dry run that could not make it plans with Checksum "(computed by the
// build)", no manifest and no payloads.
type Build struct {
	Checksum string
	// Source is what the build was made from (build.Source.String(): a git
	// commit and whether the checkout was dirty, or an artifact's sha256),
	// recorded in its marker and in the live history on every host; ""
	// when unknown.
	Source string
	// Manifest, when known, is checked against the shared paths: none may
	// lead through a symlink of the build.
	Manifest *build.Manifest
	Payloads map[string]steps.Payload // by host name
}

// Deploy plans a deploy of a new build with ID release, by the run who
// (steps.NewHolder: who runs it, and the lease of its locks). With a health
// check, the deploy is guarded: after the cutover and the after_cutover
// hooks every host is checked, and a failure switches the whole fleet back
// (see guard); the way back stays staged, and the finishing steps wait,
// until the checks pass.
func Deploy(env *inventory.Environment, targets []Target, release string, b Build, who steps.Holder, now time.Time) (*Plan, error) {
	if err := sharedThroughLinks(env, b.Manifest); err != nil {
		return nil, err
	}
	if err := Refuse(env, targets, true); err != nil {
		return nil, err
	}
	p, ph := newPlan("deploy", env, targets, release)
	by, holder := who.By, who.For("up", release, now)
	guarded := slices.ContainsFunc(targets, func(t Target) bool { return env.HealthCheckFor(t.Host.Name) != nil })
	var g *guard
	if guarded {
		g = newGuard(p)
	}
	for _, t := range targets {
		name, l, st := t.Host.Name, steps.Layout{Root: t.Host.Root}, t.State
		lease := steps.NewLease(l, holder)
		ph.lock.add(name, steps.Lock(lease, st))
		if st.Lock.Stale() {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: stale lock of %s: taking it over", name, st.Lock.Describe()))
		}

		if st.Latest != "" && !st.WentLive(st.Latest) {
			ph.prepare.add(name, steps.Record(l, steps.HistoryEntry{Time: now, Action: steps.ActionObserved, Release: st.Latest, By: by}))
		}
		if s, ok := steps.Leftovers(l, st); ok {
			ph.prepare.add(name, s)
		}
		marker := steps.Marker{Release: release, Checksum: b.Checksum, Previous: st.Latest, Created: now.UTC().Format(time.RFC3339), By: by, Source: b.Source}
		hookEnv := steps.HookEnv(t.Host.Root, release, st.Latest)
		if before := env.HooksFor(inventory.BeforeCutover, name); len(before) > 0 {
			ph.prepare.add(name, steps.Prepare(l, marker, b.Payloads[name], env.Shared))
			for _, hk := range before {
				ph.prepare.add(name, steps.Hook(l, string(inventory.BeforeCutover), release, hk, hookEnv))
			}
			ph.prepare.add(name, steps.Stage(l, release, st.Latest, lease))
		} else {
			ph.prepare.add(name, steps.PrepareAndStage(l, marker, b.Payloads[name], env.Shared, st.Latest, lease))
		}

		ph.cutover.add(name, steps.Swap(l, st.Latest != ""))

		up := steps.HistoryEntry{Time: now, Action: steps.ActionUp, Release: release, By: by, Previous: st.Latest, Source: b.Source, Checksum: b.Checksum}
		hooks := env.HooksFor(inventory.AfterCutover, name)
		fin := steps.Finishing{Live: release, Lease: lease}
		live := ph.finish
		switch {
		case g != nil:
			live = g.live
			live.add(name, steps.RecordLive(l, up))
			fin.Unstage = []string{"back"} // once the checks passed
		case len(hooks) > 0:
			live.add(name, steps.Record(l, up)) // before the hooks run
		default:
			fin.Record, fin.Unstage = &up, []string{"next", "back"}
		}
		for _, hk := range hooks {
			live.add(name, steps.Hook(l, string(inventory.AfterCutover), release, hk, hookEnv))
		}
		if g != nil {
			g.add(env, t, release, by, now, lease)
		}
		remove, notes := cleanup(st, release, env.Keep)
		for _, n := range notes {
			p.Notes = append(p.Notes, name+": "+n)
		}
		fin.Remove = remove
		if len(remove) > 0 {
			if p.Removes == nil {
				p.Removes = map[string][]string{}
			}
			p.Removes[name] = remove
		}
		ph.finish.add(name, steps.Finish(l, fin))
	}
	p = ph.done(p)
	if g != nil {
		g.insert(p)
	}
	return p, nil
}

// Rollback plans a coordinated switch of every host to one earlier build: to,
// or else the build live before the fleet's current one, read from the hosts'
// own records.
func Rollback(env *inventory.Environment, targets []Target, to string, who steps.Holder, now time.Time) (*Plan, error) {
	if err := Refuse(env, targets, false); err != nil {
		return nil, err
	}
	release, err := rollbackTarget(targets, to)
	if err != nil {
		return nil, err
	}
	p, ph := newPlan("rollback", env, targets, release)
	by, holder := who.By, who.For("rollback", release, now)
	for _, t := range targets {
		if t.State.IsBad(release) {
			p.Notes = append(p.Notes, fmt.Sprintf("%s is marked bad on %s (it failed its health check): taking it, as --to names it", release, t.Host.Name))
			break
		}
	}
	for _, t := range targets {
		name, l, st := t.Host.Name, steps.Layout{Root: t.Host.Root}, t.State
		lease := steps.NewLease(l, holder)
		ph.lock.add(name, steps.Lock(lease, st))
		if st.Lock.Stale() {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: stale lock of %s: taking it over", name, st.Lock.Describe()))
		}
		if st.Latest != "" && !st.WentLive(st.Latest) {
			ph.prepare.add(name, steps.Record(l, steps.HistoryEntry{Time: now, Action: steps.ActionObserved, Release: st.Latest, By: by}))
		}
		ph.prepare.add(name, steps.Stage(l, release, st.Latest, lease))
		ph.cutover.add(name, steps.Swap(l, st.Latest != ""))
		back := steps.HistoryEntry{Time: now, Action: steps.ActionRollback, Release: release, By: by, Previous: st.Latest}
		fin := steps.Finishing{Lease: lease}
		hookEnv := steps.HookEnv(t.Host.Root, release, st.Latest)
		var hooks []steps.Step
		for _, phase := range []inventory.HookPhase{inventory.AfterCutover, inventory.AfterRollback} {
			for _, hk := range env.HooksFor(phase, name) {
				hooks = append(hooks, steps.Hook(l, string(phase), release, hk, hookEnv))
			}
		}
		if len(hooks) > 0 {
			ph.finish.add(name, steps.Record(l, back)) // before the hooks run
			for _, s := range hooks {
				ph.finish.add(name, s)
			}
		} else {
			fin.Record, fin.Unstage = &back, []string{"next", "back"}
		}
		ph.finish.add(name, steps.Finish(l, fin))
	}
	return ph.done(p), nil
}

// phases are the phases of a deploy or a rollback, filled host by host.
type phases struct{ lock, prepare, cutover, finish *Phase }

// done puts the phases into p, the barrier between prepare and cutover.
func (ph phases) done(p *Plan) *Plan {
	barrier := newPhase("barrier", Barrier)
	p.Phases = []Phase{*ph.lock, *ph.prepare, *barrier, *ph.cutover, *ph.finish}
	return p
}

func newPlan(action string, env *inventory.Environment, targets []Target, release string) (*Plan, phases) {
	p := &Plan{Action: action, Env: env.Name, App: env.App, Release: release}
	p.Before, _ = FleetBuild(targets)
	byKey := slices.Clone(targets)
	slices.SortFunc(byKey, func(a, b Target) int { return cmp.Compare(a.Host.Key(), b.Host.Key()) })
	for _, t := range targets {
		p.Hosts = append(p.Hosts, t.Host.Name)
	}
	var lockOrder []string
	for _, t := range byKey {
		lockOrder = append(lockOrder, t.Host.Name)
	}
	// Locks: the first host alone, then the rest together, so that two
	// concurrent runs cannot each hold half the fleet.
	var lockWaves [][]string
	if len(lockOrder) > 0 {
		lockWaves = [][]string{lockOrder[:1], lockOrder[1:]}
	}
	return p, phases{
		lock:    newPhase("locking", Undone, lockWaves...),
		prepare: newPhase("preparing", Undone, p.Hosts),
		cutover: newPhase("cutting over", Switch, p.Hosts),
		finish:  newPhase("finishing", Reported, p.Hosts),
	}
}

// sharedArgs are the shared paths whose presence the inspection reports.
func sharedArgs(env *inventory.Environment) []string {
	out := make([]string, len(env.Shared))
	for i, s := range env.Shared {
		out[i] = s.Path
	}
	return out
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

// rollbackTarget is the one build the whole fleet goes back to: to when
// given (a build marked bad too: it is named), else the build live before
// the fleet's current one, unless it is marked bad. When it cannot pick one,
// its error lists the IDs --to could take.
func rollbackTarget(targets []Target, to string) (string, error) {
	var errs []error
	if to != "" {
		if !steps.IsRelease(to) {
			return "", fmt.Errorf("--to %q is not a build ID (like 20150129-142832); %s", to, toChoices(targets))
		}
		for _, t := range targets {
			switch {
			case !t.State.HasBuild(to):
				errs = append(errs, hostErr(t, fmt.Errorf("has no build %s", to)))
			case slices.Contains(t.State.Pending, to) && !t.State.WentLive(to):
				errs = append(errs, hostErr(t, fmt.Errorf("build %s never went live: it cannot be a rollback target", to)))
			}
		}
		if len(errs) > 0 {
			return "", fmt.Errorf("%w\n%s", JoinHostErrors(errs), toChoices(targets))
		}
		return to, nil
	}
	// From the fleet's current build, as one of its hosts recorded it.
	current, from := FleetBuild(targets)
	if current == "" {
		return "", fmt.Errorf("nothing to roll back: no host has a live build")
	}
	prev := from.State.Marker.Previous
	if prev == "" || from.State.Marker.Release != current {
		return "", fmt.Errorf("%s: no record of the build live before %s: roll back with --to ID; %s", from.Host.Name, current, toChoices(targets))
	}
	for _, t := range targets {
		if t.State.IsBad(prev) {
			return "", fmt.Errorf("%s, the build live before %s, is marked bad on %s (it failed its health check): rollback never picks it; roll back with --to ID; %s",
				prev, current, t.Host.Name, toChoices(targets))
		}
	}
	for _, t := range targets {
		if !t.State.HasBuild(prev) {
			errs = append(errs, hostErr(t, fmt.Errorf("has no build %s (the one live before %s): roll back with --to ID to a build every host has", prev, current)))
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("%w\n%s", JoinHostErrors(errs), toChoices(targets))
	}
	return prev, nil
}

// RollbackTargets lists the builds `rollback --to` could take: on every
// host, gone live, not the fleet's current one; newest live first (by the
// hosts' own history), bad ones apart.
func RollbackTargets(targets []Target) (good, bad []string) {
	if len(targets) == 0 {
		return nil, nil
	}
	current, _ := FleetBuild(targets)
	last := map[string]time.Time{}
	for _, t := range targets {
		for _, e := range t.State.History {
			if e.Time.After(last[e.Release]) {
				last[e.Release] = e.Time
			}
		}
	}
	var ids []string
	for _, id := range targets[0].State.Builds {
		ok := id != current
		isBad := false
		for _, t := range targets {
			st := t.State
			if !st.HasBuild(id) || (slices.Contains(st.Pending, id) && !st.WentLive(id)) {
				ok = false
			}
			isBad = isBad || st.IsBad(id)
		}
		if !ok {
			continue
		}
		if isBad {
			bad = append(bad, id)
		} else {
			ids = append(ids, id)
		}
	}
	newest := func(a, b string) int {
		if c := last[b].Compare(last[a]); c != 0 {
			return c
		}
		return strings.Compare(b, a)
	}
	slices.SortFunc(ids, newest)
	slices.SortFunc(bad, newest)
	return ids, bad
}

// toChoices says which IDs --to could take.
func toChoices(targets []Target) string {
	good, bad := RollbackTargets(targets)
	var s string
	if len(good) == 0 {
		s = "no other build is on every host"
	} else {
		s = "--to can take " + strings.Join(good, ", ") + " (newest live first)"
	}
	if len(bad) > 0 {
		s += "; marked bad (failed a health check), taken only when named: " + strings.Join(bad, ", ")
	}
	return s
}

// Refuse reports hosts whose state rules out any change (deploy: a deploy
// rather than a rollback): a lock held by
// another live run (a dead run's is taken over), a root whose layout is
// broken, a latest that is a real directory, missing shared files.
func Refuse(env *inventory.Environment, targets []Target, deploy bool) error {
	var errs []error
	for _, t := range targets {
		st, l := t.State, steps.Layout{Root: t.Host.Root}
		if err := LockedBy(env, st); err != nil {
			errs = append(errs, &HostError{Host: t.Host.Name, Step: "checking lock", Err: err})
		}
		for _, p := range st.Problems {
			errs = append(errs, &HostError{Host: t.Host.Name, Step: "checking layout", Err: errors.New(p)})
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

// sharedThroughLinks refuses shared paths that lead through a symlink of
// the build (m; nil: not known yet): a host would link or make the shared
// path wherever that symlink leads, and the host's own check would stop the
// run only once every host was sent the build. A shared path that is itself
// a symlink of the build is fine: it is replaced, never followed.
func sharedThroughLinks(env *inventory.Environment, m *build.Manifest) error {
	if m == nil {
		return nil
	}
	var bad []string
	for _, sp := range env.Shared {
		if link, ok := m.ThroughSymlink(sp.Path); ok && link != sp.Path {
			e, _ := m.Get(link)
			bad = append(bad, fmt.Sprintf("shared path %s leads through %s, a symlink of the build (-> %s): share a path that is a folder of the build, or make %s a folder",
				sp.Path, link, e.Target, link))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return errors.New(strings.Join(bad, "\n"))
}

// LockedBy is the error of a host locked by another run that is alive, or
// by something that is not fleetdeploy's lock; nil when the host is
// unlocked or its lock is a dead run's (stale: the run takes it over).
func LockedBy(env *inventory.Environment, st *steps.State) error {
	if st.Lock == nil || st.Lock.Stale() {
		return nil
	}
	return &steps.LockedError{Lock: st.Lock, Env: env.Name}
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
