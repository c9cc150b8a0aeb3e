//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Issue 13: what a hostile build or a broken host could make fleetdeploy do
// outside its root, or hang, or report falsely. Each case on real OpenSSH
// hosts with a login user that is not root.

func TestHostileSymlinkChainRefused(t *testing.T) {
	s := newScenario(t, "hostile: a build escaping through a chain of its own symlinks (15 nested s/, each s/x -> ../, then esc -> s/.../x/ + 16 ../ + etc/passwd)",
		"refused at build time, naming esc: exit 1, nothing sent, hosts unchanged (it used to ship latest/esc -> /etc/passwd)")
	f, src, inv := deployed(s, t, 2, inventory{})
	before := f.states()
	dir := src
	var chain []string
	for range 15 {
		dir = filepath.Join(dir, "s")
		chain = append(chain, "s")
		os.MkdirAll(dir, 0o755)
		os.Symlink("../", filepath.Join(dir, "x"))
	}
	target := strings.Join(chain, "/") + "/x/" + strings.Repeat("../", 16) + "etc/passwd"
	os.Symlink(target, filepath.Join(src, "esc"))
	setVersion(t, src, "v2")
	r := fd(t, "up", "e2e", "-i", inv)
	s.Observe("exit %d: %s", r.code, r.errLine())
	wantExit(s, r, 1, "esc", "outside")
	f.checkUnchanged(s, before)
	f.checkClean(s)
	f.checkData(s)
}

func TestUnlockDuringLiveRunThenSecondUp(t *testing.T) {
	s := newScenario(t, "broken: `unlock --force` during a live run, then a second up (3 hosts)",
		"the first run finds its lock gone before its cutover and stops (exit 1, no host switches); the second deploys; latest never dangles, every host on one build, clean")
	f, src, _ := deployed(s, t, 3, inventory{})
	token := uniqueSleep(60)
	slow := f.write(t, inventory{source: src, before: []string{yq(`touch "$FLEETDEPLOY_ROOT/shared/waiting"; while [ -e "$FLEETDEPLOY_ROOT/shared/waiting" ]; do sleep 0.05; done; sleep 0.` + token[len(token)-6:])}})
	setVersion(t, src, "v2")
	first := startFD(t, "up", "e2e", "-i", slow)
	poll(t, "the first run in its hook on every host", 2*time.Minute, 10*time.Millisecond, func() bool {
		for i := range f.Hosts {
			if !exists(filepath.Join(f.roots[i], "shared", "waiting")) {
				return false
			}
		}
		return true
	}, first.exited)
	u := fd(t, "unlock", "e2e", "-i", slow)
	if u.code != 1 || !strings.Contains(u.stderr, "its run is alive") {
		s.Errorf("unlock without --force during a live run: %s", u)
	}
	mustFD(s, "unlock", "--force", "e2e", "-i", slow)
	plain := f.write(t, inventory{source: src})
	setVersion(t, src, "v3")
	second := fd(t, "up", "e2e", "-i", plain)
	s.Observe("second up: exit %d", second.code)
	for i := range f.Hosts {
		os.Remove(filepath.Join(f.roots[i], "shared", "waiting"))
	}
	r := first.wait(2 * time.Minute)
	s.Observe("first run: exit %d: %s", r.code, r.errLine())
	wantExit(s, r, 1, "lock")
	if second.code != 0 {
		s.Errorf("second up: %s", second)
	}
	id := f.checkConverged(s)
	for i := range f.Hosts {
		if v := f.servedVersion(i); v != "v3" {
			s.Errorf("%s serves %q, want v3 (the second run's)", f.name(i), v)
		}
		if _, err := os.Stat(filepath.Join(f.roots[i], "latest", "VERSION")); err != nil {
			s.Errorf("%s: latest dangles: %v", f.name(i), err)
		}
	}
	s.Observe("every host on %s (v3), clean", id)
}

func TestReadOnlyFoldersOnHost(t *testing.T) {
	s := newScenario(t, "broken: read-only folders (0555, 000) on the host, in an old build and in a killed run's staging folder; keep 1 (2 hosts, non-root login)",
		"the next up removes both completely (no build half in builds/, nothing in the trash); a build that could not be removed is never a rollback target")
	f, src, _ := deployed(s, t, 2, inventory{})
	inv := f.write(t, inventory{source: src, keep: 1})
	old := f.live(0)
	for i := range f.Hosts {
		f.asUser(t, `set -e
mkdir -p "$1/builds/$2/ro/deep" "$1/.fleetdeploy/staging/20200101-000000/none/x"
echo x > "$1/builds/$2/ro/deep/f"; echo y > "$1/.fleetdeploy/staging/20200101-000000/none/x/f"
chmod 555 "$1/builds/$2/ro" "$1/builds/$2/ro/deep"; chmod 000 "$1/.fleetdeploy/staging/20200101-000000/none"`, f.roots[i], old)
	}
	setVersion(t, src, "v2")
	mustFD(s, "up", "e2e", "-i", inv)
	setVersion(t, src, "v3")
	r := mustFD(s, "up", "e2e", "-i", inv) // keep 1: removes the first build, with its read-only folders
	id := f.checkConverged(s)
	for i := range f.Hosts {
		if b := f.state(i).builds; slices.Contains(b, old) {
			s.Errorf("%s: the old build with read-only folders is still in builds/: %v", f.name(i), b)
		}
	}
	rb := fd(t, "rollback", "e2e", "-i", inv, "--to", old)
	if rb.code == 0 || !strings.Contains(rb.stderr, "has no build "+old) {
		s.Errorf("rollback --to the removed build: %s", rb)
	}
	s.Observe("up, up (keep 1): exit 0, %s; every host on %s, the old build gone whole, staging and trash empty; rollback --to it: exit %d", firstLine(r.stdout, "deployed"), id, rb.code)
}

func TestLockThatIsARegularFile(t *testing.T) {
	s := newScenario(t, "broken: .fleetdeploy/lock is a regular file on one host (3 hosts)",
		"up exits 3 naming it (it is not fleetdeploy's lock) before anything changes; status exits 4 and shows it; unlock refuses it; unlock --force removes it (checked); then up exits 0")
	f, src, inv := deployed(s, t, 3, inventory{})
	before := f.states()
	f.asUser(t, `echo junk > "$1/.fleetdeploy/lock"`, f.roots[1])
	setVersion(t, src, "v2")
	r := fd(t, "up", "e2e", "-i", inv)
	s.Observe("up: exit %d: %s", r.code, r.errLine())
	wantExit(s, r, 3, f.name(1), "regular file", "not fleetdeploy's lock")
	f.checkUnchanged(s, before)
	st := fd(t, "status", "e2e", "-i", inv)
	if st.code != 4 || !strings.Contains(st.stdout, "regular file") {
		s.Errorf("status: %s", st)
	}
	if u := fd(t, "unlock", "e2e", "-i", inv); u.code != 1 || !strings.Contains(u.stderr, "not fleetdeploy's") {
		s.Errorf("unlock: %s", u)
	}
	mustFD(s, "unlock", "--force", "e2e", "-i", inv)
	mustFD(s, "up", "e2e", "-i", inv)
	f.checkConverged(s)
}

func TestUnlockOnReadOnlyFilesystem(t *testing.T) {
	s := newScenario(t, "broken: unlock of a dead run's lock on a root remounted read-only (1 host)",
		"unlock exits 1 saying `read-only file system`, never reports success; the lock stays, and status still shows it")
	needRoot(s)
	f, _, inv := deployed(s, t, 1, inventory{})
	f.asUser(t, `ln -s "dead@laptop pid 1, up 20200101-000000, since 2020-01-01T00:00:00Z" "$1/.fleetdeploy/lock"`, f.roots[0])
	root := f.roots[0]
	mount(s, "--bind", root, root)
	unmountLater(t, root)
	mount(s, "-o", "remount,bind,ro", root)
	u := fd(t, "unlock", "e2e", "-i", inv)
	s.Observe("unlock: exit %d: %s", u.code, u.errLine())
	wantExit(s, u, 1, "read-only")
	if f.state(0).lock == "" {
		s.Errorf("the lock is gone")
	}
	if st := fd(t, "status", "e2e", "-i", inv); !strings.Contains(st.stdout, "dead@laptop") {
		s.Errorf("status does not show the lock: %s", st)
	}
}

func TestFIFOWhereFleetdeployExpectsItsFile(t *testing.T) {
	s := newScenario(t, "broken: a FIFO as the live history, then as the live build's marker (2 hosts)",
		"with the history a FIFO, up fails at once, naming the host and the FIFO (no hang, no SIGTERM needed); with the marker a FIFO, up goes through at once: the history's last line (the up that made the live build) says what the marker would, and the marker is never opened")
	f, src, inv := deployed(s, t, 2, inventory{})
	for i, p := range []string{".fleetdeploy/history", ".fleetdeploy/builds/" + f.live(1)} {
		f.asUser(t, `set -e; mv "$1/$2" "$1/$2.saved"; mkfifo "$1/$2"`, f.roots[1], p)
		setVersion(t, src, fmt.Sprintf("v%d", i+2))
		start := time.Now()
		p1 := startFD(t, "up", "e2e", "-i", inv)
		r := p1.wait(60 * time.Second)
		s.Observe("%s a FIFO: exit %d after %s: %s", p, r.code, time.Since(start).Round(100*time.Millisecond), r.errLine())
		if i == 0 {
			wantExit(s, r, 1, f.name(1), "FIFO")
		} else {
			wantExit(s, r, 0)
		}
		f.asUser(t, `set -e; rm -f "$1/$2"; mv "$1/$2.saved" "$1/$2"`, f.roots[1], p)
	}
	mustFD(s, "up", "e2e", "-i", inv)
	f.checkConverged(s)
}

func TestHistoryOddities(t *testing.T) {
	s := newScenario(t, "broken: a live history with a 2 MiB line, then without its final newline (2 hosts)",
		"status reads the marker and the history's tail at once (no 48 s, no \"no marker\"); the next record starts a line of its own")
	f, src, inv := deployed(s, t, 2, inventory{})
	f.asUser(t, `head -c 2097152 /dev/zero | tr '\0' x >> "$1/.fleetdeploy/history"; printf '\n' >> "$1/.fleetdeploy/history"`, f.roots[0])
	start := time.Now()
	st := mustFD(s, "status", "e2e", "-i", inv)
	took := time.Since(start)
	s.Observe("status with a 2 MiB line: exit %d in %s", st.code, took.Round(time.Millisecond))
	if took > 10*time.Second || strings.Contains(st.stdout, "no marker") {
		s.Errorf("status: %s after %s", st, took)
	}
	f.asUser(t, `printf 'half a line' >> "$1/.fleetdeploy/history"`, f.roots[1])
	setVersion(t, src, "v2")
	mustFD(s, "up", "e2e", "-i", inv)
	b, _ := os.ReadFile(filepath.Join(f.roots[1], ".fleetdeploy", "history"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "\tup\t"+f.live(1)+"\t") || !slices.Contains(lines, "half a line") {
		s.Errorf("history ends %q", lines[max(0, len(lines)-3):])
	}
	mustFD(s, "status", "e2e", "-i", inv)
}

func TestHandEditWithRestoredMtime(t *testing.T) {
	s := newScenario(t, "broken: a file of the live build edited in place by hand, same size, mtime put back (touch -r; 2 hosts)",
		"status exits 4 naming the file; the next up sends it again (the new build has the build's content, not the edit)")
	f, src, inv := deployed(s, t, 2, inventory{})
	f.asUser(t, `set -e
p="$1/latest/public/index.php"; ref=$(mktemp)
touch -r "$p" "$ref"
tr e E < "$p" > "$ref.new"
dd if="$ref.new" of="$p" conv=notrunc status=none
touch -r "$ref" "$p"
rm -f "$ref" "$ref.new"`, f.roots[0])
	st := fd(t, "status", "e2e", "-i", inv)
	s.Observe("status: exit %d, %q", st.code, firstLine(st.stderr, "public/index.php"))
	if st.code != 4 || !strings.Contains(st.stderr, "public/index.php") {
		s.Errorf("status: %s", st)
	}
	r := mustFD(s, "up", "e2e", "-i", inv) // the same source: nothing to send but the edited file
	if !strings.Contains(r.stdout, "public/index.php") || !strings.Contains(r.stdout, "sending again") {
		s.Errorf("up does not say it sends the edited file again: %s", r)
	}
	want, _ := os.ReadFile(filepath.Join(src, "public", "index.php"))
	got, _ := os.ReadFile(filepath.Join(f.roots[0], "latest", "public", "index.php"))
	if string(got) != string(want) {
		s.Errorf("%s serves %q, want the build's %q", f.name(0), got, want)
	}
	f.checkConverged(s)
}
