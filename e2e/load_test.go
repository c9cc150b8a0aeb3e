//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// load hits every host continuously and checks every answer: 200, the page
// built from one version only, a version the fleet may serve at that moment,
// never switching back and forth during one cutover, and the PHP session
// (kept in shared/) never lost.
//
// Versions are checked against ops: between two ops every answer must carry
// the version the last op made live; during an op either the one before or
// the one after, and a client that saw the new one never sees the old one again.
// During an op that is switched back (a health check fails: beginRevertOp),
// the one before or the failing one, which a client sees at most once in a
// row: never again once it saw the one before come back; a 503 from the
// failing build's /health.php is counted apart (what users see then).
type load struct {
	mu      sync.Mutex
	phase   int            // even 2k: idle after op k; odd 2k+1: op k+1 running
	expects []string       // version live after op k (expects[0]: before any op)
	bad     map[int]string // by odd phase: the version a revert op switches back from
	hosts   []*hostLoad
	stopped chan struct{}
	wg      sync.WaitGroup
}

// hostLoad counts one host's answers.
type hostLoad struct {
	name       string
	requests   int
	ok         int
	failed     int // transport errors and non-2xx
	mixed      int // a page assembled from two versions
	unexpected int // a version the fleet should not serve then
	flips      int // old version after new during one cutover
	resets     int // session counter not continuing
	unhealthy  int // 503 from /health.php of a build being switched back from (expected then)
	versions   map[string]int
	// badFirst and badLast: the first and last answer from the build being
	// switched back from (during the last revert op).
	badFirst, badLast time.Time
	badAnswers        int
	slowest           time.Duration
	perOp             []int // requests answered during each op
	problems          []string
}

const (
	loadPeriod      = 10 * time.Millisecond // per worker: at most 100 requests a second
	loadMaxDuration = 5 * time.Minute       // a worker stops by itself after this
	loadMaxRequests = 50000                 // or after this many requests
)

var (
	versionsRE = regexp.MustCompile(`versions: ([^\n<]*)`)
	visitsRE   = regexp.MustCompile(`Visits this session: (\d+)`)
)

// startLoad starts workers clients per host; version is what the fleet serves now.
func startLoad(webs []*web, names []string, workers int, version string) *load {
	l := &load{expects: []string{version}, bad: map[int]string{}, stopped: make(chan struct{})}
	for i := range webs {
		l.hosts = append(l.hosts, &hostLoad{name: names[i], versions: map[string]int{}})
	}
	transport := &http.Transport{MaxIdleConnsPerHost: workers, IdleConnTimeout: time.Minute}
	for i, w := range webs {
		for range workers {
			l.wg.Add(1)
			go l.worker(i, w, transport)
		}
	}
	return l
}

// beginOp says an op that makes version live is starting.
func (l *load) beginOp(version string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expects = append(l.expects, version)
	l.phase++
	for _, h := range l.hosts {
		h.perOp = append(h.perOp, 0)
	}
}

// beginRevertOp says an op is starting that makes bad live, then switches
// every host back to the version live now.
func (l *load) beginRevertOp(bad string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expects = append(l.expects, l.expects[len(l.expects)-1])
	l.phase++
	l.bad[l.phase] = bad
	for _, h := range l.hosts {
		h.perOp = append(h.perOp, 0)
		h.badFirst, h.badLast, h.badAnswers = time.Time{}, time.Time{}, 0
	}
}

// endOp says the op has ended and its version is live everywhere.
func (l *load) endOp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase++
}

// abortOp says the op failed: the version before it is still live.
func (l *load) abortOp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.expects)
	l.expects[n-1] = l.expects[n-2]
	l.phase++
}

// stop ends the workers and waits for them.
func (l *load) stop() {
	select {
	case <-l.stopped:
	default:
		close(l.stopped)
	}
	l.wg.Wait()
}

func (l *load) worker(host int, w *web, transport *http.Transport) {
	defer l.wg.Done()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Transport: transport, Timeout: 10 * time.Second}
	tick := time.NewTicker(loadPeriod)
	defer tick.Stop()
	deadline := time.Now().Add(loadMaxDuration)
	lastVisits := 0
	seenNewIn := -1  // the op phase in which this client saw the op's new version
	seenBackIn := -1 // the revert op phase in which it saw the old version come back
	for n := 0; n < loadMaxRequests && time.Now().Before(deadline); n++ {
		select {
		case <-l.stopped:
			return
		case <-tick.C:
		}
		l.mu.Lock()
		phase := l.phase
		before, after := l.expects[phase/2], ""
		if phase%2 == 1 {
			after = l.expects[phase/2+1]
		}
		bad := l.bad[phase]
		l.mu.Unlock()

		path := "/"
		if n%10 == 9 {
			path = "/health.php"
		}
		start := time.Now()
		version, visits, problem := fetch(client, w.URL(path), path)
		took := time.Since(start)

		l.mu.Lock()
		h := l.hosts[host]
		h.requests++
		if took > h.slowest {
			h.slowest = took
		}
		if phase%2 == 1 {
			h.perOp[phase/2]++
		}
		note := func(kind *int, format string, args ...any) {
			*kind++
			if len(h.problems) < 10 {
				h.problems = append(h.problems, fmt.Sprintf("%s %s GET %s: ", start.Format("15:04:05.000"), h.name, path)+fmt.Sprintf(format, args...))
			}
		}
		sawBad := func() {
			if h.badFirst.IsZero() {
				h.badFirst = start
			}
			h.badLast = start
			h.badAnswers++
		}
		switch {
		case problem == errMixed:
			note(&h.mixed, "page mixes versions: %s", version)
		case problem == errUnhealthy && bad != "" && version == bad:
			h.unhealthy++
			sawBad()
			if seenBackIn == phase {
				note(&h.flips, "served %s (503) again after %s came back", bad, before)
			}
			seenNewIn = phase
		case problem != nil:
			note(&h.failed, "%v", problem)
		default:
			h.ok++
			h.versions[version]++
			switch {
			case phase%2 == 0 && version != before:
				note(&h.unexpected, "served %s, want %s (no op running)", version, before)
			case bad != "" && version != before && version != bad:
				note(&h.unexpected, "served %s while %s went live and was switched back to %s", version, bad, before)
			case bad != "" && version == bad:
				sawBad()
				if seenBackIn == phase {
					note(&h.flips, "served %s again after %s came back", bad, before)
				}
				seenNewIn = phase
			case bad != "":
				if seenNewIn == phase {
					seenBackIn = phase
				}
			case phase%2 == 1 && version != before && version != after:
				note(&h.unexpected, "served %s during the switch from %s to %s", version, before, after)
			case phase%2 == 1 && version == after:
				seenNewIn = phase
			case phase%2 == 1 && version == before && seenNewIn == phase && before != after:
				note(&h.flips, "served %s again after %s during one switch", before, after)
			}
			if path == "/" {
				if lastVisits > 0 && visits != lastVisits+1 {
					note(&h.resets, "session visit counter went from %d to %d", lastVisits, visits)
				}
				lastVisits = visits
			}
		}
		l.mu.Unlock()
	}
}

// errMixed marks a page assembled from two versions.
var errMixed = fmt.Errorf("mixed versions")

// errUnhealthy marks a 503 from /health.php that names its version: a
// build failing its own health check.
var errUnhealthy = fmt.Errorf("health check failing")

// fetch gets one page and returns the one version it was built from.
func fetch(c *http.Client, url, path string) (version string, visits int, err error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode == http.StatusServiceUnavailable && path == "/health.php" {
		var h struct {
			Status  string `json:"status"`
			Version string `json:"version"`
		}
		if json.Unmarshal(body, &h) == nil && h.Status == "fail" && h.Version != "" {
			return h.Version, 0, errUnhealthy
		}
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	if path == "/health.php" {
		var h struct {
			Status  string `json:"status"`
			Version string `json:"version"`
		}
		if err := json.Unmarshal(body, &h); err != nil || h.Status != "ok" || h.Version == "" {
			return "", 0, fmt.Errorf("health: %.200s", body)
		}
		return h.Version, 0, nil
	}
	m := versionsRE.FindSubmatch(body)
	if m == nil {
		return "", 0, fmt.Errorf("no versions line: %.300s", body)
	}
	seen := map[string]bool{}
	var one string
	for _, kv := range strings.Fields(string(m[1])) {
		_, v, _ := strings.Cut(kv, "=")
		seen[v] = true
		one = v
	}
	if len(seen) != 1 || !strings.Contains(string(body), "status: ok") {
		return string(m[1]), 0, errMixed
	}
	if hv := resp.Header.Get("X-App-Version"); hv != one {
		return fmt.Sprintf("%s (header %s)", m[1], hv), 0, errMixed
	}
	vm := visitsRE.FindSubmatch(body)
	if vm == nil {
		return "", 0, fmt.Errorf("no visit counter: %.300s", body)
	}
	visits, _ = strconv.Atoi(string(vm[1]))
	return one, visits, nil
}

// totals sums every host's counters.
func (l *load) totals() hostLoad {
	l.mu.Lock()
	defer l.mu.Unlock()
	var t hostLoad
	t.versions = map[string]int{}
	for _, h := range l.hosts {
		t.requests += h.requests
		t.ok += h.ok
		t.failed += h.failed
		t.mixed += h.mixed
		t.unexpected += h.unexpected
		t.flips += h.flips
		t.resets += h.resets
		t.unhealthy += h.unhealthy
		if h.slowest > t.slowest {
			t.slowest = h.slowest
		}
		for v, n := range h.versions {
			t.versions[v] += n
		}
		t.problems = append(t.problems, h.problems...)
	}
	return t
}

// requestsNow is how many answers each host gave so far.
func (l *load) requestsNow() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int, len(l.hosts))
	for i, h := range l.hosts {
		out[i] = h.requests
	}
	return out
}

// table renders per-host counts as Markdown.
func (l *load) table() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := []string{"| host | requests | 200 with one version | failed or non-2xx | 503 health of a build switched back | mixed | unexpected version | flip-flops | session resets | slowest | answers per version | answers during each op |",
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"}
	for _, h := range l.hosts {
		var vs []string
		for v, n := range h.versions {
			vs = append(vs, fmt.Sprintf("%s:%d", v, n))
		}
		sort.Strings(vs)
		var ops []string
		for _, n := range h.perOp {
			ops = append(ops, strconv.Itoa(n))
		}
		lines = append(lines, fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s |",
			h.name, h.requests, h.ok, h.failed, h.unhealthy, h.mixed, h.unexpected, h.flips, h.resets,
			h.slowest.Round(time.Millisecond), strings.Join(vs, " "), strings.Join(ops, " ")))
	}
	return lines
}
