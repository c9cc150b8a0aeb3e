package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// contentTree describes a build's files (content hashes, modes, link targets),
// skipping shared links, to compare a delta-assembled build with its source.
func contentTree(t *testing.T, dir string, skip ...string) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, _ := d.Info()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			lines = append(lines, fmt.Sprintf("l %s -> %s", rel, target))
		case d.IsDir():
			lines = append(lines, fmt.Sprintf("d %s %o", rel, info.Mode().Perm()))
		default:
			data, _ := os.ReadFile(p)
			sum := sha256.Sum256(data)
			lines = append(lines, fmt.Sprintf("f %s %o %s", rel, info.Mode().Perm(), hex.EncodeToString(sum[:8])))
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// checkIdentities compares the file identities recorded for the live build
// (made from the previous build's record and the files sent) with a fresh
// listing of the build: any difference would make a later deploy resend files,
// or trust a changed one.
func checkIdentities(t *testing.T, root string) {
	t.Helper()
	target, err := os.Readlink(filepath.Join(root, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(target, "builds/")
	data, err := os.ReadFile(filepath.Join(root, ".fleetdeploy", "builds", id+".stat"))
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		recorded = append(recorded, strings.TrimPrefix(l, "./"))
	}
	cmd := exec.Command("find", ".", "-type", "f", "-printf", `%P\t%s\t%T@\t%i\n`)
	cmd.Dir = filepath.Join(root, target)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	fresh := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(recorded)
	sort.Strings(fresh)
	if strings.Join(recorded, "\n") != strings.Join(fresh, "\n") {
		t.Errorf("%s: recorded file identities differ from the build's:\nrecorded:\n%s\nfresh:\n%s", root, strings.Join(recorded, "\n"), strings.Join(fresh, "\n"))
	}
}

func TestRedeploySendsOnlyChangedFiles(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		// A name that would be an option if it reached a command unguarded.
		os.WriteFile(filepath.Join(src, "-rf"), []byte("dash\n"), 0o644)
		// Names whose order differs between numbers, bytes and locales: the
		// host merges the old manifest with the delta in byte order.
		for _, name := range []string{"9", "10", "a b.txt", "\u00e9t\u00e9.txt", "Zed", "_under"} {
			os.WriteFile(filepath.Join(src, name), []byte(name+"\n"), 0o644)
		}
		inv := f.writeInventory(t, inventoryOpts{source: src})
		mustCLI(t, "up", "test", "-i", inv)
		first := f.live(t, 0)

		// Change one file, add one, remove one, change a mode.
		os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 'v2';\n"), 0o644)
		os.WriteFile(filepath.Join(src, "new.txt"), []byte("new\n"), 0o644)
		os.Remove(filepath.Join(src, "config/deep/nested/a.txt"))
		os.Chmod(filepath.Join(src, "VERSION"), 0o600)
		os.WriteFile(filepath.Join(src, "9"), []byte("nine\n"), 0o644)
		os.WriteFile(filepath.Join(src, "\u00e9t\u00e9.txt"), []byte("summer\n"), 0o644)
		r := mustCLI(t, "up", "test", "-i", inv)
		// index.php, new.txt, VERSION, 9, été.txt; not the build's seed of the shared
		// directory, which the host already has.
		if !strings.Contains(r.stdout, "sending 5 files") {
			t.Errorf("want 5 files sent:\n%s", r.stdout)
		}
		want := contentTree(t, src, "tests", "storage")
		for i, n := range f.names {
			live := filepath.Join(f.roots[i], "latest")
			if got := contentTree(t, live, ".env", "storage"); got != want {
				t.Errorf("%s: delta-assembled build differs from the source:\n got:\n%s\nwant:\n%s", n, got, want)
			}
			checkIdentities(t, f.roots[i])
			// Unchanged files are hard links into the previous build (no hooks here).
			if inode(t, filepath.Join(live, "bin", "run")) != inode(t, filepath.Join(f.roots[i], first, "bin", "run")) {
				t.Errorf("%s: an unchanged file was not reused from the previous build", n)
			}
		}

		// The same with compression: identical result.
		os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 'v2.1';\n"), 0o644)
		mustCLI(t, "--compress", "up", "test", "-i", inv)
		if got, want := contentTree(t, filepath.Join(f.roots[0], "latest"), ".env", "storage"), contentTree(t, src, "tests", "storage"); got != want {
			t.Errorf("compressed upload differs from the source:\n%s\nwant\n%s", got, want)
		}

		// A hand hotfix on host 0 is noticed and overwritten by the build's file.
		second := f.live(t, 0)
		f.exec(t, 0, `printf 'hotfix\n' >> "$ROOT/latest/bin/run"`)
		r = mustCLI(t, "up", "test", "-i", inv)
		if !strings.Contains(r.stdout, f.names[0]+": 1 file of the live build changed or removed on the host since it was made (bin/run): sending again") ||
			strings.Contains(r.stdout, f.names[1]+": 1 file") {
			t.Errorf("the hand-changed file was not sent again (to that host only):\n%s", r.stdout)
		}
		if data, _ := os.ReadFile(filepath.Join(f.roots[0], "latest", "bin", "run")); string(data) != "#!/bin/sh\necho run\n" {
			t.Errorf("bin/run = %q after redeploy", data)
		}
		_ = second

		// A corrupt manifest on host 1 means a full upload there, never a wrong build.
		// Here: a well-formed manifest that lies about the content of bin/run,
		// a file the next build reuses.
		f.exec(t, 1, `id=$(readlink "$ROOT/latest" | sed 's|builds/||'); m="$ROOT/.fleetdeploy/builds/$id.manifest"; sed 's/^\(f\t[0-7]*\t[0-9]*\t\)[0-9a-f]*\(\tbin\/run\)$/\1`+strings.Repeat("0", 64)+`\2/' "$m" > "$m.new" && mv "$m.new" "$m"`)
		os.WriteFile(filepath.Join(src, "index.php"), []byte(strings.Repeat("0", 0)+"<?php echo 'v2';\n"), 0o644)
		os.WriteFile(filepath.Join(src, "new.txt"), []byte("newer\n"), 0o644)
		r = mustCLI(t, "up", "test", "-i", inv)
		if !strings.Contains(r.stdout, f.names[1]+": the live build's manifest is corrupt: sending the whole build") {
			t.Errorf("a tampered manifest went unnoticed:\n%s", r.stdout)
		}
		want = contentTree(t, src, "tests", "storage")
		if got := contentTree(t, filepath.Join(f.roots[1], "latest"), ".env", "storage"); got != want {
			t.Errorf("after a corrupt manifest the build differs from the source:\n%s\nwant\n%s", got, want)
		}
	})
}

func TestHookRewritingReusedFileLeavesLiveBuildAlone(t *testing.T) {
	forEachBackend(t, 1, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		// composer and some cache warmers rewrite files in place like this.
		inv := f.writeInventory(t, inventoryOpts{source: src, before: []string{`'printf x >> bin/run; sh -c "test -w bin/run"'`}})
		mustCLI(t, "up", "test", "-i", inv)
		first := f.live(t, 0)
		before := contentTree(t, filepath.Join(f.roots[0], first))
		os.WriteFile(filepath.Join(src, "index.php"), []byte("v2"), 0o644)
		r := mustCLI(t, "up", "test", "-i", inv)
		// index.php, then the file the hook rewrote, noticed as changed.
		if !strings.Contains(r.stdout, "sending 1 files") || !strings.Contains(r.stdout, ": 1 file of the live build changed or removed on the host since it was made (bin/run): sending again") {
			t.Errorf("want a delta upload, and bin/run sent again:\n%s", r.stdout)
		}
		if after := contentTree(t, filepath.Join(f.roots[0], first)); after != before {
			t.Errorf("preparing the new build changed the previous live build:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// Cleanup keeps a build a process uses, and removes it once none does: a
// long job (the subscriber import) working in it, or a process holding open
// a file of that build alone (changed since: its only link), wherever it works.
func TestCleanupKeepsBuildInUse(t *testing.T) {
	for name, use := range map[string]string{
		"working in it":  `cd "$ROOT/$B/bin" && { sleep 60 </dev/null >/dev/null 2>&1 & echo $!; }`,
		"file held open": `cd / && { sleep 60 <"$ROOT/$B/index.php" >/dev/null 2>&1 & echo $!; }`,
	} {
		t.Run(name, func(t *testing.T) {
			forEachBackend(t, 1, func(t *testing.T, f *testFleet) {
				f.provision(t)
				src := writeApp(t, "v1")
				inv := f.writeInventory(t, inventoryOpts{source: src, keep: 1})
				mustCLI(t, "up", "test", "-i", inv)
				a := f.live(t, 0)
				pid := strings.TrimSpace(f.exec(t, 0, "B="+a+"; "+use))
				t.Cleanup(func() { f.exec(t, 0, "kill "+pid+" 2>/dev/null; true") })
				os.WriteFile(filepath.Join(src, "index.php"), []byte("v2"), 0o644)
				mustCLI(t, "up", "test", "-i", inv)
				r := mustCLI(t, "up", "test", "-i", inv)
				if _, err := os.Stat(filepath.Join(f.roots[0], a)); err != nil {
					t.Fatalf("cleanup removed %s while process %s uses it:\n%s", a, pid, r.stdout)
				}
				if !strings.Contains(r.stdout, "keeping "+a+": in use by process "+pid) {
					t.Errorf("the kept build is not reported:\n%s", r.stdout)
				}
				f.exec(t, 0, "kill "+pid)
				mustCLI(t, "up", "test", "-i", inv)
				if _, err := os.Stat(filepath.Join(f.roots[0], a)); err == nil {
					t.Errorf("%s was not removed once no process used it", a)
				}
				if n := len(f.builds(t, 0)); n != 2 {
					t.Errorf("%d builds, want 2 (keep 1 + previous)", n)
				}
			})
		})
	}
}

// A redeploy whose small payload rides in the command and whose list of
// files not to reuse is long (a vendor folder removed) still fits: the
// command would pass the 128 KiB one argument may have, so the payload goes
// on stdin (it failed with "Argument list too long" on every host).
func TestRedeployWithLongSkipListAndInlinePayload(t *testing.T) {
	forEachBackend(t, 1, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		vendor := filepath.Join(src, "vendor", strings.Repeat("package-with-a-long-name-", 2))
		os.MkdirAll(vendor, 0o755)
		for i := range 850 {
			os.WriteFile(filepath.Join(vendor, fmt.Sprintf("file-%04d.php", i)), []byte(fmt.Sprint(i)), 0o644)
		}
		inv := f.writeInventory(t, inventoryOpts{source: src})
		mustCLI(t, "up", "test", "-i", inv)
		os.RemoveAll(filepath.Join(src, "vendor"))
		noise := make([]byte, 40<<10)
		rand.Read(noise)
		os.WriteFile(filepath.Join(src, "blob.bin"), noise, 0o644)
		r := mustCLI(t, "up", "test", "-i", inv)
		if !strings.Contains(r.stdout, "sending 1 files") {
			t.Errorf("want a delta of one file:\n%s", r.stdout)
		}
		if got, want := contentTree(t, filepath.Join(f.roots[0], "latest"), ".env", "storage"), contentTree(t, src, "tests", "storage"); got != want {
			t.Errorf("the build differs from the source:\n%s\nwant\n%s", got, want)
		}
	})
}

func TestStatusFindsFilesChangedOnHost(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1")})
		mustCLI(t, "up", "test", "-i", inv)
		mustCLI(t, "status", "test", "-i", inv, "--verify")
		// A hand edit that keeps size and mtime is found too: its ctime moved
		// after the record was sealed, and its content differs.
		f.exec(t, 1, `f="$ROOT/latest/index.php"; t=$(stat -c %y "$f"); o=$(grep -bo v1 "$f" | cut -d: -f1); printf v9 | dd of="$f" bs=1 seek="$o" conv=notrunc 2>/dev/null; touch -d "$t" "$f"`)
		if r := fd(t, t.Context(), "status", "test", "-i", inv); r.code != 4 || !strings.Contains(r.stdout, "1 files changed on the host since the deploy (index.php)") {
			t.Errorf("status without --verify: want drift on %s: %s", f.names[1], r)
		}
		r := fd(t, t.Context(), "status", "test", "-i", inv, "--verify")
		if r.code != 4 || !strings.Contains(r.stdout, "1 files differ from the build's manifest (index.php: FAILED)") {
			t.Errorf("status --verify: want drift on %s: %s", f.names[1], r)
		}
		// A plain edit is noticed from the recorded file identities.
		f.exec(t, 0, `echo extra >> "$ROOT/latest/VERSION"`)
		r = fd(t, t.Context(), "status", "test", "-i", inv)
		if r.code != 4 || !strings.Contains(r.stdout, "1 files changed on the host since the deploy (VERSION)") {
			t.Errorf("status: want drift on %s: %s", f.names[0], r)
		}
	})
}

// A source file written to while the hosts are reached (after the build was
// hashed, before it is sent) makes the build be made again; one that never
// stops changing fails the deploy with the path, and no host changes.
func TestSourceChangingDuringDeploy(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		inv := f.writeInventory(t, inventoryOpts{source: src})
		run := func(change func(n int)) result {
			var out, errb strings.Builder
			n := 0
			code := runWith(t.Context(), []string{"fleetdeploy", "--cache-dir", t.TempDir(), "up", "test", "-i", inv}, &out, &errb, time.Now,
				func(c *common) { c.beforePayloads = func() { n++; change(n) } })
			return result{code, out.String(), errb.String()}
		}
		mustCLI(t, "up", "test", "-i", inv)
		// Changed once, before the first payload: built again, deployed as changed.
		os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 'first';\n"), 0o644)
		r := run(func(n int) {
			if n == 1 {
				os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 'edited';\n"), 0o644)
			}
		})
		if r.code != 0 || !strings.Contains(r.stdout, "index.php changed since the build was made") || !strings.Contains(r.stdout, "building again") {
			t.Fatalf("changed once: %s", r)
		}
		for i := range f.names {
			if data, _ := os.ReadFile(filepath.Join(f.roots[i], "latest", "index.php")); string(data) != "<?php echo 'edited';\n" {
				t.Errorf("%s: index.php = %q", f.names[i], data)
			}
		}
		before := f.live(t, 0)
		// Changed before every attempt: fails naming the file, nothing switches.
		os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 'to send';\n"), 0o644)
		r = run(func(n int) {
			os.WriteFile(filepath.Join(src, "index.php"), []byte(fmt.Sprintf("<?php echo %d;\n", n)), 0o644)
		})
		if r.code != 1 || !strings.Contains(r.stderr, "index.php changed since the build was made") || strings.Count(r.stdout, "building again") != 2 {
			t.Fatalf("always changing: %s", r)
		}
		if f.live(t, 0) != before {
			t.Error("a host switched after a failed build")
		}
		f.assertClean(t)
	})
}

// Pacing holds an upload to 256 KiB ahead of the host's tar on a LAN, and
// never below what a gigabit link holds in flight farther away: at 20 ms,
// more than OpenSSH's own 2 MiB window, so it no longer holds anything back.
func TestPaceWindow(t *testing.T) {
	if got := paceWindow(0); got != 256<<10 {
		t.Errorf("loopback: %d, want %d", got, 256<<10)
	}
	if got := paceWindow(300 * time.Microsecond); got < 256<<10 || got > 320<<10 {
		t.Errorf("LAN, 0.3 ms: %d", got)
	}
	if got := paceWindow(20 * time.Millisecond); got <= 2<<20 {
		t.Errorf("WAN, 20 ms: %d, want more than 2 MiB", got)
	}
}

// --compress and --compress=false are "given": the automatic choice is off.
func TestCompressFlagIsGiven(t *testing.T) {
	for args, want := range map[string]bool{"--compress=false": true, "--compress": true, "": false} {
		var set bool
		r := realRunners()
		r.up = func(_ context.Context, c *common, _ upOptions) error { set = c.compressSet; return nil }
		app := newApp(&common{out: newPrinter(io.Discard), stderr: io.Discard, now: time.Now}, r)
		argv := []string{"fleetdeploy"}
		if args != "" {
			argv = append(argv, args)
		}
		if err := app.Run(append(argv, "up", "prod")); err != nil {
			t.Fatal(err)
		}
		if set != want {
			t.Errorf("%q: compress given = %v, want %v", args, set, want)
		}
	}
}

// With hooks, reused files are copies; the build assembled from the live one
// is still exactly the source: changed, added, removed files and folders, a
// mode change, and nothing of what the app wrote into the live build (a stale
// cache file, a folder of its own).
func TestCopiedDeltaMatchesSource(t *testing.T) {
	forEachBackend(t, 1, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		os.MkdirAll(filepath.Join(src, "gone", "deep"), 0o755)
		os.WriteFile(filepath.Join(src, "gone", "deep", "x"), []byte("x\n"), 0o644)
		inv := f.writeInventory(t, inventoryOpts{source: src, before: []string{`'true'`}})
		mustCLI(t, "up", "test", "-i", inv)
		first := f.live(t, 0)
		f.exec(t, 0, `mkdir -p "$ROOT/latest/bootstrap/cache" "$ROOT/latest/config/deep/junk" && echo stale > "$ROOT/latest/bootstrap/cache/config.php" && echo j > "$ROOT/latest/config/deep/junk/j"`)

		os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 'v2';\n"), 0o644)
		os.WriteFile(filepath.Join(src, "new.txt"), []byte("new\n"), 0o644)
		os.Remove(filepath.Join(src, "config/deep/nested/a.txt"))
		os.RemoveAll(filepath.Join(src, "gone"))
		os.Chmod(filepath.Join(src, "VERSION"), 0o600)
		os.Chmod(filepath.Join(src, "bin"), 0o750)
		r := mustCLI(t, "up", "test", "-i", inv)
		if !strings.Contains(r.stdout, "reused from "+filepath.Base(first)+" as copies") {
			t.Errorf("want a delta with copies:\n%s", r.stdout)
		}
		live := filepath.Join(f.roots[0], "latest")
		if got, want := contentTree(t, live, ".env", "storage"), contentTree(t, src, "tests", "storage"); got != want {
			t.Errorf("copied delta differs from the source:\n got:\n%s\nwant:\n%s", got, want)
		}
		if inode(t, filepath.Join(live, "bin", "run")) == inode(t, filepath.Join(f.roots[0], first, "bin", "run")) {
			t.Error("a reused file shares its inode with the previous build although hooks run")
		}
		checkIdentities(t, f.roots[0])
	})
}
