//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// uniqueSleep is a sleep duration no other process on the machine runs, so
// that a hook's processes (the shell and its sleep alike) can be found by it.
func uniqueSleep(secs int) string { return fmt.Sprintf("%d.%06d", secs, rand.IntN(1_000_000)) }

// connectedTo reports whether some local socket is connected to 127.0.0.1:port.
func connectedTo(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		_, hexPort, _ := strings.Cut(f[2], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 32); err == nil && int(p) == port {
			return true
		}
	}
	return false
}

// phaseCase is one phase of a run in which a signal arrives.
type phaseCase struct {
	name      string
	barrier   bool // at or after the barrier: the run finishes or reverts, never stops half-way
	expected  string
	configure func(t *testing.T, f *fleet, src string, o *inventory, token string)
	// trigger waits until the run is in this phase; false if it ended first.
	trigger func(t *testing.T, f *fleet, p *proc, token string, attempt int, before []hostState) bool
}

var phases = []phaseCase{
	{
		name:     "build (slow local build command)",
		expected: "exit 130 promptly; every host unchanged, no lock, nothing staged",
		configure: func(t *testing.T, f *fleet, src string, o *inventory, token string) {
			o.build = []string{"echo building; sleep " + token + "; echo built"}
		},
		trigger: func(t *testing.T, f *fleet, p *proc, token string, attempt int, before []hostState) bool {
			return poll(t, "build started", time.Minute, 5*time.Millisecond, func() bool {
				return len(hostProcs(os.Geteuid(), token)) > 0
			}, p.exited)
		},
	},
	{
		name:     "connect (a frozen host)",
		expected: "exit 130 promptly (not after the connect timeout); every host unchanged, no lock",
		configure: func(t *testing.T, f *fleet, src string, o *inventory, token string) {
			f.Hosts[1].Freeze()
			t.Cleanup(f.Hosts[1].Thaw)
		},
		trigger: func(t *testing.T, f *fleet, p *proc, token string, attempt int, before []hostState) bool {
			return poll(t, "connecting to the frozen host", time.Minute, time.Millisecond, func() bool {
				return connectedTo(f.Hosts[1].Port)
			}, p.exited)
		},
	},
	{
		name:     "upload (64 MB of incompressible data)",
		expected: "exit 130; every host unchanged and clean (staging removed, locks released)",
		configure: func(t *testing.T, f *fleet, src string, o *inventory, token string) {
			addNoise(t, src, 64<<20)
		},
		trigger: func(t *testing.T, f *fleet, p *proc, token string, attempt int, before []hostState) bool {
			return poll(t, "upload started", 2*time.Minute, time.Millisecond, func() bool {
				for i := range f.Hosts {
					if len(f.state(i).staging) > 0 {
						return true
					}
				}
				return false
			}, p.exited)
		},
	},
	{
		name:     "before_cutover hook (sleeping)",
		expected: "exit 130; every host unchanged and clean; the hook killed on every host",
		configure: func(t *testing.T, f *fleet, src string, o *inventory, token string) {
			o.before = []string{yq(`touch "$FLEETDEPLOY_ROOT/shared/hook-started"; sleep ` + token + `; touch "$FLEETDEPLOY_ROOT/shared/hook-survived"`)}
		},
		trigger: func(t *testing.T, f *fleet, p *proc, token string, attempt int, before []hostState) bool {
			return poll(t, "hook started on every host", 2*time.Minute, 5*time.Millisecond, func() bool {
				for i := range f.Hosts {
					if !exists(filepath.Join(f.roots[i], "shared", "hook-started")) {
						return false
					}
				}
				return true
			}, p.exited)
		},
	},
	{
		name:     "cutover (signal as the first host switches)",
		barrier:  true,
		expected: "best effort: exit 0 (signal during the cutover: every host switched) or 130 (just before the barrier: unchanged); never a split fleet; clean",
		trigger: func(t *testing.T, f *fleet, p *proc, token string, attempt int, before []hostState) bool {
			// First try to land in the cutover itself (a host has switched,
			// others may be switching); after 3 misses settle for the barrier
			// (every host staged).
			return poll(t, "cutover", 2*time.Minute, 100*time.Microsecond, func() bool {
				staged := 0
				for i := range f.Hosts {
					st := f.state(i)
					if attempt <= 3 && st.latest != before[i].latest {
						return true
					}
					if st.next {
						staged++
					}
				}
				return attempt > 3 && staged == len(f.Hosts)
			}, p.exited)
		},
	},
	{
		name:     "after_cutover hook (sleeping 3 s), signal sent again",
		barrier:  true,
		expected: "the run finishes: exit 0 (or 6), every host on the new build, clean; the repeated signal is explained on stderr (\"already stopping\"), not obeyed",
		configure: func(t *testing.T, f *fleet, src string, o *inventory, token string) {
			o.after = []string{yq(`touch "$FLEETDEPLOY_ROOT/shared/after-started"; sleep ` + token)}
		},
		trigger: func(t *testing.T, f *fleet, p *proc, token string, attempt int, before []hostState) bool {
			return poll(t, "after_cutover hook started on every host", 2*time.Minute, 5*time.Millisecond, func() bool {
				for i := range f.Hosts {
					if !exists(filepath.Join(f.roots[i], "shared", "after-started")) {
						return false
					}
				}
				return true
			}, p.exited)
		},
	},
}

// TestSignals sends SIGINT, SIGTERM and SIGHUP (the terminal, or the SSH
// session to the machine running fleetdeploy, went away) to fleetdeploy in
// each phase of a deploy.
func TestSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		for _, ph := range phases {
			sigName := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM", syscall.SIGHUP: "SIGHUP"}[sig]
			t.Run(sigName+"/"+strings.Fields(ph.name)[0], func(t *testing.T) {
				s := newScenario(t, fmt.Sprintf("signal: %s during %s", sigName, ph.name), ph.expected)
				signalCase(t, s, sig, ph)
			})
		}
	}
}

func signalCase(t *testing.T, s *scenario, sig syscall.Signal, ph phaseCase) {
	f, src, _ := deployed(s, t, 2, inventory{})
	for i := range f.Hosts {
		f.asUser(t, `rm -f "$1/shared/hook-started" "$1/shared/after-started"`, f.roots[i])
	}
	before := f.states()
	secs := 30
	if strings.HasPrefix(ph.name, "after_cutover") {
		secs = 3
	}
	token := uniqueSleep(secs)
	t.Cleanup(func() { killProcs(token) })
	o := inventory{source: src}
	if ph.configure != nil {
		ph.configure(t, f, src, &o, token)
	}
	inv := f.write(t, o)

	// The cutover is a window of a millisecond or so: a run may pass it before
	// the signal is sent. Try again (a few times) with another version.
	var p *proc
	want := ""
	for attempt := 2; ; attempt++ {
		want = fmt.Sprintf("v%d", attempt)
		setVersion(t, src, want)
		p = startFD(t, "up", "e2e", "-i", inv)
		if ph.trigger(t, f, p, token, attempt-1, before) && !p.exited() {
			break
		}
		r := p.wait(time.Minute)
		if !ph.barrier || attempt == 6 {
			s.Fatalf("the run ended before the phase was reached (attempt %d): %s", attempt-1, r)
		}
		if r.code != 0 {
			s.Fatalf("a run that missed the window failed: %s", r)
		}
		s.Observe("attempt %d passed the window before the signal", attempt-1)
		before = f.states()
	}
	atSignal := f.states()
	signalled := time.Now()
	p.signal(sig)
	if ph.barrier {
		switched := 0
		for i, st := range atSignal {
			if st.latest != before[i].latest {
				switched++
			}
		}
		s.Observe("signal sent with %d of %d hosts switched", switched, len(f.Hosts))
	}
	if strings.HasPrefix(ph.name, "after_cutover") {
		// Signal again until the run says it is already stopping, or ends.
		tick := time.NewTicker(100 * time.Millisecond)
		for !p.exited() && !strings.Contains(p.stderr.String(), "already stopping") && time.Since(signalled) < 20*time.Second {
			<-tick.C
			p.signal(sig)
		}
		tick.Stop()
	}
	r := p.wait(2 * time.Minute)
	stopIn := time.Since(signalled)
	s.Observe("exit %d, %.1fs after the signal: %s", r.code, stopIn.Seconds(), r.errLine())

	if r.signal != "" {
		s.Errorf("fleetdeploy was killed by the signal instead of handling it: %s", r)
	}
	f.checkData(s)
	switch {
	case !ph.barrier:
		wantExit(s, r, 130, "interrupted")
		f.checkUnchanged(s, before)
		f.checkClean(s)
		if limit := 15 * time.Second; stopIn > limit {
			s.Errorf("took %s to stop after the signal (limit %s)", stopIn.Round(time.Millisecond), limit)
		}
	case r.code == 130:
		s.Observe("stopped before the barrier")
		f.checkUnchanged(s, before)
		f.checkClean(s)
	case r.code == 0 || r.code == 6:
		f.checkConverged(s)
		for i := range f.Hosts {
			if v := f.servedVersion(i); v != want {
				s.Errorf("exit %d but %s serves %q", r.code, f.name(i), v)
			}
		}
	default:
		s.Errorf("after the barrier: want exit 0 or 6 (or 130 before it), got %s", r)
		f.checkSame(s)
	}
	if strings.HasPrefix(ph.name, "after_cutover") {
		if !strings.Contains(r.stderr, "already stopping") {
			s.Errorf("a repeated %v was not explained on stderr (\"already stopping\"): %s", sig, r.errLine())
		}
	}
	if strings.HasPrefix(ph.name, "before_cutover") || strings.HasPrefix(ph.name, "build") {
		uid := f.uid
		if strings.HasPrefix(ph.name, "build") {
			uid = os.Geteuid() // the build runs locally, as the user running fleetdeploy
		}
		checkNoProcsAs(s, uid, token, 10*time.Second)
		for i := range f.Hosts {
			if exists(filepath.Join(f.roots[i], "shared", "hook-survived")) {
				s.Errorf("%s: the interrupted hook ran on to its end", f.name(i))
			}
		}
	}
}

// killProcs kills whatever a test left running with token in its command line
// (a build command fleetdeploy did not stop, say).
func killProcs(token string) {
	for _, uid := range []int{os.Geteuid(), -1} {
		for _, p := range hostProcs(uid, token) {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// checkNoProcsAs waits (bounded) until no process of uid runs token.
func checkNoProcsAs(s *scenario, uid int, token string, limit time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		left := hostProcs(uid, token)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.Errorf("processes still running %s after fleetdeploy ended: %v", limit, left)
			return
		}
		<-tick.C
	}
}

// TestHangupIgnoredAtStart: run under nohup (SIGHUP ignored from the start),
// a deploy that gets SIGHUP in its before_cutover hook runs on to its end.
func TestHangupIgnoredAtStart(t *testing.T) {
	s := newScenario(t, "signal: SIGHUP during the before_cutover hook of a run started under nohup (SIGHUP ignored)",
		"the run is not stopped: exit 0, every host on the new build, clean")
	f, src, _ := deployed(s, t, 2, inventory{})
	token := uniqueSleep(2)
	t.Cleanup(func() { killProcs(token) })
	inv := f.write(t, inventory{source: src, before: []string{yq(`touch "$FLEETDEPLOY_ROOT/shared/hook-started"; sleep ` + token)}})
	setVersion(t, src, "v2")
	// As nohup(1) does: SIGHUP ignored, which exec keeps.
	p := startFDCmd(t, globalFlags, func(c *exec.Cmd) {
		c.Args = append([]string{"sh", "-c", `trap '' HUP; exec "$0" "$@"`}, c.Args...)
		c.Path = "/bin/sh"
	}, "up", "e2e", "-i", inv)
	if !poll(t, "hook started on every host", 2*time.Minute, 5*time.Millisecond, func() bool {
		for i := range f.Hosts {
			if !exists(filepath.Join(f.roots[i], "shared", "hook-started")) {
				return false
			}
		}
		return true
	}, p.exited) {
		s.Fatalf("the run ended before its hook started: %s", p.wait(time.Minute))
	}
	p.signal(syscall.SIGHUP)
	r := p.wait(2 * time.Minute)
	s.Observe("exit %d, %s", r.code, r.errLine())
	wantExit(s, r, 0)
	f.checkConverged(s)
	for i := range f.Hosts {
		if v := f.servedVersion(i); v != "v2" {
			s.Errorf("%s serves %q, want v2", f.name(i), v)
		}
	}
}

// TestClosedStdout: a reader of fleetdeploy's output that goes away (`| head`,
// a tee that died) does not kill the run half-way; it runs to its end.
func TestClosedStdout(t *testing.T) {
	s := newScenario(t, "stdout closed before the run writes to it (`fleetdeploy up -v | head -0`)",
		"the run is not killed by SIGPIPE: exit 0, every host on the new build, clean")
	f, src, inv := deployed(s, t, 2, inventory{})
	setVersion(t, src, "v2")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	p := startFDCmd(t, globalFlags, func(c *exec.Cmd) { c.Stdout = w }, "up", "e2e", "-i", inv)
	w.Close()
	res := p.wait(2 * time.Minute)
	s.Observe("exit %d, %s", res.code, res.errLine())
	if res.signal != "" {
		s.Errorf("fleetdeploy was killed by %s", res.signal)
	}
	wantExit(s, res, 0)
	f.checkConverged(s)
	for i := range f.Hosts {
		if v := f.servedVersion(i); v != "v2" {
			s.Errorf("%s serves %q, want v2", f.name(i), v)
		}
	}
}
