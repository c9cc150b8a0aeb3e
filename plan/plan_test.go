package plan

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/golden"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

func hist(ids ...string) []steps.HistoryEntry {
	var out []steps.HistoryEntry
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, id := range ids {
		out = append(out, steps.HistoryEntry{Time: t0.Add(time.Duration(i) * time.Hour), Action: "deploy", Release: id})
	}
	return out
}

func TestCleanupKeepsLiveAndPreviousByHistory(t *testing.T) {
	// Names sort differently from live order: a laptop with a wrong clock made "C".
	const A, B, C, D, N = "20260101-000000", "20260102-000000", "20250101-000000", "20260104-000000", "20260105-000000"
	st := &steps.State{
		Latest:  D,
		Builds:  []string{C, A, B, D, "20260103-000000"},
		History: hist(A, B, C, D),
	}
	remove, notes := cleanup(st, N, 2)
	slices.Sort(remove)
	if strings.Join(remove, " ") != C+" "+A+" "+B {
		t.Errorf("remove %v, want A B C (keep the new build and D)", remove)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "20260103-000000") {
		t.Errorf("a build outside the history must be left alone and mentioned: %v", notes)
	}
	// keep 1 still keeps the previous build.
	remove, _ = cleanup(st, N, 1)
	for _, id := range remove {
		if id == D {
			t.Error("removed the previous build")
		}
	}
}

func target(name string, st *steps.State) Target {
	return Target{Host: inventory.Host{Name: name, Address: name, Port: 22, User: "u", Root: "/srv/app"}, State: st}
}

func TestRollbackTarget(t *testing.T) {
	const A, B, C = "20260101-000000", "20260102-000000", "20260103-000000"
	on := func(cur, prev string, builds ...string) *steps.State {
		return &steps.State{Latest: cur, Builds: builds, Marker: steps.Marker{Release: cur, Previous: prev}, History: hist(A, B, C)}
	}
	tests := []struct {
		name    string
		targets []Target
		to      string
		want    string
		err     string
	}{
		{"previous", []Target{target("a", on(C, B, A, B, C)), target("b", on(C, B, A, B, C))}, "", B, ""},
		{"majority wins after a split", []Target{target("a", on(C, B, A, B, C)), target("b", on(C, B, A, B, C)), target("c", on(B, A, A, B, C))}, "", B, ""},
		{"a host lacks it", []Target{target("a", on(C, B, A, B, C)), target("b", on(C, B, A, C))}, "", "", "b: planning: has no build " + B},
		{"no record", []Target{target("a", on(C, "", C))}, "", "", "roll back with --to"},
		{"to", []Target{target("a", on(C, B, A, B, C))}, A, A, ""},
		{"to missing", []Target{target("a", on(C, B, A, B, C))}, "20990101-000000", "", "has no build 20990101-000000"},
		{"to garbage", []Target{target("a", on(C, B, A, B, C))}, "../x", "", "not a build ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rollbackTarget(tt.targets, tt.to)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestChooseReleaseTakesNextFreeSecond(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 15, 0, 500, time.FixedZone("X", 3600))
	ts := []Target{
		target("a", &steps.State{Builds: []string{"20261125-091500"}}),
		target("b", &steps.State{Staging: []string{"20261125-091501"}, History: hist("20261125-091502")}),
	}
	if got := ChooseRelease(now, ts); got != "20261125-091503" {
		t.Errorf("got %s", got)
	}
}

func testEnv() *inventory.Environment {
	return &inventory.Environment{
		Name: "production", App: "shop", Root: "/srv/shop", Keep: 2,
		Shared: []inventory.SharedPath{{Path: "storage/sessions", Dir: true}, {Path: ".env"}},
		Hooks: inventory.Hooks{
			BeforeCutover: []inventory.Hook{{Run: "php artisan migrate --force", Once: true}, {Run: `echo "it's $HOME"`}},
			AfterCutover:  []inventory.Hook{{Run: "sudo systemctl reload php8.2-fpm"}},
		},
	}
}

func TestDeployPlanGolden(t *testing.T) {
	const A, B = "20261124-090000", "20261124-100000"
	now := time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)
	st := func() *steps.State {
		return &steps.State{RootExists: true, LatestKind: "link", Latest: B, LatestLink: "builds/" + B, Builds: []string{A, B},
			History: hist(A, B), Marker: steps.Marker{Release: B, Previous: A}}
	}
	targets := []Target{target("web2.example.com:2222", st()), target("web1.example.com", st())}
	p, err := Deploy(withHosts(testEnv(), targets), targets, ChooseRelease(now, targets), Build{Checksum: "sha256:0123"}, steps.Holder{By: "alice@laptop", Run: "0123456789ab", Lease: 2 * time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	Print(&b, p)
	golden.Check(t, t.Name(), b.Bytes())
	if w := p.Phase("locking").Waves; w[0][0] != "web1.example.com" {
		t.Errorf("lock order %v: want sorted by user@address:port", w)
	}
	// The once hook is planned on the first host in inventory order only.
	if !strings.Contains(strings.Join(p.Phase("preparing").Ops("web2.example.com:2222"), "\n"), "migrate") ||
		strings.Contains(strings.Join(p.Phase("preparing").Ops("web1.example.com"), "\n"), "migrate") {
		t.Error("once hook on the wrong host")
	}
}

func TestPlanRefusesBeforeWritingAnything(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)
	targets := []Target{
		target("a", &steps.State{LatestKind: "dir"}),
		target("b", &steps.State{Lock: &steps.LockInfo{Text: "bob@x, up 1, since 2", Holder: steps.ParseHolder("bob@x, up 1, since 2")}}),
		target("c", &steps.State{NoShared: []string{".env"}}),
	}
	_, err := Deploy(withHosts(testEnv(), targets), targets, "20261125-101500", Build{}, steps.Holder{By: "me"}, now)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"a: checking layout: /srv/app/latest is a real directory",
		"b: checking lock: locked by another deploy: bob@x, up 1, since 2; if that run is dead: fleetdeploy unlock production",
		"c: checking shared files: shared file .env is missing: create /srv/app/shared/.env",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if lines := strings.Count(msg, "\n") + 1; lines != 3 {
		t.Errorf("want one line per host, got:\n%s", msg)
	}
}

// withHosts gives env the targets' hosts, as an environment read from an
// inventory has them.
func withHosts(env *inventory.Environment, targets []Target) *inventory.Environment {
	for _, t := range targets {
		env.Hosts = append(env.Hosts, t.Host)
	}
	return env
}
