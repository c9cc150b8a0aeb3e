//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hostile is text that breaks any shell command built by concatenation.
const hostile = "we ird 'q' \"dq\" ;touch pwned1; $(touch pwned2) `touch pwned3` \\ $HOME\nline2"

// findPwned lists files named pwned* under dirs.
func findPwned(dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		filepath.Walk(d, func(p string, info os.FileInfo, err error) error {
			if err == nil && strings.HasPrefix(info.Name(), "pwned") {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func TestHostileInventoryValues(t *testing.T) {
	s := newScenario(t, "hostile: root, shared paths and hook arguments with spaces, quotes, ;, $(), backticks, newlines (2 hosts)",
		"deploy, redeploy and rollback exit 0 with every value used literally: the root and shared paths exist as written, hook arguments arrive intact, nothing executed (no pwned* file), nothing outside the root touched (canary, parent listing)")
	f := newFleet(t, 2)
	// A root may hold anything but control characters (refused at parse
	// time: TestControlCharacterRefused).
	for i := range f.Hosts {
		f.roots[i] = filepath.Join(filepath.Dir(f.Hosts[i].Root), strings.ReplaceAll(hostile, "\n", " "))
	}
	sharedDir := "data $(touch pwned4) `touch pwned5` dir"
	sharedFile := "conf 'q';touch pwned6;\".env"
	for i := range f.Hosts {
		f.provision(i)
		f.asUser(t, `set -e; mkdir -p "$1/shared/$2"; printf 'kept\n' > "$1/shared/$2/data"; printf 'X=1\n' > "$1/shared/$3"`, f.roots[i], sharedDir, sharedFile)
	}
	parentBefore := make([][]string, len(f.Hosts))
	for i := range f.Hosts {
		parentBefore[i] = names(filepath.Dir(f.roots[i]))
	}
	args := []string{"a b", "it's", ";", "$(touch pwned7)", "`touch pwned8`", "two\nlines", `back\slash`, "$HOME"}
	var quoted []string
	for _, a := range args {
		quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	hook := `printf '%s|' ` + strings.Join(quoted, " ") + ` "$FLEETDEPLOY_ROOT" > "$FLEETDEPLOY_ROOT/shared/args"`
	src := writeApp(t, "v1")
	inv := f.write(t, inventory{source: src, shared: []string{"storage/sessions/", sharedDir + "/", sharedFile, ".env"},
		before: []string{yq(hook)}, after: []string{yq(`cp "$FLEETDEPLOY_ROOT/shared/args" "$FLEETDEPLOY_ROOT/shared/args-after"`)}})

	mustFD(s, "up", "e2e", "-i", inv)
	first := f.live(0)
	setVersion(t, src, "v2")
	mustFD(s, "up", "e2e", "-i", inv)
	mustFD(s, "rollback", "e2e", "-i", inv)
	if st := fd(t, "status", "e2e", "-i", inv); st.code != 0 {
		s.Errorf("status: %s", st)
	}
	id := f.checkConverged(s)
	if id != first {
		s.Errorf("after rollback the fleet serves %s, want %s", id, first)
	}
	want := strings.Join(args, "|") + "|"
	for i := range f.Hosts {
		root := f.roots[i]
		if f.servedVersion(i) != "v1" {
			s.Errorf("%s: serves %q after rollback, want v1", f.name(i), f.servedVersion(i))
		}
		for _, name := range []string{"args", "args-after"} {
			got, err := os.ReadFile(filepath.Join(root, "shared", name))
			if err != nil || string(got) != want+root+"|" {
				s.Errorf("%s: hook saw %q, want %q (%v)", f.name(i), got, want+root+"|", err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(root, "latest", sharedDir, "data")); err != nil || string(b) != "kept\n" {
			s.Errorf("%s: shared dir %q not linked: %q %v", f.name(i), sharedDir, b, err)
		}
		if b, err := os.ReadFile(filepath.Join(root, "latest", sharedFile)); err != nil || string(b) != "X=1\n" {
			s.Errorf("%s: shared file %q not linked: %q %v", f.name(i), sharedFile, b, err)
		}
		if got := names(filepath.Dir(root)); !slices.Equal(got, parentBefore[i]) {
			s.Errorf("%s: the root's parent changed: %q, was %q", f.name(i), got, parentBefore[i])
		}
	}
	// Where an executed value would have landed: the hosts' folders, the login
	// user's home (a remote shell's working folder) and fleetdeploy's own.
	if p := findPwned(f.Dir, f.home, repoRoot+"/e2e"); len(p) > 0 {
		s.Errorf("a hostile value was executed: %v", p)
	}
	s.Observe("up, up, rollback, status: exit 0; hook arguments intact on every host; shared paths linked; no pwned* file; parent and canary untouched")
}

func TestControlCharacterRefused(t *testing.T) {
	s := newScenario(t, "hostile: inventory root with a newline, a shared path with an ESC (terminal escape)",
		"inventory refused: exit 2, each with file:line and the character named; no host contacted")
	f, src, _ := deployed(s, t, 1, inventory{})
	before := f.states()
	inv := f.write(t, inventory{source: src, shared: []string{"storage/sessions/", "x\x1b[2Jy"}})
	inv2 := filepath.Join(filepath.Dir(inv), "newline.yml")
	b, _ := os.ReadFile(inv)
	os.WriteFile(inv2, []byte(strings.Replace(string(b), "root: ", "root: \"/srv/a\\nb\"\n# was: ", 1)), 0o644)
	for _, c := range []struct{ inv, char string }{{inv, "ESC"}, {inv2, "newline"}} {
		r := fd(t, "up", "e2e", "-i", c.inv)
		s.Observe("%s: exit %d: %s", filepath.Base(c.inv), r.code, r.errLine())
		wantExit(s, r, 2, c.inv+":")
		if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(c.char)) {
			s.Errorf("the character is not named: %s", r.errLine())
		}
	}
	f.checkUnchanged(s, before)
}

func TestSymlinkOutOfAppRefused(t *testing.T) {
	for _, c := range []struct{ name, target string }{
		{"absolute (ln -s /etc app/etc-link)", "/etc"},
		{"relative (ln -s ../../../etc app/config/etc-link)", "../../../etc"},
	} {
		t.Run(strings.Fields(c.name)[0], func(t *testing.T) {
			s := newScenario(t, "hostile: symlink in the app pointing outside it, "+c.name,
				"refused at build time: exit 1 naming the link; nothing uploaded, no lock, hosts unchanged")
			f, src, inv := deployed(s, t, 2, inventory{})
			before := f.states()
			link := filepath.Join(src, "etc-link")
			if strings.HasPrefix(c.target, "..") {
				link = filepath.Join(src, "config", "etc-link")
			}
			if out, err := exec.Command("ln", "-s", c.target, link).CombinedOutput(); err != nil {
				s.Fatalf("ln: %v: %s", err, out)
			}
			setVersion(t, src, "v2")
			r := fd(t, "up", "e2e", "-i", inv)
			s.Observe("exit %d: %s", r.code, r.errLine())
			wantExit(s, r, 1, "etc-link", "outside")
			if !strings.Contains(r.stdout+r.stderr, "build") {
				s.Errorf("the refusal does not say it happened building: %s", r.errLine())
			}
			f.checkUnchanged(s, before)
			f.checkClean(s)
			f.checkData(s)
		})
	}
}

func TestDotDotSharedPathRefused(t *testing.T) {
	s := newScenario(t, "hostile: shared path with .. (../../etc/)",
		"inventory refused: exit 2 with file:line and `no ..`; no host contacted, hosts unchanged")
	f, src, _ := deployed(s, t, 2, inventory{})
	before := f.states()
	inv := f.write(t, inventory{source: src, shared: []string{"storage/sessions/", "../../etc/", ".env"}})
	r := fd(t, "up", "e2e", "-i", inv)
	s.Observe("exit %d: %s", r.code, r.errLine())
	wantExit(s, r, 2, inv+":", "..")
	f.checkUnchanged(s, before)
	f.checkClean(s)
	f.checkData(s)
}
