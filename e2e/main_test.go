//go:build e2e

package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// bin is the fleetdeploy binary built once for the whole suite.
var bin string

// repoRoot is the module root (the parent of this package's folder).
var repoRoot string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "fde2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "fleetdeploy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/fleetdeploy")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building fleetdeploy: %v\n%s", err, out)
		return 1
	}
	start := time.Now()
	code := m.Run()
	wall := time.Since(start)
	if err := writeResults(wall, code); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: writing results:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// row is one line of the results table.
type row struct {
	Scenario string
	Expected string
	Observed string
	Status   string // PASS, FAIL or SKIP
	Details  []string
}

var (
	resultsMu sync.Mutex
	results   []row
)

// scenario records one claim the suite checks: a row of docs/RESULTS.md. Its
// status is decided when the test ends, from whether the test failed or was
// skipped; its observed column is what the test saw, plus the first failures.
type scenario struct {
	t        testing.TB
	name     string
	expected string

	mu       sync.Mutex
	observed []string
	problems []string
	details  []string
}

// newScenario starts a row; its Cleanup is registered first, so it runs last,
// after every host, server and process of the test is stopped.
func newScenario(t testing.TB, name, expected string) *scenario {
	t.Helper()
	s := &scenario{t: t, name: name, expected: expected}
	t.Cleanup(s.record)
	return s
}

func (s *scenario) record() {
	s.mu.Lock()
	defer s.mu.Unlock()
	status := "PASS"
	switch {
	case s.t.Skipped():
		status = "SKIP"
	case s.t.Failed():
		status = "FAIL"
	}
	obs := strings.Join(s.observed, "; ")
	if len(s.problems) > 0 {
		p := s.problems
		if len(p) > 3 {
			p = append(p[:3:3], fmt.Sprintf("(and %d more)", len(s.problems)-3))
		}
		if obs != "" {
			obs += " — "
		}
		obs += "PROBLEMS: " + strings.Join(p, " / ")
	}
	if status == "FAIL" && len(s.problems) == 0 {
		obs += " — the test failed before it could record why (see go test output)"
	}
	resultsMu.Lock()
	results = append(results, row{Scenario: s.name, Expected: s.expected, Observed: obs, Status: status,
		Details: s.details})
	resultsMu.Unlock()
}

// Observe adds a fact to the observed column.
func (s *scenario) Observe(format string, args ...any) {
	s.mu.Lock()
	s.observed = append(s.observed, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// Detail adds a line to the scenario's section below the table.
func (s *scenario) Detail(format string, args ...any) {
	s.mu.Lock()
	s.details = append(s.details, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// Errorf fails the test and records the problem in the table.
func (s *scenario) Errorf(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.problems = append(s.problems, oneLine(msg, 300))
	s.mu.Unlock()
	s.t.Error(msg)
}

// Fatalf fails and stops the test, recording the problem.
func (s *scenario) Fatalf(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.problems = append(s.problems, oneLine(msg, 300))
	s.mu.Unlock()
	s.t.Fatal(msg)
}

// Skipf skips the test and says why in the table.
func (s *scenario) Skipf(format string, args ...any) {
	s.t.Helper()
	s.Observe("skipped: "+format, args...)
	s.t.Skipf(format, args...)
}

// oneLine squeezes s onto one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}

// writeResults writes the table: to docs/RESULTS.md after a full run, to
// $E2E_RESULTS when set, and nowhere after a filtered run.
func writeResults(wall time.Duration, code int) error {
	path := os.Getenv("E2E_RESULTS")
	filtered := false
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			filtered = true
		}
	}
	if path == "" {
		if filtered {
			fmt.Fprintln(os.Stderr, "e2e: filtered run: docs/RESULTS.md left as it is (set E2E_RESULTS=FILE to write this run's table)")
			return nil
		}
		path = filepath.Join(repoRoot, "docs", "RESULTS.md")
	}
	resultsMu.Lock()
	rows := append([]row(nil), results...)
	resultsMu.Unlock()
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Scenario < rows[j].Scenario })

	count := map[string]int{}
	for _, r := range rows {
		count[r.Status]++
	}
	var b strings.Builder
	b.WriteString("# End-to-end results\n\n")
	b.WriteString("Generated by `go test -tags e2e ./e2e/` (package e2e, see e2e/doc.go) from its own run; do not edit by hand.\n\n")
	fmt.Fprintf(&b, "- run: %s, %s, %s/%s, %d CPUs\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(&b, "- suite wall time: %s (go test exit %d)\n", wall.Round(time.Second), code)
	fmt.Fprintf(&b, "- scenarios: %d passed, %d failed, %d skipped\n", count["PASS"], count["FAIL"], count["SKIP"])
	if filtered {
		b.WriteString("- filtered run: only the scenarios selected by -run are listed\n")
	}
	b.WriteString("\n| scenario | expected | observed | result |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(r.Scenario), cell(r.Expected), cell(r.Observed), r.Status)
	}
	var detailed []row
	for _, r := range rows {
		if len(r.Details) > 0 {
			detailed = append(detailed, r)
		}
	}
	if len(detailed) > 0 {
		b.WriteString("\n## Details\n")
		for _, r := range detailed {
			fmt.Fprintf(&b, "\n### %s\n\n", r.Scenario)
			for _, d := range r.Details {
				b.WriteString(d + "\n")
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.Join(strings.Fields(s), " ")
}
