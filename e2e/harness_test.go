//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/examples"
	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
)

// ci is set in CI, where a missing tool fails the suite instead of skipping it.
var ci = os.Getenv("CI") != ""

// needRoot skips (or in CI fails) a scenario that mounts or changes owners.
func needRoot(s *scenario) {
	s.t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if ci {
		s.Fatalf("this scenario needs root (mounts, ownership)")
	}
	s.Skipf("needs root (mounts, ownership)")
}

// fleet is an sshtest fleet with what the suite adds around it: each host's
// root as the inventory names it, a sentinel in shared/ and a canary outside
// the root that no deploy may touch.
type fleet struct {
	*sshtest.Fleet
	t     *testing.T
	roots []string // per host; Host.Root unless a test set another
	uid   int      // login user
	gid   int
	home  string

	sentinel string // content of shared/sentinel on every host
}

// newFleet starts n sshd hosts.
func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	sf := sshtest.Start(t, n)
	u, err := user.Lookup(sf.User)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{Fleet: sf, t: t, home: u.HomeDir, sentinel: fmt.Sprintf("sentinel %x\n", rand.Uint64())}
	f.uid, _ = strconv.Atoi(u.Uid)
	f.gid, _ = strconv.Atoi(u.Gid)
	for _, h := range sf.Hosts {
		f.roots = append(f.roots, h.Root)
	}
	return f
}

// name is host i as fleetdeploy names it in messages.
func (f *fleet) name(i int) string { return f.Hosts[i].Name }

// canary is a file beside host i's root, outside it.
func (f *fleet) canary(i int) string { return filepath.Join(filepath.Dir(f.roots[i]), "canary") }

// asUser runs a shell script locally as the hosts' login user, with args as
// positional parameters ($1...), and returns its output; it fails the test if
// the script fails.
func (f *fleet) asUser(t testing.TB, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"HOME=" + f.home, "USER=" + f.User, "PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.SysProcAttr = f.credentials()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as %s: %q %q: %v\n%s", f.User, script, args, err, out)
	}
	return string(out)
}

// credentials make a child process run as the login user (nil when we are it).
func (f *fleet) credentials() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 && f.uid != 0 {
		a.Credential = &syscall.Credential{Uid: uint32(f.uid), Gid: uint32(f.gid)}
	}
	return a
}

// provision creates host i's root with shared/.env, the sentinel and the
// canary, as an operator would before a first deploy.
func (f *fleet) provision(i int) {
	f.t.Helper()
	f.asUser(f.t, `set -e
mkdir -p -- "$1/shared"
printf 'APP_NAME=shop\nAPP_ENV=e2e\nAPP_SECRET=s3cret\n' > "$1/shared/.env"
printf '%s' "$2" > "$1/shared/sentinel"
printf 'canary\n' > "$3"`, f.roots[i], f.sentinel, f.canary(i))
}

func (f *fleet) provisionAll() {
	f.t.Helper()
	for i := range f.Hosts {
		f.provision(i)
	}
}

// app writes the example app, version v, to a fresh source folder.
func writeApp(t *testing.T, v string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := examples.WriteApp(dir, v); err != nil {
		t.Fatal(err)
	}
	return dir
}

// setVersion rewrites the app in dir as version v.
func setVersion(t *testing.T, dir, v string) {
	t.Helper()
	if err := examples.WriteApp(dir, v); err != nil {
		t.Fatal(err)
	}
}

// addNoise writes size bytes of incompressible data into the app, so that
// its upload takes a moment.
func addNoise(t *testing.T, dir string, size int) {
	t.Helper()
	p := filepath.Join(dir, "public", "assets", "noise.bin")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	r := rand.NewChaCha8(seed)
	buf := make([]byte, size)
	r.Read(buf)
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// yq renders s as a YAML double-quoted scalar (JSON strings are YAML).
func yq(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// inventory describes one test inventory.
type inventory struct {
	source string
	keep   int
	hosts  []int    // host indexes, default all
	shared []string // paths, default storage/sessions/ and .env
	build  []string
	before []string // raw YAML list items
	after  []string
	extra  string // raw YAML top-level lines
}

// write writes the inventory for f and returns its path.
func (f *fleet) write(t testing.TB, o inventory) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "app: shop\nsource: %s\nexclude: [.gitignore, .env.example]\nroot: /nonexistent\n", yq(o.source))
	if o.keep > 0 {
		fmt.Fprintf(&b, "keep: %d\n", o.keep)
	}
	shared := o.shared
	if shared == nil {
		shared = []string{"storage/sessions/", ".env"}
	}
	b.WriteString("shared:\n")
	for _, s := range shared {
		fmt.Fprintf(&b, "  - %s\n", yq(s))
	}
	if len(o.build) > 0 {
		b.WriteString("build:\n")
		for _, c := range o.build {
			fmt.Fprintf(&b, "  - %s\n", yq(c))
		}
	}
	if len(o.before)+len(o.after) > 0 {
		b.WriteString("hooks:\n")
		for _, ph := range []struct {
			name  string
			items []string
		}{{"before_cutover", o.before}, {"after_cutover", o.after}} {
			if len(ph.items) == 0 {
				continue
			}
			fmt.Fprintf(&b, "  %s:\n", ph.name)
			for _, h := range ph.items {
				fmt.Fprintf(&b, "    - %s\n", h)
			}
		}
	}
	fmt.Fprintf(&b, "ssh:\n  user: %s\n  identity: %s\n  known_hosts: %s\n  config: none\n", f.User, yq(f.Identity), yq(f.KnownHosts))
	b.WriteString(o.extra)
	b.WriteString("environments:\n  e2e:\n    hosts:\n")
	hosts := o.hosts
	if hosts == nil {
		for i := range f.Hosts {
			hosts = append(hosts, i)
		}
	}
	for _, i := range hosts {
		fmt.Fprintf(&b, "      - {address: 127.0.0.1, port: %d, root: %s}\n", f.Hosts[i].Port, yq(f.roots[i]))
	}
	dir, err := os.MkdirTemp("", "fde2e-inv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, "hosts.yml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---- running fleetdeploy ----

// globalFlags bound every wait on a host that died or went silent.
var globalFlags = []string{"-v", "--connect-timeout", "5s", "--keepalive", "1s", "--keepalive-count", "3", "--undo-timeout", "30s"}

// proc is one running fleetdeploy process.
type proc struct {
	t      testing.TB
	args   []string
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	start  time.Time
	done   chan struct{}
	res    result
	hwm    atomic.Int64 // peak resident memory seen in /proc (VmHWM), KiB
}

// watchMemory samples the process's peak resident memory until it ends.
func (p *proc) watchMemory() {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	path := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
					if kb > p.hwm.Load() {
						p.hwm.Store(kb)
					}
				}
			}
		}
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
	}
}

// result is how a fleetdeploy run ended.
type result struct {
	code           int // -1 when killed by a signal
	signal         string
	stdout, stderr string
	took           time.Duration
	maxRSS         int64 // KiB, peak resident memory sampled every 10 ms
}

func (r result) String() string {
	sig := ""
	if r.signal != "" {
		sig = " (" + r.signal + ")"
	}
	return fmt.Sprintf("exit %d%s after %s\n--- stdout\n%s\n--- stderr\n%s", r.code, sig, r.took.Round(time.Millisecond), tail(r.stdout, 4000), r.stderr)
}

// errLine is stderr on one line, for the results table.
func (r result) errLine() string {
	if strings.TrimSpace(r.stderr) == "" {
		return "(stderr empty)"
	}
	return oneLine(r.stderr, 240)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startFD starts fleetdeploy with args (after the global flags); it is killed
// in Cleanup if still running.
func startFD(t testing.TB, args ...string) *proc {
	t.Helper()
	return startFDFlags(t, globalFlags, args...)
}

func startFDFlags(t testing.TB, flags []string, args ...string) *proc {
	t.Helper()
	return startFDCmd(t, flags, nil, args...)
}

// startFDCmd starts fleetdeploy as startFDFlags does, letting prep change the
// command (a wrapper, other stdio) before it starts.
func startFDCmd(t testing.TB, flags []string, prep func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	full := append(slices.Clone(flags), "--cache-dir", cacheDir(t))
	full = append(full, args...)
	p := &proc{t: t, args: full, done: make(chan struct{})}
	p.cmd = exec.Command(bin, full...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SSH_AUTH_SOCK=") {
			env = append(env, e)
		}
	}
	p.cmd.Env = env
	// Its own process group: a terminal's Ctrl-C reaches the whole group, but
	// the tests signal the process itself, as kill(1) would.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if prep != nil {
		prep(p.cmd)
	}
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting fleetdeploy: %v", err)
	}
	go func() {
		err := p.cmd.Wait()
		p.res = result{code: p.cmd.ProcessState.ExitCode(), stdout: p.stdout.String(), stderr: p.stderr.String(), took: time.Since(p.start)}
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.res.signal = ws.Signal().String()
		}
		// Not rusage's maxrss: Linux carries it over exec from the vfork'd
		// child, which shares this test process's memory.
		p.res.maxRSS = p.hwm.Load()
		_ = err
		close(p.done)
	}()
	go p.watchMemory()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

// cacheDirs gives each test its own manifest cache: ports are reused by later
// fleets, and one test's cache must not describe another test's hosts.
var cacheDirs sync.Map // testing.TB -> string

func cacheDir(t testing.TB) string {
	if d, ok := cacheDirs.Load(t); ok {
		return d.(string)
	}
	d, err := os.MkdirTemp("", "fde2e-cache-")
	if err != nil {
		t.Fatal(err)
	}
	cacheDirs.Store(t, d)
	t.Cleanup(func() { os.RemoveAll(d); cacheDirs.Delete(t) })
	return d
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process (not its group).
func (p *proc) signal(sig syscall.Signal) {
	_ = syscall.Kill(p.cmd.Process.Pid, sig)
}

// wait waits for the process to end, killing it and failing the test after limit.
func (p *proc) wait(limit time.Duration) result {
	p.t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.res
	case <-timer.C:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		p.t.Fatalf("fleetdeploy %s still running after %s; killed it:\n%s", strings.Join(p.args, " "), limit, p.res)
		return p.res
	}
}

// fd runs fleetdeploy to the end (bounded by 3 minutes).
func fd(t testing.TB, args ...string) result {
	t.Helper()
	return startFD(t, args...).wait(3 * time.Minute)
}

// mustFD runs fleetdeploy and fails the scenario unless it exits 0.
func mustFD(s *scenario, args ...string) result {
	s.t.Helper()
	r := fd(s.t, args...)
	if r.code != 0 {
		s.Fatalf("fleetdeploy %s: want exit 0, got %s", strings.Join(args, " "), r)
	}
	return r
}

// ---- waiting ----

// poll waits until cond holds, checking every interval, and fails the test
// after limit. It returns early (false) when stop, if set, becomes true.
func poll(t testing.TB, what string, limit, interval time.Duration, cond func() bool, stop func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if stop != nil && stop() {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		<-tick.C
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// ---- host state, read directly from the disk ----

// hostState is what a host's root holds, as the tests compare it.
type hostState struct {
	latest  string // target of latest ("" when absent)
	builds  []string
	lock    string
	staging []string
	pending []string
	next    bool
	back    bool
	trash   []string // what a removal could not finish (.fleetdeploy/trash)
}

func (h hostState) String() string {
	return fmt.Sprintf("latest=%q builds=%v lock=%q staging=%v pending=%v next=%v back=%v",
		h.latest, h.builds, h.lock, h.staging, h.pending, h.next, h.back)
}

func readState(root string) hostState {
	var h hostState
	h.latest, _ = os.Readlink(filepath.Join(root, "latest"))
	h.builds = names(filepath.Join(root, "builds"))
	h.lock, _ = os.Readlink(filepath.Join(root, ".fleetdeploy", "lock"))
	h.staging = names(filepath.Join(root, ".fleetdeploy", "staging"))
	h.pending = names(filepath.Join(root, ".fleetdeploy", "pending"))
	h.next = exists(filepath.Join(root, ".fleetdeploy", "next"))
	h.back = exists(filepath.Join(root, ".fleetdeploy", "back"))
	h.trash = names(filepath.Join(root, ".fleetdeploy", "trash"))
	return h
}

func names(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func (f *fleet) state(i int) hostState { return readState(f.roots[i]) }

func (f *fleet) states() []hostState {
	out := make([]hostState, len(f.Hosts))
	for i := range f.Hosts {
		out[i] = f.state(i)
	}
	return out
}

// live is the build ID host i serves ("" when none).
func (f *fleet) live(i int) string {
	return strings.TrimPrefix(f.state(i).latest, "builds/")
}

// servedVersion is the VERSION file of host i's live build.
func (f *fleet) servedVersion(i int) string {
	b, err := os.ReadFile(filepath.Join(f.roots[i], "latest", "VERSION"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// checkUnchanged checks that every listed host still serves the build it
// served before and has the same builds.
func (f *fleet) checkUnchanged(s *scenario, before []hostState, hosts ...int) {
	s.t.Helper()
	if hosts == nil {
		hosts = f.all()
	}
	for _, i := range hosts {
		now := f.state(i)
		if now.latest != before[i].latest {
			s.Errorf("%s: latest changed from %q to %q", f.name(i), before[i].latest, now.latest)
		}
		if !slices.Equal(now.builds, before[i].builds) {
			s.Errorf("%s: builds changed from %v to %v", f.name(i), before[i].builds, now.builds)
		}
	}
}

// checkClean checks that no listed host holds a lock, a staging folder, a
// pending build or a staged link.
func (f *fleet) checkClean(s *scenario, hosts ...int) {
	s.t.Helper()
	if hosts == nil {
		hosts = f.all()
	}
	for _, i := range hosts {
		st := f.state(i)
		if st.lock != "" {
			s.Errorf("%s: lock left behind: %s", f.name(i), st.lock)
		}
		if len(st.staging) > 0 || len(st.pending) > 0 {
			s.Errorf("%s: leftovers: staging %v, pending %v", f.name(i), st.staging, st.pending)
		}
		if st.next || st.back {
			s.Errorf("%s: staged links left behind: next=%v back=%v", f.name(i), st.next, st.back)
		}
		if len(st.trash) > 0 {
			s.Errorf("%s: removals left unfinished in the trash: %v", f.name(i), st.trash)
		}
	}
}

// checkSame checks that every listed host serves one build, and returns it.
func (f *fleet) checkSame(s *scenario, hosts ...int) string {
	s.t.Helper()
	if hosts == nil {
		hosts = f.all()
	}
	want := f.state(hosts[0]).latest
	for _, i := range hosts[1:] {
		if got := f.state(i).latest; got != want {
			s.Errorf("fleet split: %s serves %q, %s serves %q", f.name(hosts[0]), want, f.name(i), got)
		}
	}
	return strings.TrimPrefix(want, "builds/")
}

// checkData checks the sentinel in shared/ and the canary outside the root.
func (f *fleet) checkData(s *scenario, hosts ...int) {
	s.t.Helper()
	if hosts == nil {
		hosts = f.all()
	}
	for _, i := range hosts {
		if b, err := os.ReadFile(filepath.Join(f.roots[i], "shared", "sentinel")); err != nil || string(b) != f.sentinel {
			s.Errorf("%s: shared/sentinel changed or lost: %q, %v", f.name(i), b, err)
		}
		if b, err := os.ReadFile(f.canary(i)); err != nil || string(b) != "canary\n" {
			s.Errorf("%s: canary outside the root changed: %q, %v", f.name(i), b, err)
		}
	}
}

// checkConverged checks that the listed hosts serve one build, clean, with
// their data intact, and returns the build.
func (f *fleet) checkConverged(s *scenario, hosts ...int) string {
	s.t.Helper()
	id := f.checkSame(s, hosts...)
	if id == "" {
		s.Errorf("no build live")
	}
	f.checkClean(s, hosts...)
	f.checkData(s, hosts...)
	return id
}

func (f *fleet) all() []int {
	out := make([]int, len(f.Hosts))
	for i := range out {
		out[i] = i
	}
	return out
}

// wantExit checks an exit code and that stderr holds every string in want.
func wantExit(s *scenario, r result, code int, want ...string) {
	s.t.Helper()
	if r.code != code {
		s.Errorf("want exit %d, got %s", code, r)
		return
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			s.Errorf("stderr lacks %q: %s", w, r.errLine())
		}
	}
}

// hostProcs lists processes of uid (any user when uid is -1) whose command
// line contains token.
func hostProcs(uid int, token string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || uid >= 0 && int(st.Uid) != uid {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, []byte(token)) {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				continue
			}
		}
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return out
}
