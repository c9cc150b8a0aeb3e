package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/plan"
)

// forEachBackend runs a scenario against every backend with a fresh fleet.
func forEachBackend(t *testing.T, n int, scenario func(t *testing.T, f *testFleet)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			scenario(t, b.start(t, n))
		})
	}
}

func TestDeployAndRedeploy(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		inv := f.writeInventory(t, inventoryOpts{source: src})

		r := mustCLI(t, "up", "test", "-i", inv)
		first := f.live(t, 0)
		if !strings.HasPrefix(first, "builds/") {
			t.Fatalf("latest -> %q, want a relative link into builds/\n%s", first, r)
		}
		if !strings.Contains(r.stdout, "cutover skew") {
			t.Errorf("no cutover skew in the summary:\n%s", r.stdout)
		}
		// Shared data written by the app survives the next deploy.
		for i := range f.names {
			f.exec(t, i, `echo user-session > "$ROOT/latest/storage/sessions/sess1"`)
		}
		os.WriteFile(filepath.Join(src, "VERSION"), []byte("v2\n"), 0o644)
		mustCLI(t, "-i", inv, "up", "test")
		second := f.live(t, 0)
		if second == first {
			t.Fatalf("redeploy did not switch: latest still -> %s", first)
		}
		for i, name := range f.names {
			if got := f.live(t, i); got != second {
				t.Errorf("%s: latest -> %s, want %s (every host on one build)", name, got, second)
			}
			root := f.roots[i]
			b, err := os.ReadFile(filepath.Join(root, "latest", "VERSION"))
			if err != nil || string(b) != "v2\n" {
				t.Errorf("%s: latest/VERSION = %q, %v", name, b, err)
			}
			if s, err := os.ReadFile(filepath.Join(root, "latest", "storage", "sessions", "sess1")); err != nil || string(s) != "user-session\n" {
				t.Errorf("%s: shared session lost: %q, %v", name, s, err)
			}
			if s, err := os.ReadFile(filepath.Join(root, "shared", "storage", "sessions", "seed")); err != nil || string(s) != "seeded from the build\n" {
				t.Errorf("%s: shared dir not seeded from the first build: %q, %v", name, s, err)
			}
			if l, _ := os.Readlink(filepath.Join(root, "latest", ".env")); l != "../../shared/.env" {
				t.Errorf("%s: .env -> %q, want ../../shared/.env", name, l)
			}
			if l, _ := os.Readlink(filepath.Join(root, "latest", "storage", "sessions")); l != "../../../shared/storage/sessions" {
				t.Errorf("%s: storage/sessions -> %q", name, l)
			}
			if _, err := os.Stat(filepath.Join(root, "latest", "tests")); err == nil {
				t.Errorf("%s: excluded tests/ was shipped", name)
			}
			if st, err := os.Stat(filepath.Join(root, "latest", "bin", "run")); err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("%s: bin/run mode lost: %v %v", name, st, err)
			}
			if n := len(f.builds(t, i)); n != 2 {
				t.Errorf("%s: %d builds, want 2", name, n)
			}
		}
		f.assertClean(t)
		st := fd(t, t.Context(), "status", "test", "-i", inv)
		if st.code != 0 || !strings.Contains(st.stdout, strings.TrimPrefix(second, "builds/")) {
			t.Errorf("status: %s", st)
		}
	})
}

func TestRollbackWalksLiveHistory(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "A")
		inv := f.writeInventory(t, inventoryOpts{source: src})
		deploy := func(v string) string {
			t.Helper()
			os.WriteFile(filepath.Join(src, "VERSION"), []byte(v), 0o644)
			mustCLI(t, "up", "test", "-i", inv)
			return f.live(t, 0)
		}
		onAll := func(want, why string) {
			t.Helper()
			for i, n := range f.names {
				if got := f.live(t, i); got != want {
					t.Fatalf("%s: %s: latest -> %s, want %s", why, n, got, want)
				}
			}
		}
		a, b := deploy("A"), deploy("B")
		mustCLI(t, "rollback", "test", "-i", inv)
		onAll(a, "rollback after A, B")
		c := deploy("C")
		mustCLI(t, "rollback", "test", "-i", inv)
		onAll(a, "rollback after A, B, rollback, C")

		// Deploy D, E: rollback twice walks back E -> D -> A.
		d, _ := deploy("D"), deploy("E")
		mustCLI(t, "rollback", "test", "-i", inv)
		onAll(d, "first rollback from E")
		mustCLI(t, "rollback", "test", "-i", inv)
		onAll(a, "second rollback from E")

		// --to any build every host has, even a rolled-back-from one.
		mustCLI(t, "rollback", "test", "--to", strings.TrimPrefix(b, "builds/"), "-i", inv)
		onAll(b, "rollback --to B")

		// A target some host lacks is refused, naming that host; nothing switches.
		os.RemoveAll(filepath.Join(f.roots[1], c))
		r := fd(t, t.Context(), "rollback", "test", "-i", inv, "--to", strings.TrimPrefix(c, "builds/"))
		if r.code != 1 || !strings.Contains(r.stderr, f.names[1]+": ") || !strings.Contains(r.stderr, "has no build") {
			t.Errorf("rollback to a build one host lacks: %s", r)
		}
		onAll(b, "refused rollback")
		f.assertClean(t)
	})
}

func TestKeepRemovesOldBuildsOnly(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v")
		inv := f.writeInventory(t, inventoryOpts{source: src, keep: 2})
		var ids []string
		for range 4 {
			mustCLI(t, "up", "test", "-i", inv)
			ids = append(ids, strings.TrimPrefix(f.live(t, 0), "builds/"))
		}
		for i, n := range f.names {
			got := f.builds(t, i)
			want := ids[2:]
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s: builds %v, want %v (keep 2)", n, got, want)
			}
			if _, err := os.Stat(filepath.Join(f.roots[i], ".fleetdeploy", "builds", ids[0])); err == nil {
				t.Errorf("%s: marker of removed build %s left behind", n, ids[0])
			}
		}
		// Rolling back keeps the rolled-back-from build until normal cleanup.
		mustCLI(t, "rollback", "test", "-i", inv)
		if got := f.builds(t, 0); len(got) != 2 {
			t.Errorf("rollback removed builds: %v", got)
		}
	})
}

func TestDryRunChangesNothingAndMatchesTheRun(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		marker := filepath.Join(t.TempDir(), "build-ran")
		inv := f.writeInventory(t, inventoryOpts{source: src, before: []string{"echo before"}, after: []string{"echo after"},
			extra: "build: [\"touch " + marker + "\"]\n"})
		mustCLI(t, "up", "test", "-i", inv)

		before := []string{tree(t, f.roots[0]), tree(t, f.roots[1])}
		os.Remove(marker)
		fixed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		clock := func() time.Time { return fixed }
		var out, errb bytes.Buffer
		if code := runWith(t.Context(), []string{"fleetdeploy", "-v", "plan", "test", "-i", inv}, &out, &errb, clock); code != 0 {
			t.Fatalf("plan: exit %d\n%s%s", code, out.String(), errb.String())
		}
		planned := out.String()
		for i, n := range f.names {
			if got := tree(t, f.roots[i]); got != before[i] {
				t.Errorf("%s: plan changed the host:\nbefore:\n%s\nafter:\n%s", n, before[i], got)
			}
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("plan ran the local build commands")
		}
		if !strings.Contains(planned, "-- barrier") || !strings.Contains(planned, "20300102-030405") {
			t.Errorf("plan output lacks the barrier or release:\n%s", planned)
		}

		out.Reset()
		errb.Reset()
		if code := runWith(t.Context(), []string{"fleetdeploy", "-v", "up", "test", "-i", inv}, &out, &errb, clock); code != 0 {
			t.Fatalf("up: exit %d\n%s%s", code, out.String(), errb.String())
		}
		// The only differences allowed: the checksum and the source, unknown
		// before the build (which a dry run with build commands does not run).
		sum := regexp.MustCompile(`checksum=sha256:[0-9a-f]+`)
		source := regexp.MustCompile(`source=[^\n']*`)
		// and what the payload holds, decided by comparing the build with each host's.
		payload := regexp.MustCompile(`< payload \(.*\)`)
		decided := regexp.MustCompile(` '(from|how|z|want|skip)=[^']*'`)
		run := regexp.MustCompile(`; run [0-9a-f]+;`) // each run's own
		normal := func(s string) string {
			return run.ReplaceAllString(decided.ReplaceAllString(payload.ReplaceAllString(s, "< payload"), ""), "; run X;")
		}
		want := plannedOps(normal(planned))
		// The live history's record ends with the source and the checksum,
		// as the marker has them.
		recorded := regexp.MustCompile(`\t(dir|git [^'\t]*|artifact [^'\t]*)\tsha256:[0-9a-f]+'`)
		got := executedOps(normal(recorded.ReplaceAllString(source.ReplaceAllString(sum.ReplaceAllString(out.String(), "checksum=(computed by the build)"), "source=(recorded by the build)"), "\t(recorded by the build)\t(computed by the build)'")))
		for _, n := range f.names {
			if strings.Join(want[n], "\n") != strings.Join(got[n], "\n") {
				t.Errorf("%s: plan and run differ\nplanned:\n%s\nexecuted:\n%s", n, strings.Join(want[n], "\n"), strings.Join(got[n], "\n"))
			}
			if len(want[n]) < 8 {
				t.Errorf("%s: only %d operations planned", n, len(want[n]))
			}
		}
	})
}

// plannedOps reads a dry run's output: per host, its operations in order.
func plannedOps(s string) map[string][]string {
	ops := map[string][]string{}
	host := ""
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, "        "):
			if l := ops[host]; len(l) > 0 {
				l[len(l)-1] += "\n" + line
			}
		case strings.HasPrefix(line, "      "):
			ops[host] = append(ops[host], strings.TrimSpace(line))
		case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    "):
			host = strings.TrimSpace(line)
		}
	}
	return ops
}

// executedOps reads `up -v` output: per host, the operations it ran in order.
func executedOps(s string) map[string][]string {
	ops := map[string][]string{}
	last := ""
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "        ") && last != "" {
			l := ops[last]
			l[len(l)-1] += "\n" + line
			continue
		}
		f := strings.SplitN(strings.TrimSpace(line), " ", 2)
		if len(f) < 2 || !strings.HasSuffix(f[0], "s") {
			last = ""
			continue
		}
		host, rest, _ := strings.Cut(f[1], " ")
		if !strings.HasPrefix(rest, "   ") {
			last = ""
			continue
		}
		ops[host] = append(ops[host], strings.TrimSpace(rest))
		last = host
	}
	return ops
}

func TestFailingHookOnOneHostSwitchesNoHost(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		inv := f.writeInventory(t, inventoryOpts{source: src,
			before: []string{`'if [ -e "$FLEETDEPLOY_ROOT/shared/fail" ]; then echo "migration broke" >&2; exit 7; fi'`}})
		mustCLI(t, "up", "test", "-i", inv)
		old := f.live(t, 0)
		f.exec(t, 1, `touch "$ROOT/shared/fail"`)
		os.WriteFile(filepath.Join(src, "VERSION"), []byte("v2"), 0o644)

		r := fd(t, t.Context(), "up", "test", "-i", inv)
		if r.code != 1 {
			t.Fatalf("want exit 1: %s", r)
		}
		for _, want := range []string{f.names[1] + ": running before_cutover hook", "exit 7", "migration broke"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("error lacks %q: %s", want, r.stderr)
			}
		}
		for i, n := range f.names {
			if got := f.live(t, i); got != old {
				t.Errorf("%s switched to %s after a failed hook elsewhere", n, got)
			}
			if b := f.builds(t, i); len(b) != 1 {
				t.Errorf("%s: builds %v: the failed build was not removed", n, b)
			}
		}
		f.assertClean(t)
	})
}

func TestOnceHookRunsOnFirstHostOnly(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"),
			before: []string{`{run: 'echo migrated >> "$FLEETDEPLOY_ROOT/shared/once.log"', once: true}`}})
		mustCLI(t, "up", "test", "-i", inv)
		for i, n := range f.names {
			_, err := os.Stat(filepath.Join(f.roots[i], "shared", "once.log"))
			if (i == 0) != (err == nil) {
				t.Errorf("%s: once.log exists=%v, want only on the first host", n, err == nil)
			}
		}
	})
}

func TestHookArgumentsArriveIntact(t *testing.T) {
	forEachBackend(t, 1, func(t *testing.T, f *testFleet) {
		f.provision(t)
		// YAML double-quoted: \n is a newline, \" a quote.
		hook := `"printf '%s|' \"a b\" 'it'\\''s' '$(touch pwned)' '` + "`id`" + `' \"two\nlines\" \"$FLEETDEPLOY_RELEASE\" > \"$FLEETDEPLOY_ROOT/shared/args\""`
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"), before: []string{hook}})
		mustCLI(t, "up", "test", "-i", inv)
		got, err := os.ReadFile(filepath.Join(f.roots[0], "shared", "args"))
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimPrefix(f.live(t, 0), "builds/")
		want := "a b|it's|$(touch pwned)|`id`|two\nlines|" + id + "|"
		if string(got) != want {
			t.Errorf("hook saw %q, want %q", got, want)
		}
		if _, err := os.Stat(filepath.Join(f.roots[0], "latest", "pwned")); err == nil {
			t.Error("a quoted $() was executed")
		}
	})
}

func TestHostDownFailsBeforeAnyChange(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1")})
		f.kill(2)
		r := fd(t, t.Context(), "up", "test", "-i", inv)
		if r.code != 1 || !strings.Contains(r.stderr, f.names[2]+": connecting") {
			t.Fatalf("want exit 1 naming %s: %s", f.names[2], r)
		}
		for i := range 2 {
			if f.live(t, i) != "" || len(f.builds(t, i)) != 0 {
				t.Errorf("%s changed although a host was down", f.names[i])
			}
		}
		f.assertClean(t)
	})
}

func TestMissingSharedFileAndInPlaceLatestRefused(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1")})
		f.exec(t, 0, `rm "$ROOT/shared/.env"`)
		f.exec(t, 1, `mkdir -p "$ROOT/latest" && echo in-place > "$ROOT/latest/index.php"`)
		r := fd(t, t.Context(), "up", "test", "-i", inv)
		if r.code != 1 {
			t.Fatalf("want exit 1: %s", r)
		}
		for _, want := range []string{
			f.names[0] + ": checking shared files: shared file .env is missing",
			f.names[1] + ": checking layout: ",
			"real directory",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("error lacks %q:\n%s", want, r.stderr)
			}
		}
		for i := range f.names {
			if len(f.builds(t, i)) != 0 {
				t.Errorf("%s: something was uploaded", f.names[i])
			}
		}
		f.assertClean(t)
	})
}

func TestUnknownHostKeyRefusedWithFingerprint(t *testing.T) {
	forEachBackend(t, 1, func(t *testing.T, f *testFleet) {
		empty := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(empty, nil, 0o644)
		f.knownHosts = empty
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1")})
		r := fd(t, t.Context(), "up", "test", "-i", inv)
		if r.code != 1 || !strings.Contains(r.stderr, "SHA256:") || !strings.Contains(r.stderr, "host key verification failed") || !strings.Contains(r.stderr, f.names[0]) {
			t.Errorf("want a refusal naming the host and the key's fingerprint: %s", r)
		}
	})
}

func TestConcurrentDeployRefusedByLock(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"),
			before: []string{`'touch "$FLEETDEPLOY_ROOT/shared/waiting"; while [ ! -e "$FLEETDEPLOY_ROOT/shared/go" ]; do sleep 0.05; done'`}})
		first := make(chan result, 1)
		go func() { first <- fd(t, t.Context(), "up", "test", "-i", inv) }()
		for i := range f.names {
			waitFile(t, filepath.Join(f.roots[i], "shared", "waiting"), 30*time.Second)
		}
		locks := map[int]string{}
		for i := range f.names {
			locks[i], _ = os.Readlink(filepath.Join(f.roots[i], ".fleetdeploy", "lock"))
		}
		r := fd(t, t.Context(), "up", "test", "-i", inv)
		if r.code != 3 || !strings.Contains(r.stderr, "locked by another deploy") {
			t.Errorf("second deploy: want exit 3 naming the holder: %s", r)
		}
		for i := range f.names {
			if got, _ := os.Readlink(filepath.Join(f.roots[i], ".fleetdeploy", "lock")); got != locks[i] {
				t.Errorf("%s: lock changed from %q to %q", f.names[i], locks[i], got)
			}
			f.exec(t, i, `touch "$ROOT/shared/go"`)
		}
		if r := <-first; r.code != 0 {
			t.Fatalf("first deploy: %s", r)
		}
		f.assertClean(t)
	})
}

func TestInterruptBeforeBarrierUndoesEverything(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"),
			before: []string{`'touch "$FLEETDEPLOY_ROOT/shared/started"; sleep 5; touch "$FLEETDEPLOY_ROOT/shared/survived"'`}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan result, 1)
		go func() { done <- fd(t, ctx, "up", "test", "-i", inv) }()
		for i := range f.names {
			waitFile(t, filepath.Join(f.roots[i], "shared", "started"), 30*time.Second)
		}
		cancel()
		r := <-done
		if r.code != 130 || !strings.Contains(r.stderr, "interrupted before the cutover") {
			t.Fatalf("want exit 130: %s", r)
		}
		for i, n := range f.names {
			if f.live(t, i) != "" || len(f.builds(t, i)) != 0 {
				t.Errorf("%s: changed by an interrupted deploy", n)
			}
		}
		f.assertClean(t)
		// The hook was killed on the host, not left running.
		deadline := time.Now().Add(6 * time.Second)
		for time.Now().Before(deadline) {
			for i := range f.names {
				if _, err := os.Stat(filepath.Join(f.roots[i], "shared", "survived")); err == nil {
					t.Fatalf("%s: the interrupted hook kept running", f.names[i])
				}
			}
			waitTick()
		}
	})
}

func TestFrozenHostFailsWithinBound(t *testing.T) {
	f := startOpenSSH(t, 3)
	f.provision(t)
	inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"),
		before: []string{`'touch "$FLEETDEPLOY_ROOT/shared/started"; sleep 60'`}})
	done := make(chan result, 1)
	start := time.Now()
	go func() { done <- fd(t, t.Context(), "up", "test", "-i", inv) }()
	waitFile(t, filepath.Join(f.roots[1], "shared", "started"), 30*time.Second)
	f.freeze(1)
	defer f.thaw(1)
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("deploy still running 30 s after a host froze")
	}
	t.Logf("failed %.1fs after start", time.Since(start).Seconds())
	if r.code != 1 || !strings.Contains(r.stderr, f.names[1]+": ") || !strings.Contains(r.stderr, "silent") {
		t.Errorf("want exit 1 naming the silent host: %s", r)
	}
	if !strings.Contains(r.stderr, "fleetdeploy unlock --force test") || !strings.Contains(r.stderr, "goes stale") {
		t.Errorf("the lock left on the frozen host is not explained: %s", r.stderr)
	}
	for _, i := range []int{0, 2} {
		if f.live(t, i) != "" || len(f.builds(t, i)) != 0 {
			t.Errorf("%s: changed although another host froze", f.names[i])
		}
	}
	f.thaw(1)
	// The run is gone, but its lock is fresh: unlock says whose it is and
	// wants --force.
	if u := fd(t, t.Context(), "unlock", "test", "-i", inv); u.code != 1 || !strings.Contains(u.stderr, "its run is alive") || !strings.Contains(u.stderr, "--force") {
		t.Errorf("unlock of a fresh lock: %s", u)
	}
	mustCLI(t, "unlock", "--force", "test", "-i", inv)
	os.Remove(filepath.Join(f.roots[1], "shared", "started"))
	// Nothing left to unlock: said so, not silence.
	if u := mustCLI(t, "unlock", "test", "-i", inv); !strings.Contains(u.stdout, "no lock to remove: none of the 3 hosts is locked") {
		t.Errorf("unlock with no lock: %s", u)
	}
}

func TestInventoryErrorsExit2WithFileLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts.yml")
	os.WriteFile(path, []byte("app: x\nsource: .\nroot: relative/path\nkep: 3\nenvironments:\n  prod:\n    hosts: [a]\n"), 0o644)
	r := fd(t, t.Context(), "up", "prod", "-i", path)
	if r.code != 2 {
		t.Fatalf("want exit 2: %s", r)
	}
	for _, want := range []string{path + ":3: root", path + ":4: unknown key \"kep\""} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
	dup := filepath.Join(t.TempDir(), "dup.yml")
	os.WriteFile(dup, []byte("app: x\nsource: .\nroot: /srv\nenvironments:\n  prod:\n    hosts:\n      - a:22\n      - a:22\n"), 0o644)
	if r := fd(t, t.Context(), "status", "prod", "-i", dup); r.code != 2 || !strings.Contains(r.stderr, dup+":8:") {
		t.Errorf("duplicate host: want exit 2 at line 8: %s", r)
	}
	if r := fd(t, t.Context(), "up", "-i", path); r.code != 2 || !strings.Contains(r.stderr, "usage") {
		t.Errorf("missing ENV: %s", r)
	}
	if r := fd(t, t.Context(), "up", "nope", "-i", path); r.code != 2 {
		t.Errorf("unknown env: %s", r)
	}
}

// fdAtBarrier runs fleetdeploy and calls fault once every host is prepared,
// just before the swaps are released.
func fdAtBarrier(t *testing.T, fault func(), args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"fleetdeploy", "-v", "--connect-timeout", "5s", "--keepalive", "1s", "--keepalive-count", "3", "--cache-dir", t.TempDir()}, args...)
	code := runWith(t.Context(), full, &out, &errb, time.Now, func(c *common) {
		c.observe = func(e plan.Event) {
			if e.Kind == plan.BarrierReached {
				fault()
			}
		}
	})
	return result{code, out.String(), errb.String()}
}

func TestCutoverFailureSwitchesBack(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		inv := f.writeInventory(t, inventoryOpts{source: src})
		mustCLI(t, "up", "test", "-i", inv)
		old := f.live(t, 0)
		// Host 1's swap fails for certain: its latest became a non-empty directory.
		r := fdAtBarrier(t, func() {
			f.exec(t, 1, `rm "$ROOT/latest" && mkdir -p "$ROOT/latest/x"`)
		}, "up", "test", "-i", inv)
		if r.code != 1 || !strings.Contains(r.stderr, f.names[1]+": switching latest") {
			t.Fatalf("want exit 1 naming %s: %s", f.names[1], r)
		}
		for _, i := range []int{0, 2} {
			if got := f.live(t, i); got != old {
				t.Errorf("%s: latest -> %s, want it switched back to %s", f.names[i], got, old)
			}
		}
		for i := range f.names {
			if b := f.builds(t, i); len(b) != 1 {
				t.Errorf("%s: builds %v: the new build was not removed", f.names[i], b)
			}
		}
		f.assertClean(t)
	})
}

func TestConnectionLostAtCutoverIsReportedUnknownAndConverges(t *testing.T) {
	f := startOpenSSH(t, 3)
	f.provision(t)
	src := writeApp(t, "v1")
	inv := f.writeInventory(t, inventoryOpts{source: src})
	mustCLI(t, "up", "test", "-i", inv)
	old := f.live(t, 0)

	r := fdAtBarrier(t, func() { f.kill(2) }, "up", "test", "-i", inv)
	if r.code != 5 || !strings.Contains(r.stderr, "state unknown") || !strings.Contains(r.stderr, f.names[2]) || !strings.Contains(r.stderr, "fleetdeploy unlock --force test") {
		t.Fatalf("want exit 5 naming %s as unknown: %s", f.names[2], r)
	}
	for _, i := range []int{0, 1} {
		if got := f.live(t, i); got != old {
			t.Errorf("%s: latest -> %s, want it switched back to %s", f.names[i], got, old)
		}
	}
	f.restart(t, 2)
	// status tells the truth: host 2 never switched; its lock is still there.
	st := fd(t, t.Context(), "status", "test", "-i", inv)
	if !strings.Contains(st.stdout, "locked: ") {
		t.Errorf("status does not show the lock left on the lost host: %s", st)
	}
	if r := fd(t, t.Context(), "up", "test", "-i", inv); r.code != 3 {
		t.Errorf("up while the lost host's lock remains: want exit 3: %s", r)
	}
	mustCLI(t, "unlock", "--force", "test", "-i", inv)
	mustCLI(t, "up", "test", "-i", inv)
	now := f.live(t, 0)
	for i, n := range f.names {
		if got := f.live(t, i); got != now || got == old {
			t.Errorf("%s: latest -> %s after converging, want %s", n, got, now)
		}
	}
	f.assertClean(t)
	mustCLI(t, "status", "test", "-i", inv)
}
