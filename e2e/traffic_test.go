//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLiveTraffic deploys and rolls back the example app over and over while
// every host serves it with nginx + PHP-FPM under continuous load: no request
// may fail, and no page may mix two versions.
func TestLiveTraffic(t *testing.T) {
	s := newScenario(t, "traffic: 12 deploys and rollbacks under live load (3 hosts, nginx + PHP-FPM)",
		"every op exits 0 and switches all hosts; every request answered 200 from one version; during each switch only old or new, never back; sessions in shared/ survive")
	needWeb(s)
	f := newFleet(t, 3)
	f.provisionAll()
	src := writeApp(t, "v1")
	inv := f.write(t, inventory{source: src, keep: 3})
	mustFD(s, "up", "e2e", "-i", inv)

	var webs []*web
	var names []string
	for i := range f.Hosts {
		webs = append(webs, f.serve(s, i))
		names = append(names, f.name(i))
	}
	// Every host answers before the load starts.
	for _, w := range webs {
		if v, _, err := fetch(http.DefaultClient, w.URL("/"), "/"); err != nil || v != "v1" {
			s.Fatalf("%s before the load: version %q, %v", f.name(w.Host), v, err)
		}
	}
	l := startLoad(webs, names, 2, "v1")
	t.Cleanup(l.stop)

	// Each op: deploy a new version, or roll back to the one live before.
	type op struct {
		rollback bool
		version  string // what is live after it
	}
	ops := []op{
		{false, "v2"}, {false, "v3"}, {true, "v2"}, {false, "v4"}, {false, "v5"}, {true, "v4"},
		{false, "v6"}, {false, "v7"}, {true, "v6"}, {false, "v8"}, {false, "v9"}, {false, "v10"},
	}
	var took []string
	for n, o := range ops {
		if !o.rollback {
			setVersion(t, src, o.version)
		}
		// Make sure the load ran a little before this op starts.
		before := l.requestsNow()
		poll(t, "load running", 10*time.Second, 5*time.Millisecond, func() bool {
			now := l.requestsNow()
			for i := range now {
				if now[i] < before[i]+3 {
					return false
				}
			}
			return true
		}, nil)
		l.beginOp(o.version)
		args := []string{"up", "e2e", "-i", inv}
		what := "up " + o.version
		if o.rollback {
			args = []string{"rollback", "e2e", "-i", inv}
			what = "rollback to " + o.version
		}
		r := fd(t, args...)
		if r.code != 0 {
			l.abortOp()
			s.Fatalf("op %d (%s): %s", n+1, what, r)
		}
		l.endOp()
		took = append(took, fmt.Sprintf("%s %.1fs", what, r.took.Seconds()))
		// The command has returned: every host must serve the new version now.
		for i, w := range webs {
			if v, _, err := fetch(http.DefaultClient, w.URL("/"), "/"); err != nil || v != o.version {
				s.Errorf("after op %d (%s): %s serves %q (%v), want %s", n+1, what, f.name(i), v, err, o.version)
			}
		}
		f.checkConverged(s)
	}
	// A last stretch of load on the final version.
	before := l.requestsNow()
	poll(t, "load after the last op", 10*time.Second, 5*time.Millisecond, func() bool {
		now := l.requestsNow()
		for i := range now {
			if now[i] < before[i]+20 {
				return false
			}
		}
		return true
	}, nil)
	l.stop()

	tot := l.totals()
	per := l.requestsNow()
	var perHost []string
	for i, n := range per {
		perHost = append(perHost, fmt.Sprintf("%s: %d", f.name(i), n))
	}
	s.Observe("%d ops (9 up, 3 rollback) all exit 0", len(ops))
	s.Observe("%d requests (%s)", tot.requests, strings.Join(perHost, ", "))
	s.Observe("%d failed/non-2xx, %d mixed, %d unexpected version, %d flip-flops, %d session resets; slowest answer %s",
		tot.failed, tot.mixed, tot.unexpected, tot.flips, tot.resets, tot.slowest.Round(time.Millisecond))
	s.Detail("Load: 2 clients per host, each at most one request every %s (every 10th to /health.php), each with its own session cookie.", loadPeriod)
	s.Detail("")
	for _, line := range l.table() {
		s.Detail("%s", line)
	}
	s.Detail("")
	s.Detail("Op durations: %s.", strings.Join(took, ", "))
	for _, p := range tot.problems {
		s.Detail("- %s", p)
	}
	if tot.failed+tot.mixed+tot.unexpected+tot.flips+tot.resets > 0 {
		s.Errorf("bad answers under load: %d failed, %d mixed, %d unexpected, %d flip-flops, %d session resets; first: %v",
			tot.failed, tot.mixed, tot.unexpected, tot.flips, tot.resets, tot.problems)
	}
	for i, h := range l.hosts {
		for n, c := range h.perOp {
			if c == 0 {
				s.Errorf("%s: no request answered during op %d: the load did not overlap it", f.name(i), n+1)
			}
		}
	}
}

// jobScript is a long-running PHP CLI job started from a build: it reads a
// file of its build (relative to its working folder) every 100 ms and holds
// another open, until told to stop (or 90 s pass), then writes what it read to
// shared/. Run from builds/OLD, it proves OLD stayed whole while it ran.
const jobScript = `
[$stop, $out] = [$argv[1], $argv[2]];
$held = fopen('config/version.php', 'r');
$deadline = microtime(true) + 90;
$reads = 0; $first = null; $bad = [];
while (!file_exists($stop) && microtime(true) < $deadline) {
    $v = @file_get_contents('VERSION');
    if ($v === false) { $bad[] = 'VERSION unreadable at read ' . $reads; }
    else { $v = trim($v); $first ??= $v; if ($v !== $first) { $bad[] = "read $v"; } }
    $reads++;
    usleep(100000);
}
$cfg = stream_get_contents($held, -1, 0);
if ($cfg === false || !str_contains($cfg, "'" . $first . "'")) { $bad[] = 'held file changed'; }
$cwd = getcwd();
file_put_contents($out, sprintf("done reads=%d version=%s errors=%d %s cwd=%s\n", $reads, $first, count($bad), implode(',', array_slice($bad, 0, 3)), $cwd === false ? 'GONE' : 'ok'));
`

// TestLongJobKeepsItsBuild runs a PHP CLI job from the oldest build while
// deploys with keep: 2 would remove that build: cleanup must leave a build
// alone while a process uses it, and remove it once the process has ended.
func TestLongJobKeepsItsBuild(t *testing.T) {
	s := newScenario(t, "in-use builds: long PHP CLI job (cwd) and an open file in old builds survive cleanup (keep: 2)",
		"builds/OLD (cwd of a running job) and builds/OLD2 (a file held open) stay while used, across 3 deploys; the job ends with done + all reads correct; a later deploy removes both")
	needWeb(s)
	f := newFleet(t, 2)
	f.provisionAll()
	src := writeApp(t, "v1")
	inv := f.write(t, inventory{source: src, keep: 2})
	mustFD(s, "up", "e2e", "-i", inv)
	old := f.live(0)
	oldDir := filepath.Join(f.roots[0], "builds", old)
	stop := filepath.Join(f.roots[0], "shared", "job.stop")
	out := filepath.Join(f.roots[0], "shared", "job.out")

	job := exec.Command("/usr/bin/php", "-r", jobScript, "--", stop, out)
	job.Dir = oldDir
	job.Env = []string{"HOME=" + f.home, "PATH=/usr/bin:/bin"}
	job.SysProcAttr = f.credentials()
	jobOut := &syncBuffer{}
	job.Stdout, job.Stderr = jobOut, jobOut
	if err := job.Start(); err != nil {
		s.Fatalf("starting the job: %v", err)
	}
	jobDone := make(chan struct{})
	var jobErr error
	go func() { jobErr = job.Wait(); close(jobDone) }()
	t.Cleanup(func() {
		syscall.Kill(-job.Process.Pid, syscall.SIGKILL)
		<-jobDone
	})
	poll(t, "job running in the old build", 10*time.Second, 10*time.Millisecond, func() bool {
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", job.Process.Pid))
		return cwd == oldDir
	}, nil)

	// A second holder: only an open file in the next build, its cwd elsewhere.
	setVersion(t, src, "v2")
	mustFD(s, "up", "e2e", "-i", inv)
	old2 := f.live(0)
	old2File := filepath.Join(f.roots[0], "builds", old2, "src", "body.php")
	holder := exec.Command("/bin/sh", "-c", `exec 3<"$1"; while [ ! -e "$2" ]; do sleep 0.1; done; cat <&3 > "$3"`,
		"holder", old2File, stop, filepath.Join(f.roots[0], "shared", "holder.out"))
	holder.Dir = "/"
	holder.SysProcAttr = f.credentials()
	if err := holder.Start(); err != nil {
		s.Fatalf("starting the holder: %v", err)
	}
	holderDone := make(chan struct{})
	go func() { holder.Wait(); close(holderDone) }()
	t.Cleanup(func() {
		syscall.Kill(-holder.Process.Pid, syscall.SIGKILL)
		<-holderDone
	})
	poll(t, "holder has the file open", 10*time.Second, 10*time.Millisecond, func() bool {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", holder.Process.Pid))
		return target == old2File
	}, nil)

	removedOld, removedOld2 := "", ""
	for _, v := range []string{"v3", "v4", "v5"} {
		setVersion(t, src, v)
		r := mustFD(s, "up", "e2e", "-i", inv)
		if !exists(oldDir) && removedOld == "" {
			removedOld = v
			s.Errorf("deploying %s removed builds/%s although a running job has its cwd there (stdout: %s)", v, old, oneLine(grepLines(r.stdout, "removing old builds"), 200))
		}
		if !exists(filepath.Join(f.roots[0], "builds", old2)) && removedOld2 == "" {
			removedOld2 = v
			s.Errorf("deploying %s removed builds/%s although a process holds a file of it open", v, old2)
		}
		select {
		case <-jobDone:
			s.Errorf("the job ended early (%v) while deploying %s: %s", jobErr, v, jobOut.String())
		default:
		}
	}
	builds := f.state(0).builds
	s.Observe("after 3 more deploys with keep 2: builds %v (OLD=%s, OLD2=%s)", builds, old, old2)

	// Tell the job to finish, and check what it read.
	f.asUser(t, `touch "$1"`, stop)
	timer := time.NewTimer(20 * time.Second)
	select {
	case <-jobDone:
		timer.Stop()
		if jobErr != nil {
			s.Errorf("job failed: %v: %s", jobErr, jobOut.String())
		}
	case <-timer.C:
		s.Fatalf("job did not finish within 20 s of being told to stop")
	}
	timer = time.NewTimer(10 * time.Second)
	select {
	case <-holderDone:
		timer.Stop()
	case <-timer.C:
		s.Fatalf("holder did not finish within 10 s of being told to stop")
	}
	got, err := os.ReadFile(out)
	report := strings.TrimSpace(string(got))
	s.Observe("job: %q", report)
	if err != nil || !strings.HasPrefix(report, "done ") || !strings.Contains(report, "version=v1 errors=0") || !strings.Contains(report, "cwd=ok") {
		s.Errorf("job did not finish correctly: %q, %v (output: %s)", report, err, jobOut.String())
	}
	if b, err := os.ReadFile(filepath.Join(f.roots[0], "shared", "holder.out")); err != nil || !strings.Contains(string(b), "'v2'") {
		s.Errorf("holder could not read its open file of v2: %q, %v", b, err)
	}

	// Nothing uses them any more: the next deploy removes both.
	setVersion(t, src, "v6")
	mustFD(s, "up", "e2e", "-i", inv)
	for _, id := range []string{old, old2} {
		if exists(filepath.Join(f.roots[0], "builds", id)) {
			s.Errorf("builds/%s still there after its users ended and another deploy ran (keep 2): builds %v", id, f.state(0).builds)
		}
	}
	s.Observe("after the job ended, next deploy left builds %v", f.state(0).builds)
	f.checkConverged(s)
}

func grepLines(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, " / ")
}
