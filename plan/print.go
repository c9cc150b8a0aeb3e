package plan

import (
	"fmt"
	"io"
	"strings"
)

// Print writes the plan as a dry run shows it: every phase, host, step and
// remote operation, in the order a real run performs them.
func Print(w io.Writer, p *Plan) {
	fmt.Fprintf(w, "plan: %s\n", p.Describe())
	if len(p.LockOrder) > 0 {
		fmt.Fprintf(w, "\n%s (first %s, then the rest together)\n", p.Lock.Name, p.LockOrder[0])
	}
	printPhase(w, p, p.Lock, p.LockOrder)
	fmt.Fprintf(w, "\n%s (hosts in parallel; a failure on any host undoes every host)\n", p.Prepare.Name)
	printPhase(w, p, p.Prepare, p.Hosts)
	fmt.Fprintf(w, "\n-- barrier: every host prepared; no host switches before --\n")
	fmt.Fprintf(w, "\n%s (all hosts at once; a failure switches the others back)\n", p.Cutover.Name)
	printPhase(w, p, p.Cutover, p.Hosts)
	fmt.Fprintf(w, "\n%s (failures here are reported, nothing switches back)\n", p.Finish.Name)
	printPhase(w, p, p.Finish, p.Hosts)
	if len(p.Notes) > 0 {
		fmt.Fprintf(w, "\nnotes:\n")
		for _, n := range p.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
}

func printPhase(w io.Writer, p *Plan, ph Phase, order []string) {
	for _, host := range order {
		list := ph.Steps[host]
		if len(list) == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s\n", host)
		for _, s := range list {
			fmt.Fprintf(w, "    %s\n", s.Name)
			for _, op := range s.Ops {
				fmt.Fprintf(w, "      %s\n", Indent(op.Desc))
			}
		}
	}
}

// Indent keeps multi-line values (quoted newlines) aligned under their operation.
func Indent(s string) string { return strings.ReplaceAll(s, "\n", "\n        ") }

// Ops lists every operation of a phase for one host, as Print shows them.
func (ph Phase) Ops(host string) []string {
	var out []string
	for _, s := range ph.Steps[host] {
		for _, op := range s.Ops {
			out = append(out, op.Desc)
		}
	}
	return out
}
