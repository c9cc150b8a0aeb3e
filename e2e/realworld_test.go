//go:build e2e

package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// realWorldApp returns a fresh source folder holding MediaWiki as Debian
// ships it (.ci/realworld-app fetches and caches it; .ci/e2e-deps does so
// up front), hard-linked from the cache where it can be: a test changes a
// file by writing a new one in its place, never the cached one.
func realWorldApp(s *scenario) (dir, cached string) {
	s.t.Helper()
	out, err := exec.Command("bash", filepath.Join(repoRoot, ".ci", "realworld-app")).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		if ci {
			s.Fatalf(".ci/realworld-app: %s", msg)
		}
		s.Skipf(".ci/realworld-app: %s (run it as root once)", msg)
	}
	cached = strings.TrimSpace(string(out))
	dir = filepath.Join(s.t.TempDir(), "mediawiki")
	if out, err := exec.Command("cp", "-al", cached, dir).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		if out2, err := exec.Command("cp", "-a", cached, dir).CombinedOutput(); err != nil {
			s.Fatalf("copying %s: %v: %s %s", cached, err, out, out2)
		}
	}
	return dir, cached
}

// rewrite replaces the file rel of dir with content (a new file renamed over
// it: a hard-linked original is left alone).
func rewrite(s *scenario, dir, rel string, content []byte) {
	s.t.Helper()
	p := filepath.Join(dir, rel)
	tmp := p + ".new"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		s.Fatalf("%v", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		s.Fatalf("%v", err)
	}
}

// countTree counts the regular files and bytes below dir (symlinks not followed).
func countTree(dir string) (files int, size int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		size += fi.Size()
		return nil
	})
	return files, size, err
}

// TestRealWorldMediaWiki deploys a real PHP application of ~23,500 files,
// as Debian's packages hold it, with its symlinks into /var/lib/mediawiki.
func TestRealWorldMediaWiki(t *testing.T) {
	s := newScenario(t, "real-world tree: MediaWiki from Debian's packages (~23,500 files, ~225 MB, 4 symlinks into /var/lib/mediawiki), 2 hosts",
		"outside_symlinks refuse: one error lists all 4 links, nothing uploaded; keep: plan lists them, first deploy, a redeploy sending only the 2 changed files, rollback, each exit 0 with every host on one build; status --verify re-hashes every file clean")
	src, cached := realWorldApp(s)
	files, size, err := countTree(src)
	if err != nil {
		s.Fatalf("%v", err)
	}
	f := newFleet(t, 2)
	f.provisionAll()
	for i := range f.Hosts {
		f.asUser(t, `printf '<?php\n$wgSitename = "e2e";\n' > "$1/shared/LocalSettings.php"`, f.roots[i])
	}
	// images/ and LocalSettings.php are the wiki's data and configuration:
	// shared, so they outlive builds; both are symlinks in Debian's tree,
	// replaced on the hosts by links into shared/.
	o := inventory{source: src, shared: []string{"images/", "LocalSettings.php"}}
	links := []string{
		"LocalSettings.php -> /var/lib/mediawiki/LocalSettings.php",
		"config -> /var/lib/mediawiki/config",
		"extensions -> /var/lib/mediawiki/extensions",
		"images -> /var/lib/mediawiki/images",
	}

	// refuse, the default: every outside link in one error, before any host changes.
	inv := f.write(t, o)
	before := f.states()
	refused := fd(t, "up", "e2e", "-i", inv)
	wantExit(s, refused, 1, append([]string{"4 symlinks lead outside the build"}, links...)...)
	f.checkUnchanged(s, before)
	f.checkClean(s)
	s.Observe("refuse: exit %d in %s, the 4 links in one error", refused.code, refused.took.Round(100*time.Millisecond))

	// keep: Debian's hosts provide /var/lib/mediawiki; plan says so.
	o.extra = "outside_symlinks: keep\n"
	inv = f.write(t, o)
	planned := mustFD(s, "plan", "e2e", "-i", inv)
	for _, l := range append([]string{"4 symlinks leading outside the build kept as they are", "every host must provide their targets"}, links...) {
		if !strings.Contains(planned.stdout, l) {
			s.Errorf("plan does not say %q:\n%s", l, tail(planned.stdout, 2000))
		}
	}

	first := mustFD(s, "up", "e2e", "-i", inv)
	v1 := f.checkConverged(s)
	for i := range f.Hosts {
		latest := filepath.Join(f.roots[i], "latest")
		got, gotSize, err := countTree(latest + "/")
		if err != nil || got != files || gotSize != size {
			s.Errorf("%s: %d files, %d bytes live (%v), want %d, %d", f.name(i), got, gotSize, err, files, size)
		}
		for p, want := range map[string]string{"extensions": "/var/lib/mediawiki/extensions", "config": "/var/lib/mediawiki/config",
			"images": "../../shared/images", "LocalSettings.php": "../../shared/LocalSettings.php"} {
			if l, _ := os.Readlink(filepath.Join(latest, p)); l != want {
				s.Errorf("%s: %s -> %q, want %q", f.name(i), p, l, want)
			}
		}
	}

	// A redeploy of 2 changed files sends those 2 files.
	changed := []string{"includes/Defines.php", "languages/i18n/en.json"}
	for _, c := range changed {
		old, err := os.ReadFile(filepath.Join(src, c))
		if err != nil {
			s.Fatalf("%v", err)
		}
		if strings.HasSuffix(c, ".php") {
			old = append(old, "\n// changed by the e2e suite\n"...)
		} else {
			old = bytes.Replace(old, []byte(`"mainpage": "Main Page"`), []byte(`"mainpage": "Main Page (e2e)"`), 1)
		}
		rewrite(s, src, c, old)
	}
	re := mustFD(s, "up", "e2e", "-i", inv)
	v2 := f.checkConverged(s)
	if v2 == v1 {
		s.Errorf("the redeploy did not switch")
	}
	for i := range f.Hosts {
		if !regexp.MustCompile(`sending 2 files, [^\n]* to [^\n]*` + regexp.QuoteMeta(f.name(i))).MatchString(re.stdout) {
			s.Errorf("%s: the redeploy did not send exactly the 2 changed files:\n%s", f.name(i), tail(re.stdout, 3000))
		}
		for _, c := range changed {
			want, _ := os.ReadFile(filepath.Join(src, c))
			if got, err := os.ReadFile(filepath.Join(f.roots[i], "latest", c)); err != nil || !bytes.Equal(got, want) {
				s.Errorf("%s: %s not the changed file after the redeploy (%v)", f.name(i), c, err)
			}
		}
	}

	back := mustFD(s, "rollback", "e2e", "-i", inv)
	if got := f.checkConverged(s); got != v1 {
		s.Errorf("rollback went to %s, want %s", got, v1)
	}
	for i := range f.Hosts {
		if got, _ := os.ReadFile(filepath.Join(f.roots[i], "latest", "includes", "Defines.php")); bytes.Contains(got, []byte("changed by the e2e suite")) {
			s.Errorf("%s: rolled back, yet serves the changed Defines.php", f.name(i))
		}
	}
	verify := mustFD(s, "status", "e2e", "-i", inv, "--verify")

	s.Observe("%d files, %.0f MB; plan %s, first deploy %s, redeploy of 2 files %s, rollback %s, status --verify %s",
		files, float64(size)/1e6, planned.took.Round(100*time.Millisecond), first.took.Round(100*time.Millisecond),
		re.took.Round(100*time.Millisecond), back.took.Round(100*time.Millisecond), verify.took.Round(100*time.Millisecond))
	s.Detail("Source: %s (MediaWiki as Debian 12 ships it: apt-get download + dpkg -x, never installed), %d files, %d bytes; shared: images/, LocalSettings.php; outside_symlinks: keep; 2 OpenSSH hosts on loopback.", cached, files, size)
	s.Detail("")
	s.Detail("| step | wall | peak RSS |")
	s.Detail("|---|---:|---:|")
	for _, x := range []struct {
		name string
		r    result
	}{{"refused (outside_symlinks: refuse)", refused}, {"plan (builds: hashes every file)", planned}, {"first deploy", first}, {"redeploy, 2 files changed", re}, {"rollback", back}, {"status --verify", verify}} {
		s.Detail("| %s | %s | %d MiB |", x.name, x.r.took.Round(10*time.Millisecond), x.r.maxRSS/1024)
	}
}
