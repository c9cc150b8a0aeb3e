//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deployed starts an n-host fleet, provisions it and deploys v1 to it; it
// returns the fleet, the app source and the inventory.
func deployed(s *scenario, t *testing.T, n int, o inventory) (*fleet, string, string) {
	t.Helper()
	f := newFleet(t, n)
	f.provisionAll()
	src := writeApp(t, "v1")
	o.source = src
	inv := f.write(t, o)
	mustFD(s, "up", "e2e", "-i", inv)
	return f, src, inv
}

// converge is what an operator does after a fault is fixed: unlock (forced:
// the failed run is gone, but its lock is fresh), then up. Every host must
// then serve version, clean, with its data intact.
func (f *fleet) converge(s *scenario, inv, version string) {
	s.t.Helper()
	u := fd(s.t, "unlock", "--force", "e2e", "-i", inv)
	if u.code != 0 {
		s.Errorf("unlock after the fault: %s", u)
	}
	r := fd(s.t, "up", "e2e", "-i", inv)
	if r.code != 0 {
		s.Errorf("up after the fault: %s", r)
		return
	}
	id := f.checkConverged(s)
	for i := range f.Hosts {
		if v := f.servedVersion(i); v != version {
			s.Errorf("%s serves %q after recovery, want %s", f.name(i), v, version)
		}
	}
	s.Observe("then unlock --force + up: exit 0, every host on %s (%s), clean", id, version)
}

// wantHostStep checks that stderr blames host i in a step: "HOST: STEP: cause".
func wantHostStep(s *scenario, f *fleet, r result, i int) {
	s.t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(f.name(i)) + `: [a-z][^:\n]*: \S`)
	if !re.MatchString(r.stderr) {
		s.Errorf("stderr does not say \"%s: <step>: <cause>\": %s", f.name(i), r.errLine())
	}
}

// upFailsOnHost runs up, which must fail (exit 1) on host i alone, naming the
// host, the step and the cause (stderr contains needle; label names it in
// the error), and leave every host unchanged since before, and clean.
func upFailsOnHost(s *scenario, f *fleet, inv string, i int, before []hostState, needle, label string) {
	s.t.Helper()
	r := fd(s.t, "up", "e2e", "-i", inv)
	s.Observe("exit %d: %s", r.code, r.errLine())
	wantExit(s, r, 1, f.name(i)+": ")
	wantHostStep(s, f, r, i)
	if !hasAny(r.stderr, needle) {
		s.Errorf("stderr does not name the cause (%s): %s", label, r.errLine())
	}
	f.checkUnchanged(s, before)
	f.checkClean(s)
}

// hasAny reports whether text contains any of subs, ignoring case.
func hasAny(text string, subs ...string) bool {
	lower := strings.ToLower(text)
	for _, s := range subs {
		if strings.Contains(lower, strings.ToLower(s)) {
			return true
		}
	}
	return false
}

func TestFaultSSHDKilledMidUpload(t *testing.T) {
	s := newScenario(t, "fault: sshd of one host killed mid-upload (3 hosts)",
		"exit 1 naming the host, `uploading` and the lost connection; no host switches; live hosts clean; the dead host's lock is explained (`fleetdeploy unlock`); after restart unlock + up converge")
	f, src, inv := deployed(s, t, 3, inventory{})
	before := f.states()
	setVersion(t, src, "v2")
	addNoise(t, src, 64<<20)

	p := startFD(t, "up", "e2e", "-i", inv)
	staging := filepath.Join(f.roots[1], ".fleetdeploy", "staging")
	poll(t, "upload started on "+f.name(1), 2*time.Minute, time.Millisecond, func() bool { return len(names(staging)) > 0 }, p.exited)
	if p.exited() {
		s.Fatalf("the deploy ended before its upload was seen: %s", p.wait(time.Minute))
	}
	f.Hosts[1].Kill()
	r := p.wait(2 * time.Minute)
	s.Observe("exit %d in %.1fs: %s", r.code, r.took.Seconds(), r.errLine())
	wantExit(s, r, 1, f.name(1)+": ", "uploading")
	wantHostStep(s, f, r, 1)
	if !hasAny(r.stderr, "connection lost", "EOF", "closed") {
		s.Errorf("stderr does not say the connection was lost: %s", r.errLine())
	}
	f.checkUnchanged(s, before)
	f.checkClean(s, 0, 2)
	f.checkData(s)
	dead := f.state(1)
	if dead.lock != "" && !strings.Contains(r.stderr, "fleetdeploy unlock") {
		s.Errorf("%s keeps the lock, and stderr does not say to run fleetdeploy unlock: %s", f.name(1), r.errLine())
	}
	s.Observe("dead host left: lock %v, staging %v", dead.lock != "", dead.staging)

	f.Hosts[1].Restart(t)
	if st := fd(t, "status", "e2e", "-i", inv); st.code != 0 {
		s.Errorf("status after restart (every host still on v1): %s", st)
	}
	f.converge(s, inv, "v2")
}

func TestFaultHostUnreachableFromStart(t *testing.T) {
	s := newScenario(t, "fault: one host unreachable from the start (3 hosts)",
		"exit 1 naming the host and `connecting`; nothing changes anywhere, no lock taken; after restart up converges")
	f, src, inv := deployed(s, t, 3, inventory{})
	before := f.states()
	f.Hosts[2].Kill()
	setVersion(t, src, "v2")
	r := fd(t, "up", "e2e", "-i", inv)
	s.Observe("exit %d in %.1fs: %s", r.code, r.took.Seconds(), r.errLine())
	wantExit(s, r, 1, f.name(2)+": connecting")
	f.checkUnchanged(s, before)
	f.checkClean(s)
	f.checkData(s)
	st := fd(t, "status", "e2e", "-i", inv)
	if st.code != 4 || !strings.Contains(st.stdout+st.stderr, f.name(2)) {
		s.Errorf("status with a host down: want exit 4 naming it: %s", st)
	}
	s.Observe("status: exit %d", st.code)
	f.Hosts[2].Restart(t)
	f.converge(s, inv, "v2")
}

func TestFaultConnectionDroppedAtCutover(t *testing.T) {
	s := newScenario(t, "fault: a host's sshd killed at the barrier, racing the swap (3 hosts)",
		"either outcome (switched everywhere, or switched back), never a silent split; status tells the truth (exit 4 while a host is down; after restart 0 iff every latest agrees on disk); unlock + up converge")
	f, src, inv := deployed(s, t, 3, inventory{})
	setVersion(t, src, "v2")
	p := startFD(t, "up", "e2e", "-i", inv)
	// The barrier: every host has staged next (and back, its last operation).
	staged := func(i int) bool {
		return exists(filepath.Join(f.roots[i], ".fleetdeploy", "next")) && exists(filepath.Join(f.roots[i], ".fleetdeploy", "back"))
	}
	poll(t, "every host staged (.fleetdeploy/next and back)", 2*time.Minute, 200*time.Microsecond, func() bool {
		return staged(0) && staged(1) && staged(2)
	}, p.exited)
	f.Hosts[1].Kill()
	r := p.wait(2 * time.Minute)
	var lives []string
	for i := range f.Hosts {
		lives = append(lives, f.servedVersion(i))
	}
	s.Observe("race outcome: exit %d, hosts serve %v: %s", r.code, lives, r.errLine())
	switch r.code {
	case 0, 6: // the swap was done everywhere; finishing may fail on the dead host
		if lives[0] != "v2" || lives[2] != "v2" {
			s.Errorf("exit %d but live hosts serve %v", r.code, lives)
		}
	case 1: // switched back
		if lives[0] != "v1" || lives[2] != "v1" {
			s.Errorf("exit 1 (fleet unchanged) but live hosts serve %v", lives)
		}
	case 5: // the dead host's state is unknown: it must be named
		if !strings.Contains(r.stderr, f.name(1)) || !strings.Contains(r.stderr, "status") {
			s.Errorf("exit 5 without naming the unknown host and pointing at status: %s", r.errLine())
		}
	default:
		s.Errorf("unexpected exit: %s", r)
	}
	if lives[0] != lives[2] {
		s.Errorf("the reachable hosts disagree: %v", lives)
	}
	f.checkData(s)

	down := fd(t, "status", "e2e", "-i", inv)
	if down.code != 4 || !strings.Contains(down.stdout+down.stderr, f.name(1)) {
		s.Errorf("status with the host down: want exit 4 naming %s: %s", f.name(1), down)
	}
	f.Hosts[1].Restart(t)
	same := lives[0] == lives[1] && lives[1] == lives[2]
	want := 4
	if same {
		want = 0
	}
	up := fd(t, "status", "e2e", "-i", inv)
	if up.code != want {
		s.Errorf("status after restart: disk says every host serves %v, so want exit %d: %s", lives, want, up)
	}
	s.Observe("status: exit %d while down, exit %d after restart (disk: %v)", down.code, up.code, lives)
	f.converge(s, inv, "v2")
}

// mount runs mount(8), failing the scenario if it fails.
func mount(s *scenario, args ...string) {
	s.t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		s.Fatalf("mount %v: %v: %s", args, err, out)
	}
}

// unmountLater unmounts dir when the test ends, before the fleet is removed.
func unmountLater(t *testing.T, dir string) {
	t.Cleanup(func() {
		if exec.Command("mountpoint", "-q", dir).Run() != nil {
			return // unmounted by the test already
		}
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				t.Errorf("umount %s: %v: %s / %v: %s", dir, err, out, err2, out2)
			}
		}
	})
}

func TestFaultDiskFull(t *testing.T) {
	s := newScenario(t, "fault: disk full on one host (2 MB tmpfs as its root's parent; 3 hosts)",
		"exit 1 naming the host, `uploading` and `No space left on device`; no host switches; every host clean (staging removed, locks released); once space is freed up converges")
	needRoot(s)
	f := newFleet(t, 3)
	parent := filepath.Dir(f.roots[1])
	mount(s, "-t", "tmpfs", "-o", fmt.Sprintf("size=2m,mode=0755,uid=%d,gid=%d", f.uid, f.gid), "tmpfs", parent)
	unmountLater(t, parent)
	f.provisionAll()
	src := writeApp(t, "v1")
	inv := f.write(t, inventory{source: src})
	mustFD(s, "up", "e2e", "-i", inv)
	before := f.states()

	setVersion(t, src, "v2")
	addNoise(t, src, 3<<20)
	upFailsOnHost(s, f, inv, 1, before, "No space left on device", "No space left on device")
	f.checkData(s)

	if err := os.Remove(filepath.Join(src, "public", "assets", "noise.bin")); err != nil {
		s.Fatalf("%v", err)
	}
	setVersion(t, src, "v3")
	f.converge(s, inv, "v3")
}

func TestFaultReadOnlyRoot(t *testing.T) {
	s := newScenario(t, "fault: one host's root read-only (ro bind mount; 3 hosts)",
		"exit 1 naming the host, the step and `read-only file system`; no host switches; every host clean; after remounting rw up converges")
	needRoot(s)
	f, src, inv := deployed(s, t, 3, inventory{})
	before := f.states()
	root := f.roots[1]
	mount(s, "--bind", root, root)
	unmountLater(t, root)
	mount(s, "-o", "remount,bind,ro", root)

	setVersion(t, src, "v2")
	upFailsOnHost(s, f, inv, 1, before, "read-only", "read-only file system")
	f.checkData(s)

	if out, err := exec.Command("umount", root).CombinedOutput(); err != nil {
		s.Fatalf("umount: %v: %s", err, out)
	}
	f.converge(s, inv, "v2")
}

func TestFaultMissingRootUnwritableParent(t *testing.T) {
	s := newScenario(t, "fault: one host's root missing and its parent not writable (3 hosts)",
		"exit 1 naming the host, the step and `permission denied`; the other hosts unchanged and clean; after fixing the parent up converges")
	needRoot(s)
	f := newFleet(t, 3)
	for _, i := range []int{0, 2} {
		f.provision(i)
	}
	parent := filepath.Dir(f.roots[1])
	f.asUser(t, `printf 'canary\n' > "$1" && chmod 0555 "$2"`, f.canary(1), parent)
	t.Cleanup(func() { os.Chmod(parent, 0o755) })
	src := writeApp(t, "v1")
	mustFD(s, "up", "e2e", "-i", f.write(t, inventory{source: src, hosts: []int{0, 2}}))
	before := f.states()

	inv := f.write(t, inventory{source: src})
	setVersion(t, src, "v2")
	upFailsOnHost(s, f, inv, 1, before, "permission denied", "permission denied")
	f.checkData(s, 0, 2)
	if exists(f.roots[1]) {
		s.Errorf("%s: root created although its parent is not writable?", f.name(1))
	}

	f.asUser(t, `chmod 0755 "$1"`, parent)
	f.provision(1)
	f.converge(s, inv, "v2")
}

func TestFaultRootOwnedByAnotherUser(t *testing.T) {
	s := newScenario(t, "fault: one host's root owned by another user, mode 0755 (3 hosts)",
		"exit 1 naming the host, the step and `permission denied`; the other hosts unchanged and clean; after chown up converges")
	needRoot(s)
	f := newFleet(t, 3)
	f.provisionAll()
	// Host 2's root and everything in it now belong to root.
	if out, err := exec.Command("chown", "-R", "0:0", f.roots[1]).CombinedOutput(); err != nil {
		s.Fatalf("chown: %v: %s", err, out)
	}
	if err := os.Chmod(f.roots[1], 0o755); err != nil {
		s.Fatalf("%v", err)
	}
	src := writeApp(t, "v1")
	mustFD(s, "up", "e2e", "-i", f.write(t, inventory{source: src, hosts: []int{0, 2}}))
	before := f.states()

	inv := f.write(t, inventory{source: src})
	setVersion(t, src, "v2")
	upFailsOnHost(s, f, inv, 1, before, "permission denied", "permission denied")
	f.checkData(s)

	if out, err := exec.Command("chown", "-R", strconv.Itoa(f.uid)+":"+strconv.Itoa(f.gid), f.roots[1]).CombinedOutput(); err != nil {
		s.Fatalf("chown: %v: %s", err, out)
	}
	f.converge(s, inv, "v2")
}

func TestFaultUploadCorrupted(t *testing.T) {
	s := newScenario(t, "fault: upload corrupted on one host (a file changed on disk between unpacking and verification; 3 hosts)",
		"exit 1 naming the host, `uploading` and the checksum mismatch; no host switches; every host clean; a clean retry converges")
	f, src, inv := deployed(s, t, 3, inventory{})
	before := f.states()
	setVersion(t, src, "v2")
	addNoise(t, src, 64<<20) // unpacked after VERSION: time to corrupt VERSION before the check

	p := startFD(t, "up", "e2e", "-i", inv)
	staging := filepath.Join(f.roots[1], ".fleetdeploy", "staging")
	var version string
	poll(t, "VERSION unpacked on "+f.name(1), 2*time.Minute, 500*time.Microsecond, func() bool {
		for _, id := range names(staging) {
			p := filepath.Join(staging, id, "VERSION")
			if b, err := os.ReadFile(p); err == nil && string(b) == "v2\n" {
				version = p
				return true
			}
		}
		return false
	}, p.exited)
	if version == "" {
		s.Fatalf("the deploy ended before VERSION was unpacked: %s", p.wait(time.Minute))
	}
	fh, err := os.OpenFile(version, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		s.Fatalf("%v", err)
	}
	fh.WriteString("corrupt\n")
	fh.Close()
	r := p.wait(2 * time.Minute)
	s.Observe("exit %d: %s", r.code, r.errLine())
	wantExit(s, r, 1, f.name(1)+": ", "uploading")
	wantHostStep(s, f, r, 1)
	if !hasAny(r.stderr, "checksum", "corrupt") {
		s.Errorf("stderr does not say the upload failed verification: %s", r.errLine())
	}
	f.checkUnchanged(s, before)
	f.checkClean(s)
	f.checkData(s)
	f.converge(s, inv, "v2")
}
