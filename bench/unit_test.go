//go:build bench

package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Quick checks of the harness itself, without any host:
// go test -tags bench -run 'TestApp|TestWriteBenchmarks|TestParseRsyncStats|TestWatch|TestSkew' ./bench

func TestAppIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, err := GenerateApp(filepath.Join(dir, "a"), 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateApp(filepath.Join(dir, "b"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if a.Checksum != b.Checksum || a.Files != b.Files || a.Bytes != b.Bytes {
		t.Fatalf("two generations differ: %+v vs %+v", a, b)
	}
	if a.Files < 2900 || a.Files > 3100 || a.Bytes < 40<<20 || a.Bytes > 50<<20 {
		t.Errorf("app is %d files, %d bytes: want ~3000 files, ~40-50 MB", a.Files, a.Bytes)
	}
	c, err := GenerateApp(filepath.Join(dir, "c"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if n := countDiffering(t, a.Dir, c.Dir); n != len(c.Changed) {
		t.Errorf("v2 differs in %d files, want %d", n, len(c.Changed))
	}
	for _, p := range c.Changed {
		fa, _ := os.Stat(filepath.Join(a.Dir, p))
		fc, _ := os.Stat(filepath.Join(c.Dir, p))
		if fa.Size() == fc.Size() || !fc.ModTime().After(fa.ModTime()) {
			t.Errorf("%s: size %d -> %d, mtime %v -> %v: want both changed", p, fa.Size(), fc.Size(), fa.ModTime(), fc.ModTime())
		}
	}
}

func TestWriteBenchmarksKeepsEarlierRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	for i := range keepRuns + 2 {
		if err := WriteBenchmarks(path, "## run "+string(rune('A'+i))+"\n\nbody\n"); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	if got := strings.Count(s, runStart); got != keepRuns {
		t.Fatalf("%d runs kept, want %d:\n%s", got, keepRuns, s)
	}
	last := "## run " + string(rune('A'+keepRuns+1))
	if !strings.Contains(s, last) || strings.Index(s, last) > strings.Index(s, "## run "+string(rune('A'+keepRuns))) {
		t.Errorf("newest run not first:\n%s", s)
	}
}

// fleetdeploy's bound on the skew is read from its summary, and caps a
// watcher's figure only when the watcher saw more than the bound allows.
func TestSkewBound(t *testing.T) {
	out := "cutover:\n  h1 switched at +0.10 ms (round trip 0.35 ms)\ncutover skew 1.63 ms (at most 12.83 ms: last answer minus first request)\n"
	if got := skewBound(out); got != 12830*time.Microsecond {
		t.Errorf("bound %v, want 12.83ms", got)
	}
	if got := skewBound("deploy failed\n"); got != 0 {
		t.Errorf("bound %v from output without a summary", got)
	}
	for _, c := range []struct {
		seen, bound, want time.Duration
		late              bool
	}{
		{3 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond, true},
		{time.Millisecond, 2 * time.Millisecond, time.Millisecond, false},
		{time.Millisecond, 0, time.Millisecond, false},
	} {
		p := Phase{Skew: c.seen}
		p.SkewBound = c.bound
		if got, late := p.skew(); got != c.want || late != c.late {
			t.Errorf("seen %v, bound %v: %v late %v, want %v late %v", c.seen, c.bound, got, late, c.want, c.late)
		}
	}
}

func TestParseRsyncStats(t *testing.T) {
	s := parseRsyncStats("Number of files: 3,539 (reg: 3,017, dir: 522)\nNumber of regular files transferred: 4\nLiteral data: 646 bytes\nTotal bytes sent: 95,165\n")
	if s["Number of files"] != 3539 || s["Number of regular files transferred"] != 4 || s["Literal data"] != 646 || s["Total bytes sent"] != 95165 {
		t.Errorf("parsed %v", s)
	}
}

func TestWatchSeesEveryRename(t *testing.T) {
	var roots []string
	for i := range 70 { // more than maxInstances: some roots share an instance
		r := filepath.Join(t.TempDir(), "root")
		if err := os.Mkdir(r, 0o755); err != nil {
			t.Fatal(err)
		}
		roots = append(roots, r)
		_ = i
	}
	w, err := WatchSwaps(roots)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, r := range roots {
		if err := os.Symlink("builds/1", filepath.Join(r, "next")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(r, "next"), filepath.Join(r, "latest")); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	skew, missing, _ := Skew(w.Stop())
	if missing != 0 {
		t.Fatalf("%d of %d switches missed", missing, len(roots))
	}
	if skew <= 0 || skew > took+50*time.Millisecond {
		t.Errorf("skew %v for renames that took %v", skew, took)
	}
}

// The CPU column is the median repetition's CPU time per host, with its ratio
// to rsync's for the same fleet and deploy.
func TestCPUPerHost(t *testing.T) {
	r := &Run{}
	for i, c := range []time.Duration{300, 160, 200} { // fleetdeploy: median 200 ms for 2 hosts
		r.Phases = append(r.Phases, Phase{Backend: "openssh", Hosts: 2, Tool: toolFD, Kind: kindRe, Rep: i, CPU: c * time.Millisecond})
	}
	for i, c := range []time.Duration{2000, 1800} { // rsync: median 1900 ms for 2 hosts
		r.Phases = append(r.Phases, Phase{Backend: "openssh", Hosts: 2, Tool: toolRsync, Kind: kindRe, Rep: i, CPU: c * time.Millisecond})
	}
	md := r.Markdown()
	for _, want := range []string{"| 100 ms (0.11x) |", "| 950 ms |"} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
}

// Over a delayed link each row gives its wall time in round trips of the
// link; on loopback the column is blank.
func TestRoundTripsColumn(t *testing.T) {
	r := &Run{RTT: 50 * time.Millisecond}
	for i, w := range []time.Duration{900, 1000, 1300} { // median 1.0 s: 20 round trips
		r.Phases = append(r.Phases, Phase{Backend: "openssh", Hosts: 4, Tool: toolFD, Kind: kindRe, Rep: i, RunResult: RunResult{Wall: w * time.Millisecond}})
	}
	r.Phases = append(r.Phases, Phase{Backend: "openssh", Hosts: 4, Tool: toolRsync, Kind: kindRe, RunResult: RunResult{Wall: 6 * time.Second}})
	md := r.Markdown()
	for _, want := range []string{"| vs rsync | round trips |", "| 1.00 (0.90–1.30) | 0.17x | 20 |", "| 6.00 |  | 120 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
	r.RTT = 0
	if md := r.Markdown(); !strings.Contains(md, "| 0.17x | – |") {
		t.Errorf("loopback: no blank round trips in\n%s", md)
	}
}
