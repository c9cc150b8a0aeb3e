package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// observe renders scheduler events for a person at a terminal.
func (g *globals) observe(e plan.Event) {
	if g.extraObserver != nil {
		g.extraObserver(e)
	}
	switch e.Kind {
	case plan.StepStarted:
		if g.verbose {
			fmt.Fprintf(g.stdout, "%s %s  %s\n", g.clock(e.Time), e.Host, e.Step)
		}
	case plan.OpStarted:
		if g.verbose {
			fmt.Fprintf(g.stdout, "%s %s    %s\n", g.clock(e.Time), e.Host, plan.Indent(e.Op))
		}
	case plan.Output:
		if note, ok := strings.CutPrefix(e.Text, "NOTE: "); ok {
			fmt.Fprintf(g.stdout, "  %s: %s\n", e.Host, note)
		} else if g.verbose {
			fmt.Fprintf(g.stdout, "  %s  | %s\n", e.Host, e.Text)
		}
	case plan.StepFailed:
		fmt.Fprintf(g.stdout, "  %s  %s failed: %v\n", e.Host, e.Step, e.Err)
	case plan.Undoing:
		if g.verbose {
			fmt.Fprintf(g.stdout, "  %s  undoing %s\n", e.Host, e.Step)
		}
	}
}

// summary prints the cutover of each host and the fleet's skew.
func (g *globals) summary(res *plan.Result, start time.Time) {
	if res == nil || len(res.Swaps) == 0 {
		return
	}
	first := res.Swaps[0].Sent
	for _, s := range res.Swaps {
		if s.Sent.Before(first) {
			first = s.Sent
		}
	}
	fmt.Fprintf(g.stdout, "cutover:\n")
	for _, s := range res.Swaps {
		mid := s.Sent.Add(s.Ack.Sub(s.Sent) / 2)
		state := "switched"
		switch {
		case s.Unknown:
			state = "UNKNOWN: " + s.Err.Error()
		case s.Err != nil:
			state = "FAILED: " + s.Err.Error()
		}
		fmt.Fprintf(g.stdout, "  %-24s %s at +%.2f ms (round trip %.2f ms)\n", s.Host, state, ms(mid.Sub(first)), ms(s.Ack.Sub(s.Sent)))
	}
	mid, bound := res.Skew()
	fmt.Fprintf(g.stdout, "cutover skew %.2f ms (at most %.2f ms: last answer minus first request)\n", ms(mid), ms(bound))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func lockedErr(holder string) error { return &steps.LockedError{Holder: holder} }

// clock is an event's time since the command started, for verbose output.
func (g *globals) clock(t time.Time) string {
	return fmt.Sprintf("%7.3fs", t.Sub(g.started).Seconds())
}
