package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// printOp writes a line to each of its step's streams.
type printOp struct{ fail bool }

func (printOp) Calls() []remote.Call { return nil }

func (p printOp) Run(_ context.Context, _ remote.Host, out io.Writer) error {
	fmt.Fprint(out, "to stdout\nunterminated")
	if s, ok := out.(interface{ Stderr() io.Writer }); ok {
		fmt.Fprintln(s.Stderr(), "to stderr")
	}
	if p.fail {
		return &remote.ExitError{Status: 3}
	}
	return nil
}

// tick is a clock that moves a millisecond at each reading.
type tick struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tick) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// The scheduler frames each phase, for the fleet and each host, with its
// duration; tells a step's stdout and stderr apart; gives each swap its
// times; and frames the undoing after a failure.
func TestEventsFramePhases(t *testing.T) {
	hosts := map[string]remote.Host{"a": nopHost{"a"}, "b": nopHost{"b"}}
	build := func(failB bool) *Plan {
		prepare := newPhase("preparing", Undone, []string{"a", "b"})
		cut := newPhase("cutting over", Switch, []string{"a", "b"})
		for _, h := range []string{"a", "b"} {
			prepare.add(h, steps.Step{Name: "hooking", Ops: []steps.Op{printOp{fail: failB && h == "b"}}, Undo: []steps.Op{fnOp(func(context.Context) error { return nil })}})
			cut.add(h, steps.Swap(steps.Layout{Root: "/srv/" + h}, true))
		}
		return &Plan{Action: "deploy", Env: "test", Hosts: []string{"a", "b"},
			Phases: []Phase{*prepare, *newPhase("barrier", Barrier), *cut}}
	}
	run := func(p *Plan) ([]Event, error) {
		var evs []Event
		c := &tick{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		_, err := Execute(t.Context(), p, hosts, Options{Now: c.now, Observe: func(e Event) { evs = append(evs, e) }})
		return evs, err
	}

	evs, err := run(build(false))
	if err != nil {
		t.Fatal(err)
	}
	frames := map[string]int{}
	for _, e := range evs {
		switch e.Kind {
		case PhaseStarted:
			frames[e.Phase+"/"+e.Host]++
		case PhaseDone:
			frames[e.Phase+"/"+e.Host]--
			if e.Duration <= 0 && e.Phase != "barrier" {
				t.Errorf("%s %s: no duration", e.Phase, e.Host)
			}
			if e.Host == "" && e.Policy != map[string]Policy{"preparing": Undone, "barrier": Barrier, "cutting over": Switch}[e.Phase] {
				t.Errorf("%s: policy %v", e.Phase, e.Policy)
			}
		case StepDone:
			if e.Duration <= 0 {
				t.Errorf("%s %s: step without a duration", e.Host, e.Step)
			}
		case Swapped:
			if e.Swap == nil || e.Swap.Host != e.Host || !e.Swap.Ack.After(e.Swap.Sent) || !e.Time.Equal(e.Swap.Ack) {
				t.Errorf("swap %+v at %v", e.Swap, e.Time)
			}
		}
	}
	for _, k := range []string{"preparing/", "preparing/a", "preparing/b", "barrier/", "cutting over/", "cutting over/a", "cutting over/b"} {
		if n, ok := frames[k]; !ok || n != 0 {
			t.Errorf("%s: started and done %d apart (present %v)", k, n, ok)
		}
	}
	var lines []string
	for _, e := range evs {
		if e.Kind == Output && e.Host == "a" {
			lines = append(lines, e.Stream+": "+e.Text)
		}
	}
	slices.Sort(lines)
	if want := []string{"stderr: to stderr", "stdout: to stdout", "stdout: unterminated"}; !slices.Equal(lines, want) {
		t.Errorf("output of a: %q, want %q", lines, want)
	}

	evs, err = run(build(true))
	if err == nil {
		t.Fatal("b's step failed: no error")
	}
	// b's step ran, and is undone; a's may not have started when b failed.
	var undo []string
	undone := map[string]int{}
	for _, e := range evs {
		if e.Phase == UndoPhase && (e.Kind == PhaseStarted || e.Kind == PhaseDone || e.Kind == Undoing) {
			undo = append(undo, fmt.Sprintf("%d %s", e.Kind, e.Host))
			undone[e.Host]++
		}
		if e.Kind == PhaseDone && e.Phase == "preparing" && e.Host == "b" && !errors.As(e.Err, new(*remote.ExitError)) {
			t.Errorf("b's preparing ended without its error: %v", e.Err)
		}
	}
	if len(undo) < 2 || undo[0] != fmt.Sprintf("%d ", PhaseStarted) || undo[len(undo)-1] != fmt.Sprintf("%d ", PhaseDone) ||
		undone["b"] != 3 || (undone["a"] != 0 && undone["a"] != 3) {
		t.Errorf("undoing is not framed (started, undoing, done per host, inside the fleet's): %q", undo)
	}
}
