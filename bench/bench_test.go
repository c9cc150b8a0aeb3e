//go:build bench

package bench

import (
	"bufio"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

var (
	flagHosts    = flag.String("hosts", "4,8,16,64", "fleet sizes of real OpenSSH hosts, comma-separated (\"\" for none)")
	flagSandbox  = flag.String("sandbox", "", "fleet sizes for `fleetdeploy sandbox` hosts (fleetdeploy only), e.g. 64,200")
	flagReps     = flag.Int("reps", 3, "repetitions of each measurement on OpenSSH hosts (the median is reported)")
	flagSbReps   = flag.Int("sandbox-reps", 1, "repetitions on sandbox hosts")
	flagBaseMax  = flag.Int("baseline-max", 16, "largest fleet the rsync baseline runs on")
	flagBin      = flag.String("fleetdeploy", "", "a prebuilt fleetdeploy binary to measure instead of -versions")
	flagVersions = flag.String("versions", "worktree", "fleetdeploy versions to measure side by side, comma-separated: worktree (this checkout as it is, uncommitted changes included) or a git revision (built from `git archive REV`), e.g. 81561f8,worktree")
	flagOut      = flag.String("out", "../BENCHMARKS.md", "markdown file the run is written into (\"\" for none)")
	flagMeter    = flag.String("meter", "auto", "how to count bytes on the wire: nft, proxy or auto (nft when usable)")
	flagLabel    = flag.String("label", "", "a few words on what this run measures, for BENCHMARKS.md")
	flagFDFlags  = flag.String("fdflags", "", "extra global flags for every `fleetdeploy up`, e.g. --compress")
	flagHook     = flag.String("hook", "", "a before_cutover hook for fleetdeploy's deploys, e.g. true (reused files are then copied, not hard-linked)")
	flagKeepWork = flag.Bool("keep", false, "keep the work folder (apps, inventories, logs) for inspection")
	flagApp      = flag.String("app", "generated", "the app deployed: generated (bench/app.go, ~3,000 files, 45 MB) or mediawiki (MediaWiki from Debian's packages via .ci/realworld-app, ~23,500 files, 225 MB)")
	flagLink     = flag.String("link", "", "reach the hosts over a slow link: delay=DURATION (one way) and/or rate=RATE (each direction, tc syntax), e.g. delay=20ms,rate=100mbit (root only; see README)")
)

func parseSizes(t *testing.T, s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			t.Fatalf("bad fleet size %q", f)
		}
		out = append(out, n)
	}
	return out
}

// bench is the state shared by every fleet of a run.
type bench struct {
	sandboxBin string // the fleetdeploy whose sandbox command serves sandbox hosts
	// deferRemoval keeps every root until the run ends. On ext4 without a
	// journal (this machine's disk) the inode allocator skips, at a cost per
	// inode, every inode freed in the last 60-360 s (recently_deleted), so
	// removing a repetition's builds would slow down the next ones' file
	// creation. On tmpfs roots are removed as soon as measured, to bound memory.
	deferRemoval bool
	work         string
	versions     []version
	app1         *AppInfo
	app2         *AppInfo
	v1, v2       string // VERSION of each app
	run          *Run
	rtOK         bool
	rtErr        error
	rtChecks     int
	link         *Link // -link; nil: loopback
}

// clients is the network namespace the tools run in (nil: the bench's own).
func (b *bench) clients() *netns {
	if b.link == nil {
		return nil
	}
	return b.link.Clients
}

func TestMain(m *testing.M) {
	if len(os.Args) > 3 && os.Args[1] == WrapperFlag {
		os.Exit(WrapMain(os.Args[2], os.Args[3:]))
	}
	if self, err := os.Executable(); err == nil {
		Wrapper = self
	}
	os.Exit(m.Run())
}

// TestBench is the whole benchmark: run it through bench/run.sh.
func TestBench(t *testing.T) {
	began := time.Now()
	load, loadAvg := MarkCPU(), LoadAvg()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp("", "fdbench-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if *flagKeepWork {
		t.Logf("work folder: %s (kept)", work)
	} else {
		t.Cleanup(func() { os.RemoveAll(work) })
	}
	b := &bench{work: work, rtOK: true}
	b.run = &Run{Machine: DescribeMachine(repo), Label: *flagLabel}
	b.run.Machine.Storage, b.deferRemoval = DescribeStorage(work)
	b.run.Command = os.Getenv("FDBENCH_COMMAND")
	if b.run.Command == "" {
		b.run.Command = "go test -tags bench -run '^TestBench$' -v ./bench -args " + strings.Join(flag.Args(), " ")
	}

	b.versions = buildVersions(t, repo, work)
	for _, v := range b.versions {
		b.run.Tools = append(b.run.Tools, v.tool)
		desc := fmt.Sprintf("`%s`: %s", v.tool, v.desc)
		if *flagFDFlags != "" {
			desc += fmt.Sprintf("; run as `fleetdeploy %s up`", *flagFDFlags)
		}
		if *flagHook != "" {
			desc += fmt.Sprintf("; with a before_cutover hook `%s` (reused files copied, not hard-linked)", *flagHook)
		}
		b.run.Versions = append(b.run.Versions, desc)
	}
	b.run.Tools = append(b.run.Tools, toolRsync)
	switch *flagApp {
	case "generated":
		if b.app1, err = GenerateApp(filepath.Join(work, "app-v1"), 1); err != nil {
			t.Fatal(err)
		}
		if b.app2, err = GenerateApp(filepath.Join(work, "app-v2"), 2); err != nil {
			t.Fatal(err)
		}
	case "mediawiki":
		if b.app1, b.app2, err = RealWorldApp(repo, work); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("-app %q: want generated or mediawiki", *flagApp)
	}
	b.v1, b.v2 = readFile(t, b.app1.Dir, b.app1.Probe), readFile(t, b.app2.Dir, b.app2.Probe)
	if n := countDiffering(t, b.app1.Dir, b.app2.Dir); n != len(b.app1.Changed) {
		t.Fatalf("the redeploy app differs from the first in %d files, want %d", n, len(b.app1.Changed))
	}
	b.run.App = b.app1
	t.Logf("app: %d files, %d bytes, sha256 %s", b.app1.Files, b.app1.Bytes, b.app1.Checksum)
	if *flagLink != "" {
		b.startLink(t)
	}

	for _, n := range parseSizes(t, *flagHosts) {
		t.Run(fmt.Sprintf("openssh-%d", n), func(t *testing.T) { b.openssh(t, n) })
	}
	for _, n := range parseSizes(t, *flagSandbox) {
		t.Run(fmt.Sprintf("sandbox-%d", n), func(t *testing.T) { b.sandbox(t, n) })
	}

	switch {
	case b.rtChecks == 0:
		b.run.Realtime = "not measured"
	case b.rtOK:
		b.run.Realtime = fmt.Sprintf("inotify on each root (IN_MOVED_TO/IN_CREATE of `latest`), one watcher thread per host (up to %d hosts; beyond, hosts share threads) at SCHED_FIFO %d, time.Now (monotonic) on wake-up", maxInstances, rtPriority)
	default:
		b.run.Realtime = fmt.Sprintf("inotify on each root, one watcher thread per host, at normal priority (SCHED_FIFO refused: %v), so skews carry wake-up latency", b.rtErr)
	}
	b.run.Elapsed = time.Since(began).Round(time.Second)
	foreign, share := load.Foreign()
	b.run.Load = fmt.Sprintf("load average %s at the start; other processes (not the bench, its hosts or the tools) used %.0f s of CPU during the run, %.0f%% of the machine", loadAvg, foreign.Seconds(), 100*share)
	if share > 0.05 {
		b.run.Notes = append(b.run.Notes, fmt.Sprintf("The machine was not idle: other processes used %.0f%% of its CPU during this run, so wall times are noisier than usual; ratios within the run stay comparable.", 100*share))
	}
	if t.Failed() {
		b.run.Notes = append(b.run.Notes, "This run had errors: figures may be missing or incomplete (see the run's log).")
	}
	md := b.run.Markdown()
	fmt.Printf("\n%s\n", md)
	if *flagOut != "" {
		if err := WriteBenchmarks(*flagOut, md); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", *flagOut)
	}
}

// startLink builds the -link every fleet is reached through, and checks it.
func (b *bench) startLink(t *testing.T) {
	spec, err := ParseLink(*flagLink)
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("-link needs root: it makes network namespaces, TUN devices and tc qdiscs")
	}
	if b.link, err = StartLink(spec); err != nil {
		t.Fatalf("-link: %v", err)
	}
	t.Cleanup(func() { b.link.Close() })
	check, err := b.link.Check(16 << 20)
	if err != nil {
		t.Fatalf("-link: checking the link: %v", err)
	}
	t.Logf("link: %s; %s", spec, check)
	b.run.Link = spec.Short()
	b.run.RTT = 2 * spec.Delay
	delay := "no delay added"
	if spec.Delay > 0 {
		delay = fmt.Sprintf("%s per packet, so %s round trip", fmtDelay(spec.Delay), fmtDelay(2*spec.Delay))
	}
	b.run.LinkHow = fmt.Sprintf("%s; one link shared by all hosts: the tools run in a network namespace of their own, the hosts are reached in another (a relay on each host's address passes the stream on to its sshd over loopback), the two joined by a TUN device each and a user-space delay line per direction (%s); %s; %s",
		spec, delay, b.link.TC(), check)
}

// version is one fleetdeploy binary under test.
type version struct {
	tool string // name in the tables: "fleetdeploy", or "fleetdeploy@LABEL" when several
	bin  string
	desc string
}

// buildVersions builds every fleetdeploy of -versions (or takes -fleetdeploy).
func buildVersions(t *testing.T, repo, work string) []version {
	if *flagBin != "" {
		return []version{{tool: toolFD, bin: *flagBin, desc: "binary " + *flagBin}}
	}
	labels := strings.Split(*flagVersions, ",")
	var vs []version
	for i, label := range labels {
		label = strings.TrimSpace(label)
		v := version{tool: toolFD, bin: filepath.Join(work, fmt.Sprintf("fleetdeploy-%d", i))}
		name := label
		src := repo
		if label == "worktree" {
			v.desc = "this checkout as it is: " + describeWorktree(repo)
		} else {
			out, err := exec.Command("git", "-C", repo, "log", "-1", "--format=%h %cd %s", "--date=format:%Y-%m-%d %H:%M", label, "--").Output()
			if err != nil {
				t.Fatalf("-versions: no git revision %q: %v", label, err)
			}
			v.desc = "commit " + strings.TrimSpace(string(out))
			name, _, _ = strings.Cut(strings.TrimSpace(string(out)), " ") // HEAD, a branch: name the commit
			src = filepath.Join(work, fmt.Sprintf("src-%d", i))
			if err := os.MkdirAll(src, 0o755); err != nil {
				t.Fatal(err)
			}
			sh := fmt.Sprintf("git -C %q archive %q | tar -x -C %q", repo, label, src)
			if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
				t.Fatalf("extracting %s: %v\n%s", label, err, out)
			}
		}
		if len(labels) > 1 {
			v.tool = toolFD + "@" + name
		}
		build := exec.Command("go", "build", "-o", v.bin, "./cmd/fleetdeploy")
		build.Dir = src
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building fleetdeploy %s: %v\n%s", label, err, out)
		}
		vs = append(vs, v)
	}
	return vs
}

func readFile(t *testing.T, dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// countDiffering counts the files whose content, size or mtime differs.
func countDiffering(t *testing.T, a, b string) int {
	n := 0
	err := filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		fa, _ := os.Stat(p)
		fb, err := os.Stat(filepath.Join(b, rel))
		if err != nil {
			n++
			return nil
		}
		ca, _ := os.ReadFile(p)
		cb, _ := os.ReadFile(filepath.Join(b, rel))
		if string(ca) != string(cb) || fa.Size() != fb.Size() || !fa.ModTime().Equal(fb.ModTime()) {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newMeter picks how bytes are counted.
func (b *bench) newMeter(t *testing.T, name string, addrs []string) Meter {
	mode := *flagMeter
	if mode == "auto" {
		mode = "proxy"
		if os.Geteuid() == 0 && nftAvailable() {
			mode = "nft"
		}
	}
	var m Meter
	var err error
	counted := addrs
	up, down := nftPlace{hook: "output"}, nftPlace{hook: "output"}
	if b.link != nil {
		// The hosts' end of the link: a relay on each host's address.
		relay, err := newProxyMeter(addrs, func(i int) (net.Listener, error) { return b.link.Hosts.Listen(hostAddr(i)) },
			"the relay at the hosts' end of the link counts each host's SSH stream (TCP payload: no headers, no retransmissions)")
		if err != nil {
			t.Fatalf("-link: relays to the hosts: %v", err)
		}
		t.Cleanup(func() { relay.Close() })
		counted = nil
		up, down = nftPlace{b.link.Hosts, "input"}, nftPlace{b.link.Clients, "input"}
		for i := range addrs {
			counted = append(counted, relay.Addr(i))
		}
		if mode == "proxy" {
			m = relay
		}
	}
	switch {
	case m != nil:
	case mode == "nft":
		m, err = newNftMeter(fmt.Sprintf("%s%d", name, os.Getpid()), counted, up, down)
	case mode == "proxy":
		m, err = newProxyMeter(addrs, nil, "")
	default:
		t.Fatalf("unknown -meter %q", mode)
	}
	if err != nil {
		t.Fatalf("byte counting (%s): %v", mode, err)
	}
	t.Cleanup(func() { m.Close() })
	b.run.Meter = m.Method()
	return m
}

// fleet is what one set of hosts offers a measurement.
type fleet struct {
	backend string
	addrs   []string // what clients dial
	bases   []string // per host, a folder the login user may create roots in
	creds   Creds
	meter   Meter
	mkroot  func(i int, root string) error // creates an empty root owned by the login user
}

func (b *bench) openssh(t *testing.T, n int) {
	start := time.Now()
	f := sshtest.Start(t, n)
	var addrs []string
	var keys []ssh.PublicKey
	fl := &fleet{backend: "openssh"}
	for _, h := range f.Hosts {
		addrs = append(addrs, h.Name)
		keys = append(keys, h.HostKey)
	}
	fl.meter = b.newMeter(t, "fdbench", addrs)
	for i := range addrs {
		fl.addrs = append(fl.addrs, fl.meter.Addr(i))
	}
	kh := filepath.Join(b.work, fmt.Sprintf("known_hosts-openssh-%d", n))
	if err := WriteKnownHosts(kh, fl.addrs, keys); err != nil {
		t.Fatal(err)
	}
	fl.creds = Creds{User: f.User, Identity: f.Identity, KnownHosts: kh}
	u, err := user.Lookup(f.User)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	fl.mkroot = func(i int, root string) error {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		return os.Lchown(root, uid, gid)
	}
	// Roots live in the work folder rather than in sshtest's, which is
	// removed when the fleet stops: on a disk, mass deletes slow down the
	// file creation of the next minutes (see deferRemoval).
	for i := range f.Hosts {
		base := filepath.Join(b.work, "roots", fmt.Sprintf("openssh-%d", n), fmt.Sprintf("host%02d", i+1))
		if err := fl.mkroot(i, base); err != nil {
			t.Fatal(err)
		}
		fl.bases = append(fl.bases, base)
	}
	t.Logf("%d OpenSSH hosts up in %s (login user %s)", n, time.Since(start).Round(time.Millisecond), f.User)
	b.calibrate(t, fl)
	b.measure(t, fl, n <= *flagBaseMax)
}

// sandbox runs `fleetdeploy sandbox --count n --dir D` and measures fleetdeploy on it.
func (b *bench) sandbox(t *testing.T, n int) {
	// One sandbox serves at most maxPerSandbox hosts: larger fleets are made
	// of several, all trusting one client key placed in each folder first.
	parts := (n + maxPerSandbox - 1) / maxPerSandbox
	_, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "fdbench")
	if err != nil {
		t.Fatal(err)
	}
	identity := filepath.Join(b.work, fmt.Sprintf("id_ed25519-sandbox-%d", n))
	if err := os.WriteFile(identity, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	var keys []ssh.PublicKey
	var bases []string
	for p := range parts {
		count := n / parts
		if p < n%parts {
			count++
		}
		dir := filepath.Join(b.work, fmt.Sprintf("sandbox-%d-%d", n, p+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		var a []string
		var k []ssh.PublicKey
		// The newest version that has a working sandbox command serves the hosts.
		for v := len(b.versions) - 1; v >= 0; v-- {
			if b.sandboxBin != "" && b.sandboxBin != b.versions[v].bin {
				continue
			}
			if a, k, err = b.startSandbox(t, b.versions[v].bin, dir, count); err == nil {
				b.sandboxBin = b.versions[v].bin
				break
			}
			t.Logf("%s cannot serve a sandbox: %v", b.versions[v].tool, err)
		}
		if err != nil {
			note := fmt.Sprintf("sandbox with %d hosts skipped: %v", n, err)
			b.run.Notes = append(b.run.Notes, note)
			t.Skip(note)
		}
		addrs = append(addrs, a...)
		keys = append(keys, k...)
		for i := range a {
			bases = append(bases, filepath.Join(dir, fmt.Sprintf("host%d", i+1)))
		}
	}
	if parts > 1 {
		b.run.Notes = append(b.run.Notes, fmt.Sprintf("%d sandbox hosts are %d `fleetdeploy sandbox` processes (it serves at most %d hosts each), in one inventory.", n, parts, maxPerSandbox))
	}
	u := os.Getenv("USER")
	if u == "" {
		u = "bench"
	}
	fl := &fleet{backend: "sandbox", bases: bases}
	fl.meter = b.newMeter(t, "fdbenchsb", addrs)
	for i := range addrs {
		fl.addrs = append(fl.addrs, fl.meter.Addr(i))
	}
	kh := filepath.Join(b.work, fmt.Sprintf("known_hosts-sandbox-%d", n))
	if err := WriteKnownHosts(kh, fl.addrs, keys); err != nil {
		t.Fatal(err)
	}
	fl.creds = Creds{User: u, Identity: identity, KnownHosts: kh}
	fl.mkroot = func(i int, root string) error { return os.MkdirAll(root, 0o755) }
	b.measure(t, fl, false)
}

// maxPerSandbox is the most hosts `fleetdeploy sandbox --count` accepts.
const maxPerSandbox = 100

// startSandbox runs `fleetdeploy sandbox --count n --dir dir` until the test
// ends and returns its hosts once all of them greet.
func (b *bench) startSandbox(t *testing.T, bin, dir string, n int) ([]string, []ssh.PublicKey, error) {
	logPath := dir + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "sandbox", "--count", strconv.Itoa(n), "--dir", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once the sandbox has exited
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	addrs, keys, err := waitSandbox(dir, n, exited, 2*time.Minute)
	if err != nil {
		select {
		case <-exited:
			err = fmt.Errorf("%w (%v)", err, waitErr)
		default:
		}
		log, _ := os.ReadFile(logPath)
		return nil, nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(lastLines(string(log), 3)))
	}
	return addrs, keys, nil
}

// waitSandbox waits until the sandbox has written a known_hosts listing n
// hosts that all greet, and returns their addresses and keys in host order.
func waitSandbox(dir string, n int, exited <-chan struct{}, timeout time.Duration) ([]string, []ssh.PublicKey, error) {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return nil, nil, errors.New("fleetdeploy sandbox exited")
		default:
		}
		addrs, keys, err := readKnownHosts(filepath.Join(dir, "known_hosts"))
		if err == nil && len(addrs) == n {
			ready := true
			for _, a := range addrs {
				if !greets(a) {
					ready = false
					break
				}
			}
			if ready {
				return addrs, keys, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("no known_hosts with %d greeting hosts in %s after %s", n, dir, timeout)
		}
		<-time.After(50 * time.Millisecond) // pacing a bounded poll
	}
}

func readKnownHosts(path string) ([]string, []ssh.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var addrs []string
	var keys []ssh.PublicKey
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		host := strings.Split(fs[0], ",")[0]
		if strings.HasPrefix(host, "[") {
			h, p, ok := strings.Cut(strings.TrimPrefix(host, "["), "]:")
			if !ok {
				continue
			}
			host = net.JoinHostPort(h, p)
		} else {
			host = net.JoinHostPort(host, "22")
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(fs[1] + " " + fs[2]))
		if err != nil {
			return nil, nil, err
		}
		addrs = append(addrs, host)
		keys = append(keys, k)
	}
	return addrs, keys, sc.Err()
}

func greets(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write([]byte("SSH-2.0-fdbench_probe\r\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

// calibrate checks the swap watchers: the bench renames a symlink over
// `latest` in every host's folder back to back, once unwatched and once
// watched, and compares what the watchers saw with when each rename(2)
// returned. The difference between the two passes is the watchers' own cost:
// on 2 cores a waking real-time watcher preempts whoever renames next.
func (b *bench) calibrate(t *testing.T, fl *fleet) {
	n := len(fl.bases)
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(fl.bases[i], "calibration")
		if err := fl.mkroot(i, dirs[i]); err != nil {
			t.Fatal(err)
		}
	}
	renameAll := func() []time.Time {
		for _, d := range dirs {
			if err := os.Symlink("builds/x", filepath.Join(d, "next")); err != nil {
				t.Fatal(err)
			}
		}
		issued := make([]time.Time, n)
		start := time.Now()
		for i, d := range dirs {
			if err := os.Rename(filepath.Join(d, "next"), filepath.Join(d, "latest")); err != nil {
				t.Fatal(err)
			}
			issued[i] = time.Now()
		}
		return append([]time.Time{start}, issued...)
	}
	quiet := renameAll()
	prev := runtime.GOMAXPROCS(n + 4)
	w, err := WatchSwaps(dirs)
	if err != nil {
		t.Fatal(err)
	}
	watched := renameAll()
	ev := w.Stop()
	runtime.GOMAXPROCS(prev)
	b.noteRealtime(w)
	skew, missing, first := Skew(ev)
	var late time.Duration
	for i, f := range first {
		if !f.IsZero() {
			late = max(late, f.Sub(watched[i+1]))
		}
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
	spanQuiet, spanWatched := quiet[n].Sub(quiet[0]), watched[n].Sub(watched[0])
	line := fmt.Sprintf("watcher check, %d hosts: %d back-to-back renames over `latest` take %s unwatched and %s watched (the watchers' own cost: ~%s per switch); the watchers saw a skew of %s between the first and last; worst wake-up after a rename returned: %s; missed: %d",
		n, n, us(spanQuiet), us(spanWatched), us(max(0, spanWatched-spanQuiet)/time.Duration(n)), us(skew), us(late), missing)
	t.Log(line)
	b.run.Calibration = append(b.run.Calibration, line)
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

func (b *bench) noteRealtime(w *SwapWatch) {
	ok, err := w.Realtime()
	b.rtChecks++
	if !ok {
		b.rtOK = false
		b.rtErr = err
	}
}

// measure runs every repetition of every tool on a fleet.
func (b *bench) measure(t *testing.T, fl *fleet, baseline bool) {
	n := len(fl.addrs)
	var tools []string
	for _, v := range b.versions {
		tools = append(tools, v.tool)
	}
	if baseline {
		tools = append(tools, toolRsync)
	}
	reps := *flagReps
	if fl.backend == "sandbox" {
		reps = *flagSbReps
	}
	for rep := 1; rep <= reps; rep++ {
		order := slices.Clone(tools)
		if rep%2 == 0 { // alternate who goes first
			slices.Reverse(order)
		}
		for _, tool := range order {
			roots := make([]string, n)
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range roots {
				roots[i] = filepath.Join(fl.bases[i], fmt.Sprintf("%s-%d", strings.ReplaceAll(tool, "@", "-"), rep))
				wg.Go(func() { errs[i] = fl.mkroot(i, roots[i]) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			b.deployTwice(t, fl, tool, rep, roots)
			if !b.deferRemoval {
				for _, r := range roots {
					wg.Go(func() { os.RemoveAll(r) })
				}
				wg.Wait()
			}
		}
	}
}

// deployTwice measures a first deploy of v1, a redeploy of v2 into fresh
// roots, and a rollback to v1.
func (b *bench) deployTwice(t *testing.T, fl *fleet, tool string, rep int, roots []string) {
	n := len(fl.addrs)
	logf, err := os.Create(filepath.Join(b.work, fmt.Sprintf("%s-%d-%s-%d.log", fl.backend, n, strings.ReplaceAll(tool, "@", "-"), rep)))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, kind := range []string{kindFirst, kindRe, kindRollback, kindSteady} {
		app, want := b.app1, b.v1
		if kind == kindRe || kind == kindSteady {
			app, want = b.app2, b.v2
		}
		keep := 5
		if kind == kindSteady {
			keep = 1
		}
		var run func() RunResult
		switch tool {
		default:
			bin := ""
			for _, v := range b.versions {
				if v.tool == tool {
					bin = v.bin
				}
			}
			inv := filepath.Join(b.work, fmt.Sprintf("inventory-%s-%d-%d-%s.yml", fl.backend, n, rep, kind))
			fmt.Fprintf(logf, "=== %s %s\n", tool, kind)
			if err := WriteInventory(inv, app.Dir, fl.addrs, roots, fl.creds, *flagHook, app.Outside, keep); err != nil {
				t.Fatal(err)
			}
			report := filepath.Join(b.work, "fleetdeploy.rusage")
			command := "up"
			if kind == kindRollback {
				command = "rollback"
			}
			run = func() RunResult {
				return RunFleetdeploy(ctx, b.clients(), bin, command, inv, report, filepath.Join(b.work, "fleetdeploy-cache"), logf, strings.Fields(*flagFDFlags)...)
			}
		case toolRsync:
			bl := &Baseline{Creds: fl.creds, Log: logf, Dir: b.work, NS: b.clients()}
			release, prev := "20250101-000001", ""
			switch kind {
			case kindRe:
				release, prev = "20250101-000002", "20250101-000001"
			case kindSteady:
				release, prev, bl.Remove = "20250101-000003", "20250101-000001", "20250101-000002"
			}
			run = func() RunResult { return bl.Run(ctx, app.Dir, fl.addrs, roots, release, prev) }
			if kind == kindRollback {
				run = func() RunResult { return bl.Rollback(ctx, fl.addrs, roots, "20250101-000001") }
			}
		}
		p := b.phase(t, fl, roots, run)
		p.Backend, p.Hosts, p.Tool, p.Kind, p.Rep = fl.backend, n, tool, kind, rep
		if p.Err == nil {
			p.Err = CheckLive(roots, app.Probe, want)
		}
		if p.Err == nil && kind == kindSteady {
			p.Err = checkBuilds(roots, 2) // the live one and the one before: the third went
		}
		var tot int64
		for _, tr := range p.Traffic {
			tot += tr.Up + tr.Down
		}
		status := "ok"
		if p.Err != nil {
			status = "FAILED: " + oneLine(p)
			t.Errorf("%s %d hosts rep %d %s %s: %v", fl.backend, n, rep, tool, kind, p.Err)
		}
		t.Logf("rep %d %-20s %-8s wall %6.2fs  skew %8s ms (bound %s ms)  wire/host %s  rss %d MiB  other load %.0f%%  %s",
			rep, tool, kind, p.Wall.Seconds(), ms(p.Skew), ms(p.SkewBound), bytesH(tot/int64(max(1, n))), p.MaxRSSKB/1024, 100*p.Foreign, status)
		b.run.Phases = append(b.run.Phases, p)
		if p.Err != nil {
			return // a redeploy after a failed first deploy measures nothing useful
		}
	}
}

// checkBuilds checks that every root holds n builds.
func checkBuilds(roots []string, n int) error {
	for _, r := range roots {
		es, err := os.ReadDir(filepath.Join(r, "builds"))
		if err != nil {
			return err
		}
		if len(es) != n {
			return fmt.Errorf("%s holds %d builds, want %d", r, len(es), n)
		}
	}
	return nil
}

// phase runs one deploy between two reads of the byte counters, with a swap
// watcher on every root.
func (b *bench) phase(t *testing.T, fl *fleet, roots []string, run func() RunResult) Phase {
	unix.Sync() // earlier phases' writeback must not land inside this one
	mark := MarkCPU()
	before, err := fl.meter.Read()
	if err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(len(roots) + 4) // every watcher finds a free P on wake-up
	w, err := WatchSwaps(roots)
	if err != nil {
		t.Fatal(err)
	}
	r := run()
	ev := w.Stop()
	runtime.GOMAXPROCS(prev)
	b.noteRealtime(w)
	after, err := fl.meter.Read()
	if err != nil {
		t.Fatal(err)
	}
	p := Phase{RunResult: r, Traffic: Diff(before, after)}
	_, p.Foreign = mark.Foreign()
	p.CPU = mark.Tree()
	p.Skew, p.Missing, _ = Skew(ev)
	for _, e := range ev {
		p.Swaps += len(e)
	}
	return p
}
