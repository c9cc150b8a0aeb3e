package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"github.com/fleetdeploy/fleetdeploy/sandbox"
)

// testFleet is a running fleet of hosts, whatever serves them.
type testFleet struct {
	names      []string
	roots      []string
	user       string
	identity   string
	knownHosts string
	// exec runs a shell snippet locally as host i's login user ($ROOT set).
	exec func(t *testing.T, i int, script string) string
	kill func(i int)
	// restart brings a killed host back (OpenSSH only).
	restart func(t *testing.T, i int)
	freeze  func(i int)
	thaw    func(i int)
}

// backends serve the same end-to-end table: the in-process sandbox (fast) and
// real OpenSSH sshd (authoritative).
var backends = []struct {
	name  string
	start func(t *testing.T, n int) *testFleet
}{
	{"openssh", startOpenSSH},
	{"sandbox", startSandbox},
}

func startOpenSSH(t *testing.T, n int) *testFleet {
	f := sshtest.Start(t, n)
	tf := &testFleet{user: f.User, identity: f.Identity, knownHosts: f.KnownHosts}
	for _, h := range f.Hosts {
		tf.names = append(tf.names, h.Name)
		tf.roots = append(tf.roots, h.Root)
	}
	tf.exec = func(t *testing.T, i int, script string) string { t.Helper(); return f.Hosts[i].Exec(t, script) }
	tf.kill = func(i int) { f.Hosts[i].Kill() }
	tf.restart = func(t *testing.T, i int) { f.Hosts[i].Restart(t) }
	tf.freeze = func(i int) { f.Hosts[i].Freeze() }
	tf.thaw = func(i int) { f.Hosts[i].Thaw() }
	return tf
}

func startSandbox(t *testing.T, n int) *testFleet {
	f, err := sandbox.StartFleet(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	tf := &testFleet{user: u.Username, identity: f.Identity, knownHosts: f.KnownHosts, roots: f.Roots}
	for _, h := range f.Hosts {
		tf.names = append(tf.names, h.Addr().String())
	}
	tf.exec = func(t *testing.T, i int, script string) string {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Env = append(os.Environ(), "ROOT="+f.Roots[i])
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	tf.kill = func(i int) { f.Hosts[i].Close() }
	tf.freeze = func(int) { t.Skip("the sandbox cannot freeze a host") }
	tf.thaw = func(int) {}
	return tf
}

// app writes a small app source folder and returns its path.
func writeApp(t *testing.T, version string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	files := map[string]string{
		"index.php":                "<?php echo 'hello " + version + "';\n",
		"VERSION":                  version + "\n",
		"storage/sessions/seed":    "seeded from the build\n",
		"tests/skip.php":           "excluded\n",
		"bin/run":                  "#!/bin/sh\necho run\n",
		"public/uploads/.keep":     "",
		"config/deep/nested/a.txt": "a\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// inventoryOpts shape one test's inventory.
type inventoryOpts struct {
	source  string
	keep    int
	before  []string // raw YAML list items
	after   []string
	shared  string // raw YAML list, default [storage/sessions/, .env]
	extra   string
	roles   map[int]string // raw YAML list of host i's roles, e.g. "[web]"
	exclude string         // raw YAML list, default [tests]
}

// writeInventory writes hosts.yml for the fleet and returns its path.
func (f *testFleet) writeInventory(t *testing.T, o inventoryOpts) string {
	t.Helper()
	var b strings.Builder
	if o.exclude == "" {
		o.exclude = "[tests]"
	}
	fmt.Fprintf(&b, "app: testapp\nsource: %s\nexclude: %s\nroot: /nonexistent\n", o.source, o.exclude)
	if o.keep > 0 {
		fmt.Fprintf(&b, "keep: %d\n", o.keep)
	}
	if o.shared == "" {
		o.shared = "[storage/sessions/, .env]"
	}
	fmt.Fprintf(&b, "shared: %s\n", o.shared)
	if len(o.before)+len(o.after) > 0 {
		b.WriteString("hooks:\n")
		if len(o.before) > 0 {
			b.WriteString("  before_cutover:\n")
			for _, h := range o.before {
				fmt.Fprintf(&b, "    - %s\n", h)
			}
		}
		if len(o.after) > 0 {
			b.WriteString("  after_cutover:\n")
			for _, h := range o.after {
				fmt.Fprintf(&b, "    - %s\n", h)
			}
		}
	}
	// config: none: the tests do not depend on the machine's ssh_config.
	fmt.Fprintf(&b, "ssh:\n  user: %s\n  identity: %s\n  known_hosts: %s\n  config: none\n", f.user, f.identity, f.knownHosts)
	b.WriteString(o.extra)
	b.WriteString("environments:\n  test:\n    hosts:\n")
	for i, n := range f.names {
		host, port, _ := strings.Cut(n, ":")
		roles := ""
		if r, ok := o.roles[i]; ok {
			roles = ", roles: " + r
		}
		fmt.Fprintf(&b, "      - {address: %s, port: %s, root: %s%s}\n", host, port, f.roots[i], roles)
	}
	path := filepath.Join(t.TempDir(), "hosts.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// provision creates every host's root with a shared .env, as an operator would.
func (f *testFleet) provision(t *testing.T) {
	t.Helper()
	for i := range f.names {
		f.exec(t, i, `mkdir -p "$ROOT/shared" && printf 'SECRET=host\n' > "$ROOT/shared/.env"`)
	}
}

// result of one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// fd runs fleetdeploy in-process, as main does.
func fd(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"fleetdeploy", "-v", "--connect-timeout", "5s", "--keepalive", "1s", "--keepalive-count", "3", "--cache-dir", t.TempDir()}, args...)
	code := runWith(ctx, full, &out, &errb, time.Now)
	return result{code, out.String(), errb.String()}
}

func mustCLI(t *testing.T, args ...string) result {
	t.Helper()
	r := fd(t, t.Context(), args...)
	if r.code != 0 {
		t.Fatalf("fleetdeploy %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// live returns what host i's latest points to ("" when absent).
func (f *testFleet) live(t *testing.T, i int) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(f.roots[i], "latest"))
	if err != nil {
		return ""
	}
	return target
}

// builds lists host i's builds/.
func (f *testFleet) builds(t *testing.T, i int) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.roots[i], "builds"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// assertClean checks that no host holds a lock, staging or staged link.
func (f *testFleet) assertClean(t *testing.T) {
	t.Helper()
	for i, n := range f.names {
		meta := filepath.Join(f.roots[i], ".fleetdeploy")
		for _, p := range []string{"lock", "next", "back"} {
			if _, err := os.Lstat(filepath.Join(meta, p)); err == nil {
				t.Errorf("%s: .fleetdeploy/%s left behind", n, p)
			}
		}
		for _, d := range []string{"staging", "pending"} {
			entries, _ := os.ReadDir(filepath.Join(meta, d))
			if len(entries) > 0 {
				t.Errorf("%s: .fleetdeploy/%s not empty: %v", n, d, entries)
			}
		}
	}
}

// tree lists every path below root with its type, target or content, to
// compare a host before and after something that must change nothing.
func tree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, "%s -> %s\n", rel, target)
		case info.IsDir():
			fmt.Fprintf(&b, "%s/ %v\n", rel, info.Mode())
		default:
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s %v %q\n", rel, info.Mode(), data)
		}
		return nil
	})
	return b.String()
}

// waitFile polls for a file, failing the test when it does not appear in time.
// waitUntil polls cond until it holds, failing the test after limit.
func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		<-tick.C
	}
}

func waitFile(t *testing.T, path string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s", path, limit)
		}
		<-tick.C
	}
}

// waitTick paces a polling loop.
func waitTick() { <-time.After(50 * time.Millisecond) }
