package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// The build's source goes into its marker on every host.
func TestDeployRecordsTheSourceInTheMarker(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)
	targets := []Target{target("a", &steps.State{}), target("b", &steps.State{})}
	src := "git 0123456789abcdef0123456789abcdef01234567 (v1.2)"
	p, err := Deploy(withHosts(testEnv(), targets), targets, "20261125-101500", Build{Checksum: "sha256:0123", Source: src}, steps.Holder{By: "me"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a", "b"} {
		if ops := strings.Join(p.Phase("preparing").Ops(h), "\n"); !strings.Contains(ops, "source="+src) {
			t.Errorf("%s: the marker lacks the source:\n%s", h, ops)
		}
	}
}

// A shared path that leads through a symlink of the build is refused at plan
// time, each one named with its link; a shared path that is a link itself,
// or none at all, is not.
func TestSharedPathThroughABuildSymlinkRefused(t *testing.T) {
	m := &build.Manifest{Entries: []build.Entry{
		{Type: 'f', Path: ".env"},
		{Type: 'l', Path: "config", Target: "/etc/app"},
		{Type: 'd', Path: "public"},
		{Type: 'l', Path: "public/files", Target: "../data"},
		{Type: 'l', Path: "storage", Target: "var/storage"},
		{Type: 'd', Path: "var"},
	}}
	now := time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		shared []inventory.SharedPath
		m      *build.Manifest
		want   []string // "" : no error
	}{
		{"through links", []inventory.SharedPath{{Path: "storage/sessions", Dir: true}, {Path: "config/app.ini"}, {Path: ".env"}}, m,
			[]string{"shared path storage/sessions leads through storage, a symlink of the build (-> var/storage)", "shared path config/app.ini leads through config, a symlink of the build (-> /etc/app)"}},
		{"the link itself", []inventory.SharedPath{{Path: "public/files", Dir: true}, {Path: "config"}}, m, nil},
		{"manifest unknown (dry run)", []inventory.SharedPath{{Path: "storage/sessions", Dir: true}}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testEnv()
			env.Shared = tc.shared
			targets := []Target{target("a", &steps.State{})}
			_, err := Deploy(withHosts(env, targets), targets, "20261125-101500", Build{Checksum: "sha256:0123", Manifest: tc.m}, steps.Holder{By: "me"}, now)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("not refused")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
				t.Errorf("want one line per path, got:\n%v", err)
			}
		})
	}
}
