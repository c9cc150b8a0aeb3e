package steps

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"golang.org/x/crypto/blake2b"
)

// fullPayload is a payload carrying every file, as the build makes it for a
// host without a usable previous build: the files, then the manifest.
func fullPayload(t *testing.T, files map[string]string) Payload {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var manifest strings.Builder
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
		manifest.WriteString(manifestLine(n, files[n]))
	}
	tw.WriteHeader(&tar.Header{Name: ".fleetdeploy-manifest", Mode: 0o600, Size: int64(manifest.Len()), Typeflag: tar.TypeReg})
	tw.Write([]byte(manifest.String()))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	return Payload{
		Open:        func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		ManifestSum: fmt.Sprintf("%x", blake2b.Sum256([]byte(manifest.String()))),
		Sent:        len(files),
	}
}

// manifestLine is a regular file's manifest entry, as the build writes it.
func manifestLine(name, body string) string {
	return fmt.Sprintf("f\t0644\t%d\t%x\t%s\n", len(body), sha256.Sum256([]byte(body)), name)
}

func marker(id string) Marker {
	return Marker{Release: id, Checksum: "sha256:ab", Created: "now", By: "me\nwith newline"}
}

func TestPrepareLinksShared(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root with 'quote'")
	l := Layout{Root: root}
	id := "20261125-101500"
	b := l.Build(id)
	write(t, filepath.Join(l.Shared(), ".env"), "HOST SECRET")
	shared := []inventory.SharedPath{{Path: "storage/sessions", Dir: true}, {Path: ".env"}, {Path: "public/uploads", Dir: true}}
	h := &localHost{}
	p := fullPayload(t, map[string]string{"storage/sessions/seed": "from build", ".env": "LAPTOP SECRET", "index.php": "x"})
	if err := run(t, h, Prepare(l, marker(id), p, shared)); err != nil {
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
	if data, _ := os.ReadFile(l.Marker(id) + ".stat"); !strings.Contains(string(data), "index.php\t1\t") {
		t.Errorf("file identities not recorded: %q", data)
	}
	entries, _ := os.ReadDir(filepath.Join(l.Meta(), "staging"))
	if len(entries) != 0 {
		t.Errorf("staging leftovers: %v", entries)
	}

	// A second build: the shared directory exists, so it is not seeded again.
	id2 := "20261125-101501"
	p2 := fullPayload(t, map[string]string{"storage/sessions/other": "new seed", "index.php": "y"})
	if err := run(t, h, Prepare(l, marker(id2), p2, shared)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Shared(), "storage", "sessions", "other")); err == nil {
		t.Error("shared directory seeded twice")
	}
}

// A failure anywhere in the prepare step is undone completely, and the undo
// of a run never removes a build it did not make.
func TestPrepareFailuresAreUndone(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	id := "20261125-101500"
	p := fullPayload(t, map[string]string{".env": "LAPTOP SECRET", "index.php": "x"})
	s := Prepare(l, marker(id), p, []inventory.SharedPath{{Path: ".env"}})
	err := run(t, h, s)
	if err == nil || !strings.Contains(err.Error(), "shared file .env is missing") || !strings.Contains(err.Error(), "while linking shared paths") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Shared(), ".env")); err == nil {
		t.Error("the build's .env was shipped into shared/")
	}
	if err := RunOps(t.Context(), h, s.Undo, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{l.Builds(), filepath.Join(l.Meta(), "builds"), filepath.Join(l.Meta(), "pending"), filepath.Join(l.Meta(), "staging")} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s after undo: %v", dir, entries)
		}
	}

	// A corrupt manifest (not the build's digest) is refused.
	bad := p
	bad.ManifestSum = strings.Repeat("0", 64)
	s = Prepare(l, marker(id), bad, nil)
	if err := run(t, h, s); err == nil || !strings.Contains(err.Error(), "the manifest received does not match the build's") {
		t.Fatalf("got %v", err)
	}
	RunOps(t.Context(), h, s.Undo, nil, nil)

	// Another run's build of the same ID is refused, and this run's undo keeps it.
	if err := run(t, h, Prepare(l, marker(id), p, nil)); err != nil {
		t.Fatal(err)
	}
	other := marker(id)
	other.By = "someone else"
	s = Prepare(l, other, p, nil)
	if err := run(t, h, s); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("preparing over an existing build: %v", err)
	}
	if err := RunOps(t.Context(), h, s.Undo, nil, nil); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(l.Build(id), "index.php")); err != nil || string(data) != "x" {
		t.Errorf("the undo of a refused run removed another run's build: %q %v", data, err)
	}
}

// deltaPayload is what the build sends a host whose live build has the files
// of old: the changed and new files, hard-link entries for the others, the
// delta of the manifest and the checksums; skip lists the old files not reused.
func deltaPayload(t *testing.T, from string, old, files map[string]string, resend ...string) Payload {
	t.Helper()
	var names, skip []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for n, body := range old {
		if b, ok := files[n]; !ok || b != body || slices.Contains(resend, n) {
			skip = append(skip, n)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var manifest, delta, sums strings.Builder
	for _, n := range names {
		manifest.WriteString(manifestLine(n, files[n]))
		if b, ok := old[n]; ok && b == files[n] && !slices.Contains(resend, n) {
			tw.WriteHeader(&tar.Header{Name: n, Linkname: n, Mode: 0o644, Typeflag: tar.TypeLink})
			continue
		}
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
		tw.Write([]byte(files[n]))
		delta.WriteString(manifestLine(n, files[n]))
		fmt.Fprintf(&sums, "%x  %s\n", blake2b.Sum256([]byte(files[n])), n)
	}
	for _, m := range [][2]string{{".fleetdeploy-upload.b2sum", sums.String()}, {".fleetdeploy-manifest.delta", delta.String()}} {
		tw.WriteHeader(&tar.Header{Name: m[0], Mode: 0o600, Size: int64(len(m[1])), Typeflag: tar.TypeReg})
		tw.Write([]byte(m[1]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	return Payload{
		Open:        func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		From:        from,
		Skip:        skip,
		ManifestSum: fmt.Sprintf("%x", blake2b.Sum256([]byte(manifest.String()))),
		Sent:        strings.Count(delta.String(), "\n"),
	}
}

// A delta makes the new build from the live one: reused files are hard links,
// the manifest and the identity record are those of a full upload, no
// temporary file is left; and when the manifest made does not match, the
// step fails naming it and its undo leaves only the live build.
func TestPrepareDelta(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	// Names that sort differently as numbers and as bytes.
	v1 := map[string]string{"9": "nine", "10": "ten", "a b/c.php": "c", "z.php": "z"}
	v2 := map[string]string{"9": "NINE", "10": "ten", "a b/c.php": "c", "new.php": "new"}
	id1, id2 := "20261125-101500", "20261125-101501"
	if err := run(t, h, Prepare(l, marker(id1), fullPayload(t, v1), nil)); err != nil {
		t.Fatal(err)
	}
	p := deltaPayload(t, id1, v1, v2)
	if err := run(t, h, Prepare(l, marker(id2), p, nil)); err != nil {
		t.Fatal(err)
	}
	for n, body := range v2 {
		if got, err := os.ReadFile(filepath.Join(l.Build(id2), n)); err != nil || string(got) != body {
			t.Errorf("%s holds %q (%v), want %q", n, got, err, body)
		}
	}
	if _, err := os.Stat(filepath.Join(l.Build(id2), "z.php")); err == nil {
		t.Error("a removed file is in the new build")
	}
	for _, n := range []string{"10", "a b/c.php"} {
		a, _ := os.Stat(filepath.Join(l.Build(id1), n))
		b, _ := os.Stat(filepath.Join(l.Build(id2), n))
		if a == nil || b == nil || !os.SameFile(a, b) {
			t.Errorf("%s was not hard-linked from the live build", n)
		}
	}
	if got, want := readFile(t, l.Marker(id2)+".manifest"), readFile(t, l.Marker(id1)+".manifest"); got == want {
		t.Error("the new manifest is the old one")
	}
	full := t.TempDir()
	if err := run(t, h, Prepare(Layout{Root: full}, marker(id2), fullPayload(t, v2), nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, l.Marker(id2)+".manifest"), readFile(t, Layout{Root: full}.Marker(id2)+".manifest"); got != want {
		t.Errorf("manifest made from the delta:\n%s\nwant (full upload):\n%s", got, want)
	}
	var fresh []string
	for _, n := range []string{"10", "9", "a b/c.php", "new.php"} {
		fi, err := os.Stat(filepath.Join(l.Build(id2), n))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		fresh = append(fresh, fmt.Sprintf("%s\t%d\t%d.%09d0\t%d", n, fi.Size(), st.Mtim.Sec, st.Mtim.Nsec, st.Ino))
	}
	var recorded []string
	for _, r := range strings.Split(strings.TrimSpace(readFile(t, l.Marker(id2)+".stat")), "\n") {
		recorded = append(recorded, strings.TrimPrefix(r, "./"))
	}
	sort.Strings(recorded)
	if strings.Join(recorded, "\n") != strings.Join(fresh, "\n") {
		t.Errorf("identities recorded:\n%s\nwant:\n%s", strings.Join(recorded, "\n"), strings.Join(fresh, "\n"))
	}
	if entries, _ := os.ReadDir(filepath.Join(l.Meta(), "staging")); len(entries) != 0 {
		t.Errorf("staging leftovers: %v", entries)
	}
	// tar runs under umask 0 (modes as the payload has them); the build's own
	// folder is made under the usual umask, never world-writable.
	u := syscall.Umask(0)
	syscall.Umask(u)
	for _, id := range []string{id1, id2} {
		if fi, err := os.Stat(l.Build(id)); err != nil || fi.Mode().Perm() != fs.FileMode(0o777&^u) {
			t.Errorf("builds/%s: mode %v (%v), want %v", id, fi.Mode().Perm(), err, fs.FileMode(0o777&^u))
		}
	}

	id3 := "20261125-101502"
	bad := deltaPayload(t, id2, v2, v1)
	bad.ManifestSum = strings.Repeat("0", 64)
	s := Prepare(l, marker(id3), bad, nil)
	if err := run(t, h, s); err == nil || !strings.Contains(err.Error(), "the build assembled here does not match the build's manifest") {
		t.Fatalf("a delta whose manifest does not match: %v", err)
	}
	if err := RunOps(t.Context(), h, s.Undo, nil, nil); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]int{l.Builds(): 2, filepath.Join(l.Meta(), "builds"): 6, filepath.Join(l.Meta(), "pending"): 2, filepath.Join(l.Meta(), "staging"): 0} {
		if entries, _ := os.ReadDir(dir); len(entries) != want {
			t.Errorf("%s after undo: %v, want %d entries", dir, entries, want)
		}
	}
}

// Linking the live build's files into the new one changes their ctime, as
// a hand edit would: the live build's record is re-dated once they are
// checked, so that a later look at that build (status after a rollback to
// it, a deploy from it) finds nothing to hash; a hand edit made before the
// deploy (mtime put back, ctime moved) leaves the record as it was, and is
// still found.
func TestPrepareResealsTheLiveRecord(t *testing.T) {
	for _, edited := range []bool{false, true} {
		l := Layout{Root: t.TempDir()}
		h := &localHost{}
		v1 := map[string]string{"a.php": "a", "b.php": "b", "c.php": "c"}
		v2 := map[string]string{"a.php": "A", "b.php": "b", "c.php": "c"}
		id1, id2 := "20261125-101500", "20261125-101501"
		if err := run(t, h, Prepare(l, marker(id1), fullPayload(t, v1), nil)); err != nil {
			t.Fatal(err)
		}
		// Past the clock's tick (ctimes move by 4 ms here): until a file
		// changed now is newer than the record, as the links below will be.
		sealed, err := os.Stat(l.Marker(id1) + ".stat")
		if err != nil {
			t.Fatal(err)
		}
		probe := filepath.Join(t.TempDir(), "probe")
		for {
			os.WriteFile(probe, nil, 0o644)
			fi, err := os.Stat(probe)
			if err != nil {
				t.Fatal(err)
			}
			c := fi.Sys().(*syscall.Stat_t).Ctim
			if time.Unix(c.Sec, c.Nsec).After(sealed.ModTime()) {
				break
			}
		}
		if edited {
			p := filepath.Join(l.Build(id1), "c.php")
			fi, _ := os.Stat(p)
			os.Chmod(p, 0o600) // the inode changes, size and mtime do not
			os.Chmod(p, fi.Mode())
		}
		if err := run(t, h, Prepare(l, marker(id2), deltaPayload(t, id1, v1, v2), nil)); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("find", l.Build(id1), "-type", "f", "-cnewer", l.Marker(id1)+".stat").Output()
		if err != nil {
			t.Fatal(err)
		}
		suspects := strings.Fields(string(out))
		if !edited && len(suspects) != 0 {
			t.Errorf("after linking, files newer than the live build's record: %v", suspects)
		}
		if edited && len(suspects) != 2 { // c.php, changed by hand; b.php, linked after it
			t.Errorf("a hand edit before the deploy: suspects %v, want b.php and c.php (the record stays as it was)", suspects)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPrepareRecordAndInspect(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	id := "20261125-101500"
	p := fullPayload(t, map[string]string{"index.php": "x"})
	if err := run(t, h, Prepare(l, marker(id), p, nil)); err != nil {
		t.Fatal(err)
	}
	st, err := Inspect(t.Context(), h, l.Root, []string{".env"})
	if err != nil {
		t.Fatal(err)
	}
	if !st.HasBuild(id) || len(st.Pending) != 1 || st.Latest != "" || len(st.NoShared) != 1 {
		t.Fatalf("state after publish: %+v", st)
	}
	if err := run(t, h, Stage(l, id, "", locked(t, h, l))); err != nil {
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
	man, err := os.ReadFile(l.Marker(id) + ".manifest")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("sha256:%x", sha256.Sum256(man)); st.Manifest != want || len(st.Dirty) != 0 {
		t.Errorf("manifest %q (want %q), dirty %v", st.Manifest, want, st.Dirty)
	}
	if got := fmt.Sprintf("%x", blake2b.Sum256(man)); got != p.ManifestSum {
		t.Errorf("the manifest on the host has BLAKE2b %s, the payload's is %s", got, p.ManifestSum)
	}
	// A second record appends.
	e.Action = "rollback"
	if err := run(t, h, Record(l, e)); err != nil {
		t.Fatal(err)
	}
	if st, _ = Inspect(t.Context(), h, l.Root, nil); len(st.History) != 2 || st.History[1].Action != "rollback" {
		t.Errorf("history after a second record: %+v", st.History)
	}
}

// holder is a run of name's, with the default lease.
func holder(name string) Holder {
	return NewHolder(name, DefaultLease).For("up", "20261125-101500", time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC))
}

func TestLockIsExclusive(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	st, err := Inspect(t.Context(), h, l.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := NewLease(l, holder("alice")), NewLease(l, holder("bob"))
	if err := run(t, h, Lock(alice, st)); err != nil {
		t.Fatal(err)
	}
	defer alice.halt()
	err = run(t, h, Lock(bob, st))
	var le *LockedError
	if !errorsAs(err, &le) || le.Lock.Holder.By != "alice" {
		t.Fatalf("second lock: %v", err)
	}
	// bob's undo leaves alice's lock alone, quietly: bob never held it.
	if err := RunOps(t.Context(), h, Lock(bob, st).Undo, nil, nil); err != nil {
		t.Errorf("undo of a lock never taken: %v", err)
	}
	if err := run(t, h, Unlock(bob)); err == nil || !strings.Contains(err.Error(), "held by alice") {
		t.Errorf("bob's unlock: %v", err)
	}
	if who, _ := os.Readlink(l.Lock()); who != alice.Holder.String() {
		t.Fatalf("lock now %q", who)
	}
	if err := run(t, h, Unlock(alice)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(l.Lock()); err == nil {
		t.Error("lock still there")
	}
}

// Two hosts of one inventory that reach the same root (one server under two
// names) meet this run's own lock: said so, not "locked by another deploy"
// with the advice to unlock; and the undos of both, racing to give the one
// lock back, both succeed.
func TestLockOfThisRunThroughAnotherHost(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		l := Layout{Root: t.TempDir()}
		if fresh {
			l.Root = filepath.Join(l.Root, "app")
		}
		h := &localHost{}
		st, err := Inspect(t.Context(), h, l.Root, nil)
		if err != nil {
			t.Fatal(err)
		}
		me := holder("me")
		web1, web1again := NewLease(l, me), NewLease(l, me)
		if err := run(t, h, Lock(web1, st)); err != nil {
			t.Fatal(err)
		}
		defer web1.halt()
		err = run(t, h, Lock(web1again, st))
		if err == nil || !strings.Contains(err.Error(), l.Root+" is locked by this very run, through another host of the inventory: two hosts reach the same root (one server under two names?); list it once") {
			t.Errorf("fresh %v: the second lock: %v", fresh, err)
		}
		for _, ls := range []*Lease{web1again, web1} {
			if err := RunOps(t.Context(), h, Lock(ls, st).Undo, nil, nil); err != nil {
				t.Errorf("fresh %v: undo: %v", fresh, err)
			}
		}
		if _, err := os.Lstat(l.Lock()); !os.IsNotExist(err) {
			t.Errorf("fresh %v: the lock is left: %v", fresh, err)
		}
	}
}

// A lock's text names its run and lease, and reads back.
func TestHolderReadsBack(t *testing.T) {
	h := holder("alice@laptop pid 7")
	got := ParseHolder(h.String())
	if got != h {
		t.Errorf("got %+v, want %+v", got, h)
	}
	old := ParseHolder("bob@x pid 3, up 20261125-101500, since 2026-11-25T10:15:00Z")
	if old.Lease != 0 || old.By == "" {
		t.Errorf("an older version's lock: %+v", old)
	}
}

// The holder refreshes its lock while it runs; a lock left untouched past its
// lease (its run was killed) is stale and taken over, with the dead run's
// leftovers; a fresh one never is; a lock lost while running stops the run
// before its cutover.
func TestLockLease(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	st, _ := Look(t.Context(), h, l.Root, nil)
	dead := NewLease(l, NewHolder("dead", 30*time.Second).For("up", "20261125-101500", time.Now()))
	if err := run(t, h, Lock(dead, st)); err != nil {
		t.Fatal(err)
	}
	dead.halt() // killed: no more refreshes

	// Fresh: alive, never taken.
	st, _ = Look(t.Context(), h, l.Root, nil)
	if st.Lock == nil || st.Lock.Stale() || st.Lock.Now.IsZero() || st.Lock.Holder.By != "dead" {
		t.Fatalf("fresh lock read as %+v", st.Lock)
	}
	if !strings.Contains((&LockedError{Lock: st.Lock, Env: "prod"}).Error(), "it is alive") {
		t.Errorf("message: %v", &LockedError{Lock: st.Lock})
	}

	// Untouched for a minute (its mtime set back): stale.
	if out, err := exec.Command("touch", "-h", "-d", "-1 minute", l.Lock()).CombinedOutput(); err != nil {
		t.Fatalf("touch: %v %s", err, out)
	}
	st, _ = Look(t.Context(), h, l.Root, nil)
	if !st.Lock.Stale() || st.Lock.Age() < 55*time.Second {
		t.Fatalf("stale lock read as %+v (age %s)", st.Lock, st.Lock.Age())
	}
	if !strings.Contains(st.Lock.Describe(), "last refreshed 1m") {
		t.Errorf("describe: %s", st.Lock.Describe())
	}
	me := NewLease(l, NewHolder("me", 300*time.Millisecond).For("up", "20261125-101501", time.Now()))
	if err := run(t, h, Lock(me, st)); err != nil {
		t.Fatal(err)
	}
	if who, _ := os.Readlink(l.Lock()); who != me.Holder.String() {
		t.Fatalf("after the takeover the lock is %q", who)
	}
	if names, _ := os.ReadDir(l.Meta()); len(names) != 1 {
		t.Errorf(".fleetdeploy holds %v: the stale lock set aside and the clock probe must be gone", names)
	}

	// Refreshed while running: its mtime moves on.
	fi1, _ := os.Lstat(l.Lock())
	waitFor(t, func() bool { fi2, err := os.Lstat(l.Lock()); return err == nil && fi2.ModTime().After(fi1.ModTime()) })
	stage := Stage(l, "20261125-101501", "", me)
	if err := run(t, h, stage); err != nil {
		t.Errorf("staging, holding its lock: %v", err)
	}

	// Removed by a forced unlock meanwhile: the run stops before its cutover.
	os.Remove(l.Lock())
	os.Symlink(holder("thief").String(), l.Lock())
	if err := run(t, h, stage); err == nil || !strings.Contains(err.Error(), "thief") {
		t.Errorf("lost lock: %v", err)
	}
	me.halt()
}

// A lock that is not fleetdeploy's (a regular file) is named as such, never
// taken, and its removal by unlock is checked.
func TestLockNotOurs(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	write(t, l.Lock(), "someone's file")
	st, err := Look(t.Context(), h, l.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Lock == nil || st.Lock.NotOurs != "a regular file" || st.Lock.Stale() {
		t.Fatalf("lock %+v", st.Lock)
	}
	if msg := (&LockedError{Lock: st.Lock, Env: "prod"}).Error(); !strings.Contains(msg, "the lock is a regular file, not fleetdeploy's lock") ||
		!strings.Contains(msg, "fleetdeploy unlock --force prod") {
		t.Errorf("message: %s", msg)
	}
	if err := run(t, h, Lock(NewLease(l, holder("me")), st)); err == nil {
		t.Error("took a lock over a regular file")
	}
	if err := run(t, h, ForceUnlock(l)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(l.Lock()); err == nil {
		t.Error("still there")
	}
}

// locked takes l's lock for the test.
func locked(t *testing.T, h *localHost, l Layout) *Lease {
	t.Helper()
	st, err := Look(t.Context(), h, l.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	ls := NewLease(l, holder("test"))
	if err := run(t, h, Lock(ls, st)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.halt)
	return ls
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		<-time.After(20 * time.Millisecond)
	}
}

// What a concurrent deploy or rollback changes between the read the plan is
// made from and the lock makes the lock fail; the state read again is not
// trusted blindly. The folders' times are to the second over SFTP (see
// Snapshot): the changes of new names come a second later here.
func TestLockNoticesChangeSincePlanning(t *testing.T) {
	later := func(dir string) {
		t.Helper()
		at := time.Now().Add(2 * time.Second)
		if err := os.Chtimes(dir, at, at); err != nil {
			t.Fatal(err)
		}
	}
	for name, change := range map[string]func(l Layout){
		"a new build": func(l Layout) {
			write(t, filepath.Join(l.Build("20261125-101501"), "x"), "a concurrent deploy was here")
			later(l.Builds())
		},
		"a rollback": func(l Layout) {
			write(t, l.History(), "2026-11-25T10:15:00Z\tdeploy\t20261125-101500\tme\n2026-11-25T10:16:00Z\trollback\t20261125-101500\tyou\n")
		},
		"a switch": func(l Layout) { os.Remove(l.Latest()); os.Symlink("builds/20261125-101501", l.Latest()) },
		"staging": func(l Layout) {
			write(t, filepath.Join(l.Staging("20261125-101502"), "x"), "upload under way")
			later(filepath.Dir(l.Staging("20261125-101502")))
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := Layout{Root: t.TempDir()}
			h := &localHost{}
			write(t, filepath.Join(l.Build("20261125-101500"), "x"), "live")
			write(t, l.History(), "2026-11-25T10:15:00Z\tdeploy\t20261125-101500\tme\n")
			if err := os.Symlink("builds/20261125-101500", l.Latest()); err != nil {
				t.Fatal(err)
			}
			st, err := Inspect(t.Context(), h, l.Root, nil)
			if err != nil {
				t.Fatal(err)
			}
			change(l)
			ls := NewLease(l, holder("me"))
			defer ls.halt()
			if err := run(t, h, Lock(ls, st)); err == nil || !strings.Contains(err.Error(), "changed between planning and locking") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// A host never deployed to has no .fleetdeploy folder: the lock makes it.
func TestLockOnNewHost(t *testing.T) {
	l := Layout{Root: filepath.Join(t.TempDir(), "app")}
	h := &localHost{}
	st, err := Inspect(t.Context(), h, l.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	ls := NewLease(l, holder("me"))
	defer ls.halt()
	if err := run(t, h, Lock(ls, st)); err != nil {
		t.Fatal(err)
	}
	if who, err := os.Readlink(l.Lock()); err != nil || who != ls.Holder.String() {
		t.Fatalf("lock: %q, %v", who, err)
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
	got := Describe(s.Ops[0])
	want := `fleetdeploy-sweep 'root=/r' 'staging=20261125-101502' 'build=20261125-101501'`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// Names in builds/, staging and pending that fleetdeploy does not make are
// never acted upon, nor is a latest pointing outside builds/.
func TestStateIgnoresForeignNames(t *testing.T) {
	s := &State{}
	s.sortEntries([3][]string{
		{"20261125-101500", "old copy", "..", "."},
		{"20261125-101502", "20261125-101502.skip", "..", "../../etc", "20261125-101502.evil", "x.skip"},
		{"20261125-101503", ".."},
	})
	if !slices.Equal(s.Builds, []string{"20261125-101500"}) || !slices.Equal(s.Foreign, []string{"old copy"}) ||
		!slices.Equal(s.Staging, []string{"20261125-101502", "20261125-101502.skip"}) || !slices.Equal(s.Pending, []string{"20261125-101503"}) {
		t.Errorf("state: %+v", s)
	}
	s.readHistory([]byte("not-a-time\tdeploy\t20261125-101500\tme\n2026-11-25T10:15:00Z\tdeploy\t../../x\tme\ngarbage\n"), false)
	if len(s.History) != 0 {
		t.Errorf("history: %+v", s.History)
	}
}

// Together runs every op, even after one fails, and reports every error.
func TestTogetherRunsEveryOp(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	op := Together{Symlink("x", a), Symlink("y", filepath.Join(root, "missing", "c")), Symlink("z", b)}
	err := op.Run(t.Context(), &localHost{}, nil)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("error %v, want the failing op's", err)
	}
	for p, want := range map[string]string{a: "x", b: "z"} {
		if got, _ := os.Readlink(p); got != want {
			t.Errorf("%s -> %q, want %q", p, got, want)
		}
	}
	if d := Describe(op); !strings.HasPrefix(d, "at once: sftp symlink") {
		t.Errorf("desc %q", d)
	}
}

// A delta on a host whose live build was changed by hand since it was made
// (a file rewritten in place, one removed) or whose manifest is corrupt: the
// host finds it under the lock, Prepare undoes its attempt and sends the
// payload Redo gives, and the build made is the one wanted, with a record of
// its files' identities as a fresh listing gives them.
func TestPrepareRedo(t *testing.T) {
	v1 := map[string]string{"a.php": "a", "b.php": "b", "c/d.php": "d", "e.php": "e"}
	v2 := map[string]string{"a.php": "A", "b.php": "b", "c/d.php": "d", "e.php": "e"}
	id1, id2 := "20261125-101500", "20261125-101501"
	for _, c := range []struct {
		name      string
		change    func(l Layout)
		wantDirty []string
		wantWhole bool
	}{
		{"rewritten in place", func(l Layout) { appendTo(t, filepath.Join(l.Build(id1), "b.php"), "hotfix") }, []string{"b.php"}, false},
		{"removed", func(l Layout) { os.Remove(filepath.Join(l.Build(id1), "c/d.php")) }, []string{"c/d.php"}, false},
		{"manifest corrupt", func(l Layout) {
			m := l.Marker(id1) + ".manifest"
			os.WriteFile(m, []byte(strings.Replace(readFile(t, m), "\tb.php", "\tb2.php", 1)), 0o644)
		}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := Layout{Root: t.TempDir()}
			h := &localHost{}
			if err := run(t, h, Prepare(l, marker(id1), fullPayload(t, v1), nil)); err != nil {
				t.Fatal(err)
			}
			live := contentOf(t, l.Build(id1))
			c.change(l)
			var gotDirty []string
			gotWhole, calls := false, 0
			p := deltaPayload(t, id1, v1, v2)
			p.Redo = func(dirty []string, whole bool) (Payload, error) {
				calls++
				gotDirty, gotWhole = dirty, whole
				if whole {
					return fullPayload(t, v2), nil
				}
				return deltaPayload(t, id1, v1, v2, dirty...), nil
			}
			if err := run(t, h, Prepare(l, marker(id2), p, nil)); err != nil {
				t.Fatal(err)
			}
			if calls != 1 || !slices.Equal(gotDirty, c.wantDirty) || gotWhole != c.wantWhole {
				t.Errorf("Redo called %d times with %v, whole %v; want once with %v, whole %v", calls, gotDirty, gotWhole, c.wantDirty, c.wantWhole)
			}
			if got := contentOf(t, l.Build(id2)); got != fmt.Sprint(v2) {
				t.Errorf("new build %s, want %v", got, v2)
			}
			if c.name != "manifest corrupt" {
				if got := contentOf(t, l.Build(id1)); got == live {
					t.Errorf("the change by hand did not happen: the test checks nothing")
				}
			}
			checkRecord(t, l, id2)
			if entries, _ := os.ReadDir(filepath.Join(l.Meta(), "staging")); len(entries) != 0 {
				t.Errorf("staging leftovers: %v", entries)
			}
		})
	}
}

// A whole build sent paced (remote.Pace): tar reports its progress, which is
// read and left out of the output, and the build is the one sent.
func TestPreparePaced(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	rnd := rand.New(rand.NewPCG(3, 4))
	big := make([]byte, 700<<10)
	for i := range big {
		big[i] = byte('a' + rnd.IntN(26))
	}
	files := map[string]string{"index.php": "x", "public/app.js": string(big)}
	p := fullPayload(t, files)
	p.Window = 256 << 10
	id := "20261125-101500"
	if err := run(t, h, Prepare(l, marker(id), p, nil)); err != nil {
		t.Fatal(err)
	}
	if got := contentOf(t, l.Build(id)); got != fmt.Sprint(files) {
		t.Errorf("build holds %.80s..., want the files sent", got)
	}
	// 700 KiB: a report every 128 KiB read.
	if h.progress < 4 {
		t.Errorf("%d progress reports from tar, want one per 128 KiB", h.progress)
	}
	checkRecord(t, l, id)
}

// The check walks the new listing and the live build's record side by side:
// files added and removed put them out of step, and a record in another
// order than the listing keeps them so. Either way it finds exactly the files
// changed or removed by hand, wherever they are, and nothing else.
func TestPrepareCheckOutOfStep(t *testing.T) {
	v1 := map[string]string{}
	for d := range 6 {
		for f := range 10 {
			v1[fmt.Sprintf("d%d/f%d.php", d, f)] = fmt.Sprintf("%d-%d", d, f)
		}
	}
	v2 := maps.Clone(v1)
	v2["d2/new1.php"], v2["d3/a.php"], v2["d4/f5.php"] = "new", "new", "changed"
	delete(v2, "d1/f3.php")
	id1, id2 := "20261125-101500", "20261125-101501"
	for _, order := range []string{"as listed", "reversed", "shuffled"} {
		t.Run(order, func(t *testing.T) {
			l := Layout{Root: t.TempDir()}
			h := &localHost{}
			if err := run(t, h, Prepare(l, marker(id1), fullPayload(t, v1), nil)); err != nil {
				t.Fatal(err)
			}
			rec := strings.Split(strings.TrimSuffix(readFile(t, l.Marker(id1)+".stat"), "\n"), "\n")
			switch order {
			case "reversed":
				slices.Reverse(rec)
			case "shuffled":
				rand.New(rand.NewPCG(1, 2)).Shuffle(len(rec), func(i, j int) { rec[i], rec[j] = rec[j], rec[i] })
			}
			if err := os.WriteFile(l.Marker(id1)+".stat", []byte(strings.Join(rec, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			want := []string{"d0/f1.php"}
			os.Remove(filepath.Join(l.Build(id1), "d0/f1.php"))
			for d := range 6 {
				p := fmt.Sprintf("d%d/f7.php", d)
				appendTo(t, filepath.Join(l.Build(id1), p), "hotfix")
				want = append(want, p)
			}
			var gotDirty []string
			p := deltaPayload(t, id1, v1, v2)
			p.Redo = func(dirty []string, whole bool) (Payload, error) {
				gotDirty = append(gotDirty, dirty...)
				if whole {
					t.Error("Redo asked for the whole build")
				}
				return deltaPayload(t, id1, v1, v2, dirty...), nil
			}
			if err := run(t, h, Prepare(l, marker(id2), p, nil)); err != nil {
				t.Fatal(err)
			}
			slices.Sort(gotDirty)
			if !slices.Equal(gotDirty, want) {
				t.Errorf("sent again %v, want %v", gotDirty, want)
			}
			if got := contentOf(t, l.Build(id2)); got != fmt.Sprint(v2) {
				t.Errorf("new build %s, want %v", got, v2)
			}
			checkRecord(t, l, id2)
		})
	}
}

// A record written by an earlier version lists the files a delta sent as
// "./path": the check reads those lines as the same files, so nothing is
// taken for changed by hand.
func TestPrepareReadsOlderRecords(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	v1 := map[string]string{"a.php": "a", "b/c.php": "c"}
	v2 := map[string]string{"a.php": "A", "b/c.php": "c"}
	id1, id2 := "20261125-101500", "20261125-101501"
	if err := run(t, h, Prepare(l, marker(id1), fullPayload(t, v1), nil)); err != nil {
		t.Fatal(err)
	}
	rec := readFile(t, l.Marker(id1)+".stat")
	if err := os.WriteFile(l.Marker(id1)+".stat", []byte(strings.ReplaceAll(rec, "b/c.php\t", "./b/c.php\t")), 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readFile(t, l.Marker(id1)+".stat"), "./b/c.php\t") {
		t.Fatal("the record was not rewritten: the test checks nothing")
	}
	p := deltaPayload(t, id1, v1, v2)
	p.Redo = func([]string, bool) (Payload, error) {
		t.Error("Redo called: an older record read as files changed by hand")
		return p, nil
	}
	if err := run(t, h, Prepare(l, marker(id2), p, nil)); err != nil {
		t.Fatal(err)
	}
	checkRecord(t, l, id2)
}

// Look reads the state over SFTP; Inspect adds what takes a command: the
// manifest's digest (hashed) and the files changed by hand.
func TestLookAndInspect(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	id := "20261125-101500"
	if err := run(t, h, Prepare(l, marker(id), fullPayload(t, map[string]string{"index.php": "x", "a.php": "a"}), nil)); err != nil {
		t.Fatal(err)
	}
	ls := locked(t, h, l)
	for _, s := range []Step{Stage(l, id, "", ls), Swap(l, false), Record(l, HistoryEntry{Time: time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC), Action: "deploy", Release: id, By: "me"})} {
		if err := run(t, h, s); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(l.Meta(), "staging", "20261125-101501"), 0o755)
	os.MkdirAll(filepath.Join(l.Meta(), "staging", "..."), 0o755)
	os.MkdirAll(filepath.Join(l.Builds(), "not-ours"), 0o755)
	shared := []string{".env", "storage"}
	os.MkdirAll(filepath.Join(l.Shared(), "storage"), 0o755)
	os.WriteFile(filepath.Join(l.Build(id), "a.php"), []byte("b"), 0o644) // by hand, same size
	got, err := Look(t.Context(), h, l.Root, shared)
	if err != nil {
		t.Fatal(err)
	}
	if got.Manifest == "" || got.Manifest != got.Marker.Checksum {
		t.Errorf("Look: manifest %q, marker %q", got.Manifest, got.Marker.Checksum)
	}
	if got.Lock == nil || got.Lock.Holder.By != "test" || len(got.History) != 1 || !slices.Equal(got.Foreign, []string{"not-ours"}) ||
		!slices.Equal(got.Staging, []string{"20261125-101501"}) || !slices.Equal(got.NoShared, []string{".env"}) || len(got.Dirty) != 0 {
		t.Errorf("Look read %+v", *got)
	}
	in, err := Inspect(t.Context(), h, l.Root, shared)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(in.Manifest, "sha256:") || in.Manifest == got.Manifest || !slices.Equal(in.Dirty, []string{"a.php"}) {
		t.Errorf("Inspect: manifest %q (the marker's %q), dirty %q", in.Manifest, got.Manifest, in.Dirty)
	}
	// A long history: Look reads its tail only.
	var long strings.Builder
	for i := range 3500 {
		fmt.Fprintf(&long, "2026-11-25T10:%02d:%02dZ\tdeploy\t%s\tsomeone on a host with a rather long name, run %d\n", i/60%60, i%60, id, i)
	}
	appendTo(t, l.History(), long.String())
	if fi, err := os.Stat(l.History()); err != nil || fi.Size() <= historyTail {
		t.Fatalf("history of %v bytes (%v): not longer than what Look reads", fi.Size(), err)
	}
	if got, err = Look(t.Context(), h, l.Root, shared); err != nil {
		t.Fatal(err)
	}
	if len(got.History) != 2000 || !strings.HasSuffix(got.History[1999].By, "run 3499") {
		t.Errorf("long history: Look read %d entries, last %v", len(got.History), got.History[len(got.History)-1])
	}
	// A root that does not exist yet.
	if got, err = Look(t.Context(), h, filepath.Join(t.TempDir(), "none"), shared); err != nil || got.RootExists || len(got.NoShared) != 2 {
		t.Errorf("missing root: %+v, %v", got, err)
	}
}

func appendTo(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Close()
}

// contentOf is a build's files and contents, as fmt prints a map.
func contentOf(t *testing.T, dir string) string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			m[rel] = readFile(t, p)
		}
		return nil
	})
	return fmt.Sprint(m)
}

// checkRecord checks a build's record of identities against a fresh listing.
func checkRecord(t *testing.T, l Layout, id string) {
	t.Helper()
	var fresh []string
	filepath.WalkDir(l.Build(id), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			st := fi.Sys().(*syscall.Stat_t)
			rel, _ := filepath.Rel(l.Build(id), p)
			fresh = append(fresh, fmt.Sprintf("%s\t%d\t%d.%09d0\t%d", rel, fi.Size(), st.Mtim.Sec, st.Mtim.Nsec, st.Ino))
		}
		return nil
	})
	var recorded []string
	for _, r := range strings.Split(strings.TrimSpace(readFile(t, l.Marker(id)+".stat")), "\n") {
		recorded = append(recorded, strings.TrimPrefix(r, "./"))
	}
	sort.Strings(fresh)
	sort.Strings(recorded)
	if strings.Join(recorded, "\n") != strings.Join(fresh, "\n") {
		t.Errorf("identities recorded:\n%s\nwant:\n%s", strings.Join(recorded, "\n"), strings.Join(fresh, "\n"))
	}
}

// tarPayload is a full payload of the given tar entries (symlinks among
// them), with their manifest.
func tarPayload(t *testing.T, entries []tar.Header, bodies map[string]string) Payload {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var manifest strings.Builder
	for _, h := range entries {
		h.Mode = 0o644
		switch h.Typeflag {
		case tar.TypeDir:
			h.Mode = 0o755
			fmt.Fprintf(&manifest, "d\t0755\t-\t-\t%s\n", strings.TrimSuffix(h.Name, "/"))
		case tar.TypeSymlink:
			h.Mode = 0o777
			fmt.Fprintf(&manifest, "l\t0777\t-\t%s\t%s\n", h.Linkname, h.Name)
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(bodies[h.Name]))
			manifest.WriteString(manifestLine(h.Name, bodies[h.Name]))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(bodies[h.Name]))
	}
	tw.WriteHeader(&tar.Header{Name: ".fleetdeploy-manifest", Mode: 0o600, Size: int64(manifest.Len()), Typeflag: tar.TypeReg})
	tw.Write([]byte(manifest.String()))
	tw.Close()
	data := buf.Bytes()
	return Payload{
		Open:        func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		ManifestSum: fmt.Sprintf("%x", blake2b.Sum256([]byte(manifest.String()))),
		Sent:        len(bodies),
	}
}

// A shared path whose parent in the build is a symlink (here one leading out
// of the root) is refused: nothing is moved, removed or made through it.
func TestSharedPathThroughSymlinkRefused(t *testing.T) {
	outside := t.TempDir()
	write(t, filepath.Join(outside, "data", "keep"), "not fleetdeploy's")
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	id := "20261125-101500"
	p := tarPayload(t, []tar.Header{{Name: "index.php"}, {Name: "s/", Typeflag: tar.TypeDir}, {Name: "s/x", Typeflag: tar.TypeSymlink, Linkname: outside}},
		map[string]string{"index.php": "x"})
	s := Prepare(l, marker(id), p, []inventory.SharedPath{{Path: "s/x/data", Dir: true}})
	err := run(t, h, s)
	if err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Fatalf("got %v", err)
	}
	if got := readFile(t, filepath.Join(outside, "data", "keep")); got != "not fleetdeploy's" {
		t.Errorf("outside file now %q", got)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("outside folder now holds %v", entries)
	}
	if err := RunOps(t.Context(), h, s.Undo, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(l.Build(id)); err == nil {
		t.Error("undo left the build")
	}
}

// A folder of fleetdeploy's own that is a symlink (to elsewhere) is a
// problem Look reports, and no script works through it.
func TestOwnFolderThroughSymlinkRefused(t *testing.T) {
	for _, d := range []string{".fleetdeploy", "builds", "shared", ".fleetdeploy/staging"} {
		t.Run(d, func(t *testing.T) {
			outside := t.TempDir()
			write(t, filepath.Join(outside, "keep"), "x")
			l := Layout{Root: t.TempDir()}
			h := &localHost{}
			os.MkdirAll(filepath.Dir(l.join(d)), 0o755)
			if err := os.Symlink(outside, l.join(d)); err != nil {
				t.Fatal(err)
			}
			st, err := Look(t.Context(), h, l.Root, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Problems) != 1 || !strings.Contains(st.Problems[0], l.join(d)+" is a symlink, not a folder") {
				t.Errorf("problems %q", st.Problems)
			}
			err = run(t, h, Prepare(l, marker("20261125-101500"), fullPayload(t, map[string]string{"a": "b"}), nil))
			if err == nil || !strings.Contains(err.Error(), "never works through one") {
				t.Errorf("prepare: %v", err)
			}
			sweep := remote.Cmd{Script: sweepScript, Params: params("root", l.Root, "build", "20261125-101500")}
			if _, err := h.Run(t.Context(), sweep); err == nil {
				t.Error("sweep worked through a symlinked folder")
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 1 {
				t.Errorf("outside folder now holds %v", entries)
			}
		})
	}
}

// The sweep removes a dead run's leftovers (staging, a build never live
// with its markers, a stale mark, staged links, the trash), read-only
// folders included, and nothing else: not the live build, not names it
// does not make.
func TestLeftoversSweep(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	const live, dead, wentLive = "20261125-101500", "20261125-101501", "20261125-101400"
	write(t, filepath.Join(l.Build(live), "index.php"), "live")
	os.Symlink("builds/"+live, l.Latest())
	write(t, filepath.Join(l.Build(dead), "ro", "f"), "dead")
	os.Chmod(filepath.Join(l.Build(dead), "ro"), 0o555)
	write(t, l.Marker(dead), "release="+dead)
	write(t, l.Marker(dead)+".manifest", "")
	write(t, l.Pending(dead), "token")
	write(t, l.Pending(wentLive), "token")
	write(t, filepath.Join(l.Staging("20261125-101502"), "d", "f"), "half")
	os.Chmod(filepath.Join(l.Staging("20261125-101502"), "d"), 0o500)
	write(t, l.Staging("20261125-101502")+".skip", "")
	write(t, filepath.Join(l.Meta(), "trash", "20261125-101300", "f"), "old")
	write(t, filepath.Join(l.Builds(), "mine"), "not fleetdeploy's")
	os.Symlink("x", l.Next())
	st, err := Look(t.Context(), h, l.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.History = []HistoryEntry{{Release: wentLive}}
	s, ok := Leftovers(l, st)
	if !ok {
		t.Fatal("no leftovers found")
	}
	if err := run(t, h, s); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{l.Build(dead), l.Marker(dead), l.Marker(dead) + ".manifest", l.Pending(dead), l.Pending(wentLive),
		l.Staging("20261125-101502"), l.Staging("20261125-101502") + ".skip", filepath.Join(l.Meta(), "trash", "20261125-101300"), l.Next()} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left", p)
		}
	}
	for _, p := range []string{filepath.Join(l.Build(live), "index.php"), filepath.Join(l.Builds(), "mine"), l.Latest()} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed", p)
		}
	}
}

// A file of the live build edited by hand in place, with the same size and
// its mtime put back, is found all the same (its ctime moved after the record
// was sealed, and its content no longer matches the manifest): by status
// (Inspect) and by the next deploy, which sends it again. A run undone in
// between (its links removed: ctimes move, contents do not) finds nothing.
func TestHandEditWithRestoredMtimeFound(t *testing.T) {
	v1 := map[string]string{"a.php": "aaaa", "b.php": "bbbb", "c/d.php": "dddd"}
	v2 := map[string]string{"a.php": "aaaa", "b.php": "bbbb", "c/d.php": "DDDD"}
	id1, id2, id3 := "20261125-101500", "20261125-101501", "20261125-101502"
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	if err := run(t, h, Prepare(l, marker(id1), fullPayload(t, v1), nil)); err != nil {
		t.Fatal(err)
	}
	os.Symlink("builds/"+id1, l.Latest())

	// A run that links v1's files, then is undone.
	s := Prepare(l, marker(id2), deltaPayload(t, id1, v1, v2), nil)
	if err := run(t, h, s); err != nil {
		t.Fatal(err)
	}
	if err := RunOps(t.Context(), h, s.Undo, nil, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := Inspect(t.Context(), h, l.Root, nil); err != nil || len(st.Dirty) != 0 {
		t.Fatalf("after a run undone: dirty %v, %v", st.Dirty, err)
	}

	// b.php rewritten in place: same size, mtime put back.
	p := filepath.Join(l.Build(id1), "b.php")
	fi, _ := os.Stat(p)
	os.WriteFile(p, []byte("BBBB"), 0o644)
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	if st, err := Inspect(t.Context(), h, l.Root, nil); err != nil || !slices.Equal(st.Dirty, []string{"b.php"}) {
		t.Errorf("status: dirty %v, %v; want [b.php]", st.Dirty, err)
	}
	var sent []string
	pl := deltaPayload(t, id1, v1, v2)
	pl.Redo = func(dirty []string, whole bool) (Payload, error) {
		sent = dirty
		return deltaPayload(t, id1, v1, v2, dirty...), nil
	}
	if err := run(t, h, Prepare(l, marker(id3), pl, nil)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sent, []string{"b.php"}) {
		t.Errorf("sent again %v, want [b.php]", sent)
	}
	if got := readFile(t, filepath.Join(l.Build(id3), "b.php")); got != "bbbb" {
		t.Errorf("the new build's b.php is %q, want the build's", got)
	}
}

// A small payload goes in the command itself (no stdin: a round trip less),
// and prepare stages the cutover in the same command: next and back point
// at the new and the live build, and the lock is checked. A lock that is no
// longer this run's fails it, and the undo leaves nothing of it.
func TestPrepareInlineAndStaged(t *testing.T) {
	const live, id = "20261125-101500", "20261125-101501"
	l := Layout{Root: t.TempDir()}
	h := &localHost{}
	if err := run(t, h, Prepare(l, marker(live), fullPayload(t, map[string]string{"index.php": "v1"}), nil)); err != nil {
		t.Fatal(err)
	}
	ls := NewLease(l, holder("me"))
	defer ls.halt()
	st, err := Look(t.Context(), h, l.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(t, h, Lock(ls, st)); err != nil {
		t.Fatal(err)
	}
	small := func(body string) Payload {
		p := fullPayload(t, map[string]string{"index.php": body})
		r, _ := p.Open()
		data, _ := io.ReadAll(r)
		p.Size = int64(len(data))
		p.Window = 1 << 20 // would be paced on stdin
		return p
	}
	s := PrepareAndStage(l, marker(id), small("v2"), nil, live, ls)
	if err := run(t, h, s); err != nil {
		t.Fatal(err)
	}
	shown := h.cmds[len(h.cmds)-1]
	if strings.Contains(shown, "inline=") || !strings.Contains(shown, "'z=plain'") || !strings.Contains(shown, "'stage=1'") {
		t.Errorf("command shown as %s", shown)
	}
	if b, err := os.ReadFile(filepath.Join(l.Build(id), "index.php")); string(b) != "v2" {
		t.Fatalf("index.php %q, %v", b, err)
	}
	for link, want := range map[string]string{l.Next(): LinkTarget(id), l.Back(): LinkTarget(live)} {
		if got, err := os.Readlink(link); got != want {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}

	// The lock taken over meanwhile: the staging says so, and the undo
	// removes the build and the links.
	const id2 = "20261125-101502"
	os.Remove(l.Lock())
	os.Symlink(holder("thief").String(), l.Lock())
	s = PrepareAndStage(l, marker(id2), small("v3"), nil, live, ls)
	err = run(t, h, s)
	if err == nil || !strings.Contains(err.Error(), "thief") {
		t.Fatalf("got %v, want the thief named", err)
	}
	// The never-live mark is a symlink to the run's token: made in one
	// symlink(2), it can never be there without it (a run killed while
	// writing a file mark left it empty, and its undo could not claim it).
	if tok, err := os.Readlink(l.Pending(id2)); tok != marker(id2).token() {
		t.Errorf("never-live mark -> %q (%v), want the token", tok, err)
	}
	if err := RunOps(t.Context(), h, s.Undo, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{l.Build(id2), l.Next(), l.Back(), l.Pending(id2)} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after the undo (%v)", p, err)
		}
	}
}

// Finishing records the switch (on a line of its own, whatever the history
// ended with), removes the mark and the staged links and gives the lock
// back, in one command. A part that fails does not stop the others: the
// lock is given back even when the history could not be written; and a
// lock that is not this run's is left alone, and said so.
func TestFinish(t *testing.T) {
	const id = "20261125-101501"
	entry := HistoryEntry{Time: time.Date(2026, 11, 25, 10, 15, 1, 0, time.UTC), Action: ActionUp, Release: id, By: "me", Previous: "20261125-101500", Checksum: "sha256:ab"}
	setup := func(t *testing.T) (Layout, *Lease) {
		l := Layout{Root: t.TempDir()}
		write(t, l.History(), "2026-11-25T10:15:00Z\tup\t20261125-101500\tme") // no newline at its end
		write(t, l.Pending(id), "token")
		for _, p := range []string{l.Next(), l.Back()} {
			os.Symlink(LinkTarget(id), p)
		}
		ls := NewLease(l, holder("me"))
		os.Symlink(ls.Holder.String(), l.Lock())
		return l, ls
	}
	fin := func(l Layout, ls *Lease) Step {
		return Finish(l, Finishing{Record: &entry, Unstage: []string{"next", "back"}, Lease: ls})
	}
	gone := func(t *testing.T, paths ...string) {
		t.Helper()
		for _, p := range paths {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s still there (%v)", p, err)
			}
		}
	}
	h := &localHost{}

	t.Run("all goes well", func(t *testing.T) {
		l, ls := setup(t)
		if err := run(t, h, fin(l, ls)); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(l.History())
		if want := "2026-11-25T10:15:00Z\tup\t20261125-101500\tme\n" + entry.line() + "\n"; string(b) != want {
			t.Errorf("history %q, want %q", b, want)
		}
		gone(t, l.Pending(id), l.Next(), l.Back(), l.Lock())
	})
	t.Run("the history is a symlink", func(t *testing.T) {
		l, ls := setup(t)
		elsewhere := filepath.Join(t.TempDir(), "elsewhere")
		write(t, elsewhere, "not fleetdeploy's\n")
		os.Remove(l.History())
		os.Symlink(elsewhere, l.History())
		err := run(t, h, fin(l, ls))
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("got %v", err)
		}
		if b, _ := os.ReadFile(elsewhere); string(b) != "not fleetdeploy's\n" {
			t.Errorf("wrote through the link: %q", b)
		}
		gone(t, l.Pending(id), l.Next(), l.Back(), l.Lock())
	})
	t.Run("the lock is another run's", func(t *testing.T) {
		l, ls := setup(t)
		thief := holder("thief").String()
		os.Remove(l.Lock())
		os.Symlink(thief, l.Lock())
		err := run(t, h, fin(l, ls))
		if err == nil || !strings.Contains(err.Error(), "held by thief") {
			t.Fatalf("got %v", err)
		}
		if who, _ := os.Readlink(l.Lock()); who != thief {
			t.Errorf("the thief's lock is now %q", who)
		}
		if b, _ := os.ReadFile(l.History()); !strings.HasSuffix(string(b), entry.line()+"\n") {
			t.Errorf("history %q", b)
		}
		gone(t, l.Pending(id), l.Next(), l.Back())
	})
}
