package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/rtt"
)

// roundTripBudget is how many round trips of wall time each command may
// wait for on one host's connection once it is connected, as measured: a
// change that adds one fails. Connecting (8 more: SSH 6, the SFTP channel
// 2; TCP's own handshake is not counted) is remote's TestDialRoundTrips'
// to hold: under a loaded machine, sshd can pause long enough between two
// of its handshake messages to count as a round trip more.
// docs/ROUNDTRIPS.md says where each goes. The redeploy starts with an
// empty cache (as a fresh CI runner does): it reads the live build's
// manifest from the host, 2 round trips that a warm cache saves.
var roundTripBudget = map[string]int{
	"check":        2,
	"plan":         2,
	"first deploy": 7,
	"redeploy":     8,
	"status":       3,
	"rollback":     6,
}

// TestRoundTrips counts the round trips each command waits for on a link
// whose delay dwarfs the work on either end (internal/rtt: a wait counts
// from 90% of the one-way delay, so a host's script would have to run for
// 360 ms to count as one more), against one real OpenSSH host. With -v it
// says which step each round trip went to.
func TestRoundTrips(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: every round trip costs 0.8 s here")
	}
	f := startOpenSSH(t, 1)
	f.provision(t)
	src := writeApp(t, "v1")
	inv := f.writeInventory(t, inventoryOpts{source: src})
	link := &rtt.Link{OneWay: 400 * time.Millisecond}
	count := func(name string, args ...string) {
		t.Helper()
		link.Reset()
		var out, errb strings.Builder
		code := runWith(t.Context(), append([]string{"fleetdeploy", "--cache-dir", filepath.Join(t.TempDir(), name), "--keepalive", "1h", "--json", "-v"}, append(args, "-i", inv)...),
			&out, &errb, time.Now, func(c *common) { c.wrapConn = func(nc net.Conn) net.Conn { return link.Wrap(nc) } })
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", name, code, out.String(), errb.String())
		}
		where, connecting := whereSpent(t, out.String(), link.WaitTimes())
		n := link.Waits() - connecting
		t.Logf("%-12s %3d round trips once connected (budget %d), %d connecting%s", name, n, roundTripBudget[name], connecting, where)
		if n > roundTripBudget[name] {
			t.Errorf("%s: %d round trips once connected, over its budget of %d", name, n, roundTripBudget[name])
		}
	}
	count("check", "check", "test")
	count("plan", "plan", "test")
	count("first deploy", "up", "test")
	os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 'v2';\n"), 0o644)
	count("redeploy", "up", "test")
	count("status", "status", "test")
	count("rollback", "rollback", "test")
}

// whereSpent says what the run was doing as each round trip began: the
// last event (a stage, a phase, a step, an op with -v) told before it; and
// how many began before the host was connected.
func whereSpent(t *testing.T, events string, waits []time.Time) (string, int) {
	t.Helper()
	type event struct {
		Type, Stage, Phase, Step, Op string
		Time                         time.Time
	}
	var evs []event
	for _, line := range strings.Split(strings.TrimSpace(events), "\n") {
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	var connected time.Time
	for _, e := range evs {
		if e.Type == "connected" {
			connected = e.Time
		}
	}
	if connected.IsZero() {
		t.Fatalf("no connected event in %s", events)
	}
	connecting := 0
	var b strings.Builder
	last, n := "", 0
	flush := func() {
		if n > 0 {
			fmt.Fprintf(&b, "\n    %3d  %s", n, last)
		}
	}
	for _, w := range waits {
		if !w.After(connected) {
			connecting++
			continue
		}
		doing := "connected"
		for _, e := range evs {
			if e.Time.After(w) {
				break
			}
			switch e.Type {
			case "stage_start":
				doing = e.Stage
			case "phase_start":
				doing = e.Phase
			case "step_start":
				doing = e.Phase + " / " + e.Step
			case "op":
				doing = e.Phase + " / " + e.Step + " / " + e.Op
			}
		}
		if doing != last {
			flush()
			last, n = doing, 0
		}
		n++
	}
	flush()
	return b.String(), connecting
}
