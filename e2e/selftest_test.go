//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeApp answers like the example app, with a version (or a fault) the test sets.
type fakeApp struct {
	mu     sync.Mutex
	mode   string // a version, "mixed", "500", or "503-" and a version (its /health.php fails)
	visits map[string]int
}

func (a *fakeApp) set(mode string) { a.mu.Lock(); a.mode = mode; a.mu.Unlock() }

func (a *fakeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	mode := a.mode
	c, err := r.Cookie("sid")
	sid := ""
	if err == nil {
		sid = c.Value
	} else {
		sid = strconv.Itoa(len(a.visits) + 1)
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: sid})
	}
	if r.URL.Path != "/health.php" { // as the example app, whose health check starts no session
		a.visits[sid]++
	}
	n := a.visits[sid]
	a.mu.Unlock()
	if mode == "500" {
		http.Error(w, "boom", 500)
		return
	}
	if v, ok := strings.CutPrefix(mode, "503-"); ok {
		if r.URL.Path == "/health.php" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"status":"fail","version":%q}`, v)
			return
		}
		mode = v
	}
	if r.URL.Path == "/health.php" {
		v := mode
		if v == "mixed" {
			v = "v1"
		}
		fmt.Fprintf(w, `{"status":"ok","version":%q}`, v)
		return
	}
	v, other, status := mode, mode, "ok"
	if mode == "mixed" {
		v, other, status = "v1", "v2", "MIXED"
	}
	w.Header().Set("X-App-Version", v)
	fmt.Fprintf(w, "<pre id=\"versions\">versions: index=%s config=%s header=%s body=%s footer=%s VERSION=%s\nstatus: %s</pre>\n<p>Visits this session: %d</p>",
		v, v, other, v, v, v, status, n)
}

// TestLoadCheckerSelfTest proves the load checker sees what the traffic
// scenario claims never happens: failed answers, mixed pages, a version
// switching back during a cutover, an unexpected version between ops.
func TestLoadCheckerSelfTest(t *testing.T) {
	s := newScenario(t, "self-test: the load checker detects failures, mixed pages, flip-flops and stale versions (fake server)",
		"each injected fault is counted (> 0), and a clean stretch counts none")
	app := &fakeApp{mode: "v1", visits: map[string]int{}}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	l := startLoad([]*web{{Port: p}}, []string{"fake"}, 2, "v1")
	t.Cleanup(l.stop)
	step := func(what string, mode string) {
		t.Helper()
		app.set(mode)
		before := l.requestsNow()[0]
		poll(t, what, 10*time.Second, 5*time.Millisecond, func() bool { return l.requestsNow()[0] >= before+20 }, nil)
	}
	step("clean v1", "v1")
	if c := l.totals(); c.failed+c.mixed+c.unexpected+c.flips+c.resets > 0 {
		s.Errorf("a clean stretch counted faults: %+v", c.problems)
	}
	l.beginOp("v2")
	step("switch to v2", "v2")
	step("back to v1 during the op", "v1")
	step("mixed", "mixed")
	step("errors", "500")
	step("v2 again", "v2")
	l.endOp()
	step("stale v1 after the op", "v1")
	l.stop()
	c := l.totals()
	s.Observe("counted: %d failed, %d mixed, %d flip-flops, %d unexpected of %d requests", c.failed, c.mixed, c.flips, c.unexpected, c.requests)
	for name, n := range map[string]int{"failed": c.failed, "mixed": c.mixed, "flip-flops": c.flips, "unexpected": c.unexpected} {
		if n == 0 {
			s.Errorf("injected %s not detected", name)
		}
	}

	// A deploy switched back after a failed health check: the failing
	// build, its /health.php's 503 and the way back are expected; the
	// failing build again after that, or a third version, are not.
	app.set("v1")
	l = startLoad([]*web{{Port: p}}, []string{"fake"}, 2, "v1")
	t.Cleanup(l.stop)
	l.beginRevertOp("v2")
	step("the failing build", "v2")
	step("its health failing", "503-v2")
	step("switched back", "v1")
	if c := l.totals(); c.failed+c.mixed+c.unexpected+c.flips+c.resets > 0 || c.unhealthy == 0 {
		s.Errorf("a clean revert counted faults (or no 503 of the failing build): %+v %v", c.unhealthy, c.problems)
	}
	step("the failing build again", "v2")
	step("a third version", "v3")
	l.endOp()
	l.stop()
	c = l.totals()
	s.Observe("revert op: counted %d answers 503 from the failing build's health, %d flip-flops, %d unexpected", c.unhealthy, c.flips, c.unexpected)
	if c.flips == 0 || c.unexpected == 0 {
		s.Errorf("injected faults during a revert not detected: %d flip-flops, %d unexpected", c.flips, c.unexpected)
	}
}
