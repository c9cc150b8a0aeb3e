package plan

import (
	"fmt"
	"slices"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// guard is what a deploy with a health check adds after the cutover, as
// data: going live (the live history, after_cutover hooks), checking health
// (a Guard phase), and, on its failure, the switch back of the whole fleet
// and what follows it. Until the checks pass, every host keeps what a
// revert needs: its staged back link, the build live before, and this
// run's lock; cleanup, the removal of the back link and the unlock wait in
// the finishing phase. The live history records the up at once (the build
// is live), and the revert after it when there is one.
type guard struct {
	live, check, back, reverted *Phase
	checked                     []string // hosts with a check, inventory order
}

func newGuard(p *Plan) *guard {
	return &guard{
		live:     newPhase("going live", Reported, p.Hosts),
		check:    newPhase("checking health", Guard),
		back:     newPhase("switching back", Switch, p.Hosts),
		reverted: newPhase("finishing the revert", Reported, p.Hosts),
	}
}

// add plans host t's health check (when its roles have one), its switch
// back, and what follows the switch back: the revert in its history and
// the bad mark, the after_cutover then after_rollback hooks (in the build
// switched back to), and the unlock.
func (g *guard) add(env *inventory.Environment, t Target, release, by string, now time.Time, lease *steps.Lease) {
	name, l, st := t.Host.Name, steps.Layout{Root: t.Host.Root}, t.State
	if hc := env.HealthCheckFor(name); hc != nil {
		g.check.add(name, steps.HealthCheck(l, release, *hc, steps.HookEnv(t.Host.Root, release, st.Latest)))
		g.checked = append(g.checked, name)
	}
	g.back.add(name, steps.SwitchBack(l, st.Latest))
	back := st.Latest
	if back == "" {
		back = "no build (none was live before)"
	}
	why := fmt.Sprintf("failed its health check after up by %s at %s; the fleet went back to %s", by, now.UTC().Format(time.RFC3339), back)
	rev := steps.HistoryEntry{Time: now, Action: steps.ActionRevert, Release: st.Latest, By: by, Previous: release, Source: liveSource(st)}
	g.reverted.add(name, steps.RecordRevert(l, rev, release, why))
	if st.Latest != "" {
		hookEnv := steps.HookEnv(t.Host.Root, st.Latest, release)
		for _, phase := range []inventory.HookPhase{inventory.AfterCutover, inventory.AfterRollback} {
			for _, hk := range env.HooksFor(phase, name) {
				g.reverted.add(name, steps.Hook(l, string(phase), st.Latest, hk, hookEnv))
			}
		}
	}
	g.reverted.add(name, steps.Unlock(lease))
}

// insert puts the guard's phases into p right after the cutover.
func (g *guard) insert(p *Plan) {
	g.check.Waves = [][]string{g.checked}
	g.check.OnFailure = []Phase{*g.back, *g.reverted}
	i := slices.IndexFunc(p.Phases, func(ph Phase) bool { return ph.Policy == Switch })
	p.Phases = slices.Insert(p.Phases, i+1, *g.live, *g.check)
}

// liveSource is where a host's live build came from, as its marker says.
func liveSource(st *steps.State) string {
	if st.Latest != "" && st.Marker.Release == st.Latest {
		return st.Marker.Source
	}
	return ""
}
