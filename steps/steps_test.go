package steps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
)

func TestLinkShared(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root with 'quote'")
	l := Layout{Root: root}
	id := "20261125-101500"
	b := l.Build(id)
	write(t, filepath.Join(b, "storage", "sessions", "seed"), "from build")
	write(t, filepath.Join(b, ".env"), "LAPTOP SECRET")
	write(t, filepath.Join(l.Shared(), ".env"), "HOST SECRET")
	shared := []inventory.SharedPath{{Path: "storage/sessions", Dir: true}, {Path: ".env"}, {Path: "public/uploads", Dir: true}}
	s, ok := LinkShared(l, id, shared)
	if !ok {
		t.Fatal("no step")
	}
	h := &localHost{}
	if err := run(t, h, s); err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{
		"storage/sessions": "../../../shared/storage/sessions",
		".env":             "../../shared/.env",
		"public/uploads":   "../../../shared/public/uploads",
	} {
		got, err := os.Readlink(filepath.Join(b, link))
		if err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(l.Shared(), "storage", "sessions", "seed")); string(data) != "from build" {
		t.Error("a missing shared directory was not seeded from the build")
	}
	if data, _ := os.ReadFile(filepath.Join(l.Shared(), ".env")); string(data) != "HOST SECRET" {
		t.Errorf("the shared file was replaced: %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(b, ".env")); string(data) != "HOST SECRET" {
		t.Errorf("the build's .env does not reach the host's: %q", data)
	}

	// A second build: the shared directory exists, so it is not seeded again.
	id2 := "20261125-101501"
	write(t, filepath.Join(l.Build(id2), "storage", "sessions", "other"), "new seed")
	s2, _ := LinkShared(l, id2, shared)
	if err := run(t, h, s2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Shared(), "storage", "sessions", "other")); err == nil {
		t.Error("shared directory seeded twice")
	}
}

func TestLinkSharedMissingFileFails(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	id := "20261125-101500"
	write(t, filepath.Join(l.Build(id), ".env"), "LAPTOP SECRET")
	s, _ := LinkShared(l, id, []inventory.SharedPath{{Path: ".env"}})
	err := run(t, &localHost{}, s)
	if err == nil || !strings.Contains(err.Error(), "shared file .env is missing") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Shared(), ".env")); err == nil {
		t.Error("the build's .env was shipped into shared/")
	}
}

func TestPublishRecordAndInspect(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	id := "20261125-101500"
	write(t, filepath.Join(l.Staging(id), "index.php"), "x")
	write(t, l.Staging(id)+".manifest", "f\t0644\t1\t"+strings.Repeat("0", 64)+"\tindex.php\n")
	m := Marker{Release: id, Checksum: "sha256:ab", Previous: "", Created: "now", By: "me\nwith newline"}
	if err := run(t, h, Publish(l, m)); err != nil {
		t.Fatal(err)
	}
	if err := run(t, h, Publish(l, m)); err == nil {
		t.Error("publishing over an existing build succeeded")
	}
	st, err := Inspect(t.Context(), h, l.Root, []string{".env"})
	if err != nil {
		t.Fatal(err)
	}
	if !st.HasBuild(id) || len(st.Pending) != 1 || st.Latest != "" || len(st.NoShared) != 1 {
		t.Fatalf("state after publish: %+v", st)
	}
	if err := run(t, h, Stage(l, id, "")); err != nil {
		t.Fatal(err)
	}
	if err := run(t, h, Swap(l, false)); err != nil {
		t.Fatal(err)
	}
	e := HistoryEntry{Time: time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC), Action: "deploy", Release: id, By: "me\tand"}
	if err := run(t, h, Record(l, e)); err != nil {
		t.Fatal(err)
	}
	st, err = Inspect(t.Context(), h, l.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Latest != id || st.LatestLink != "builds/"+id || len(st.Pending) != 0 || len(st.History) != 1 || st.Marker.Checksum != "sha256:ab" || st.Marker.By != "me with newline" {
		t.Fatalf("state after cutover: %+v", st)
	}
	if !st.WentLive(id) || st.History[0].By != "me and" {
		t.Errorf("history: %+v", st.History)
	}
}

func TestLockIsExclusive(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	st, err := Inspect(t.Context(), h, l.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(t, h, Lock(l, "alice", st.Fingerprint())); err != nil {
		t.Fatal(err)
	}
	err = run(t, h, Lock(l, "bob", st.Fingerprint()))
	var le *LockedError
	if !errorsAs(err, &le) || le.Holder != "alice" {
		t.Fatalf("second lock: %v", err)
	}
	if err := run(t, h, Unlock(l, "bob")); err == nil {
		t.Error("bob removed alice's lock")
	}
	if err := run(t, h, Unlock(l, "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(l.Lock()); err == nil {
		t.Error("lock still there")
	}
}

func TestLockNoticesChangeSincePlanning(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	st, _ := Inspect(t.Context(), h, l.Root, nil)
	write(t, filepath.Join(l.Build("20261125-101500"), "x"), "a concurrent deploy was here")
	if err := run(t, h, Lock(l, "me", st.Fingerprint())); err == nil || !strings.Contains(err.Error(), "changed between planning and locking") {
		t.Fatalf("got %v", err)
	}
}

func TestLeftoversNeverTouchTheLiveBuild(t *testing.T) {
	l := Layout{Root: "/r"}
	st := &State{
		Latest:  "20261125-101500",
		Pending: []string{"20261125-101500", "20261125-101501", "not-a-build"},
		Staging: []string{"20261125-101502"},
		History: []HistoryEntry{{Release: "20261125-101400"}},
	}
	s, ok := Leftovers(l, st)
	if !ok {
		t.Fatal("no step")
	}
	got := s.Ops[0].Desc
	want := `'rm' '-rf' '--' '/r/.fleetdeploy/staging/20261125-101502' '/r/builds/20261125-101501' '/r/.fleetdeploy/builds/20261125-101501' '/r/.fleetdeploy/pending/20261125-101501' '/r/.fleetdeploy/next' '/r/.fleetdeploy/back'`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestParseStateIgnoresForeignNames(t *testing.T) {
	out := "root\tok\nlatest\tlink\t../../etc\nentry\tbuilds/20261125-101500\nentry\tbuilds/old copy\nentry\tbuilds/x\ty\n" +
		"history\tnot-a-time\tdeploy\t20261125-101500\tme\nhistory\t2026-11-25T10:15:00Z\tdeploy\t../../x\tme\ngarbage\n"
	st := parseState([]byte(out))
	if st.Latest != "" || st.LatestLink != "../../etc" {
		t.Errorf("latest outside builds/ taken as a build: %+v", st)
	}
	if len(st.Builds) != 1 || len(st.Foreign) != 1 || len(st.History) != 0 {
		t.Errorf("state: %+v", st)
	}
}
