package plan

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/steps"
)

func live(id string, hist ...steps.HistoryEntry) *steps.State {
	return &steps.State{LatestKind: "link", Latest: id, LatestLink: "builds/" + id, Builds: []string{id},
		Marker: steps.Marker{Release: id, Checksum: "sha256:" + id}, History: hist}
}

func at(id string, hour int) steps.HistoryEntry {
	return steps.HistoryEntry{Time: time.Date(2026, 1, 1, hour, 0, 0, 0, time.UTC), Action: "deploy", Release: id}
}

// The fleet's build is the one most hosts run; a tie goes to the build that
// went live last, then to the newer ID, whatever the inventory order.
func TestFleetBuild(t *testing.T) {
	const A, B = "20260101-000000", "20260102-000000"
	for _, tc := range []struct {
		name    string
		targets []Target
		want    string
	}{
		{"none live", []Target{target("a", &steps.State{}), target("b", nil)}, ""},
		{"most hosts", []Target{target("a", live(A)), target("b", live(B)), target("c", live(B))}, B},
		{"most hosts, older", []Target{target("a", live(B)), target("b", live(A)), target("c", live(A))}, A},
		{"tie: live last", []Target{target("a", live(B, at(B, 1))), target("b", live(A, at(A, 2)))}, A},
		{"tie: live last, other order", []Target{target("b", live(A, at(A, 2))), target("a", live(B, at(B, 1)))}, A},
		{"tie, no history: newer ID", []Target{target("a", live(A)), target("b", live(B))}, B},
		{"tie, no history, other order", []Target{target("b", live(B)), target("a", live(A))}, B},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := FleetBuild(tc.targets); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAssess(t *testing.T) {
	const A, B = "20260101-000000", "20260102-000000"
	odd := live(B)
	odd.Marker.Checksum = "sha256:other"
	dirty := live(B)
	dirty.Dirty = []string{"a.php", "b.php", "c.php", "d.php"}
	leftovers := live(B)
	leftovers.Staging = []string{"20260103-000000"}
	for _, tc := range []struct {
		name     string
		st       *steps.State
		failed   error
		verified []string
		problems []string // substrings, in order
		notes    []string
	}{
		{"in line", live(B), nil, nil, nil, nil},
		{"drift", live(A), nil, nil, []string{"DRIFT: the fleet runs " + B}, nil},
		{"unreachable", nil, errors.New("no route"), nil, []string{"unreachable"}, nil},
		{"checksum", odd, nil, nil, []string{"DRIFT: checksum sha256:other differs from other hosts on " + B}, nil},
		{"dirty", dirty, nil, nil, []string{"DRIFT: 4 files changed on the host since the deploy (a.php, b.php, c.php, ...)"}, nil},
		{"verify", live(B), nil, []string{"x.php: FAILED"}, []string{"DRIFT: 1 files differ from the build's manifest (x.php: FAILED)"}, nil},
		{"directory", &steps.State{LatestKind: "dir"}, nil, nil, []string{"latest is a real directory"}, nil},
		{"leftovers", leftovers, nil, nil, nil, []string{"leftovers of an unfinished run"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets := []Target{target("a", live(B)), target("b", live(B)), target("x", tc.st)}
			failed := map[string]error{}
			if tc.failed != nil {
				failed["x"] = tc.failed
			}
			st := Assess(targets, failed, tc.verified != nil, map[string][]string{"x": tc.verified})
			if st.FleetBuild != B {
				t.Errorf("fleet build %s", st.FleetBuild)
			}
			var probs []string
			for _, p := range st.Problems() {
				if strings.HasPrefix(p, "x: ") {
					probs = append(probs, p)
				}
			}
			if len(probs) != len(tc.problems) {
				t.Fatalf("problems %q, want %q", probs, tc.problems)
			}
			for i, p := range tc.problems {
				if !strings.HasPrefix(probs[i], "x: "+p) {
					t.Errorf("problem %q, want %q", probs[i], p)
				}
			}
			notes := strings.Join(st.Hosts[2].Notes, "; ")
			for _, n := range tc.notes {
				if !strings.Contains(notes, n) {
					t.Errorf("notes %q lack %q", notes, n)
				}
			}
		})
	}
}
