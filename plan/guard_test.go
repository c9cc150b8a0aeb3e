package plan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/golden"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// guardedEnv is hookEnv with a health check on every host and an
// after_rollback hook.
func guardedEnv() *inventory.Environment {
	env := hookEnv()
	env.HealthCheck = &inventory.HealthCheck{Run: "probe-health", Timeout: 300 * time.Millisecond, Interval: 20 * time.Millisecond}
	env.Hooks.AfterRollback = []inventory.Hook{{Run: "after-rollback"}}
	return env
}

func guardedPlan(t *testing.T, targets []Target) *Plan {
	t.Helper()
	p, err := Deploy(withHosts(guardedEnv(), targets), targets, newID, Build{Checksum: "sha256:0123", Payloads: payloads(targets), Source: "git 0123abcd"},
		steps.Holder{By: "me@laptop", Run: "0123456789ab", Lease: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// indexOf is the position of the first recorded request containing s (-1: none).
func indexOf(got []string, s string) int {
	return slices.IndexFunc(got, func(c string) bool { return strings.Contains(c, s) })
}

// lastIndexOf is the position of the last recorded request containing s (-1: none).
func lastIndexOf(got []string, s string) int {
	for i := len(got) - 1; i >= 0; i-- {
		if strings.Contains(got[i], s) {
			return i
		}
	}
	return -1
}

// A guarded plan is data: its phases after the cutover, and the switch back
// a failed check runs instead of the rest.
func TestGuardedPlanShape(t *testing.T) {
	targets, _, _ := testFleet(t)
	p := guardedPlan(t, targets)
	var names []string
	for _, ph := range p.Phases {
		names = append(names, ph.Name)
	}
	want := []string{"locking", "preparing", "barrier", "cutting over", "going live", "checking health", "finishing"}
	if !slices.Equal(names, want) {
		t.Fatalf("phases %q, want %q", names, want)
	}
	check := p.Phase("checking health")
	if check.Policy != Guard || len(check.OnFailure) != 2 || check.OnFailure[0].Policy != Switch || check.OnFailure[1].Policy != Reported {
		t.Fatalf("guard phase %+v", check)
	}
	// Nothing that removes the way back, or a build, or the lock, before the checks.
	for _, name := range []string{"going live", "checking health"} {
		for _, op := range p.Phase(name).Ops("a") {
			for _, bad := range []string{"/.fleetdeploy/back'", "fleetdeploy-cleanup", "/.fleetdeploy/lock'"} {
				if strings.Contains(op, bad) {
					t.Errorf("%s: %s before the checks passed", name, op)
				}
			}
		}
	}
	var b bytes.Buffer
	Print(&b, p)
	for _, s := range []string{
		"checking health (all hosts at once",
		"-- if a check fails, a host is lost or Ctrl-C comes: instead of what follows, the fleet goes back to " + liveID + " --",
		"sftp posix-rename '/srv/a/.fleetdeploy/back' '/srv/a/latest'",
		"sftp write '/srv/a/.fleetdeploy/builds/" + newID + ".bad'",
		"\trevert\t" + liveID + "\tme@laptop\t" + newID,
		`running after_rollback hook "after-rollback"`,
		"(again every 20ms until it exits 0, for at most 300ms)",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("printed plan lacks %q:\n%s", s, b.String())
		}
	}
	if strings.Index(b.String(), "switching back (all hosts") > strings.Index(b.String(), "\nfinishing") {
		t.Errorf("the switch back is printed after finishing:\n%s", b.String())
	}
}

// A check that fails on one host switches every host back (all at once,
// timed), records the revert and the bad mark, runs the after_rollback hooks
// everywhere and unlocks; nothing is cleaned up. Each host receives what
// the plan printed: the main path up to the checks, then the switch back.
func TestGuardFailureRevertsWholeFleet(t *testing.T) {
	targets, recs, hosts := testFleet(t)
	p := guardedPlan(t, targets)
	failOn(recs["b"], "probe-health", &remote.ExitError{Status: 1, Stderr: "503"})
	res, err := Execute(t.Context(), p, hosts, Options{})
	var gerr *GuardError
	if !errors.As(err, &gerr) {
		t.Fatalf("error %T %v, want a GuardError", err, err)
	}
	if gerr.Interrupted || gerr.Split() || !slices.Equal(gerr.FailedHosts(), []string{"b"}) || gerr.Err != nil {
		t.Errorf("guard error %+v", gerr)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "deployed "+newID+"; health check failed on b (failed ") || !strings.HasSuffix(msg, "; fleet back on "+liveID) {
		t.Errorf("message %q", msg)
	}
	if len(res.Swaps) != 3 || len(res.Revert) != 3 {
		t.Errorf("swaps %d, revert %d, want 3 and 3", len(res.Swaps), len(res.Revert))
	}
	for _, s := range res.Revert {
		if s.Err != nil || s.Sent.IsZero() || s.Ack.Before(s.Sent) {
			t.Errorf("revert swap %+v", s)
		}
	}
	for name, r := range recs {
		l := steps.Layout{Root: "/srv/" + name}
		got := r.recorded()
		if r.links[l.Latest()] != steps.LinkTarget(liveID) {
			t.Errorf("%s: latest -> %s, want %s", name, r.links[l.Latest()], liveID)
		}
		if _, ok := r.links[l.Lock()]; ok {
			t.Errorf("%s still locked", name)
		}
		for _, c := range got {
			if strings.Contains(c, "fleetdeploy-cleanup") || strings.Contains(c, "unprepare") {
				t.Errorf("%s: %s after a revert (the bad build is kept)", name, c)
			}
		}
		// In order: the cutover, the up in the history, the check, the
		// switch back, the revert and the bad mark, the hooks, the unlock.
		order := [][]string{
			{"posix-rename '" + l.Next() + "' '" + l.Latest() + "'"},
			{"\tup\t" + newID + "\tme@laptop\t" + liveID + "\tgit 0123abcd"},
			{"probe-health"},
			{"posix-rename '" + l.Back() + "' '" + l.Latest() + "'"},
			{"\trevert\t" + liveID + "\tme@laptop\t" + newID, "sftp write '" + l.BadMark(newID) + "' 'failed its health check after up by me@laptop"},
			{"'sh' '-c' 'reload'"},
			{"'sh' '-c' 'after-rollback'"},
			{"sftp remove '" + l.Lock() + "'"},
		}
		last := -1
	steps:
		for _, together := range order {
			from, end := last+1, last
			for _, s := range together {
				i := indexOf(got[from:], s)
				if i < 0 {
					t.Errorf("%s: no %q after request %d:\n%s", name, s, last, strings.Join(got, "\n"))
					break steps
				}
				end = max(end, from+i)
			}
			last = end
		}
		// The hooks after the revert run in the build switched back to.
		if i := indexOf(got, "'sh' '-c' 'after-rollback'"); i >= 0 && !strings.Contains(got[i], "cd '/srv/"+name+"/builds/"+liveID+"'") {
			t.Errorf("%s: after_rollback hook not run in the build switched back to: %s", name, got[i])
		}
		// Exactly the planned requests: the main path up to the checks,
		// then the switch back (b's failed attempts set apart).
		var want []group
		for _, ph := range p.Phases[:slices.IndexFunc(p.Phases, func(ph Phase) bool { return ph.Policy == Guard })] {
			want = append(want, phaseCalls(&ph, name)...)
		}
		check := p.Phase("checking health")
		var passed []string
		for _, c := range got {
			if !strings.HasPrefix(c, "FAILED ") {
				passed = append(passed, c)
			}
		}
		if name != "b" {
			want = append(want, phaseCalls(check, name)...)
		} else if n := len(got) - len(passed); n < 3 {
			t.Errorf("b: check tried %d times, want retries every 20ms for 300ms", n)
		}
		for i := range check.OnFailure {
			want = append(want, phaseCalls(&check.OnFailure[i], name)...)
		}
		compareCalls(t, name, want, passed)
	}
}

// phaseCalls is what a host must receive when every op of its steps in ph runs.
func phaseCalls(ph *Phase, host string) []group {
	var out []group
	for _, s := range ph.Steps[host] {
		for _, op := range s.Ops {
			var g group
			for _, c := range op.Calls() {
				g = append(g, c.String())
			}
			out = append(out, g)
		}
	}
	return out
}

// A check that passes on its third try lets the deploy finish: the way back
// is removed only then, old builds are cleaned up, and nothing is reverted.
func TestGuardPassesOnThirdTry(t *testing.T) {
	targets, recs, hosts := testFleet(t)
	p := guardedPlan(t, targets)
	var tries atomic.Int32
	recs["c"].before = func(c remote.Call) error {
		if strings.Contains(c.String(), "probe-health") && tries.Add(1) < 3 {
			return &remote.ExitError{Status: 1}
		}
		return nil
	}
	res, err := Execute(t.Context(), p, hosts, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tries.Load() != 3 || len(res.Revert) != 0 {
		t.Errorf("tries %d, revert %v", tries.Load(), res.Revert)
	}
	for name, r := range recs {
		l := steps.Layout{Root: "/srv/" + name}
		got := r.recorded()
		if r.links[l.Latest()] != steps.LinkTarget(newID) {
			t.Errorf("%s: latest -> %s", name, r.links[l.Latest()])
		}
		if _, ok := r.links[l.Back()]; ok {
			t.Errorf("%s: back link left", name)
		}
		check, unstage := indexOf(got, "probe-health"), lastIndexOf(got, "'unstage=back'")
		if check < 0 || unstage < check {
			t.Errorf("%s: the way back removed at %d, the check at %d:\n%s", name, unstage, check, strings.Join(got, "\n"))
		}
		if indexOf(got, "revert") >= 0 || indexOf(got, ".bad'") >= 0 {
			t.Errorf("%s: reverted after the checks passed", name)
		}
	}
}

// Ctrl-C during the checks (or after the cutover, before them) switches the
// whole fleet back; Ctrl-C before the barrier still undoes everything.
func TestGuardInterrupted(t *testing.T) {
	for _, at := range []string{"probe-health", "'sh' '-c' 'reload'"} {
		t.Run(at, func(t *testing.T) {
			targets, recs, hosts := testFleet(t)
			p := guardedPlan(t, targets)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			recs["b"].running = func(cctx context.Context, c remote.Cmd) error {
				if !strings.Contains(c.String(), at) {
					return nil
				}
				cancel()
				if at != "probe-health" {
					return nil
				}
				// The check hangs until Ctrl-C stops it.
				select {
				case <-cctx.Done():
					return cctx.Err()
				case <-time.After(5 * time.Second):
					return errors.New("the check was not stopped by Ctrl-C")
				}
			}
			res, err := Execute(ctx, p, hosts, Options{})
			var gerr *GuardError
			if !errors.As(err, &gerr) || !gerr.Interrupted || gerr.Split() {
				t.Fatalf("error %v, want an interrupted GuardError", err)
			}
			if !strings.Contains(err.Error(), "interrupted before its health checks passed; fleet back on "+liveID) {
				t.Errorf("message %q", err)
			}
			if len(res.Revert) != 3 {
				t.Errorf("revert %v", res.Revert)
			}
			for name, r := range recs {
				l := steps.Layout{Root: "/srv/" + name}
				if r.links[l.Latest()] != steps.LinkTarget(liveID) {
					t.Errorf("%s: latest -> %s", name, r.links[l.Latest()])
				}
				if _, ok := r.links[l.Lock()]; ok {
					t.Errorf("%s still locked", name)
				}
			}
		})
	}
}

// A host lost during its check fails the guard; the others switch back, the
// lost one cannot: the fleet may be split, and that host keeps the lock.
func TestGuardHostLost(t *testing.T) {
	targets, recs, hosts := testFleet(t)
	p := guardedPlan(t, targets)
	lost := fmt.Errorf("%w: reset", remote.ErrConnLost)
	recs["b"].before = func(c remote.Call) error {
		if strings.Contains(c.String(), "probe-health") || strings.Contains(c.String(), "posix-rename '/srv/b/.fleetdeploy/back'") {
			return lost
		}
		return nil
	}
	res, err := Execute(t.Context(), p, hosts, Options{})
	var gerr *GuardError
	if !errors.As(err, &gerr) || !gerr.Split() || !slices.Equal(gerr.Stuck, []string{"b"}) {
		t.Fatalf("error %v, want a split GuardError with b stuck", err)
	}
	if !strings.Contains(err.Error(), "health check failed on b (host lost during its check") || !strings.Contains(err.Error(), "except b: still on "+newID) {
		t.Errorf("message %q", err)
	}
	if len(res.Revert) != 3 || res.Revert[1].Err == nil {
		t.Errorf("revert %+v", res.Revert)
	}
	if got := recs["b"].recorded(); indexOf(got, "\trevert\t") >= 0 || indexOf(got, "after-rollback") >= 0 {
		t.Errorf("b: went on after failing to switch back: %q", got)
	}
	if _, ok := recs["b"].links["/srv/b/.fleetdeploy/lock"]; !ok {
		t.Error("b: lock released although it did not switch back")
	}
	for _, name := range []string{"a", "c"} {
		if recs[name].links["/srv/"+name+"/latest"] != steps.LinkTarget(liveID) {
			t.Errorf("%s not switched back", name)
		}
	}
}

// A deploy without a health check (or whose roles match no host) is not
// guarded: it finishes as before.
func TestUnguardedDeployHasNoGuard(t *testing.T) {
	targets, _, _ := testFleet(t)
	env := guardedEnv()
	env.HealthCheck.Roles = []string{"nobody"}
	p, err := Deploy(withHosts(env, targets), targets, newID, Build{Payloads: payloads(targets)}, steps.Holder{By: "me"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase("checking health") != nil || p.Phase("going live") != nil {
		t.Errorf("guard phases in an unguarded plan")
	}
}

func TestRollbackNeverPicksBad(t *testing.T) {
	const A, B, C = "20260101-000000", "20260102-000000", "20260103-000000"
	st := func(bad ...string) *steps.State {
		return &steps.State{Latest: C, Builds: []string{A, B, C}, Marker: steps.Marker{Release: C, Previous: B}, History: hist(A, B, C), Bad: bad}
	}
	_, err := rollbackTarget([]Target{target("a", st()), target("b", st(B))}, "")
	if err == nil || !strings.Contains(err.Error(), B+", the build live before "+C+", is marked bad on b") ||
		!strings.Contains(err.Error(), "--to can take "+A) || !strings.Contains(err.Error(), "taken only when named: "+B) {
		t.Errorf("err %v", err)
	}
	got, err := rollbackTarget([]Target{target("a", st()), target("b", st(B))}, B)
	if err != nil || got != B {
		t.Errorf("--to a bad build: %q, %v", got, err)
	}
	noRecord := st()
	noRecord.Marker.Previous = ""
	_, err = rollbackTarget([]Target{target("a", noRecord)}, "")
	if err == nil || !strings.Contains(err.Error(), "roll back with --to ID; --to can take "+B+", "+A+" (newest live first)") {
		t.Errorf("err %v", err)
	}
}

func TestHistoryMerge(t *testing.T) {
	const A, B, C = "20260101-000000", "20260102-000000", "20260103-000000"
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	e := func(min int, action, release, previous, source string) steps.HistoryEntry {
		return steps.HistoryEntry{Time: t0.Add(time.Duration(min) * time.Minute), Action: action, Release: release, By: "me@x pid 1", Previous: previous, Source: source}
	}
	old := e(0, "deploy", A, "", "")
	upB := e(1, "up", B, A, "git b")
	upC := e(2, "up", C, B, "git c")
	revert := e(2, "revert", B, C, "")
	full := func() *steps.State {
		return &steps.State{Latest: B, Builds: []string{A, B, C}, Bad: []string{C}, History: []steps.HistoryEntry{old, upB, upC, revert}}
	}
	missing := full()
	missing.History = []steps.HistoryEntry{old, upB} // never got C: missing two events
	other := full()
	other.History = []steps.HistoryEntry{old, e(1, "up", B, "", "git b"), upC, revert} // no previous: read from the line before
	late := full()
	late.History = []steps.HistoryEntry{upC, revert} // a host added later: older events are not missing
	h := History([]Target{target("a", full()), target("b", missing), target("c", other), target("d", late), target("e", nil)})
	if len(h.Events) != 4 {
		t.Fatalf("events %+v", h.Events)
	}
	if ev := h.Events[0]; ev.Action != "up" || ev.Release != A || len(ev.Hosts) != 3 || ev.Disagree() {
		t.Errorf("first event %+v", ev)
	}
	if ev := h.Events[1]; ev.Previous != A || len(ev.Hosts) != 3 || ev.Disagree() {
		t.Errorf("second event %+v", ev)
	}
	if ev := h.Events[3]; ev.Action != "revert" || ev.Source != "git b" || !slices.Equal(ev.Missing, []string{"b"}) {
		t.Errorf("revert %+v", ev)
	}
	if !strings.Contains(h.Events[3].String(), "revert   "+B+" from "+C+"  by me@x pid 1  source git b") {
		t.Errorf("%s", h.Events[3])
	}
	// A host whose record of a run says otherwise is flagged.
	c := other
	c.History[2] = e(2, "up", C, A, "git c")
	h = History([]Target{target("a", full()), target("c", c)})
	if ev := h.Events[2]; ev.Previous != B || !slices.Equal(ev.Differ, []string{"c: " + C + " from " + A}) {
		t.Errorf("differing record %+v", ev)
	}
	if !slices.Equal(h.Targets, []string{A}) || !slices.Equal(h.BadTargets, []string{C}) {
		t.Errorf("targets %v bad %v", h.Targets, h.BadTargets)
	}
	if h.Builds[0].ID != C || !h.Builds[0].Bad || h.Builds[1].ID != B || len(h.Builds[1].Live) != 2 {
		t.Errorf("builds %+v", h.Builds)
	}
}

// The plan of a guarded deploy, as `plan` prints it: the checks after the
// cutover and the after_cutover hooks, what a failed check runs instead of
// the rest, then the finishing steps.
func TestGuardedPlanGolden(t *testing.T) {
	const A, B = "20261124-090000", "20261124-100000"
	st := func() *steps.State {
		return &steps.State{RootExists: true, LatestKind: "link", Latest: B, LatestLink: "builds/" + B, Builds: []string{A, B},
			History: hist(A, B), Marker: steps.Marker{Release: B, Previous: A, Source: "git 89abcdef"}}
	}
	targets := []Target{target("web1", st()), target("web2", st())}
	env := testEnv()
	env.HealthCheck = &inventory.HealthCheck{Run: "curl -fsS http://localhost/health.php", Timeout: time.Minute, Interval: 2 * time.Second}
	env.Hooks.AfterRollback = []inventory.Hook{{Run: "notify rollback"}}
	p, err := Deploy(withHosts(env, targets), targets, ChooseRelease(now, targets), Build{Checksum: "sha256:0123", Source: "git 01234567+dirty"},
		steps.Holder{By: "alice@laptop", Run: "0123456789ab", Lease: 2 * time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	Print(&b, p)
	golden.Check(t, t.Name(), b.Bytes())
}

// Two runs a host recorded alike (same second, action and who) are two
// events, not one.
func TestHistoryKeepsAlikeRunsApart(t *testing.T) {
	const A, B = "20260101-000000", "20260102-000000"
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	st := &steps.State{Latest: B, Builds: []string{A, B}, History: []steps.HistoryEntry{
		{Time: t0, Action: "up", Release: A, By: "me"},
		{Time: t0, Action: "up", Release: B, Previous: A, By: "me"},
	}}
	h := History([]Target{target("a", st), target("b", st)})
	if len(h.Events) != 2 || h.Events[0].Release != A || h.Events[1].Release != B || h.Events[1].Disagree() {
		t.Errorf("events %+v", h.Events)
	}
}
