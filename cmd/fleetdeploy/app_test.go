package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// parsed runs a command line through the real app with stub run functions
// and returns what the command was given.
type parsed struct {
	command string
	c       *common
	opts    any
}

func parse(t *testing.T, args ...string) (parsed, error) {
	t.Helper()
	var got parsed
	r := runners{
		up: func(_ context.Context, c *common, o upOptions) error { got = parsed{"up", c, o}; return nil },
		rollback: func(_ context.Context, c *common, o rollbackOptions) error {
			got = parsed{"rollback", c, o}
			return nil
		},
		status:  func(_ context.Context, c *common, o statusOptions) error { got = parsed{"status", c, o}; return nil },
		unlock:  func(_ context.Context, c *common, o unlockOptions) error { got = parsed{"unlock", c, o}; return nil },
		check:   func(_ context.Context, c *common, o checkOptions) error { got = parsed{"check", c, o}; return nil },
		sandbox: func(_ context.Context, c *common, o sandboxOptions) error { got = parsed{"sandbox", c, o}; return nil },
		history: func(_ context.Context, c *common, o historyOptions) error { got = parsed{"history", c, o}; return nil },
		init:    func(_ context.Context, c *common, o initOptions) error { got = parsed{"init", c, o}; return nil },
	}
	app := newApp(&common{out: newPrinter(io.Discard), stderr: io.Discard, now: time.Now}, r)
	argv := append([]string{"fleetdeploy"}, args...)
	err := app.RunContext(t.Context(), interspersed(argv, app))
	return got, err
}

// Flags go before or after the command and ENV; values stay with their flag.
func TestCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		command string
		opts    any
		check   func(c *common) bool
	}{
		{[]string{"up", "production"}, "up", upOptions{env: "production"}, func(c *common) bool { return c.inventory == "hosts.yml" }},
		{[]string{"up", "production", "-i", "x.yml", "-n"}, "up", upOptions{env: "production", dryRun: true}, func(c *common) bool { return c.inventory == "x.yml" }},
		{[]string{"-i", "x.yml", "up", "-v", "production"}, "up", upOptions{env: "production"}, func(c *common) bool { return c.inventory == "x.yml" && c.verbose }},
		{[]string{"plan", "staging", "--parallel", "3"}, "up", upOptions{env: "staging", dryRun: true}, func(c *common) bool { return c.parallel == 3 }},
		{[]string{"rollback", "production", "--to", "20261125-101500"}, "rollback", rollbackOptions{env: "production", to: "20261125-101500"}, nil},
		{[]string{"rollback", "--to=20261125-101500", "production", "--dry-run"}, "rollback", rollbackOptions{env: "production", to: "20261125-101500", dryRun: true}, nil},
		{[]string{"status", "production", "--verify", "--connect-timeout", "3s"}, "status", statusOptions{env: "production", verify: true}, func(c *common) bool { return c.connectTimeout == 3*time.Second }},
		{[]string{"unlock", "production", "--keepalive-count=7"}, "unlock", unlockOptions{env: "production"}, func(c *common) bool { return c.keepaliveMax == 7 }},
		{[]string{"sandbox", "--count", "5", "--dir", "/tmp/x"}, "sandbox", sandboxOptions{dir: "/tmp/x", count: 5}, nil},
		{[]string{"check", "production", "-F", "none"}, "check", checkOptions{env: "production"}, func(c *common) bool { return c.sshConfig == "none" }},
		{[]string{"up", "--", "-odd-env"}, "up", upOptions{env: "-odd-env"}, nil},
		{[]string{"--compress=false", "up", "production"}, "up", upOptions{env: "production"}, func(c *common) bool { return c.compressSet && !c.compress }},
		{[]string{"history", "production"}, "history", historyOptions{env: "production", last: 20}, nil},
		{[]string{"history", "-n", "5", "production"}, "history", historyOptions{env: "production", last: 5}, nil},
		{[]string{"history", "production", "-n", "5", "-v"}, "history", historyOptions{env: "production", last: 5}, func(c *common) bool { return c.verbose }},
		{[]string{"up", "-n", "production"}, "up", upOptions{env: "production", dryRun: true}, nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parse(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got.command != tc.command || fmt.Sprint(got.opts) != fmt.Sprint(tc.opts) {
				t.Errorf("got %s %+v, want %s %+v", got.command, got.opts, tc.command, tc.opts)
			}
			if tc.check != nil && !tc.check(got.c) {
				t.Errorf("global flags not set as given: %+v", got.c)
			}
		})
	}
}

// Usage errors exit 2; none reaches a command.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"up"}, {"up", "a", "b"}, {"up", "production", "--no-such-flag"}, {"--parallel", "x", "up", "production"},
		{"sandbox", "--count", "0"}, {"sandbox", "extra"}, {"history", "production", "-n", "0"},
	} {
		got, err := parse(t, args...)
		if got.command != "" && got.command != "sandbox" {
			t.Errorf("%q reached %s", args, got.command)
		}
		if err == nil && got.command == "sandbox" {
			continue // the sandbox's own checks run in its command
		}
		if code := exitCode(err); code != exitUsage {
			t.Errorf("%q: exit %d (%v), want %d", args, code, err, exitUsage)
		}
	}
}

// The flag lists are derived from the flag definitions: every flag that
// takes a value takes the next word, every global flag is known as one.
func TestInterspersedKnowsEveryFlag(t *testing.T) {
	app := newApp(&common{out: newPrinter(io.Discard), stderr: io.Discard, now: time.Now}, realRunners())
	global := flagSpellings(app.Flags)
	for _, want := range []string{"-i", "--inventory", "--parallel", "--max-connects", "--connect-timeout", "--keepalive",
		"--keepalive-count", "--undo-timeout", "--cache-dir", "--compress", "-v", "--verbose"} {
		if _, ok := global[want]; !ok {
			t.Errorf("%s is not known as a global flag", want)
		}
	}
	if !global["--inventory"] || global["--verbose"] || global["--compress"] {
		t.Errorf("values: %v", global)
	}
	got := interspersed([]string{"fleetdeploy", "up", "production", "--to", "x", "-i", "h.yml"}, app)
	want := []string{"fleetdeploy", "-i", "h.yml", "up", "--to", "x", "production"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Each kind of error maps to its documented exit code, however wrapped.
func TestExitCodes(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("context: %w", err) }
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("boom"), exitFailed},
		{inventory.Errors{{File: "hosts.yml", Line: 3, Msg: "bad"}}, exitUsage},
		{&usageError{"usage"}, exitUsage},
		{wrap(&plan.HostError{Host: "a", Step: "locking", Err: &steps.LockedError{Lock: &steps.LockInfo{Text: "bob", Holder: steps.ParseHolder("bob")}}}), exitLocked},
		{&driftError{"drift"}, exitDrift},
		{&plan.CutoverError{Err: errors.New("x"), Unknown: []string{"b"}}, exitSplit},
		{&plan.CutoverError{Err: errors.New("x"), Reverted: []string{"a"}}, exitFailed},
		{wrap(&plan.FinishError{Err: errors.New("hook")}), exitAfterHook},
		{&plan.GuardError{Failed: &plan.HostError{Host: "b", Step: "checking health", Err: errors.New("503")}}, exitReverted},
		{wrap(&plan.GuardError{Interrupted: true}), exitReverted},
		{&plan.GuardError{Interrupted: true, Stuck: []string{"b"}}, exitSplit},
		{&plan.InterruptedError{}, exitInterrupted},
		{context.Canceled, exitInterrupted},
		{&codeError{code: 4, msg: "nested"}, 4},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%T %v: exit %d, want %d", tc.err, tc.err, got, tc.want)
		}
	}
}
