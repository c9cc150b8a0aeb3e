//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// healthCheckPHP is the health check the scenario's inventory runs on each
// host, from the new build's folder: it asks the host's own nginx for
// /health.php (its port in shared/port) and fails unless the answer is 200.
const healthCheckPHP = `<?php
// Health check run by fleetdeploy on the host after the cutover.
$port = trim((string) @file_get_contents(getenv('FLEETDEPLOY_ROOT') . '/shared/port'));
$ctx = stream_context_create(['http' => ['timeout' => 2, 'ignore_errors' => true]]);
$body = @file_get_contents("http://127.0.0.1:$port/health.php", false, $ctx);
$status = $http_response_header[0] ?? 'no answer';
echo $status, ' ', trim((string) $body), "\n";
exit(str_contains($status, ' 200 ') ? 0 : 1);
`

// breakHealth makes the app's /health.php (in src) answer 503 on a host
// whose shared .env says FAIL_HEALTH=<its version>.
func breakHealth(t *testing.T, src string) {
	t.Helper()
	p := filepath.Join(src, "public", "health.php")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	const at = "$ok = !in_array(false, $checks, true);"
	if !strings.Contains(string(b), at) {
		t.Fatalf("examples/app/public/health.php has no %q: update the e2e test", at)
	}
	b = []byte(strings.Replace(string(b), at, "$checks['not failed on purpose'] = app_env('FAIL_HEALTH') !== V_HEALTH;\n"+at, 1))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHealthCheckRevertUnderTraffic deploys, under live load on nginx +
// PHP-FPM, a build whose health endpoint fails on one host of three: the
// whole fleet goes live on it, then back to the build before, together.
// It measures, with inotify on every root, the cutover and the switch back
// of each host, and checks every answer users got meanwhile.
func TestHealthCheckRevertUnderTraffic(t *testing.T) {
	s := newScenario(t, "health check: a build whose /health.php fails on 1 of 3 hosts, under live load (nginx + PHP-FPM)",
		"exit 7 naming the host; every host back on the build before, switched back together (skew measured); after_rollback ran on every host; no page ever mixes versions; users saw the failing build only between its cutover and the switch back; the next deploy goes through")
	needWeb(s)
	f := newFleet(t, 3)
	f.provisionAll()
	src := writeApp(t, "v1")
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "bin", "health-check.php"), []byte(healthCheckPHP), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := `hooks:
  after_rollback:
    - 'echo "$FLEETDEPLOY_RELEASE from $FLEETDEPLOY_PREVIOUS" >> "$FLEETDEPLOY_ROOT/shared/after_rollback"'
health_check:
  run: php bin/health-check.php
  timeout: 5s
  interval: 250ms
`
	inv := f.write(t, inventory{source: src, keep: 5, extra: extra})

	var webs []*web
	var names []string
	for i := range f.Hosts {
		webs = append(webs, f.serve(s, i))
		names = append(names, f.name(i))
		f.asUser(t, `printf '%s\n' "$2" > "$1/shared/port"`, f.roots[i], fmt.Sprint(webs[i].Port))
	}
	mustFD(s, "up", "e2e", "-i", inv) // v1, checked on every host
	l := startLoad(webs, names, 2, "v1")
	t.Cleanup(l.stop)
	waitLoad := func(n int) {
		t.Helper()
		before := l.requestsNow()
		poll(t, "load running", 10*time.Second, 5*time.Millisecond, func() bool {
			now := l.requestsNow()
			for i := range now {
				if now[i] < before[i]+n {
					return false
				}
			}
			return true
		}, nil)
	}

	// v2 is healthy everywhere: it goes through.
	setVersion(t, src, "v2")
	waitLoad(3)
	l.beginOp("v2")
	if r := fd(t, "up", "e2e", "-i", inv); r.code != 0 {
		l.abortOp()
		s.Fatalf("up v2: %s", r)
	}
	l.endOp()
	v2 := f.checkConverged(s)

	// v3 fails its health check on host 1 only.
	setVersion(t, src, "v3")
	breakHealth(t, src)
	f.asUser(t, `printf 'FAIL_HEALTH=v3\n' >> "$1/shared/.env"`, f.roots[1])
	w, err := watchLatest(f.roots)
	if err != nil {
		s.Fatalf("inotify: %v", err)
	}
	waitLoad(3)
	l.beginRevertOp("v3")
	r := fd(t, "up", "e2e", "-i", inv)
	l.endOp()
	events := w.stop()
	if r.code != 7 {
		s.Fatalf("up v3: want exit 7, got %s", r)
	}
	first, _, _ := strings.Cut(r.stderr, "\n")
	if !strings.Contains(first, "health check failed on "+f.name(1)+" (") || !strings.Contains(first, "HTTP/1.1 503") || !strings.HasSuffix(first, "fleet back on "+v2) {
		s.Errorf("stderr: %s", first)
	}
	if back := f.checkConverged(s); back != v2 {
		s.Errorf("fleet on %s after the revert, want %s", back, v2)
	}
	var v3 string
	for i := range f.Hosts {
		b := f.state(i).builds
		v3 = b[len(b)-1]
		if got := strings.TrimSpace(f.asUser(t, `cat "$1/shared/after_rollback"`, f.roots[i])); got != v2+" from "+v3 {
			s.Errorf("%s: after_rollback hook wrote %q, want %q", f.name(i), got, v2+" from "+v3)
		}
		if !exists(filepath.Join(f.roots[i], ".fleetdeploy", "builds", v3+".bad")) {
			s.Errorf("%s: %s not marked bad", f.name(i), v3)
		}
	}

	// The next deploy (health restored) goes through, under the same load.
	setVersion(t, src, "v4")
	waitLoad(3)
	l.beginOp("v4")
	if r := fd(t, "up", "e2e", "-i", inv); r.code != 0 {
		l.abortOp()
		s.Fatalf("up v4: %s", r)
	}
	l.endOp()
	f.checkConverged(s)
	waitLoad(20)
	l.stop()

	// What the hosts' clocks saw: per host, the cutover to v3 and the switch back.
	cut, back, err := events.pairs(len(f.Hosts))
	if err != nil {
		s.Errorf("inotify: %v", err)
	} else {
		var windows []string
		for i := range f.Hosts {
			windows = append(windows, fmt.Sprintf("%s %.1f ms", f.name(i), ms(back[i].Sub(cut[i]))))
		}
		s.Observe("exit 7 in %.1fs; switch back skew %.2f ms by inotify on the hosts (cutover skew %.2f ms); failing build live for %s",
			r.took.Seconds(), ms(spread(back)), ms(spread(cut)), strings.Join(windows, ", "))
	}
	if m := regexp.MustCompile(`switch back skew ([0-9.]+) ms \(at most ([0-9.]+) ms`).FindStringSubmatch(r.stdout); m != nil {
		s.Observe("fleetdeploy's own figure: switch back skew %s ms (bound %s ms)", m[1], m[2])
	} else {
		s.Errorf("no switch back skew in the output:\n%s", tail(r.stdout, 2000))
	}
	tot := l.totals()
	var seen []string
	for _, h := range l.hosts {
		seen = append(seen, fmt.Sprintf("%s: %d answers from v3 (%d of them the 503 of its /health.php) within %.0f ms",
			h.name, h.badAnswers, h.unhealthy, ms(h.badLast.Sub(h.badFirst))))
	}
	s.Observe("%d requests; %d failed, %d mixed, %d unexpected, %d flip-flops, %d session resets; %s",
		tot.requests, tot.failed, tot.mixed, tot.unexpected, tot.flips, tot.resets, strings.Join(seen, "; "))
	for _, line := range l.table() {
		s.Detail("%s", line)
	}
	for _, p := range tot.problems {
		s.Detail("- %s", p)
	}
	if tot.failed+tot.mixed+tot.unexpected+tot.flips+tot.resets > 0 {
		s.Errorf("bad answers under load: %d failed, %d mixed, %d unexpected, %d flip-flops, %d session resets; first: %v",
			tot.failed, tot.mixed, tot.unexpected, tot.flips, tot.resets, tot.problems)
	}
	if l.hosts[1].unhealthy == 0 && l.hosts[1].badAnswers == 0 {
		s.Observe("(no request reached host 1 while v3 was live)")
	}
	for i, h := range l.hosts {
		for n, c := range h.perOp {
			if c == 0 {
				s.Errorf("%s: no request answered during op %d: the load did not overlap it", f.name(i), n+1)
			}
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// spread is the latest time minus the earliest.
func spread(ts []time.Time) time.Duration {
	lo, hi := ts[0], ts[0]
	for _, t := range ts {
		if t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	return hi.Sub(lo)
}

// latestWatch timestamps every rename onto root/latest of each host
// (inotify IN_MOVED_TO on the root folders), read by one goroutine that
// polls the inotify descriptor. All hosts share this machine's clock, so
// differences between hosts are exact up to the wake-up of that goroutine.
type latestWatch struct {
	fd     int
	hosts  map[int32]int // watch descriptor -> host
	mu     sync.Mutex
	events swapEvents
	done   chan struct{}
	halted chan struct{}
}

// swapEvents are, per host, the times latest was renamed over.
type swapEvents [][]time.Time

func watchLatest(roots []string) (*latestWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	w := &latestWatch{fd: fd, hosts: map[int32]int{}, events: make(swapEvents, len(roots)), done: make(chan struct{}), halted: make(chan struct{})}
	for i, r := range roots {
		wd, err := unix.InotifyAddWatch(fd, r, unix.IN_MOVED_TO)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("watching %s: %w", r, err)
		}
		w.hosts[int32(wd)] = i
	}
	go w.read()
	return w, nil
}

func (w *latestWatch) read() {
	defer close(w.halted)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		select {
		case <-w.done:
			return
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 50); err != nil || n == 0 {
			continue
		}
		n, err := unix.Read(w.fd, buf)
		now := time.Now()
		if err != nil || n <= 0 {
			continue
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			if host, ok := w.hosts[ev.Wd]; ok && name == "latest" {
				w.mu.Lock()
				w.events[host] = append(w.events[host], now)
				w.mu.Unlock()
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// stop ends the watch and returns what it saw.
func (w *latestWatch) stop() swapEvents {
	close(w.done)
	<-w.halted
	unix.Close(w.fd)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events
}

// pairs is, per host, its one cutover and its one switch back.
func (e swapEvents) pairs(n int) (cut, back []time.Time, err error) {
	for i := range n {
		if len(e[i]) != 2 {
			return nil, nil, fmt.Errorf("host %d: %d renames onto latest, want 2 (the cutover, the switch back)", i, len(e[i]))
		}
		cut, back = append(cut, e[i][0]), append(back, e[i][1])
	}
	if len(cut) == 0 {
		return nil, nil, errors.New("no host")
	}
	return cut, back, nil
}
