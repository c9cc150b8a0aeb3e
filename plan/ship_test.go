package plan

import (
	"slices"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

func manifest(files map[string]string) *build.Manifest {
	m := &build.Manifest{}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		m.Entries = append(m.Entries, build.Entry{Type: 'f', Mode: 0o644, Size: 1, Sum: files[n] + "000000000000000000000000000000000000000000000000000000000000000"[:64-len(files[n])], Path: n})
	}
	return m
}

func TestShip(t *testing.T) {
	const L = "20260101-000000"
	old := manifest(map[string]string{"a": "1", "b": "2", "c": "3", "storage/x": "4"})
	m := manifest(map[string]string{"a": "1", "b": "9", "c": "3", "d": "5", "storage/x": "4"})
	plain := &inventory.Environment{}
	hooks := &inventory.Environment{Hooks: inventory.Hooks{AfterCutover: []inventory.Hook{{Run: "x"}}}}
	shared := &inventory.Environment{Shared: []inventory.SharedPath{{Path: "storage", Dir: true}}}
	st := &steps.State{Latest: L, Manifest: "sha256:x"}
	for _, tc := range []struct {
		name         string
		env          *inventory.Environment
		old          *build.Manifest
		dirty        []string
		compress     bool
		from         string
		copy, gz     bool
		send, reused []string
	}{
		{"delta, links", plain, old, nil, false, L, false, true, []string{"b", "d"}, []string{"a", "c", "storage/x"}},
		{"delta, copies with hooks", hooks, old, nil, false, L, true, true, []string{"b", "d"}, []string{"a", "c", "storage/x"}},
		{"dirty file sent again", plain, old, []string{"a"}, false, L, false, true, []string{"a", "b", "d"}, []string{"c", "storage/x"}},
		{"shared folder on the host: its files neither sent nor reused", shared, old, nil, false, L, false, true, []string{"b", "d"}, []string{"a", "c"}},
		{"no old manifest: whole", plain, nil, nil, false, "", false, false, []string{"a", "b", "c", "d", "storage/x"}, nil},
		{"whole, compressed when asked", plain, nil, nil, true, "", false, true, []string{"a", "b", "c", "d", "storage/x"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Ship(m, tc.env, st, tc.old, tc.dirty, tc.compress)
			if s.From != tc.from || s.Copy != tc.copy || s.Gzip != tc.gz {
				t.Errorf("from %q copy %v gzip %v, want %q %v %v", s.From, s.Copy, s.Gzip, tc.from, tc.copy, tc.gz)
			}
			if s.Transfer.Link != (tc.from != "" && !tc.copy) {
				t.Errorf("link %v", s.Transfer.Link)
			}
			send := slices.Sorted(func(yield func(string) bool) {
				for p := range s.Transfer.Send {
					if !yield(p) {
						return
					}
				}
			})
			reused := slices.Sorted(func(yield func(string) bool) {
				for p := range s.Transfer.Reused {
					if !yield(p) {
						return
					}
				}
			})
			if !slices.Equal(send, tc.send) || !slices.Equal(reused, tc.reused) {
				t.Errorf("send %v reused %v, want %v %v", send, reused, tc.send, tc.reused)
			}
		})
	}
}

// Hosts alike share one decision; a host on another build gets its own.
func TestShipAll(t *testing.T) {
	old := manifest(map[string]string{"a": "1", "b": "2"})
	m := manifest(map[string]string{"a": "1", "b": "3"})
	const L, K = "20260101-000000", "20260102-000000"
	targets := []Target{
		target("a", &steps.State{Latest: L, Manifest: "sha256:o"}),
		target("b", &steps.State{Latest: L, Manifest: "sha256:o"}),
		target("c", &steps.State{Latest: K, Manifest: "sha256:o"}),
		target("d", &steps.State{Latest: L, Manifest: "sha256:unread"}),
	}
	got := ShipAll(m, &inventory.Environment{}, targets, map[string]*build.Manifest{"sha256:o": old}, false)
	if got["a"].From != L || got["b"].From != L || got["c"].From != K {
		t.Errorf("from: %+v", got)
	}
	if got["d"].From != "" || !got["d"].Transfer.Full {
		t.Errorf("a host whose manifest could not be read gets the whole build: %+v", got["d"])
	}
}
