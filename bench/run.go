//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Creds is how both tools log in to every host.
type Creds struct {
	User       string
	Identity   string // private key file
	KnownHosts string // lists every dial address
}

// WriteKnownHosts writes a known_hosts file naming each host by the address a
// client dials (which differs from the sshd's own when a proxy is in between).
func WriteKnownHosts(path string, addrs []string, keys []ssh.PublicKey) error {
	var b strings.Builder
	for i, a := range addrs {
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(a)}, keys[i]))
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// WriteInventory writes a fleetdeploy inventory with one environment, bench,
// whose hosts are addrs with one root each, hook (when not "") as its
// before_cutover hook and outside (when not "") as its outside_symlinks.
func WriteInventory(path, source string, addrs, roots []string, c Creds, hook, outside string, keep int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by the fleetdeploy benchmark\napp: benchapp\nsource: %s\nroot: /nonexistent/bench\nkeep: %d\n", source, keep)
	if outside != "" {
		fmt.Fprintf(&b, "outside_symlinks: %s\n", outside)
	}
	if hook != "" {
		fmt.Fprintf(&b, "hooks:\n  before_cutover:\n    - %q\n", hook)
	}
	fmt.Fprintf(&b, "ssh:\n  user: %s\n  identity: %s\n  known_hosts: %s\n", c.User, c.Identity, c.KnownHosts)
	b.WriteString("environments:\n  bench:\n    hosts:\n")
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "      - {address: %s, port: %s, root: %s}\n", host, port, roots[i])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// RunResult is one timed run of a tool against the whole fleet.
type RunResult struct {
	Wall     time.Duration
	MaxRSSKB int64 // peak RSS (wait4's ru_maxrss) of the deploying process; for rsync the largest per-host rsync
	SumRSSKB int64 // rsync only: per-host peaks added up (they run at once)
	Rsync    []RsyncStats
	// SkewBound is fleetdeploy's own bound on the cutover skew: its last
	// answer minus its first request (every swap happened in between, on
	// this machine's clock); 0 when it reported none.
	SkewBound time.Duration
	Err       error
}

// childEnv is the environment for the tools: no ssh agent, so both use the key given.
func childEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SSH_AUTH_SOCK=") {
			env = append(env, e)
		}
	}
	return env
}

func maxRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss // KiB on Linux
	}
	return 0
}

// Wrapper is the program that runs a measured command and reports its peak
// RSS and wall time (the bench's own test binary, see TestMain); "" runs
// commands directly.
//
// Why: Go starts a child with vfork semantics, and Linux records the hiwater
// RSS of the memory the child had before exec (the parent's!) into the
// child's ru_maxrss. A child of the bench process, which holds the app in
// memory, would report at least the bench's own peak. A small fresh wrapper
// process in between keeps that floor at the wrapper's few MiB.
var Wrapper string

// WrapperFlag is the first argument that makes the test binary act as Wrapper.
const WrapperFlag = "-fdbench-rusage"

// Measured is a command run through Wrapper.
type Measured struct {
	Cmd    *exec.Cmd
	report string
}

// Command returns cmd wrapped (when a Wrapper is set) so that Result can tell
// its own peak RSS and wall time.
func Command(ctx context.Context, report string, name string, args ...string) *Measured {
	if Wrapper == "" {
		return &Measured{Cmd: exec.CommandContext(ctx, name, args...)}
	}
	return &Measured{Cmd: exec.CommandContext(ctx, Wrapper, append([]string{WrapperFlag, report, name}, args...)...), report: report}
}

// Result returns the child's peak RSS (KiB) and wall time (exec to exit);
// fallback is the wall time measured around the wrapper.
func (m *Measured) Result(fallback time.Duration) (rssKB int64, wall time.Duration) {
	if m.report == "" {
		return maxRSS(m.Cmd.ProcessState), fallback
	}
	b, err := os.ReadFile(m.report)
	if err != nil {
		return 0, fallback
	}
	var ns int64
	if _, err := fmt.Sscan(string(b), &rssKB, &ns); err != nil {
		return 0, fallback
	}
	return rssKB, time.Duration(ns)
}

// WrapMain is the wrapper: it runs args, writes "maxrssKB wallNs" to report
// and exits as the child did.
func WrapMain(report string, args []string) int {
	runtime.LockOSThread() // Pdeathsig follows the thread that started the child
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "fdbench wrapper:", err)
			return 127
		}
		code = ee.ExitCode()
		if code < 0 {
			code = 128 + int(syscall.SIGKILL)
		}
	}
	if err := os.WriteFile(report, fmt.Appendf(nil, "%d %d\n", maxRSS(cmd.ProcessState), wall.Nanoseconds()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "fdbench wrapper:", err)
		return 127
	}
	return code
}

// RunFleetdeploy runs `fleetdeploy FLAGS command bench -i inv` (command: up
// or rollback) in network namespace ns (nil: the bench's own) and times it
// from exec to exit. cache (when not "") is its XDG_CACHE_HOME: a run's own,
// so that what fleetdeploy remembers (manifests, the rates earlier uploads
// measured, which choose compression) comes from this run's deploys only,
// not from an earlier run over another link or the machine's own deploys.
func RunFleetdeploy(ctx context.Context, ns *netns, bin, command, inv, report, cache string, log io.Writer, flags ...string) RunResult {
	m := Command(ctx, report, bin, append(flags, command, "bench", "-i", inv)...)
	m.Cmd.Env = childEnv()
	if cache != "" {
		m.Cmd.Env = append(m.Cmd.Env, "XDG_CACHE_HOME="+cache)
	}
	var out bytes.Buffer
	m.Cmd.Stdout = io.MultiWriter(log, &out)
	m.Cmd.Stderr = log
	start := time.Now()
	err := ns.Run(m.Cmd)
	var r RunResult
	r.MaxRSSKB, r.Wall = m.Result(time.Since(start))
	r.SkewBound = skewBound(out.String())
	if err != nil {
		r.Err = fmt.Errorf("fleetdeploy %s: %v", command, err)
	}
	return r
}

var skewLine = regexp.MustCompile(`cutover skew [0-9.]+ ms \(at most ([0-9.]+) ms`)

// skewBound reads the bound fleetdeploy's summary gives the cutover skew.
func skewBound(out string) time.Duration {
	m := skewLine.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0
	}
	return time.Duration(v * float64(time.Millisecond))
}

// RsyncStats is the summary `rsync --stats` prints, by label ("Literal data", ...).
type RsyncStats map[string]int64

var statLine = regexp.MustCompile(`^([A-Z][A-Za-z ]+): ([0-9][0-9,.]*)`)

func parseRsyncStats(out string) RsyncStats {
	s := RsyncStats{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := statLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		num := strings.ReplaceAll(m[2], ",", "")
		if v, err := strconv.ParseFloat(num, 64); err == nil {
			s[m[1]] = int64(v)
		}
	}
	return s
}

// Baseline is the hand-rolled deploy: per host, at once, `rsync -a --delete
// --link-dest=<previous build>` over ssh into root/builds/NEW, then one ssh
// command `ln -s builds/NEW latest.new && mv -T latest.new latest`. No
// barrier: each host switches as soon as its own copy is done.
type Baseline struct {
	Creds Creds
	Log   io.Writer
	Dir   string // for the wrapper's reports
	NS    *netns // the network namespace rsync and ssh run in (nil: the bench's own)
	// Remove is an old release that Run removes after its swap, as a
	// hand-rolled deploy keeping the last N releases does ("": none).
	Remove string
	mu     sync.Mutex
}

func (b *Baseline) sshCmd(port int) []string {
	return []string{"ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-i", b.Creds.Identity, "-o", "UserKnownHostsFile=" + b.Creds.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
		"-p", strconv.Itoa(port)}
}

// Run deploys src as build release to every (addr, root); prev is the build to
// hard-link unchanged files from ("" on a first deploy).
func (b *Baseline) Run(ctx context.Context, src string, addrs, roots []string, release, prev string) RunResult {
	type one struct {
		stats  RsyncStats
		rss    int64
		err    error
		output string
	}
	res := make([]one, len(addrs))
	start := time.Now()
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			host, ps, _ := net.SplitHostPort(a)
			port, _ := strconv.Atoi(ps)
			login := b.Creds.User + "@" + host
			args := []string{"-a", "--delete", "--stats", "--mkpath"}
			if prev != "" {
				args = append(args, "--link-dest="+roots[i]+"/builds/"+prev)
			}
			args = append(args, "-e", strings.Join(b.sshCmd(port), " "),
				src+"/", login+":"+roots[i]+"/builds/"+release+"/")
			m := Command(ctx, filepath.Join(b.Dir, fmt.Sprintf("rsync-%d.rusage", i)), "rsync", args...)
			m.Cmd.Env = childEnv()
			out, err := b.NS.CombinedOutput(m.Cmd)
			res[i].rss, _ = m.Result(0)
			res[i].output = string(out)
			if err != nil {
				res[i].err = fmt.Errorf("%s: rsync: %v: %s", a, err, lastLines(string(out), 5))
				return
			}
			res[i].stats = parseRsyncStats(string(out))
			script := fmt.Sprintf("cd %s && ln -s builds/%s latest.new && mv -T latest.new latest", roots[i], release)
			if b.Remove != "" {
				script += " && rm -rf builds/" + b.Remove
			}
			swap := append(b.sshCmd(port), login, script)
			cmd := exec.CommandContext(ctx, swap[0], swap[1:]...)
			cmd.Env = childEnv()
			if out, err := b.NS.CombinedOutput(cmd); err != nil {
				res[i].err = fmt.Errorf("%s: swap: %v: %s", a, err, out)
			}
		})
	}
	wg.Wait()
	r := RunResult{Wall: time.Since(start)}
	var errs []string
	for i, o := range res {
		r.Rsync = append(r.Rsync, o.stats)
		r.MaxRSSKB = max(r.MaxRSSKB, o.rss)
		r.SumRSSKB += o.rss
		if o.err != nil {
			errs = append(errs, o.err.Error())
		}
		if b.Log != nil {
			b.mu.Lock()
			fmt.Fprintf(b.Log, "--- rsync to %s (%s)\n%s", addrs[i], roots[i], o.output)
			b.mu.Unlock()
		}
	}
	if len(errs) > 0 {
		r.Err = fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return r
}

// Rollback switches every host back to build release at once, as the
// baseline's swap does: one ssh command per host, no barrier.
func (b *Baseline) Rollback(ctx context.Context, addrs, roots []string, release string) RunResult {
	errs := make([]error, len(addrs))
	rss := make([]int64, len(addrs))
	start := time.Now()
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			host, ps, _ := net.SplitHostPort(a)
			port, _ := strconv.Atoi(ps)
			swap := append(b.sshCmd(port), b.Creds.User+"@"+host, fmt.Sprintf("cd %s && ln -s builds/%s latest.new && mv -T latest.new latest", roots[i], release))
			m := Command(ctx, filepath.Join(b.Dir, fmt.Sprintf("ssh-%d.rusage", i)), swap[0], swap[1:]...)
			m.Cmd.Env = childEnv()
			out, err := b.NS.CombinedOutput(m.Cmd)
			rss[i], _ = m.Result(0)
			if err != nil {
				errs[i] = fmt.Errorf("%s: swap back: %v: %s", a, err, out)
			}
		})
	}
	wg.Wait()
	r := RunResult{Wall: time.Since(start), Err: errors.Join(errs...)}
	for _, k := range rss {
		r.MaxRSSKB = max(r.MaxRSSKB, k)
		r.SumRSSKB += k
	}
	return r
}

// short is the start of a long text, for a message.
func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CheckLive verifies that every root's latest serves the wanted content
// of probe (a file that differs between the app's variants).
func CheckLive(roots []string, probe, want string) error {
	var bad []string
	for _, r := range roots {
		b, err := os.ReadFile(filepath.Join(r, "latest", probe))
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		if string(b) != want {
			bad = append(bad, fmt.Sprintf("%s/latest/%s is %q, want %q", r, probe, short(string(b)), short(want)))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("not live everywhere: %s", strings.Join(bad, "; "))
	}
	return nil
}
