package steps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
)

// History lines of every version read back: older ones (4 fields, "deploy"
// for an up), today's (6), a later version's (more); others are skipped.
func TestHistoryReadsEveryVersion(t *testing.T) {
	const A, B = "20260101-000000", "20260102-000000"
	e := HistoryEntry{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Action: ActionRevert, Release: A, By: "me@x pid 7", Previous: B, Source: "git 0123\tdirty"}
	text := strings.Join([]string{
		"2026-01-01T00:00:00Z\tdeploy\t" + A + "\tolder@x",
		strings.TrimSuffix(e.line(), "\n"),
		"2026-01-03T00:00:00Z\tup\t" + B + "\tlater@x\t" + A + "\tsha256:ab\tsome-future-field",
		"2026-01-04T00:00:00Z\tup\tnot-a-build\tx",
		"garbage",
		"2026-01-05T00:00:00Z\tup",
	}, "\n") + "\n"
	var st State
	st.readHistory([]byte(text), false)
	if len(st.History) != 3 {
		t.Fatalf("read %d entries: %+v", len(st.History), st.History)
	}
	old, now, later := st.History[0], st.History[1], st.History[2]
	if old.Kind() != ActionUp || old.Previous != "" || old.Source != "" || old.By != "older@x" {
		t.Errorf("older line: %+v", old)
	}
	want := e
	want.Source = "git 0123 dirty" // a tab cannot end the field early
	if now != want {
		t.Errorf("read back %+v, want %+v", now, want)
	}
	if later.Previous != A || later.Source != "sha256:ab" {
		t.Errorf("later line: %+v", later)
	}
}

func TestMarkerSourceReadsBack(t *testing.T) {
	m := marker("20260101-000000")
	m.Source = "git 0123abcd+dirty"
	var got Marker
	for _, line := range strings.Split(m.text(), "\n") {
		got.set(line)
	}
	if got.Source != m.Source {
		t.Errorf("source %q, want %q", got.Source, m.Source)
	}
	m.Source = ""
	if strings.Contains(m.text(), "source=") {
		t.Errorf("an unknown source is written: %q", m.text())
	}
}

func probe(run string, timeout, interval time.Duration) Probe {
	return HealthCheck(Layout{Root: "/"}, "x", inventory.HealthCheck{Run: run, Timeout: timeout, Interval: interval}, nil).Ops[0].(Probe)
}

func TestProbe(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	third := `n=$(cat "` + count + `" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "` + count + `"; echo "try $n"; [ $n -ge 3 ]`
	for _, tc := range []struct {
		name    string
		run     string
		timeout time.Duration
		err     string // "" passes
		tries   int
	}{
		{"passes at once", "true", time.Second, "", 0},
		{"passes on the third try", third, 5 * time.Second, "", 0},
		{"never passes", `echo line0; echo line1; echo line2; echo 'line3: 503'; exit 4`, 300 * time.Millisecond, "last: exit 4: line1 / line2 / line3: 503", 2},
		{"hangs", "sleep 10", 300 * time.Millisecond, "still running when the 300ms ran out (killed on the host)", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(count)
			p := probe(tc.run, tc.timeout, 20*time.Millisecond)
			p.Cmd.Dir = dir
			var out strings.Builder
			start := time.Now()
			err := p.Run(t.Context(), &localHost{}, &syncWriter{w: &out})
			if tc.err == "" {
				if err != nil {
					t.Fatalf("%v (output %q)", err, out.String())
				}
				if tc.run == third && !strings.Contains(out.String(), "try 3") {
					t.Errorf("output %q", out.String())
				}
				return
			}
			var pe *ProbeError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.err) || pe.Tries < tc.tries {
				t.Fatalf("error %v (tries %v), want %q after %d tries or more", err, pe, tc.err, tc.tries)
			}
			if took := time.Since(start); took > tc.timeout+2*time.Second {
				t.Errorf("took %s with a timeout of %s", took, tc.timeout)
			}
		})
	}
	// Ctrl-C stops a probe between two tries and during one.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err := probe("sleep 10", time.Minute, time.Second).Run(ctx, &localHost{}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled during a try: %v", err)
	}
}

// syncWriter takes a command's stdout and stderr, written from two goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// The revert's record and bad mark read back; the bad mark goes with its
// build when cleanup removes it.
func TestRevertRecordAndBadMark(t *testing.T) {
	const A, B = "20260101-000000", "20260102-000000"
	root := t.TempDir()
	l := Layout{Root: root}
	for _, id := range []string{A, B} {
		write(t, filepath.Join(l.Build(id), "index.php"), id)
		write(t, l.Marker(id), marker(id).text())
	}
	os.Symlink(LinkTarget(A), l.Latest())
	h := &localHost{}
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	if err := run(t, h, RecordLive(l, HistoryEntry{Time: now, Action: ActionUp, Release: B, By: "me", Previous: A, Source: "git b"})); err != nil {
		t.Fatal(err)
	}
	rev := HistoryEntry{Time: now, Action: ActionRevert, Release: A, By: "me", Previous: B}
	if err := run(t, h, RecordRevert(l, rev, B, "failed its health check\non web2")); err != nil {
		t.Fatal(err)
	}
	st, err := Look(t.Context(), h, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Bad, []string{B}) || !st.IsBad(B) || st.IsBad(A) {
		t.Errorf("bad %v", st.Bad)
	}
	if len(st.History) != 2 || st.History[1] != rev || st.History[0].Source != "git b" {
		t.Errorf("history %+v", st.History)
	}
	if b, _ := os.ReadFile(l.BadMark(B)); string(b) != "failed its health check on web2" {
		t.Errorf("bad mark %q", b)
	}
	if err := run(t, h, Finish(l, Finishing{Live: A, Remove: []string{B}})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(l.BadMark(B)); !os.IsNotExist(err) {
		t.Errorf("bad mark left after its build went: %v", err)
	}
}
