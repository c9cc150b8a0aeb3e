package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/plan"
)

// guardedInventory is the fleet's inventory with a health check, an
// after_rollback hook on the hosts that appends what it saw to
// shared/after_rollback, and local hooks that write theirs into dir (the
// first on_failure hook fails, to show that it changes nothing).
func (f *testFleet) guardedInventory(t *testing.T, src, check, dir string) string {
	t.Helper()
	extra := `hooks:
  after_rollback:
    - 'echo "$FLEETDEPLOY_RELEASE $FLEETDEPLOY_PREVIOUS $(basename "$PWD")" >> "$FLEETDEPLOY_ROOT/shared/after_rollback"'
  on_success:
    - |
      echo "$FLEETDEPLOY_RELEASE $FLEETDEPLOY_ENV $FLEETDEPLOY_RESULT $FLEETDEPLOY_EXIT" >> '` + dir + `/success'
  on_failure:
    - echo notifier down >&2; exit 3
    - |
      echo "$FLEETDEPLOY_RELEASE $FLEETDEPLOY_ENV $FLEETDEPLOY_RESULT $FLEETDEPLOY_EXIT" >> '` + dir + `/failure'
health_check:
  run: |
` + indent(check, "    ") + `
  timeout: 3s
  interval: 50ms
`
	return f.writeInventory(t, inventoryOpts{source: src, extra: extra})
}

func indent(s, by string) string { return by + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+by) }

func readLocal(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// A health check failing on one of three hosts switches all three back to
// the build live before, runs after_rollback everywhere and on_failure
// here, marks the build bad (kept), and exits 7; rollback then never picks
// that build, and history tells the story.
func TestHealthCheckFailureRevertsFleet(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		local := t.TempDir()
		src := writeApp(t, "v1")
		check := `if [ -e "$FLEETDEPLOY_ROOT/shared/unhealthy" ]; then echo "HTTP 503 from $(cat VERSION)"; exit 1; fi`
		inv := f.guardedInventory(t, src, check, local)
		mustCLI(t, "up", "test", "-i", inv)
		if got := readLocal(t, filepath.Join(local, "success")); !strings.HasSuffix(got, " test ok 0\n") {
			t.Errorf("on_success after a good deploy: %q", got)
		}
		v1 := strings.TrimPrefix(f.live(t, 0), "builds/")

		f.exec(t, 1, `touch "$ROOT/shared/unhealthy"`)
		os.WriteFile(filepath.Join(src, "VERSION"), []byte("v2\n"), 0o644)
		r := fd(t, t.Context(), "up", "test", "-i", inv)
		if r.code != exitReverted {
			t.Fatalf("want exit 7: %s", r)
		}
		var v2 string
		for i, n := range f.names {
			if got := f.live(t, i); got != "builds/"+v1 {
				t.Errorf("%s: latest -> %s, want it back on %s", n, got, v1)
			}
			b := f.builds(t, i)
			if len(b) != 2 {
				t.Fatalf("%s: builds %v: the failed build must be kept", n, b)
			}
			v2 = b[1]
			if got := f.exec(t, i, `cat "$ROOT/shared/after_rollback"`); got != v1+" "+v2+" "+v1+"\n" {
				t.Errorf("%s: after_rollback hook saw %q, want %q (run in the build switched back to)", n, got, v1+" "+v2+" "+v1)
			}
			if got := f.exec(t, i, `cat "$ROOT/.fleetdeploy/builds/`+v2+`.bad"`); !strings.Contains(got, "failed its health check") {
				t.Errorf("%s: bad mark %q", n, got)
			}
			hist := f.exec(t, i, `cut -f2,3,5 "$ROOT/.fleetdeploy/history"`)
			if !strings.HasSuffix(hist, "up\t"+v2+"\t"+v1+"\nrevert\t"+v1+"\t"+v2+"\n") {
				t.Errorf("%s: history ends %q", n, hist)
			}
		}
		f.assertClean(t)
		first, _, _ := strings.Cut(r.stderr, "\n")
		want := "fleetdeploy: deployed " + v2 + "; health check failed on " + f.names[1] + " (failed "
		if !strings.HasPrefix(first, want) || !strings.Contains(first, "last: exit 1: HTTP 503 from v2)") || !strings.HasSuffix(first, "; fleet back on "+v1) {
			t.Errorf("first line of stderr %q, want %q... last: exit 1: HTTP 503 from v2); fleet back on %s", first, want, v1)
		}
		if !strings.Contains(r.stdout, f.names[1]+": health check failed (exit 1); trying again every 50ms until 3s have passed") {
			t.Errorf("the wait for a failing check is not announced:\n%s", r.stdout)
		}
		if !strings.Contains(r.stdout, "switch back skew") {
			t.Errorf("no switch back summary:\n%s", r.stdout)
		}
		if !strings.Contains(r.stdout, `on_failure hook "echo notifier down >&2; exit 3" failed: exit 3: notifier down (the fleet and the exit code are unchanged)`) {
			t.Errorf("failing local hook not reported:\n%s", r.stdout)
		}
		if got := readLocal(t, filepath.Join(local, "failure")); got != v2+" test reverted 7\n" {
			t.Errorf("on_failure saw %q", got)
		}

		// rollback never picks the bad build; history shows the revert.
		rb := fd(t, t.Context(), "rollback", "test", "-i", inv)
		if rb.code != exitFailed || !strings.Contains(rb.stderr, "no other build is on every host; marked bad (failed a health check), taken only when named: "+v2) {
			t.Errorf("rollback with only a bad build to go to: %s", rb)
		}
		h := mustCLI(t, "history", "test", "-i", inv)
		for _, s := range []string{"up       " + v2 + " from " + v1, "revert   " + v1 + " from " + v2, v2 + "  BAD (failed its health check); on all 3 hosts", "marked bad, taken only when named: " + v2} {
			if !strings.Contains(h.stdout, s) {
				t.Errorf("history lacks %q:\n%s", s, h.stdout)
			}
		}
		if strings.Contains(h.stdout, "disagree") {
			t.Errorf("hosts disagree after one run on all of them:\n%s", h.stdout)
		}
	})
}

// A check that passes on its third try lets the deploy finish: the new
// build stays live, the way back is removed, on_success runs.
func TestHealthCheckPassesOnThirdTry(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		local := t.TempDir()
		src := writeApp(t, "v1")
		check := `n=$(cat "$FLEETDEPLOY_ROOT/shared/tries-$FLEETDEPLOY_RELEASE" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$FLEETDEPLOY_ROOT/shared/tries-$FLEETDEPLOY_RELEASE"
[ "$n" -ge 3 ]`
		inv := f.guardedInventory(t, src, check, local)
		mustCLI(t, "up", "test", "-i", inv)
		os.WriteFile(filepath.Join(src, "VERSION"), []byte("v2\n"), 0o644)
		r := mustCLI(t, "up", "test", "-i", inv)
		v2 := f.live(t, 0)
		id := strings.TrimPrefix(v2, "builds/")
		for i, n := range f.names {
			if got := f.live(t, i); got != v2 {
				t.Errorf("%s: latest -> %s, want %s", n, got, v2)
			}
			if got := f.exec(t, i, `cat "$ROOT/shared/tries-`+id+`"`); got != "3\n" {
				t.Errorf("%s: checked %q times, want 3", n, got)
			}
			if got := f.exec(t, i, `ls "$ROOT/.fleetdeploy/builds"`); strings.Contains(got, ".bad") {
				t.Errorf("%s: a build marked bad: %s", n, got)
			}
		}
		f.assertClean(t)
		if strings.Contains(r.stdout, "switch back") {
			t.Errorf("switched back:\n%s", r.stdout)
		}
		if got := readLocal(t, filepath.Join(local, "success")); !strings.HasSuffix(got, id+" test ok 0\n") || readLocal(t, filepath.Join(local, "failure")) != "" {
			t.Errorf("on_success %q; on_failure %q", got, readLocal(t, filepath.Join(local, "failure")))
		}
	})
}

// Ctrl-C while the checks run switches the whole fleet back (exit 7).
func TestCtrlCDuringHealthChecksReverts(t *testing.T) {
	forEachBackend(t, 3, func(t *testing.T, f *testFleet) {
		f.provision(t)
		local := t.TempDir()
		src := writeApp(t, "v1")
		check := `[ "$(cat VERSION)" = v1 ] || sleep 30`
		inv := f.guardedInventory(t, src, check, local)
		mustCLI(t, "up", "test", "-i", inv)
		v1 := f.live(t, 0)
		os.WriteFile(filepath.Join(src, "VERSION"), []byte("v2\n"), 0o644)

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var mu sync.Mutex
		started := map[string]bool{}
		var out, errb bytes.Buffer
		full := []string{"fleetdeploy", "-v", "--connect-timeout", "5s", "--cache-dir", t.TempDir(), "up", "test", "-i", inv}
		start := time.Now()
		code := runWith(ctx, full, &out, &errb, time.Now, func(c *common) {
			c.observe = func(e plan.Event) {
				// Ctrl-C once every host's check has started.
				if e.Kind == plan.OpStarted && e.Phase == "checking health" {
					mu.Lock()
					started[e.Host] = true
					if len(started) == len(f.names) {
						cancel()
					}
					mu.Unlock()
				}
			}
		})
		r := result{code, out.String(), errb.String()}
		if code != exitReverted || !strings.Contains(r.stderr, "interrupted before its health checks passed; fleet back on "+strings.TrimPrefix(v1, "builds/")) {
			t.Fatalf("want exit 7, interrupted: %s", r)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("took %s: the checks were not stopped", took)
		}
		for i, n := range f.names {
			if got := f.live(t, i); got != v1 {
				t.Errorf("%s: latest -> %s, want %s", n, got, v1)
			}
		}
		f.assertClean(t)
		if got := readLocal(t, filepath.Join(local, "failure")); !strings.HasSuffix(got, " test reverted 7\n") {
			t.Errorf("on_failure saw %q", got)
		}
	})
}
