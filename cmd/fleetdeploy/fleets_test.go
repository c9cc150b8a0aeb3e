package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 17: roles, host selection, artifacts, git refs, outside symlinks and
// init, end to end through the CLI.

// lines counts the lines of shared/<name> on host i (0 when absent).
func (f *testFleet) lines(t *testing.T, i int, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.roots[i], "shared", name))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// marker reads the marker of the build live on host i.
func (f *testFleet) marker(t *testing.T, i int) string {
	t.Helper()
	id := strings.TrimPrefix(f.live(t, i), "builds/")
	b, err := os.ReadFile(filepath.Join(f.roots[i], ".fleetdeploy", "builds", id))
	if err != nil {
		t.Fatalf("%s: marker of %s: %v", f.names[i], id, err)
	}
	return string(b)
}

// trees snapshots every host's root, to compare after a refused run.
func (f *testFleet) trees(t *testing.T) []string {
	t.Helper()
	out := make([]string, len(f.roots))
	for i, r := range f.roots {
		out[i] = tree(t, r)
	}
	return out
}

func (f *testFleet) unchanged(t *testing.T, before []string, why string) {
	t.Helper()
	for i, r := range f.roots {
		if got := tree(t, r); got != before[i] {
			t.Errorf("%s: %s changed the host:\nbefore:\n%s\nafter:\n%s", f.names[i], why, before[i], got)
		}
	}
}

func TestRolesNarrowHooksAndRuns(t *testing.T) {
	forEachBackend(t, 4, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		inv := f.writeInventory(t, inventoryOpts{source: src,
			roles: map[int]string{0: "[web]", 1: "[web]", 2: "[worker]", 3: "[worker]"},
			before: []string{
				`{run: 'echo "$FLEETDEPLOY_RELEASE" >> "$FLEETDEPLOY_ROOT/shared/web.log"', roles: [web]}`,
				`{run: 'echo "$FLEETDEPLOY_RELEASE" >> "$FLEETDEPLOY_ROOT/shared/migrate.log"', roles: [worker], once: true}`,
				`'if [ -e "$FLEETDEPLOY_ROOT/shared/fail" ]; then echo "refusing on purpose" >&2; exit 9; fi'`,
			}})
		version := func(v string) { os.WriteFile(filepath.Join(src, "VERSION"), []byte(v+"\n"), 0o644) }
		logs := func(why, name string, want ...int) {
			t.Helper()
			for i, n := range want {
				if got := f.lines(t, i, name); got != n {
					t.Errorf("%s: %s: %s has %d lines, want %d", why, f.names[i], name, got, n)
				}
			}
		}
		lives := func(why string, want ...string) {
			t.Helper()
			for i, w := range want {
				if got := f.live(t, i); got != w {
					t.Errorf("%s: %s: latest -> %s, want %s", why, f.names[i], got, w)
				}
			}
		}

		mustCLI(t, "up", "test", "-i", inv)
		v1 := f.live(t, 0)
		lives("full up", v1, v1, v1, v1)
		logs("full up: hook with roles [web]", "web.log", 1, 1, 0, 0)
		logs("full up: once among [worker]", "migrate.log", 0, 0, 1, 0)
		mustCLI(t, "status", "test", "-i", inv)

		// Narrowed to the workers: they prepare and switch together, the web hosts stay.
		version("v2")
		r := mustCLI(t, "up", "test", "-i", inv, "--roles", "worker")
		if !strings.Contains(r.stdout, "selected 2 of 4 hosts of test: "+f.names[2]+", "+f.names[3]) || !strings.Contains(r.stdout, "deployed") {
			t.Errorf("narrowed up does not say which hosts it selected:\n%s", r.stdout)
		}
		v2 := f.live(t, 2)
		lives("up --roles worker", v1, v1, v2, v2)
		logs("up --roles worker", "web.log", 1, 1, 0, 0)
		logs("up --roles worker", "migrate.log", 0, 0, 2, 0)
		// The whole environment is out of line until the rest follow; each role agrees within itself.
		st := fd(t, t.Context(), "status", "test", "-i", inv)
		if st.code != exitDrift || !strings.Contains(st.stdout, "DRIFT") || !strings.Contains(st.stderr, "not on one build") {
			t.Errorf("status after a narrowed up: want exit 4 with the drift: %s", st)
		}
		mustCLI(t, "status", "test", "-i", inv, "--roles", "worker")
		mustCLI(t, "status", "test", "-i", inv, "--roles", "web")

		// Narrowed to one worker: `once` is the first selected host among the hook's roles.
		version("v3")
		mustCLI(t, "up", "test", "-i", inv, "--hosts", f.names[3])
		v3 := f.live(t, 3)
		lives("up --hosts worker2", v1, v1, v2, v3)
		logs("up --hosts worker2", "migrate.log", 0, 0, 2, 1)
		if st := fd(t, t.Context(), "status", "test", "-i", inv, "--roles", "worker"); st.code != exitDrift {
			t.Errorf("status --roles worker with the workers split: want exit 4: %s", st)
		}

		// All or nothing within the selection: a hook failing on one worker
		// leaves both workers as they were.
		f.exec(t, 3, `touch "$ROOT/shared/fail"`)
		version("v4")
		if r := fd(t, t.Context(), "up", "test", "-i", inv, "--roles", "worker"); r.code != exitFailed || !strings.Contains(r.stderr, f.names[3]+": running before_cutover hook") {
			t.Errorf("narrowed up with a failing hook: want exit 1 naming %s: %s", f.names[3], r)
		}
		lives("failed up --roles worker", v1, v1, v2, v3)
		f.assertClean(t)
		f.exec(t, 3, `rm "$ROOT/shared/fail"`)

		// A narrowed rollback: the selected host goes back to the build live before on it.
		mustCLI(t, "rollback", "test", "-i", inv, "--hosts", f.names[3])
		lives("rollback --hosts worker2", v1, v1, v2, v2)
		mustCLI(t, "status", "test", "-i", inv, "--roles", "worker")

		// Unknown names are usage errors listing what the environment has; nothing is touched.
		before := f.trees(t)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"up", "test", "--roles", "db"}, `unknown role "db" (roles: web, worker)`},
			{[]string{"plan", "test", "--roles", "web,db"}, `unknown role "db" (roles: web, worker)`},
			{[]string{"rollback", "test", "--hosts", "nosuch"}, `unknown host "nosuch" (hosts: ` + f.names[0] + ", " + f.names[1]},
			{[]string{"status", "test", "--hosts", f.names[0] + ",nosuch"}, `unknown host "nosuch"`},
			{[]string{"unlock", "test", "--roles", "worker", "--hosts", f.names[0]}, "none of " + f.names[0] + " has role worker"},
		} {
			r := fd(t, t.Context(), append(c.args, "-i", inv)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
				t.Errorf("%v: want exit 2 with %q: %s", c.args, c.want, r)
			}
		}
		f.unchanged(t, before, "a run with an unknown role or host")

		// The rest follow: one build again. (The failed run above may or may
		// not have run the once hook on the first worker before the other
		// failed: count from here.)
		version("v5")
		migrated := f.lines(t, 2, "migrate.log")
		mustCLI(t, "up", "test", "-i", inv)
		v5 := f.live(t, 0)
		lives("full up", v5, v5, v5, v5)
		logs("full up", "migrate.log", 0, 0, migrated+1, 1)
		mustCLI(t, "status", "test", "-i", inv)
		f.assertClean(t)
	})
}

// archiveEntry is one entry of a test archive.
type archiveEntry struct {
	name, body, link string
	mode             int64
	dir              bool
}

func appEntries(version string) []archiveEntry {
	return []archiveEntry{
		{name: "index.php", body: "<?php echo 'hello " + version + "';\n", mode: 0o644},
		{name: "VERSION", body: version + "\n", mode: 0o644},
		{name: "bin/", dir: true, mode: 0o755},
		{name: "bin/run", body: "#!/bin/sh\necho run\n", mode: 0o755},
		{name: "storage/sessions/seed", body: "seeded from the artifact\n", mode: 0o644},
		{name: "config/deep/nested/a.txt", body: "a\n", mode: 0o640},
		{name: "current.php", link: "index.php"},
	}
}

// writeArchive writes entries as a tar, a tar.gz or a zip, and returns its
// path and sha256.
func writeArchive(t *testing.T, kind string, entries []archiveEntry) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	switch kind {
	case "zip":
		zw := zip.NewWriter(&buf)
		for _, e := range entries {
			h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mtime}
			mode := os.FileMode(e.mode)
			switch {
			case e.dir:
				mode |= os.ModeDir
			case e.link != "":
				mode = os.ModeSymlink | 0o777
			}
			h.SetMode(mode)
			w, err := zw.CreateHeader(h)
			if err != nil {
				t.Fatal(err)
			}
			body := e.body
			if e.link != "" {
				body = e.link
			}
			w.Write([]byte(body))
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		var w bytes.Buffer
		tw := tar.NewWriter(&w)
		for _, e := range entries {
			h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: mtime, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
			switch {
			case e.dir:
				h.Typeflag, h.Size = tar.TypeDir, 0
			case e.link != "":
				h.Typeflag, h.Linkname, h.Size, h.Mode = tar.TypeSymlink, e.link, 0, 0o777
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(e.body))
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if kind == "tgz" {
			zw := gzip.NewWriter(&buf)
			zw.Write(w.Bytes())
			zw.Close()
		} else {
			buf = w
		}
	}
	p := filepath.Join(t.TempDir(), "app."+kind)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return p, hex.EncodeToString(sum[:])
}

func TestArtifacts(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		// The inventory's source is never read when an artifact is given.
		src := writeApp(t, "from-source")
		inv := f.writeInventory(t, inventoryOpts{source: src})
		served := func(want string) {
			t.Helper()
			for i, n := range f.names {
				b, err := os.ReadFile(filepath.Join(f.roots[i], "latest", "VERSION"))
				if err != nil || string(b) != want+"\n" {
					t.Errorf("%s: latest/VERSION = %q, %v; want %s", n, b, err, want)
				}
			}
		}

		for _, kind := range []string{"tar", "tgz", "zip"} {
			art, sum := writeArchive(t, kind, appEntries("art-"+kind))
			args := []string{"up", "test", "-i", inv, "--artifact", art}
			if kind == "tgz" {
				args = append(args, "--artifact-sha256", strings.ToUpper(sum))
			}
			r := mustCLI(t, args...)
			served("art-" + kind)
			if !strings.Contains(r.stdout, "building artifact "+art) || !strings.Contains(r.stdout, "from artifact sha256:"+sum) {
				t.Errorf("%s: up does not say it deploys the artifact:\n%s", kind, r.stdout)
			}
			for i, n := range f.names {
				if m := f.marker(t, i); !strings.Contains(m, "\nsource=artifact sha256:"+sum+"\n") {
					t.Errorf("%s: %s: the marker does not record the artifact's sha256:\n%s", kind, n, m)
				}
				root := f.roots[i]
				if st, err := os.Stat(filepath.Join(root, "latest", "bin", "run")); err != nil || st.Mode().Perm() != 0o755 {
					t.Errorf("%s: %s: bin/run: %v %v", kind, n, st, err)
				}
				if l, _ := os.Readlink(filepath.Join(root, "latest", "current.php")); l != "index.php" {
					t.Errorf("%s: %s: current.php -> %q", kind, n, l)
				}
				if l, _ := os.Readlink(filepath.Join(root, "latest", ".env")); l != "../../shared/.env" {
					t.Errorf("%s: %s: shared .env not linked: %q", kind, n, l)
				}
			}
		}
		mustCLI(t, "status", "test", "-i", inv, "--verify")

		// Refused before any host changes: a truncated or corrupt archive,
		// one whose entries leave the build, a wrong sha256.
		good, sum := writeArchive(t, "tgz", appEntries("never"))
		data, _ := os.ReadFile(good)
		truncated := filepath.Join(t.TempDir(), "truncated.tgz")
		os.WriteFile(truncated, data[:len(data)*2/3], 0o644)
		corrupt := filepath.Join(t.TempDir(), "corrupt.tgz")
		bad := bytes.Clone(data)
		bad[len(bad)/2] ^= 0xff
		os.WriteFile(corrupt, bad, 0o644)
		dotdot, _ := writeArchive(t, "tar", append(appEntries("never"), archiveEntry{name: "../escape.php", body: "x", mode: 0o644}))
		abs, _ := writeArchive(t, "zip", append(appEntries("never"), archiveEntry{name: "/etc/cron.d/x", body: "x", mode: 0o644}))
		leaving, _ := writeArchive(t, "tgz", append(appEntries("never"),
			archiveEntry{name: "etc", link: "/etc"}, archiveEntry{name: "up", link: "config/../../.."}))
		wrong := strings.Repeat("0", 64)
		before := f.trees(t)
		for _, c := range []struct {
			name string
			args []string
			want []string
		}{
			{"truncated", []string{"--artifact", truncated}, []string{"building: ", "truncated.tgz"}},
			{"corrupt", []string{"--artifact", corrupt}, []string{"building: ", "corrupt.tgz"}},
			{"entry with ..", []string{"--artifact", dotdot}, []string{"../escape.php", "outside the build"}},
			{"absolute entry", []string{"--artifact", abs}, []string{"/etc/cron.d/x", "outside the build"}},
			{"links leaving the build, all listed", []string{"--artifact", leaving}, []string{"2 symlinks lead outside the build", "etc -> /etc", "up -> config/../../.."}},
			{"wrong sha256", []string{"--artifact", good, "--artifact-sha256", wrong}, []string{sum, wrong}},
		} {
			r := fd(t, t.Context(), append([]string{"up", "test", "-i", inv}, c.args...)...)
			if r.code != exitFailed {
				t.Errorf("%s: want exit 1: %s", c.name, r)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("%s: error lacks %q: %s", c.name, w, r.stderr)
				}
			}
			f.unchanged(t, before, c.name)
		}
		// Mistakes on the command line are usage errors.
		for _, args := range [][]string{
			{"--artifact", good, "--ref", "v1"},
			{"--artifact-sha256", sum},
			{"--artifact", good, "--artifact-sha256", "abc"},
		} {
			if r := fd(t, t.Context(), append([]string{"up", "test", "-i", inv}, args...)...); r.code != exitUsage {
				t.Errorf("%v: want exit 2: %s", args, r)
			}
		}
		f.unchanged(t, before, "usage errors")
	})
}

// git runs git in dir, failing the test on error.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestRefFromTagAndDirtyTree(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "tagged")
		git(t, src, "init", "-q")
		git(t, src, "add", "-A")
		git(t, src, "commit", "-qm", "v1")
		git(t, src, "tag", "v1")
		commit := git(t, src, "rev-parse", "HEAD")
		// After the tag: a change not committed, and a file never added.
		os.WriteFile(filepath.Join(src, "VERSION"), []byte("working tree\n"), 0o644)
		os.WriteFile(filepath.Join(src, "untracked.txt"), []byte("not committed\n"), 0o644)
		inv := f.writeInventory(t, inventoryOpts{source: src, exclude: "[tests, .git]"})

		r := mustCLI(t, "up", "test", "-i", inv, "--ref", "v1")
		if strings.Contains(r.stdout, "changes not committed") {
			t.Errorf("--ref deploys a commit, yet up speaks of changes not committed:\n%s", r.stdout)
		}
		for i, n := range f.names {
			b, _ := os.ReadFile(filepath.Join(f.roots[i], "latest", "VERSION"))
			if string(b) != "tagged\n" {
				t.Errorf("%s: VERSION %q, want the tag's", n, b)
			}
			if _, err := os.Stat(filepath.Join(f.roots[i], "latest", "untracked.txt")); err == nil {
				t.Errorf("%s: a file not committed was shipped with --ref", n)
			}
			if m := f.marker(t, i); !strings.Contains(m, "\nsource=git "+commit+" (v1)\n") {
				t.Errorf("%s: the marker does not record the tag's commit %s:\n%s", n, commit, m)
			}
		}
		if r := fd(t, t.Context(), "up", "test", "-i", inv, "--ref", "no-such-tag"); r.code != exitFailed || !strings.Contains(r.stderr, `"no-such-tag"`) {
			t.Errorf("unknown ref: %s", r)
		}

		// A plain up of the working tree says it is dirty and records it so.
		r = mustCLI(t, "up", "test", "-i", inv)
		if !strings.Contains(r.stdout, src+" has changes not committed") || !strings.Contains(r.stdout, commit) {
			t.Errorf("up of a dirty working tree does not say so:\n%s", r.stdout)
		}
		for i, n := range f.names {
			if m := f.marker(t, i); !strings.Contains(m, "\nsource=git "+commit+" dirty\n") {
				t.Errorf("%s: the marker does not record a dirty build:\n%s", n, m)
			}
		}
	})
}

func TestOutsideSymlinksInEachMode(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		// Targets outside the app, on this machine.
		ext := filepath.Join(t.TempDir(), "ext")
		os.MkdirAll(filepath.Join(ext, "assets", "css"), 0o755)
		os.WriteFile(filepath.Join(ext, "lib.php"), []byte("<?php // shared library\n"), 0o644)
		os.WriteFile(filepath.Join(ext, "assets", "css", "site.css"), []byte("body{}\n"), 0o644)
		app := func(t *testing.T) string {
			src := writeApp(t, "links")
			os.Symlink(filepath.Join(ext, "lib.php"), filepath.Join(src, "lib.php"))
			rel, _ := filepath.Rel(filepath.Join(src, "public"), filepath.Join(ext, "assets"))
			os.MkdirAll(filepath.Join(src, "public"), 0o755)
			os.Symlink(rel, filepath.Join(src, "public", "assets"))
			os.Symlink("index.php", filepath.Join(src, "home.php")) // inside: always kept
			return src
		}
		src := app(t)
		relAssets, _ := os.Readlink(filepath.Join(src, "public", "assets"))

		// refuse (the default): one error lists them all; nothing changes.
		inv := f.writeInventory(t, inventoryOpts{source: src})
		before := f.trees(t)
		for _, cmd := range []string{"plan", "up"} {
			r := fd(t, t.Context(), cmd, "test", "-i", inv)
			if r.code != exitFailed || !strings.Contains(r.stderr, "2 symlinks lead outside the build") ||
				!strings.Contains(r.stderr, "lib.php -> "+filepath.Join(ext, "lib.php")) || !strings.Contains(r.stderr, "public/assets -> "+relAssets) {
				t.Errorf("refuse, %s: want exit 1 listing both links: %s", cmd, r)
			}
		}
		f.unchanged(t, before, "refused outside symlinks")

		// keep: shipped as they are; plan and up say the hosts must provide the targets.
		inv = f.writeInventory(t, inventoryOpts{source: src, extra: "outside_symlinks: keep\n"})
		for _, cmd := range []string{"plan", "up"} {
			r := mustCLI(t, cmd, "test", "-i", inv)
			if !strings.Contains(r.stdout, "2 symlinks leading outside the build kept as they are (outside_symlinks: keep): every host must provide their targets") ||
				!strings.Contains(r.stdout, "  public/assets -> "+relAssets) {
				t.Errorf("keep, %s: the kept links are not listed:\n%s", cmd, r.stdout)
			}
		}
		for i, n := range f.names {
			latest := filepath.Join(f.roots[i], "latest")
			if l, _ := os.Readlink(filepath.Join(latest, "lib.php")); l != filepath.Join(ext, "lib.php") {
				t.Errorf("keep: %s: lib.php -> %q", n, l)
			}
			if l, _ := os.Readlink(filepath.Join(latest, "public", "assets")); l != relAssets {
				t.Errorf("keep: %s: public/assets -> %q", n, l)
			}
			if l, _ := os.Readlink(filepath.Join(latest, "home.php")); l != "index.php" {
				t.Errorf("keep: %s: home.php -> %q", n, l)
			}
		}

		// copy: what they lead to is shipped in their place.
		inv = f.writeInventory(t, inventoryOpts{source: src, extra: "outside_symlinks: copy\n"})
		r := mustCLI(t, "up", "test", "-i", inv)
		if !strings.Contains(r.stdout, "2 symlinks leading outside the build replaced by what they lead to on this machine (outside_symlinks: copy)") {
			t.Errorf("copy: up does not say what it copied:\n%s", r.stdout)
		}
		for i, n := range f.names {
			latest := filepath.Join(f.roots[i], "latest")
			for p, want := range map[string]string{"lib.php": "<?php // shared library\n", "public/assets/css/site.css": "body{}\n"} {
				fi, err := os.Lstat(filepath.Join(latest, p))
				b, _ := os.ReadFile(filepath.Join(latest, p))
				if err != nil || !fi.Mode().IsRegular() || string(b) != want {
					t.Errorf("copy: %s: %s: %v %v %q", n, p, fi, err, b)
				}
			}
			if fi, err := os.Lstat(filepath.Join(latest, "public", "assets")); err != nil || !fi.IsDir() {
				t.Errorf("copy: %s: public/assets is not a folder: %v %v", n, fi, err)
			}
			if l, _ := os.Readlink(filepath.Join(latest, "home.php")); l != "index.php" {
				t.Errorf("copy: %s: home.php -> %q", n, l)
			}
		}
		// copy needs the target here.
		os.Rename(filepath.Join(ext, "lib.php"), filepath.Join(ext, "gone.php"))
		t.Cleanup(func() { os.Rename(filepath.Join(ext, "gone.php"), filepath.Join(ext, "lib.php")) })
		before = f.trees(t)
		if r := fd(t, t.Context(), "up", "test", "-i", inv); r.code != exitFailed || !strings.Contains(r.stderr, "symlink lib.php -> ") || !strings.Contains(r.stderr, "cannot be copied") {
			t.Errorf("copy of a missing target: %s", r)
		}
		f.unchanged(t, before, "copy of a missing target")
		mustCLI(t, "status", "test", "-i", inv, "--verify")
	})
}

// A shared path that leads through a symlink of the build is refused at
// plan time, naming the link; no host changes.
func TestSharedPathThroughBuildSymlinkRefused(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		os.MkdirAll(filepath.Join(src, "var", "storage", "sessions"), 0o755)
		os.RemoveAll(filepath.Join(src, "storage"))
		os.Symlink("var/storage", filepath.Join(src, "storage"))
		inv := f.writeInventory(t, inventoryOpts{source: src})
		before := f.trees(t)
		for _, cmd := range []string{"plan", "up"} {
			r := fd(t, t.Context(), cmd, "test", "-i", inv)
			if r.code != exitFailed || !strings.Contains(r.stderr, "shared path storage/sessions leads through storage, a symlink of the build (-> var/storage)") {
				t.Errorf("%s: want exit 1 naming the link: %s", cmd, r)
			}
		}
		f.unchanged(t, before, "a shared path through a symlink")
	})
}

func TestInitWritesAnInventoryOnce(t *testing.T) {
	f := startOpenSSH(t, 1)
	f.provision(t)
	dir := writeApp(t, "init")
	os.WriteFile(filepath.Join(dir, "composer.json"), []byte(`{"require": {"php": "^8.2"}}`), 0o644)
	path := filepath.Join(dir, "hosts.yml")

	r := mustCLI(t, "init", "-i", path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"source: .", "composer install", "- \".git\"", "environments:"} {
		if !strings.Contains(string(data), want) && !strings.Contains(string(data), strings.ReplaceAll(want, `"`, "")) {
			t.Errorf("hosts.yml lacks %q:\n%s", want, data)
		}
	}
	if !strings.Contains(r.stdout, "wrote "+path) || !strings.Contains(r.stdout, "fleetdeploy -i "+path+" plan production") {
		t.Errorf("init does not say what to do next:\n%s", r.stdout)
	}

	// Never overwritten.
	os.WriteFile(path, append(data, "# edited\n"...), 0o644)
	if r := fd(t, t.Context(), "init", "-i", path); r.code != exitFailed || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("init over an existing file: want exit 1: %s", r)
	}
	if now, _ := os.ReadFile(path); !bytes.HasSuffix(now, []byte("# edited\n")) {
		t.Error("init overwrote an existing file")
	}
	if r := fd(t, t.Context(), "init", "extra-arg", "-i", filepath.Join(t.TempDir(), "x.yml")); r.code != exitUsage {
		t.Errorf("init with an argument: %s", r)
	}

	// Placeholders only: it does not load until a host is written in.
	if r := fd(t, t.Context(), "plan", "production", "-i", path); r.code != exitUsage || !strings.Contains(r.stderr, path+":") {
		t.Errorf("plan of an inventory without hosts: want exit 2 at a line: %s", r)
	}
	// Written in as a user would (this test's host and login), it plans and deploys.
	host, port, _ := strings.Cut(f.names[0], ":")
	edited := strings.Replace(string(data), "      # - web1.example.com\n",
		fmt.Sprintf("      - {address: %s, port: %s, root: %s}\n", host, port, f.roots[0]), 1)
	edited = strings.Replace(edited, "build:\n  - composer install --no-dev --prefer-dist --optimize-autoloader\n", "", 1)
	edited += fmt.Sprintf("ssh:\n  user: %s\n  identity: %s\n  known_hosts: %s\n  config: none\n", f.user, f.identity, f.knownHosts)
	os.WriteFile(path, []byte(edited), 0o644)
	mustCLI(t, "plan", "production", "-i", path)
	mustCLI(t, "up", "production", "-i", path)
	if b, _ := os.ReadFile(filepath.Join(f.roots[0], "latest", "VERSION")); string(b) != "init\n" {
		t.Errorf("deployed VERSION %q", b)
	}
}

// --roles and --hosts reach every command that acts on hosts, before or
// after ENV; the build flags reach up and plan.
func TestSelectionAndBuildFlags(t *testing.T) {
	sel := selection{roles: []string{"web", "worker"}, hosts: []string{"a", "b:2222"}}
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		args    []string
		command string
		opts    any
	}{
		{[]string{"up", "prod", "--roles", "web,worker", "--hosts", "a,b:2222"}, "up", upOptions{env: "prod", sel: sel}},
		{[]string{"up", "--roles=web", "--roles", "worker", "prod", "--hosts", "a", "--hosts", "b:2222"}, "up", upOptions{env: "prod", sel: sel}},
		{[]string{"plan", "prod", "--roles", "web,worker", "--hosts", "a,b:2222", "--ref", "v1.2"}, "up", upOptions{env: "prod", dryRun: true, sel: sel, from: buildFrom{ref: "v1.2"}}},
		{[]string{"up", "prod", "--artifact", "dist/app.tgz", "--artifact-sha256", strings.ToUpper(sum)}, "up", upOptions{env: "prod", from: buildFrom{artifact: "dist/app.tgz", artifactSHA256: sum}}},
		{[]string{"rollback", "prod", "--to", "20261125-101500", "--roles", "web,worker", "--hosts", "a,b:2222"}, "rollback", rollbackOptions{env: "prod", to: "20261125-101500", sel: sel}},
		{[]string{"status", "--roles", "web,worker", "prod", "--hosts", "a,b:2222", "--verify"}, "status", statusOptions{env: "prod", verify: true, sel: sel}},
		{[]string{"unlock", "prod", "--force", "--roles", "web,worker", "--hosts", "a,b:2222"}, "unlock", unlockOptions{env: "prod", force: true, sel: sel}},
		{[]string{"-i", "deploy/hosts.yml", "init"}, "init", initOptions{}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parse(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got.command != tc.command || fmt.Sprintf("%+v", got.opts) != fmt.Sprintf("%+v", tc.opts) {
				t.Errorf("got %s %+v, want %s %+v", got.command, got.opts, tc.command, tc.opts)
			}
		})
	}
	for _, args := range [][]string{
		{"up", "prod", "--artifact", "a.tgz", "--ref", "v1"},
		{"plan", "prod", "--artifact-sha256", sum},
		{"up", "prod", "--artifact", "a.tgz", "--artifact-sha256", "xyz"},
		{"up", "prod", "--artifact="},
		{"init", "prod"},
	} {
		if _, err := parse(t, args...); exitCode(err) != exitUsage {
			t.Errorf("%v: want a usage error, got %v", args, err)
		}
	}
}

// A build that fails by itself (no command run) and a host that cannot be
// reached are both reported by one run.
func TestBuildAndHostFailuresInOneRun(t *testing.T) {
	f := startOpenSSH(t, 2)
	f.provision(t)
	src := writeApp(t, "v1")
	os.Symlink("/etc/passwd", filepath.Join(src, "passwd"))
	inv := f.writeInventory(t, inventoryOpts{source: src})
	f.kill(1)
	for _, cmd := range []string{"plan", "up"} {
		r := fd(t, t.Context(), cmd, "test", "-i", inv)
		if r.code != exitFailed || !strings.Contains(r.stderr, "1 symlink leads outside the build") || !strings.Contains(r.stderr, f.names[1]+": connecting") {
			t.Errorf("%s: want both the build's and the host's failure: %s", cmd, r)
		}
	}
	if f.live(t, 0) != "" || len(f.builds(t, 0)) != 0 {
		t.Errorf("%s changed", f.names[0])
	}
}
