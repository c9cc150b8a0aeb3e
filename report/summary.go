package report

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetdeploy/fleetdeploy/plan"
)

// column is one phase of the summary table.
type column struct {
	phase string
	swap  bool // the cutover: each host's swap time and round trip instead
}

// columns are the phases the hosts went through, in the order they ran.
func (r *Reporter) columns() []column {
	var out []column
	for _, p := range r.phases {
		if p.policy == plan.Barrier || slices.ContainsFunc(out, func(c column) bool { return c.phase == p.name }) {
			continue
		}
		if p.policy == plan.Switch {
			out = append(out, column{phase: p.name, swap: true})
			continue
		}
		for _, h := range r.hosts {
			if _, ok := h.took(p.name); ok {
				out = append(out, column{phase: p.name})
				break
			}
		}
	}
	return out
}

// took is how long the host spent in a phase.
func (h *host) took(phase string) (time.Duration, bool) {
	var d time.Duration
	found := false
	for _, p := range h.phases {
		if p.name == phase {
			d += p.d
			found = true
		}
	}
	return d, found
}

// result says where a host ended up.
func (h *host) result() string {
	var s string
	switch {
	case h.swap != nil && h.swap.Unknown:
		s = "unknown"
	case h.reverted:
		s = "switched back"
	case h.swap != nil && h.swap.Err != nil:
		s = "not switched"
	case h.swap != nil:
		s = "switched"
	case h.undone:
		s = "undone"
	}
	if h.failed != "" {
		s = strings.TrimPrefix(s+"; failed: "+h.failed, "; ")
	}
	if s == "" {
		return "-"
	}
	return s
}

// firstSent is the earliest swap request, from which swap times count.
func (r *Reporter) firstSent() time.Time {
	var first time.Time
	for i, s := range r.swaps {
		if i == 0 || s.Sent.Before(first) {
			first = s.Sent
		}
	}
	return first
}

// sortedHosts are the hosts in natural order (web2 before web10).
func (r *Reporter) sortedHosts() []*host {
	out := slices.Clone(r.hosts)
	slices.SortStableFunc(out, func(a, b *host) int { return naturalCompare(a.name, b.name) })
	return out
}

// summaryTable is the table people see at the end of a run: per host the
// time of each phase, bytes sent and swap time; then the fleet's.
func (r *Reporter) summaryTable(now time.Time) string {
	cols := r.columns()
	uploads, hooks := false, false
	for _, h := range r.hosts {
		uploads = uploads || h.upload > 0
		hooks = hooks || h.hooks > 0
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	head := []string{"HOST"}
	for _, c := range cols {
		if c.swap {
			head = append(head, "SWAP AT", "ROUND TRIP")
			continue
		}
		head = append(head, strings.ToUpper(c.phase))
		if c.phase == "preparing" && uploads {
			head = append(head, "UPLOAD")
		}
	}
	if hooks {
		head = append(head, "HOOKS")
	}
	head = append(head, "SENT", "RESULT")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	first := r.firstSent()
	var total int64
	for _, h := range r.sortedHosts() {
		row := []string{h.name}
		for _, c := range cols {
			if c.swap {
				if h.swap == nil {
					row = append(row, "-", "-")
					continue
				}
				row = append(row, "+"+Millis(midpoint(*h.swap).Sub(first)), Millis(h.swap.Ack.Sub(h.swap.Sent)))
				continue
			}
			d, ok := h.took(c.phase)
			row = append(row, orDash(ok, Seconds(d)))
			if c.phase == "preparing" && uploads {
				row = append(row, orDash(h.upload > 0, Seconds(h.upload)))
			}
		}
		if hooks {
			row = append(row, orDash(h.hooks > 0, Seconds(h.hooks)))
		}
		sent := h.sent.Load()
		total += sent
		row = append(row, Bytes(sent), h.result())
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	row := []string{"fleet"}
	for _, c := range cols {
		d := r.fleetTook(c.phase)
		if c.swap {
			mid, bound := (&plan.Result{Swaps: r.swaps}).Skew()
			row = append(row, "skew "+Millis(mid), "at most "+Millis(bound))
			continue
		}
		row = append(row, Seconds(d))
		if c.phase == "preparing" && uploads {
			row = append(row, "")
		}
	}
	if hooks {
		row = append(row, "")
	}
	row = append(row, Bytes(total), "")
	fmt.Fprintln(tw, strings.Join(row, "\t"))
	tw.Flush()
	table := b.String()
	b.Reset()
	for _, l := range strings.SplitAfter(table, "\n") {
		b.WriteString(strings.TrimRight(l, " \n"))
		if strings.HasSuffix(l, "\n") {
			b.WriteByte('\n')
		}
	}
	var stages []string
	overlap := 0
	for _, s := range r.stages {
		if !s.running {
			stages = append(stages, fmt.Sprintf("%s %s", s.name, Seconds(s.end.Sub(s.at))))
		}
		if s.name == StageBuilding || s.name == StageConnecting {
			overlap++
		}
	}
	fmt.Fprintf(&b, "total %s", Seconds(now.Sub(r.start)))
	if len(stages) > 0 {
		fmt.Fprintf(&b, " (%s", strings.Join(stages, ", "))
		if overlap >= 2 {
			b.WriteString(": building and connecting at once")
		}
		b.WriteString(")")
	}
	return b.String()
}

// fleetTook is the wall time of a phase across the fleet.
func (r *Reporter) fleetTook(phase string) time.Duration {
	var d time.Duration
	for _, p := range r.phases {
		if p.name == phase {
			d += p.d
		}
	}
	return d
}

func orDash(ok bool, s string) string {
	if !ok {
		return "-"
	}
	return s
}

// summaryEvent is the table's data, for programs.
func (r *Reporter) summaryEvent(now time.Time) summaryEvent {
	e := summaryEvent{header: r.headerAt("summary", now), Phases: map[string]float64{}, DurationMS: ms(now.Sub(r.start)), Hosts: []summaryHostJSON{}}
	for _, p := range r.phases {
		e.Phases[p.name] += ms(p.d)
	}
	first := r.firstSent()
	for _, h := range r.sortedHosts() {
		j := summaryHostJSON{Host: h.name, Phases: map[string]float64{}, UploadMS: ms(h.upload), HooksMS: ms(h.hooks), Bytes: h.sent.Load(), Result: h.result()}
		for _, p := range h.phases {
			j.Phases[p.name] += ms(p.d)
		}
		if h.swap != nil {
			j.SwapAtMS, j.RoundTripMS = msp(midpoint(*h.swap).Sub(first)), msp(h.swap.Ack.Sub(h.swap.Sent))
		}
		e.Bytes += j.Bytes
		e.Hosts = append(e.Hosts, j)
	}
	if len(r.swaps) > 0 {
		mid, _ := (&plan.Result{Swaps: r.swaps}).Skew()
		e.SkewMS = msp(mid)
	}
	return e
}

// naturalCompare orders names with numbers by value: web2 < web10.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
