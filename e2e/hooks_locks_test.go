//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestHookTimeout(t *testing.T) {
	s := newScenario(t, "hook: before_cutover hook hangs (per-hook timeout: 2s; 2 hosts)",
		"exit 1 within seconds, stderr names host, hook and `timed out`; no host switches; clean; the hook's processes gone")
	f, src, _ := deployed(s, t, 2, inventory{})
	before := f.states()
	token := uniqueSleep(60)
	inv := f.write(t, inventory{source: src, before: []string{fmt.Sprintf("{run: %s, timeout: 2s}", yq("sleep "+token))}})
	setVersion(t, src, "v2")
	r := fd(t, "up", "e2e", "-i", inv)
	s.Observe("exit %d in %.1fs: %s", r.code, r.took.Seconds(), r.errLine())
	wantExit(s, r, 1, "before_cutover hook", "timed out")
	if !strings.Contains(r.stderr, f.name(0)+": ") && !strings.Contains(r.stderr, f.name(1)+": ") {
		s.Errorf("stderr names no host: %s", r.errLine())
	}
	if r.took > 20*time.Second {
		s.Errorf("took %s for a 2 s timeout", r.took.Round(time.Second))
	}
	f.checkUnchanged(s, before)
	f.checkClean(s)
	f.checkData(s)
	checkNoProcsAs(s, f.uid, token, 10*time.Second)
}

func TestHookHugeOutput(t *testing.T) {
	s := newScenario(t, "hook: before_cutover hook prints 5 MB (stdout, base64) + 5 MB on one line (stderr) on each of 2 hosts",
		"deploy succeeds (or fails cleanly); fleetdeploy's peak memory stays within 40 MiB of a deploy without the hook")
	f, src, _ := deployed(s, t, 2, inventory{})
	setVersion(t, src, "v2")
	base := mustFD(s, "up", "e2e", "-i", f.write(t, inventory{source: src}))
	hook := `head -c 5000000 /dev/urandom | base64; head -c 5000000 /dev/zero | tr '\000' x >&2`
	inv := f.write(t, inventory{source: src, before: []string{yq(hook)}})
	setVersion(t, src, "v3")
	r := fd(t, "up", "e2e", "-i", inv)
	s.Observe("exit %d in %.1fs, peak RSS %d MiB (without the hook: %d MiB), %.1f MB of hook output relayed on stdout (-v)",
		r.code, r.took.Seconds(), r.maxRSS/1024, base.maxRSS/1024, float64(len(r.stdout))/1e6)
	switch r.code {
	case 0:
		f.checkConverged(s)
	case 1:
		s.Observe("failed cleanly: %s", r.errLine())
		f.checkClean(s)
	default:
		s.Errorf("want exit 0 (or 1 with a clean fleet): %s", r)
	}
	if r.maxRSS == 0 || base.maxRSS == 0 {
		s.Errorf("peak memory not measured")
	}
	if r.maxRSS > base.maxRSS+40*1024 {
		s.Errorf("peak RSS %d KiB vs %d KiB without the hook: the hook's output is held in memory", r.maxRSS, base.maxRSS)
	}
	f.checkData(s)
}

func TestConcurrentUp(t *testing.T) {
	s := newScenario(t, "lock: a second `up` while one is running (3 hosts)",
		"second exits 3 naming the holder (its pid); the first is unaffected and exits 0; every host on its build, clean")
	f, src, _ := deployed(s, t, 3, inventory{})
	inv := f.write(t, inventory{source: src, before: []string{yq(`touch "$FLEETDEPLOY_ROOT/shared/waiting"; n=0; while [ ! -e "$FLEETDEPLOY_ROOT/shared/go" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done`)}})
	setVersion(t, src, "v2")
	first := startFD(t, "up", "e2e", "-i", inv)
	poll(t, "first up waiting in its hook on every host", 2*time.Minute, 10*time.Millisecond, func() bool {
		for i := range f.Hosts {
			if !exists(filepath.Join(f.roots[i], "shared", "waiting")) {
				return false
			}
		}
		return true
	}, first.exited)
	locks := f.states()
	second := fd(t, "up", "e2e", "-i", inv)
	s.Observe("second: exit %d: %s", second.code, second.errLine())
	wantExit(s, second, 3, "locked", fmt.Sprintf("pid %d", first.cmd.Process.Pid))
	for i := range f.Hosts {
		if now := f.state(i).lock; now != locks[i].lock || now == "" {
			s.Errorf("%s: lock went from %q to %q", f.name(i), locks[i].lock, now)
		}
		f.asUser(t, `touch "$1/shared/go"`, f.roots[i])
	}
	r := first.wait(2 * time.Minute)
	s.Observe("first: exit %d", r.code)
	if r.code != 0 {
		s.Errorf("the first up was affected: %s", r)
	}
	f.checkConverged(s)
}

func TestStaleLockFromKilledRun(t *testing.T) {
	s := newScenario(t, "lock: stale lock left by a run killed with SIGKILL mid-hook (3 hosts, --lock-lease 10s)",
		"at once: up exits 3 naming the holder, the age of its last refresh and the unlock command; unlock refuses a fresh lock; "+
			"once the lease has passed with no refresh: status shows it stale (exit 4), and up takes it over, removes the leftovers and exits 0")
	f, src, _ := deployed(s, t, 3, inventory{})
	v1 := f.states()
	token := uniqueSleep(120)
	inv := f.write(t, inventory{source: src, before: []string{yq(`touch "$FLEETDEPLOY_ROOT/shared/waiting"; sleep ` + token)}})
	setVersion(t, src, "v2")
	victim := startFD(t, "--lock-lease", "10s", "up", "e2e", "-i", inv)
	poll(t, "hook running on every host", 2*time.Minute, 10*time.Millisecond, func() bool {
		for i := range f.Hosts {
			if !exists(filepath.Join(f.roots[i], "shared", "waiting")) {
				return false
			}
		}
		return true
	}, victim.exited)
	victim.signal(syscall.SIGKILL)
	victim.wait(30 * time.Second)
	killed := time.Now()
	pid := victim.cmd.Process.Pid
	var left []string
	for i := range f.Hosts {
		st := f.state(i)
		if st.lock == "" {
			s.Errorf("%s: no lock after the run was killed mid-hook", f.name(i))
		}
		left = append(left, fmt.Sprintf("builds %d, pending %v", len(st.builds), st.pending))
	}
	s.Observe("after SIGKILL: every host locked; %s", strings.Join(left, "; "))
	afterKill := f.states()
	// The host kills a hook whose client went away.
	checkNoProcsAs(s, f.uid, token, 15*time.Second)

	for i := range f.Hosts {
		f.asUser(t, `rm -f "$1/shared/waiting"`, f.roots[i])
	}
	plain := f.write(t, inventory{source: src})
	r := fd(t, "up", "e2e", "-i", plain)
	s.Observe("next up at once: exit %d: %s", r.code, r.errLine())
	wantExit(s, r, 3, "locked", fmt.Sprintf("pid %d", pid), "last refreshed", "fleetdeploy unlock --force e2e")
	f.checkUnchanged(s, afterKill) // refused before touching anything
	if st := fd(t, "status", "e2e", "-i", plain); !strings.Contains(st.stdout, fmt.Sprintf("pid %d", pid)) || st.code != 0 {
		s.Errorf("status does not show the live lock's holder (and no problem): %s", st)
	}
	if u := fd(t, "unlock", "e2e", "-i", plain); u.code != 1 || !strings.Contains(u.stderr, "its run is alive") {
		s.Errorf("unlock of a fresh lock: %s", u)
	}
	f.checkUnchanged(s, afterKill)

	// No refresh for longer than the lease: stale.
	var st result
	poll(t, "status to call the lock stale", 30*time.Second, 500*time.Millisecond, func() bool {
		st = fd(t, "status", "e2e", "-i", plain)
		return strings.Contains(st.stdout, "stale lock")
	}, nil)
	s.Observe("%.0f s after the kill: status exit %d, %q", time.Since(killed).Seconds(), st.code, firstLine(st.stdout, "stale lock"))
	if st.code != 4 {
		s.Errorf("status with a stale lock: want exit 4: %s", st)
	}
	r = fd(t, "up", "e2e", "-i", plain)
	if r.code != 0 || !strings.Contains(r.stdout, "stale lock of") || !strings.Contains(r.stdout, "taking it over") {
		s.Fatalf("up after the lease passed: %s", r)
	}
	id := f.checkConverged(s)
	for i := range f.Hosts {
		want := append(slices.Clone(v1[i].builds), id)
		if got := f.state(i).builds; !slices.Equal(got, want) {
			s.Errorf("%s: builds %v, want %v (the killed run's build removed)", f.name(i), got, want)
		}
		if st := f.state(i); st.lock != "" {
			s.Errorf("%s: still locked: %s", f.name(i), st.lock)
		}
	}
	s.Observe("up: %q; exit 0, leftovers removed, every host on %s", firstLine(r.stdout, "taking it over"), id)
}

// firstLine is the first line of s containing sub.
func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func TestLiveLockNeverTaken(t *testing.T) {
	s := newScenario(t, "lock: a live run with a short lease (10s) in a 25 s hook, and a second up 15 s in (3 hosts)",
		"the live run refreshes its lock: the second up exits 3 (it is alive), never takes it over; the first finishes, exit 0")
	f, src, _ := deployed(s, t, 3, inventory{})
	token := uniqueSleep(25)
	inv := f.write(t, inventory{source: src, before: []string{yq(`touch "$FLEETDEPLOY_ROOT/shared/waiting"; sleep ` + token)}})
	setVersion(t, src, "v2")
	first := startFD(t, "--lock-lease", "10s", "up", "e2e", "-i", inv)
	poll(t, "hook running on every host", 2*time.Minute, 10*time.Millisecond, func() bool {
		for i := range f.Hosts {
			if !exists(filepath.Join(f.roots[i], "shared", "waiting")) {
				return false
			}
		}
		return true
	}, first.exited)
	started := time.Now()
	plain := f.write(t, inventory{source: src})
	// Past the lease: a lock nobody refreshed would be stale by now.
	<-time.After(15*time.Second - time.Since(started))
	r := fd(t, "up", "e2e", "-i", plain)
	s.Observe("second up %.0f s into the hook: exit %d: %s", time.Since(started).Seconds(), r.code, r.errLine())
	wantExit(s, r, 3, "it is alive")
	done := first.wait(2 * time.Minute)
	if done.code != 0 {
		s.Errorf("the live run: %s", done)
	}
	f.checkConverged(s)
	s.Observe("the first run: exit %d", done.code)
}
