//go:build bench

package bench

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Phase is one measured deploy: one tool, one kind (first, redeploy or rollback), one
// repetition, against one fleet.
type Phase struct {
	Backend string // "openssh" (real sshd per host) or "sandbox" (fleetdeploy sandbox)
	Hosts   int
	Tool    string // "fleetdeploy" or "rsync"
	Kind    string // "first", "redeploy" or "rollback"
	Rep     int
	RunResult
	Traffic []Traffic // per host, during the phase
	Skew    time.Duration
	Missing int     // hosts whose latest never switched
	Swaps   int     // swap events seen, all hosts (more than Hosts: something switched twice)
	Foreign float64 // share of the machine's CPU used by other processes meanwhile
	// CPU is the CPU time the deploy cost: the tool and what it started, the
	// hosts (sshd and everything it ran) and the bench's own watchers.
	CPU time.Duration
}

const (
	toolFD       = "fleetdeploy"
	toolRsync    = "rsync"
	kindFirst    = "first"
	kindRe       = "redeploy"
	kindRollback = "rollback"
	// kindSteady is a redeploy once the hosts hold as many builds as they
	// keep: after the rollback, v2 again with keep 1, so that it removes one
	// build of the app's size, as every redeploy does from then on.
	kindSteady = "redeploy, keep reached"
)

// Run is everything one benchmark run produced.
type Run struct {
	Machine     Machine
	Tools       []string // fleetdeploy versions, then rsync
	Versions    []string // what each fleetdeploy tool is
	Command     string
	Label       string
	Link        string // -link in a few words, for the title ("" for loopback)
	LinkHow     string // how the link is made, and what the link check measured
	App         *AppInfo
	Meter       string
	Realtime    string // watcher priority, as achieved
	Calibration []string
	Phases      []Phase
	Notes       []string
	Elapsed     time.Duration
	Load        string // how busy the machine was with other work

	// RTT is the link's round trip as set (twice -link's delay), which the
	// round-trips column divides wall times by; 0 on loopback.
	RTT time.Duration
}

type groupKey struct {
	backend    string
	hosts      int
	tool, kind string
}

// group is the repetitions of one (backend, hosts, tool, kind).
type group struct {
	key    groupKey
	phases []Phase
}

func (r *Run) groups() []*group {
	m := map[groupKey]*group{}
	var out []*group
	for _, p := range r.Phases {
		k := groupKey{p.Backend, p.Hosts, p.Tool, p.Kind}
		g := m[k]
		if g == nil {
			g = &group{key: k}
			m[k] = g
			out = append(out, g)
		}
		g.phases = append(g.phases, p)
	}
	order := map[string]int{"openssh": 0, "sandbox": 1, kindFirst: 0, kindRe: 1, kindRollback: 2, kindSteady: 3}
	for i, tool := range r.Tools {
		order[tool] = i
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].key, out[j].key
		if a.backend != b.backend {
			return order[a.backend] < order[b.backend]
		}
		if a.hosts != b.hosts {
			return a.hosts < b.hosts
		}
		if a.kind != b.kind {
			return order[a.kind] < order[b.kind]
		}
		return order[a.tool] < order[b.tool]
	})
	return out
}

func (r *Run) find(k groupKey) *group {
	for _, g := range r.groups() {
		if g.key == k {
			return g
		}
	}
	return nil
}

// ok are the repetitions without error.
func (g *group) ok() []Phase {
	var ps []Phase
	for _, p := range g.phases {
		if p.Err == nil && p.Missing == 0 {
			ps = append(ps, p)
		}
	}
	return ps
}

func median[T int64 | time.Duration | float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (g *group) walls() []time.Duration {
	var w []time.Duration
	for _, p := range g.ok() {
		w = append(w, p.Wall)
	}
	return w
}

func (g *group) wall() time.Duration { return median(g.walls()) }

// perHost is the median over repetitions of the median over hosts of f.
func (g *group) perHost(f func(Traffic) int64) int64 {
	var reps []int64
	for _, p := range g.ok() {
		var hs []int64
		for _, t := range p.Traffic {
			hs = append(hs, f(t))
		}
		reps = append(reps, median(hs))
	}
	return median(reps)
}

// maxHost is the largest per-host total over every repetition.
func (g *group) maxHost() int64 {
	var m int64
	for _, p := range g.ok() {
		for _, t := range p.Traffic {
			m = max(m, t.Up+t.Down)
		}
	}
	return m
}

func (g *group) skews() []time.Duration {
	var s []time.Duration
	for _, p := range g.ok() {
		s = append(s, p.Skew)
	}
	return s
}

// bounds are fleetdeploy's own bounds on the skew (see RunResult.SkewBound).
func (g *group) bounds() []time.Duration {
	var s []time.Duration
	for _, p := range g.ok() {
		if p.SkewBound > 0 {
			s = append(s, p.SkewBound)
		}
	}
	return s
}

// skew is a repetition's cutover skew: what the watchers saw on the hosts,
// unless that exceeds fleetdeploy's own bound (every swap happened between
// its first request and its last answer, on the same clock), which means a
// watcher woke late; late reports whether that was the case.
func (p Phase) skew() (d time.Duration, late bool) {
	if p.SkewBound > 0 && p.Skew > p.SkewBound {
		return p.SkewBound, true
	}
	return p.Skew, false
}

func (g *group) foreign() []float64 {
	var f []float64
	for _, p := range g.ok() {
		f = append(f, p.Foreign)
	}
	return f
}

// cpuPerHost is the median repetition's CPU time divided by the hosts.
func (g *group) cpuPerHost() time.Duration {
	var c []time.Duration
	for _, p := range g.ok() {
		c = append(c, p.CPU)
	}
	return median(c) / time.Duration(max(1, g.key.hosts))
}

func (g *group) maxRSS() int64 {
	var m int64
	for _, p := range g.ok() {
		m = max(m, p.MaxRSSKB)
	}
	return m
}

func (g *group) sumRSS() int64 {
	var m int64
	for _, p := range g.ok() {
		m = max(m, p.SumRSSKB)
	}
	return m
}

// rsyncStat is the median over hosts and repetitions of one `rsync --stats` figure.
func (g *group) rsyncStat(label string) int64 {
	var all []int64
	for _, p := range g.ok() {
		for _, s := range p.Rsync {
			all = append(all, s[label])
		}
	}
	return median(all)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f", float64(d)/1e6)
}

func bytesH(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func minMax(ds []time.Duration) (time.Duration, time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	return slices.Min(ds), slices.Max(ds)
}

// Markdown renders the run as a BENCHMARKS.md section.
func (r *Run) Markdown() string {
	var b strings.Builder
	title := "Run of " + r.Machine.Date
	if r.Label != "" {
		title += ": " + r.Label
	}
	if r.Link != "" {
		title += " (link: " + r.Link + ")"
	}
	fmt.Fprintf(&b, "## %s\n\n", title)
	fmt.Fprintf(&b, "Command: `%s` (whole run: %s)\n\n", r.Command, r.Elapsed.Round(time.Second))
	m := r.Machine
	fmt.Fprintf(&b, "| machine | |\n|---|---|\n")
	fmt.Fprintf(&b, "| date | %s |\n| cores (nproc) | %d |\n| CPU | %s |\n| memory | %s |\n| kernel | %s |\n| OS | %s |\n| OpenSSH | %s |\n| rsync | %s |\n| Go | %s |\n| hosts' files | %s |\n| other load | %s |\n",
		m.Date, m.NProc, m.CPU, m.MemTotal, m.Kernel, m.OS, m.OpenSSH, m.Rsync, m.Go, m.Storage, r.Load)
	if r.Link != "" {
		fmt.Fprintf(&b, "| link | **%s**: %s |\n", r.Link, r.LinkHow)
	} else {
		b.WriteString("| link | loopback (no delay, no rate cap) |\n")
	}
	for _, v := range r.Versions {
		fmt.Fprintf(&b, "| fleetdeploy | %s |\n", v)
	}
	b.WriteString("\n")
	if r.App != nil {
		fmt.Fprintf(&b, "App: %s: %d files, %s (%d bytes), tree sha256 %s…; the redeploy changes %d files (%s); the rollback switches back to the first build; *redeploy, keep reached* (where measured) deploys the second version again with `keep: 1`, which removes the build rolled back from, a whole app's worth of files, as every redeploy does once a host holds `keep` builds (rsync: `rm -rf` of its release after the swap).",
			r.App.Name, r.App.Files, bytesH(r.App.Bytes), r.App.Bytes, r.App.Checksum[:16], len(r.App.Changed), strings.Join(r.App.Changed, ", "))
		if r.App.Outside != "" {
			fmt.Fprintf(&b, " fleetdeploy's inventory sets `outside_symlinks: %s` (rsync -a copies symlinks as they are).", r.App.Outside)
		}
		b.WriteString("\n\n")
	}
	fmt.Fprintf(&b, "Bytes on the wire: %s. Cutover skew: %s.\n\n", r.Meter, r.Realtime)
	for _, c := range r.Calibration {
		fmt.Fprintf(&b, "- %s\n", c)
	}
	if len(r.Calibration) > 0 {
		b.WriteString("\n")
	}

	b.WriteString("Wall time is the median of the repetitions (min–max); wire bytes are per host, both directions, the median host of the median repetition, and `max` the busiest host of any repetition; skew is the latest minus the earliest switch of `latest` over all hosts, as the watchers saw them (median, max); skew bound is fleetdeploy's own bound on it, its last swap answer minus its first swap request (median, max): every swap happened in between, so a skew above the bound means a watcher woke late; CPU/host is the CPU time the deploy cost, the tool's and the hosts' alike (every process the bench started: the tool, what it ran, the sshd hosts and what they ran, and the bench's watchers), divided by the hosts (median repetition), with its ratio to rsync's: on a fleet where every host has its own cores, the hosts' share of it is each host's own work; RSS is the peak of the deploying process (rsync: the largest per-host `rsync`, or `ssh` for its rollback, and all hosts' peaks added up); other load is the share of the machine's CPU that processes outside the bench used during the deploy (median, min–max): high values mean a disturbed measurement; round trips is the median wall time divided by the link's round trip (twice -link's delay; – on loopback): the deploy's time, all its work included, counted in round trips, so it is at least the number of round trips on its critical path.\n\n")
	b.WriteString("| hosts | deploy | tool | n | wall s | vs rsync | round trips | wire/host up | wire/host down | wire/host total | % of build | max host | skew ms | skew bound ms | CPU/host | peak RSS | other load |\n")
	b.WriteString("|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|\n")
	for _, g := range r.groups() {
		k := g.key
		hosts := fmt.Sprint(k.hosts)
		if k.backend != "openssh" {
			hosts += " " + k.backend
		}
		ok := g.ok()
		n := fmt.Sprintf("%d", len(ok))
		if len(ok) < len(g.phases) {
			n = fmt.Sprintf("%d of %d", len(ok), len(g.phases))
		}
		if len(ok) == 0 {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | failed: %s | | | | | | | | | | | |\n", hosts, k.kind, k.tool, n, oneLine(g.phases[0]))
			continue
		}
		lo, hi := minMax(g.walls())
		ratio := ""
		cpu := fmt.Sprintf("%.0f ms", float64(g.cpuPerHost())/1e6)
		if k.tool != toolRsync {
			if base := r.find(groupKey{k.backend, k.hosts, toolRsync, k.kind}); base != nil && len(base.ok()) > 0 {
				ratio = fmt.Sprintf("%.2fx", g.wall().Seconds()/base.wall().Seconds())
				if bc := base.cpuPerHost(); bc > 0 {
					cpu += fmt.Sprintf(" (%.2fx)", float64(g.cpuPerHost())/float64(bc))
				}
			}
		}
		up := g.perHost(func(t Traffic) int64 { return t.Up })
		down := g.perHost(func(t Traffic) int64 { return t.Down })
		tot := g.perHost(func(t Traffic) int64 { return t.Up + t.Down })
		pct := ""
		if r.App != nil {
			pct = fmt.Sprintf("%.2f%%", 100*float64(tot)/float64(r.App.Bytes))
		}
		sk := g.skews()
		rss := fmt.Sprintf("%.0f MiB", float64(g.maxRSS())/1024)
		if k.tool == toolRsync {
			rss = fmt.Sprintf("%.0f MiB each, %.0f MiB all", float64(g.maxRSS())/1024, float64(g.sumRSS())/1024)
		}
		fl := g.foreign()
		wall, skew, other := secs(g.wall()), ms(median(sk)), fmt.Sprintf("%.0f%%", 100*median(fl))
		if len(ok) > 1 {
			wall += fmt.Sprintf(" (%s–%s)", secs(lo), secs(hi))
			skew += fmt.Sprintf(" (%s)", ms(slices.Max(sk)))
			other += fmt.Sprintf(" (%.0f–%.0f%%)", 100*slices.Min(fl), 100*slices.Max(fl))
		}
		bound := "–"
		if bs := g.bounds(); len(bs) > 0 {
			bound = ms(median(bs))
			if len(bs) > 1 {
				bound += fmt.Sprintf(" (%s)", ms(slices.Max(bs)))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			hosts, k.kind, k.tool, n, wall, ratio, roundTrips(g.wall(), r.RTT),
			bytesH(up), bytesH(down), bytesH(tot), pct, bytesH(g.maxHost()),
			skew, bound, cpu, rss, other)
	}
	b.WriteString("\n")

	// rsync's own account of the redeploys: it sends only the changed files.
	var rs []*group
	for _, g := range r.groups() {
		if g.key.tool == toolRsync && g.key.kind != kindRollback && len(g.ok()) > 0 {
			rs = append(rs, g)
		}
	}
	if len(rs) > 0 {
		b.WriteString("`rsync --stats` per host (median over hosts and repetitions):\n\n")
		b.WriteString("| hosts | deploy | files and folders in build | files transferred | transferred file size | literal data | matched data | rsync bytes sent | rsync bytes received |\n")
		b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, g := range rs {
			fmt.Fprintf(&b, "| %d | %s | %d | %d | %s | %s | %s | %s | %s |\n", g.key.hosts, g.key.kind,
				g.rsyncStat("Number of files"), g.rsyncStat("Number of regular files transferred"),
				bytesH(g.rsyncStat("Total transferred file size")), bytesH(g.rsyncStat("Literal data")),
				bytesH(g.rsyncStat("Matched data")),
				bytesH(g.rsyncStat("Total bytes sent")), bytesH(g.rsyncStat("Total bytes received")))
		}
		b.WriteString("\n")
	}

	b.WriteString(r.targets())
	var errs []string
	for _, p := range r.Phases {
		if p.Err != nil || p.Missing > 0 {
			errs = append(errs, fmt.Sprintf("- %s %d hosts, %s %s, repetition %d: %s", p.Backend, p.Hosts, p.Tool, p.Kind, p.Rep, oneLine(p)))
		}
	}
	if len(errs) > 0 {
		b.WriteString("Failed repetitions (left out of the figures above):\n\n" + strings.Join(errs, "\n") + "\n\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// roundTrips is a wall time in round trips of the link ("–" without a delay).
func roundTrips(wall, rtt time.Duration) string {
	if rtt <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", wall.Seconds()/rtt.Seconds())
}

func oneLine(p Phase) string {
	if p.Err != nil {
		s := strings.Join(strings.Fields(p.Err.Error()), " ")
		if len(s) > 300 {
			s = s[:297] + "..."
		}
		return s
	}
	return fmt.Sprintf("%d of %d hosts never switched latest", p.Missing, p.Hosts)
}

// targets checks fleetdeploy's figures against the goals it is optimised for:
// one row per fleetdeploy version and fleet.
func (r *Run) targets() string {
	mark := func(ok bool) string {
		if ok {
			return " ✓"
		}
		return " ✗"
	}
	type fleetKey struct {
		tool, backend string
		hosts         int
	}
	var keys []fleetKey
	seen := map[fleetKey]bool{}
	for _, g := range r.groups() {
		k := fleetKey{g.key.tool, g.key.backend, g.key.hosts}
		if strings.HasPrefix(k.tool, toolFD) && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Targets (✓ met, ✗ not met; skew is the worst repetition of either deploy, as the watchers saw it or, where that exceeds fleetdeploy's own bound, the bound):\n\n")
	b.WriteString("| tool | hosts | first deploy ≤ 0.5x rsync | redeploy ≤ 0.15x rsync | redeploy wire, busiest host < 1% of build | cutover skew < 4 ms | peak RSS (< 150 MB at 64 hosts, < 400 MB at 200 sandbox hosts) |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, k := range keys {
		ratio := func(kind string) string {
			g := r.find(groupKey{k.backend, k.hosts, k.tool, kind})
			base := r.find(groupKey{k.backend, k.hosts, toolRsync, kind})
			if g == nil || base == nil || len(g.ok()) == 0 || len(base.ok()) == 0 {
				return "–"
			}
			x := g.wall().Seconds() / base.wall().Seconds()
			limit := 0.5
			if kind == kindRe {
				limit = 0.15
			}
			return fmt.Sprintf("%.2fx", x) + mark(x <= limit)
		}
		wire := "–"
		if g := r.find(groupKey{k.backend, k.hosts, k.tool, kindRe}); g != nil && len(g.ok()) > 0 && r.App != nil {
			pct := 100 * float64(g.maxHost()) / float64(r.App.Bytes)
			wire = fmt.Sprintf("%.2f%%", pct) + mark(pct < 1)
		}
		var worst, seen time.Duration
		var rss int64
		late := 0
		any := false
		for _, kind := range []string{kindFirst, kindRe} {
			if g := r.find(groupKey{k.backend, k.hosts, k.tool, kind}); g != nil && len(g.ok()) > 0 {
				for _, p := range g.ok() {
					d, l := p.skew()
					worst = max(worst, d)
					if l {
						late++
						seen = max(seen, p.Skew)
					}
				}
				rss = max(rss, g.maxRSS())
				any = true
			}
		}
		skew, mem := "–", "–"
		if any {
			skew = ms(worst) + " ms" + mark(worst < 4*time.Millisecond)
			if late > 0 {
				skew += fmt.Sprintf(" (in %d repetition(s) the watchers saw up to %s ms, above fleetdeploy's bound: there, the bound)", late, ms(seen))
			}
			mem = fmt.Sprintf("%.0f MiB", float64(rss)/1024)
			limit := 0.0
			switch {
			case k.hosts == 64:
				limit = 150e6
			case k.backend == "sandbox" && k.hosts == 200:
				limit = 400e6
			}
			if limit > 0 {
				mem += mark(float64(rss)*1024 < limit)
			}
		}
		fmt.Fprintf(&b, "| %s | %d %s | %s | %s | %s | %s | %s |\n", k.tool, k.hosts, k.backend, ratio(kindFirst), ratio(kindRe), wire, skew, mem)
	}
	b.WriteString("\n")
	return b.String()
}

const (
	runStart = "<!-- bench-run -->"
	runEnd   = "<!-- /bench-run -->"
	keepRuns = 6
)

// WriteBenchmarks puts the run at the top of path, keeping the newest earlier
// runs below it so a before/after comparison survives a new run.
func WriteBenchmarks(path string, run string) error {
	var older []string
	if old, err := os.ReadFile(path); err == nil {
		rest := string(old)
		for {
			_, after, ok := strings.Cut(rest, runStart)
			if !ok {
				break
			}
			block, tail, ok := strings.Cut(after, runEnd)
			if !ok {
				break
			}
			older = append(older, strings.TrimSpace(block))
			rest = tail
		}
	}
	runs := append([]string{strings.TrimSpace(run)}, older...)
	if len(runs) > keepRuns {
		runs = runs[:keepRuns]
	}
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Generated by `bench/run.sh` (how it measures: [bench/README.md](bench/README.md)); do not edit by hand.\n")
	b.WriteString("Each run compares fleetdeploy with a hand-rolled parallel `rsync --link-dest` + symlink swap, on the same fleet in the same run: compare tools within a run, as ratios, since machines of one kind differ up to 2x in speed.\n")
	fmt.Fprintf(&b, "Newest run first; the %d newest runs are kept.\n\n", keepRuns)
	for _, r := range runs {
		b.WriteString(runStart + "\n" + r + "\n" + runEnd + "\n\n")
	}
	return os.WriteFile(path, []byte(strings.TrimRight(b.String(), "\n")+"\n"), 0o644)
}
