package plan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

const (
	liveID = "20261124-100000" // live on every test host
	prevID = "20261124-090000"
	newID  = "20261125-101500" // the build deployed
)

// testFleet is hosts a, b and c on recorders, each with prevID and liveID
// (live), read by steps.Look as a real run reads them.
func testFleet(t *testing.T) ([]Target, map[string]*recorder, map[string]remote.Host) {
	t.Helper()
	recs := map[string]*recorder{}
	hosts := map[string]remote.Host{}
	var targets []Target
	for _, name := range []string{"a", "b", "c"} {
		r := newRecorder(name)
		h := inventory.Host{Name: name, Address: name, Port: 22, User: "u", Root: "/srv/" + name}
		l := steps.Layout{Root: h.Root}
		r.links[l.Latest()] = steps.LinkTarget(liveID)
		r.dirs[l.Builds()] = []string{prevID, liveID}
		r.dirs[h.Root] = nil
		r.dirs[l.Meta()] = nil // deployed to before
		st, err := steps.Look(t.Context(), r, h.Root, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs[name], hosts[name] = r, r
		targets = append(targets, Target{Host: h, State: st})
	}
	return targets, recs, hosts
}

// payloads are known payloads (a few bytes each), as a real run has them.
func payloads(targets []Target) map[string]steps.Payload {
	out := map[string]steps.Payload{}
	for _, t := range targets {
		out[t.Host.Name] = steps.Payload{
			Open:        func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("tar")), nil },
			From:        t.State.Latest,
			Gzip:        true,
			Skip:        []string{"index.php", "it's here"},
			ManifestSum: "ab12",
			Sent:        2,
		}
	}
	return out
}

func hookEnv() *inventory.Environment {
	return &inventory.Environment{
		Name: "test", App: "app", Keep: 5,
		Shared: []inventory.SharedPath{{Path: "storage", Dir: true}},
		Hooks: inventory.Hooks{
			BeforeCutover: []inventory.Hook{{Run: `echo "before $HOME"`}},
			AfterCutover:  []inventory.Hook{{Run: "reload"}},
		},
	}
}

var now = time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)

func deployPlan(t *testing.T, targets []Target) *Plan {
	t.Helper()
	p, err := Deploy(withHosts(hookEnv(), targets), targets, newID, Build{Checksum: "sha256:0123", Payloads: payloads(targets)}, steps.Holder{By: "me@laptop", Run: "0123456789ab", Lease: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expectedCalls is what each host must see when every op of the plan runs:
// the Walk's ops, each one group.
func expectedCalls(p *Plan) map[string][]group {
	want := map[string][]group{}
	p.Walk(func(_ *Phase, host string, list []steps.Step) {
		for _, s := range list {
			for _, op := range s.Ops {
				var g group
				for _, c := range op.Calls() {
					g = append(g, c.String())
				}
				want[host] = append(want[host], g)
			}
		}
	})
	return want
}

// A deploy run against recording hosts sends exactly the requests the plan
// printed: the same commands, quoting and all, in the same order.
func TestRunSendsWhatPlanPrints(t *testing.T) {
	targets, recs, hosts := testFleet(t)
	p := deployPlan(t, targets)
	var printed bytes.Buffer
	Print(&printed, p)
	if _, err := Execute(t.Context(), p, hosts, Options{}); err != nil {
		t.Fatal(err)
	}
	want := expectedCalls(p)
	for name, r := range recs {
		got := r.recorded()
		compareCalls(t, name, want[name], got)
		// And each request is in the printed plan, in order: the section of
		// that host, one phase after the other (a Together's in any order).
		text := printed.String()
		for _, g := range want[name] {
			end := 0
			for _, c := range g {
				i := strings.Index(text, Indent(c))
				if i < 0 {
					t.Errorf("%s: executed, never printed (or printed out of order):\n%s", name, c)
					return
				}
				end = max(end, i+len(Indent(c)))
			}
			text = text[end:]
		}
		if len(got) < 9 {
			t.Errorf("%s: only %d requests: %q", name, len(got), got)
		}
	}
	// The script's parameters arrive as planned, quoted: a skip path with a quote.
	if !slices.ContainsFunc(recs["a"].recorded(), func(s string) bool { return strings.Contains(s, `'skip=it'\''s here'`) }) {
		t.Errorf("prepare's skip list not sent as planned: %q", recs["a"].recorded())
	}
}

// failOn makes a recorder fail the requests whose rendering contains s.
func failOn(r *recorder, s string, err error) {
	r.before = func(c remote.Call) error {
		if strings.Contains(c.String(), s) {
			return err
		}
		return nil
	}
}

// undoneAfter is what a host recorded after the last request containing from.
func undoneAfter(got []string, from string) []string {
	i := -1
	for j, s := range got {
		if strings.Contains(s, from) {
			i = j
		}
	}
	if i < 0 {
		return nil
	}
	return got[i+1:]
}

// A failure before the barrier undoes every host, newest step first: the
// staged links, then the build, then the lock; and no host switches.
func TestFailureBeforeBarrierUndoesNewestFirst(t *testing.T) {
	targets, recs, hosts := testFleet(t)
	p := deployPlan(t, targets)
	// b's hook fails once a and c have staged their links: every host has
	// then done all it will do going forward.
	staged := make(chan struct{}, 2)
	for _, name := range []string{"a", "c"} {
		recs[name].before = func(c remote.Call) error {
			if strings.HasPrefix(c.String(), "sftp symlink '/srv/"+name+"/.fleetdeploy/back'") {
				staged <- struct{}{}
			}
			return nil
		}
	}
	recs["b"].before = func(c remote.Call) error {
		if strings.Contains(c.String(), "echo") {
			<-staged
			<-staged
			return &remote.ExitError{Status: 3, Stderr: "hook broke"}
		}
		return nil
	}
	_, err := Execute(t.Context(), p, hosts, Options{})
	if err == nil || !strings.Contains(err.Error(), "b: running before_cutover hook") || !strings.Contains(err.Error(), "hook broke") {
		t.Fatalf("error %v", err)
	}
	for name, r := range recs {
		got := r.recorded()
		l := steps.Layout{Root: "/srv/" + name}
		unprepare := "fleetdeploy-unprepare 'root=/srv/" + name + "' 'id=" + newID + "' 'token=2026-11-25T10:15:00Z me@laptop " + newID + "'"
		unlock := remote.Call{Method: remote.MethodRemove, Path: l.Lock()}.String()
		// What it did going forward ends with the staged links (a, c) or the
		// failed hook (b); the undo follows.
		from, want := "-> 'builds/", []string{
			remote.Call{Method: remote.MethodRemove, Path: l.Next()}.String(),
			remote.Call{Method: remote.MethodRemove, Path: l.Back()}.String(),
			unprepare, unlock,
		}
		if name == "b" {
			from, want = "FAILED", []string{unprepare, unlock}
		}
		if undo := undoneAfter(got, from); !slices.Equal(undo, want) {
			t.Errorf("%s: undo\n got %q\nwant %q", name, undo, want)
		}
		if r.links[l.Latest()] != steps.LinkTarget(liveID) {
			t.Errorf("%s switched", name)
		}
	}
}

// A rename that fails on one host switches the hosts that switched back
// (back over latest), then undoes everything; a host whose connection was
// lost during its rename is reported unknown and keeps its lock.
func TestFailedCutoverSwitchesBack(t *testing.T) {
	for _, tc := range []struct {
		name              string
		err               error
		unknown, reverted []string
	}{
		{"refused", errors.New("permission denied"), nil, []string{"a", "c"}},
		{"lost", fmt.Errorf("%w: reset", remote.ErrConnLost), []string{"b"}, []string{"a", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets, recs, hosts := testFleet(t)
			p := deployPlan(t, targets)
			failOn(recs["b"], "posix-rename", tc.err)
			res, err := Execute(t.Context(), p, hosts, Options{})
			var cerr *CutoverError
			if !errors.As(err, &cerr) {
				t.Fatalf("error %T %v, want a CutoverError", err, err)
			}
			if !slices.Equal(cerr.Unknown, tc.unknown) || !slices.Equal(cerr.Reverted, tc.reverted) {
				t.Errorf("unknown %v reverted %v, want %v %v", cerr.Unknown, cerr.Reverted, tc.unknown, tc.reverted)
			}
			if cerr.Split() != (tc.unknown != nil) {
				t.Errorf("split %v", cerr.Split())
			}
			if len(res.Swaps) != 3 {
				t.Errorf("swaps %+v", res.Swaps)
			}
			for _, name := range tc.reverted {
				l := steps.Layout{Root: "/srv/" + name}
				got := recs[name].recorded()
				back := undoneAfter(got, "posix-rename '"+l.Next())
				want := []string{
					remote.Call{Method: remote.MethodRename, Path: l.Back(), Arg: l.Latest()}.String(),
					remote.Call{Method: remote.MethodRemove, Path: l.Next()}.String(),
					remote.Call{Method: remote.MethodRemove, Path: l.Back()}.String(),
				}
				if len(back) < 5 || !slices.Equal(back[:3], want) || !strings.Contains(back[3], "fleetdeploy-unprepare") ||
					back[4] != (remote.Call{Method: remote.MethodRemove, Path: l.Lock()}).String() {
					t.Errorf("%s after its swap: %q", name, back)
				}
				if recs[name].links[l.Latest()] != steps.LinkTarget(liveID) {
					t.Errorf("%s: latest -> %s", name, recs[name].links[l.Latest()])
				}
			}
			b := recs["b"]
			_, locked := b.links[steps.Layout{Root: "/srv/b"}.Lock()]
			if locked != (tc.unknown != nil) {
				t.Errorf("b locked: %v; an unknown host keeps the lock, a refused one is undone", locked)
			}
		})
	}
}

// Ctrl-C before the barrier, in any phase, undoes every host and reports an
// interruption; at or after the barrier it changes nothing: the run
// finishes.
func TestInterruptInEachPhase(t *testing.T) {
	for _, tc := range []struct {
		at          string // the request during which Ctrl-C comes
		interrupted bool
	}{
		{"sftp symlink '/srv/b/.fleetdeploy/lock'", true},
		{"fleetdeploy-prepare 'root=/srv/b'", true},
		{"echo", true},
		{"sftp symlink '/srv/b/.fleetdeploy/next'", true},
		{"posix-rename '/srv/b/.fleetdeploy/next'", false},
		{"\tup\t", false},
		{"reload", false},
	} {
		t.Run(tc.at, func(t *testing.T) {
			targets, recs, hosts := testFleet(t)
			p := deployPlan(t, targets)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			recs["b"].before = func(c remote.Call) error {
				if strings.Contains(c.String(), tc.at) {
					cancel()
				}
				return nil
			}
			_, err := Execute(ctx, p, hosts, Options{})
			var intr *InterruptedError
			if got := errors.As(err, &intr); got != tc.interrupted {
				t.Fatalf("interrupted: %v (%v), want %v", got, err, tc.interrupted)
			}
			for name, r := range recs {
				l := steps.Layout{Root: "/srv/" + name}
				got := r.recorded()
				if tc.interrupted {
					if r.links[l.Latest()] != steps.LinkTarget(liveID) {
						t.Errorf("%s switched", name)
					}
					if _, ok := r.links[l.Lock()]; ok {
						t.Errorf("%s still locked: %q", name, got)
					}
					continue
				}
				if err != nil {
					t.Fatalf("after the barrier: %v", err)
				}
				if r.links[l.Latest()] != steps.LinkTarget(newID) {
					t.Errorf("%s: latest -> %s", name, r.links[l.Latest()])
				}
				if _, ok := r.links[l.Lock()]; ok {
					t.Errorf("%s still locked", name)
				}
			}
		})
	}
}

// Failures after the cutover are reported per host and undo nothing.
func TestFinishFailureIsReportedNotUndone(t *testing.T) {
	targets, recs, hosts := testFleet(t)
	p := deployPlan(t, targets)
	failOn(recs["c"], "reload", &remote.ExitError{Status: 1, Stderr: "no php-fpm"})
	_, err := Execute(t.Context(), p, hosts, Options{})
	var fin *FinishError
	if !errors.As(err, &fin) || !strings.Contains(err.Error(), "c: running after_cutover hook") {
		t.Fatalf("error %v", err)
	}
	for name, r := range recs {
		l := steps.Layout{Root: "/srv/" + name}
		if r.links[l.Latest()] != steps.LinkTarget(newID) {
			t.Errorf("%s switched back", name)
		}
		for _, c := range r.recorded() {
			if strings.Contains(c, "unprepare") {
				t.Errorf("%s: undone after the cutover", name)
			}
		}
	}
}
