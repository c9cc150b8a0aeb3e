package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// printer owns standard output: the scheduler's events arrive from many
// goroutines, progress lines from others, and each write goes out whole.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func newPrinter(w io.Writer) *printer { return &printer{w: w} }

func (p *printer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Write(b)
}

// Printf writes one formatted line (or more) at once.
func (p *printer) Printf(format string, a ...any) {
	fmt.Fprintf(p, format, a...)
}

// render shows scheduler events to a person at a terminal.
func (c *common) render(e plan.Event) {
	if c.observe != nil {
		c.observe(e)
	}
	switch e.Kind {
	case plan.StepStarted:
		if c.verbose {
			c.out.Printf("%s %s  %s\n", c.clock(e.Time), e.Host, e.Step)
		}
	case plan.OpStarted:
		if c.verbose {
			c.out.Printf("%s %s    %s\n", c.clock(e.Time), e.Host, plan.Indent(e.Op))
		}
	case plan.Output:
		text := remote.Sanitize(e.Text) // what a host prints never reaches the terminal raw
		if note, ok := strings.CutPrefix(text, "NOTE: "); ok {
			c.out.Printf("  %s: %s\n", e.Host, note)
		} else if c.verbose {
			c.out.Printf("  %s  | %s\n", e.Host, text)
		}
	case plan.StepFailed:
		c.out.Printf("  %s  %s failed: %s\n", e.Host, e.Step, remote.SanitizeLines(e.Err.Error()))
	case plan.Undoing:
		if c.verbose {
			c.out.Printf("  %s  undoing %s\n", e.Host, e.Step)
		}
	}
}

// summary prints the cutover of each host and the fleet's skew, and the
// switch back when a health check failed.
func (c *common) summary(res *plan.Result) {
	if res == nil {
		return
	}
	c.swapTable("cutover", res.Swaps)
	c.swapTable("switch back", res.Revert)
}

// swapTable prints one set of swaps (a cutover, or the switch back).
func (c *common) swapTable(what string, swaps []plan.Swap) {
	if len(swaps) == 0 {
		return
	}
	first := swaps[0].Sent
	for _, s := range swaps {
		if s.Sent.Before(first) {
			first = s.Sent
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n", what)
	for _, s := range swaps {
		mid := s.Sent.Add(s.Ack.Sub(s.Sent) / 2)
		state := "switched"
		switch {
		case s.Unknown:
			state = "UNKNOWN: " + s.Err.Error()
		case s.Err != nil:
			state = "FAILED: " + s.Err.Error()
		}
		fmt.Fprintf(&b, "  %-24s %s at +%.2f ms (round trip %.2f ms)\n", s.Host, state, ms(mid.Sub(first)), ms(s.Ack.Sub(s.Sent)))
	}
	mid, bound := plan.SwapSkew(swaps)
	fmt.Fprintf(&b, "%s skew %.2f ms (at most %.2f ms: last answer minus first request)\n", what, ms(mid), ms(bound))
	c.out.Printf("%s", b.String())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// clock is an event's time since the command started, for verbose output.
func (c *common) clock(t time.Time) string {
	return fmt.Sprintf("%7.3fs", t.Sub(c.started).Seconds())
}

func since(t time.Time, now func() time.Time) string {
	return fmt.Sprintf("%.1fs", now().Sub(t).Seconds())
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
