package plan

import (
	"fmt"
	"io"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/steps"
)

// Print writes the plan as a dry run shows it: every phase, host, step and
// remote operation, in the order a real run performs them (a Walk).
func Print(w io.Writer, p *Plan) {
	fmt.Fprintf(w, "plan: %s\n", p.Describe())
	p.Walk(func(ph *Phase, host string, list []steps.Step) {
		if host == "" {
			if ph.Policy == Barrier {
				fmt.Fprintf(w, "\n-- barrier: every host prepared; no host switches before --\n")
			} else {
				fmt.Fprintf(w, "\n%s %s\n", ph.Name, ph.how())
			}
			return
		}
		fmt.Fprintf(w, "  %s\n", host)
		for _, s := range list {
			fmt.Fprintf(w, "    %s\n", s.Name)
			for _, op := range s.Ops {
				fmt.Fprintf(w, "      %s\n", Indent(steps.Describe(op)))
			}
		}
	})
	if len(p.Notes) > 0 {
		fmt.Fprintf(w, "\nnotes:\n")
		for _, n := range p.Notes {
			fmt.Fprintf(w, "  %s\n", n)
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
	case len(ph.Waves) == 2 && len(ph.Waves[0]) == 1:
		return fmt.Sprintf("(first %s, then the rest together)", ph.Waves[0][0])
	}
	return "(hosts in parallel; a failure on any host undoes every host)"
}

// Indent keeps multi-line values (quoted newlines) aligned under their operation.
func Indent(s string) string { return strings.ReplaceAll(s, "\n", "\n        ") }
