package plan

import (
	"fmt"
	"io"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/steps"
)

// Print writes the plan as a dry run shows it: every phase, host, step and
// remote operation, in the order a real run performs them (a Walk); after a
// Guard phase, what runs instead of the rest when it fails.
func Print(w io.Writer, p *Plan) {
	fmt.Fprintf(w, "plan: %s\n", p.Describe())
	var guard *Phase // whose OnFailure comes before the next phase
	flush := func() {
		if guard != nil {
			printOnFailure(w, p, guard)
			guard = nil
		}
	}
	p.Walk(func(ph *Phase, host string, list []steps.Step) {
		if host == "" {
			flush()
			if ph.Policy == Guard {
				guard = ph
			}
			if ph.Policy == Barrier {
				fmt.Fprintf(w, "\n-- barrier: every host prepared; no host switches before --\n")
			} else {
				fmt.Fprintf(w, "\n%s %s\n", ph.Name, ph.how())
			}
			return
		}
		printHost(w, "", host, list)
	})
	flush()
	if len(p.Notes) > 0 {
		fmt.Fprintf(w, "\nnotes:\n")
		for _, n := range p.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
}

func printHost(w io.Writer, indent, host string, list []steps.Step) {
	fmt.Fprintf(w, "%s  %s\n", indent, host)
	for _, s := range list {
		fmt.Fprintf(w, "%s    %s\n", indent, s.Name)
		for _, op := range s.Ops {
			fmt.Fprintf(w, "%s      %s\n", indent, strings.ReplaceAll(Indent(steps.Describe(op)), "\n", "\n"+indent))
		}
	}
}

// printOnFailure shows a Guard phase's OnFailure phases, indented: what
// runs, instead of the rest of the plan, when a check fails.
func printOnFailure(w io.Writer, p *Plan, ph *Phase) {
	back := p.Before
	if back == "" {
		back = "no build"
	}
	fmt.Fprintf(w, "\n  -- if a check fails, a host is lost or Ctrl-C comes: instead of what follows, the fleet goes back to %s --\n", back)
	for i := range ph.OnFailure {
		rp := &ph.OnFailure[i]
		how := "(failures here are reported; hosts that did not switch back are left alone)"
		if rp.Policy == Switch {
			how = "(all hosts at once, timed like the cutover; a host that fails stays on " + p.Release + ")"
		}
		fmt.Fprintf(w, "  %s %s\n", rp.Name, how)
		for _, h := range rp.Hosts() {
			if list, ok := rp.Steps[h]; ok {
				printHost(w, "  ", h, list)
			}
		}
	}
}

// how says how a phase runs, as its policy and waves make it run.
func (ph *Phase) how() string {
	switch {
	case ph.Policy == Switch:
		return "(all hosts at once; a failure switches the others back)"
	case ph.Policy == Reported:
		return "(failures here are reported, nothing switches back)"
	case ph.Policy == Guard:
		return "(all hosts at once, each check retried until it passes or times out; a failure, a host lost or Ctrl-C switches the whole fleet back)"
	case len(ph.Waves) == 2 && len(ph.Waves[0]) == 1:
		return fmt.Sprintf("(first %s, then the rest together)", ph.Waves[0][0])
	}
	return "(hosts in parallel; a failure on any host undoes every host)"
}

// Indent keeps multi-line values (quoted newlines) aligned under their operation.
func Indent(s string) string { return strings.ReplaceAll(s, "\n", "\n        ") }
