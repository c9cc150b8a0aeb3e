package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
)

// stopWithin bounds how long a sandbox may take to stop after Ctrl-C.
const stopWithin = 5 * time.Second

// The tests that run the CLI are not parallel: urfave/cli v2 writes its
// package-level HelpFlag while parsing, so two runWith calls parsing at once
// race. A background sandbox and the commands run against it are ordered by
// sandboxCmd's locked output (see waitServing).

func TestSandboxDemo(t *testing.T) {
	var out, errb bytes.Buffer
	start := time.Now()
	code := runWith(t.Context(), []string{"fleetdeploy", "sandbox", "--demo"}, &out, &errb, time.Now)
	r := result{code, out.String(), errb.String()}
	if code != 0 {
		t.Fatalf("sandbox --demo: %s", r)
	}
	t.Logf("demo took %s", time.Since(start))
	for _, want := range []string{
		"== 1/5 deploying v1 to 3 hosts",
		"== 2/5 deploying v2 to 3 hosts",
		"== 3/5 ",
		"== 4/5 rolling back to v1",
		"== 5/5 listing host1's files",
		"$ fleetdeploy up sandbox -i ",
		"$ fleetdeploy status sandbox -i ",
		"$ fleetdeploy rollback sandbox -i ",
		"deployed ",
		"rolled back 3 hosts to ",
		"HOST ", // status's table
		"checked: every host's latest/VERSION is v2",
		"├── latest -> builds/",
		".env -> ../../shared/.env",
		"sessions -> ../../../shared/storage/sessions",
		"== cutover skew of each switch",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r)
		}
	}
	if n := strings.Count(r.stdout, "deployed "); n != 2 {
		t.Errorf("%d deploys, want 2:\n%s", n, r.stdout)
	}
	// Three switches report their skew, and the summary lists all three.
	if n := strings.Count(r.stdout, "\ncutover skew "); n != 3 {
		t.Errorf("%d cutover skew lines from the commands, want 3:\n%s", n, r.stdout)
	}
	_, summary, _ := strings.Cut(r.stdout, "== cutover skew of each switch")
	if got := regexp.MustCompile(`(?m)^  (up v1|up v2|rollback): +[0-9.]+ ms \(at most [0-9.]+ ms`).FindAllString(summary, -1); len(got) != 3 {
		t.Errorf("skew summary has %d of 3 switches:\n%s", len(got), summary)
	}
	// The tree ends on v1, the build rolled back to.
	if !regexp.MustCompile(`latest -> builds/\S+  # what is served: v1\n`).MatchString(r.stdout) {
		t.Errorf("tree does not show latest on v1:\n%s", r.stdout)
	}
	m := regexp.MustCompile(`in (\S+) \(removed at the end\)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("demo does not name its folder:\n%s", r.stdout)
	}
	if _, err := os.Lstat(m[1]); !os.IsNotExist(err) {
		t.Errorf("demo folder %s left behind: %v", m[1], err)
	}
}

func TestSandboxDemoInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // Ctrl-C before the first stage
	var out, errb bytes.Buffer
	code := runWith(ctx, []string{"fleetdeploy", "sandbox", "--demo", "--count", "1"}, &out, &errb, time.Now)
	if code != exitInterrupted {
		t.Errorf("interrupted demo: exit %d, want %d\n%s%s", code, exitInterrupted, out.String(), errb.String())
	}
	m := regexp.MustCompile(`in (\S+) \(removed at the end\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("demo does not name its folder:\n%s", out.String())
	}
	if _, err := os.Lstat(m[1]); !os.IsNotExist(err) {
		t.Errorf("interrupted demo left %s behind: %v", m[1], err)
	}
}

func TestSandboxServeDeployStop(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet") // created by the sandbox
	sb := startSandboxCmd(t, "sandbox", "--dir", dir, "--count", "2")
	inv := sb.waitServing(t)
	if inv != filepath.Join(dir, "sandbox.yml") {
		t.Fatalf("inventory at %s, want in %s", inv, dir)
	}

	env, err := inventory.LoadEnvironment(inv, "sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if len(env.Hosts) != 2 {
		t.Fatalf("%d hosts in the inventory, want 2", len(env.Hosts))
	}
	for i, h := range env.Hosts {
		if ip, err := netip.ParseAddr(h.Address); err != nil || !ip.IsLoopback() {
			t.Errorf("host %s: address %q is not loopback", h.Name, h.Address)
		}
		want := filepath.Join(dir, "host"+string(rune('1'+i)), "www")
		if h.Root != want || !filepath.IsAbs(env.Source) || !filepath.IsAbs(h.Identity) || !filepath.IsAbs(h.KnownHosts) {
			t.Errorf("host %s: root %s (want %s), source %s, identity %s, known_hosts %s: want absolute paths",
				h.Name, h.Root, want, env.Source, h.Identity, h.KnownHosts)
		}
		envFile, err := os.ReadFile(filepath.Join(h.Root, "shared", ".env"))
		if err != nil || !strings.Contains(string(envFile), "APP_ENV=sandbox\n") || !strings.Contains(string(envFile), "APP_HOST=host"+string(rune('1'+i))+"\n") {
			t.Errorf("host %s: shared/.env not provisioned: %q, %v", h.Name, envFile, err)
		}
	}

	mustCLI(t, "up", "sandbox", "-i", inv)
	for k := 1; k <= 2; k++ {
		latest := filepath.Join(dir, "host"+string(rune('0'+k)), "www", "latest")
		target, err := os.Readlink(latest)
		if err != nil || !strings.HasPrefix(target, "builds/") {
			t.Errorf("%s -> %q, %v; want a link into builds/", latest, target, err)
		}
		if v, err := os.ReadFile(filepath.Join(latest, "VERSION")); err != nil || string(v) != "v1\n" {
			t.Errorf("%s/VERSION = %q, %v", latest, v, err)
		}
	}
	mustCLI(t, "status", "sandbox", "-i", inv)

	r, ok := sb.stop()
	if !ok {
		t.Fatalf("sandbox still running %s after Ctrl-C", stopWithin)
	}
	if r.code != 0 {
		t.Errorf("sandbox stopped by Ctrl-C: %s; want exit 0 (a clean stop is a success)", r)
	}
	if _, err := os.Stat(inv); !os.IsNotExist(err) {
		t.Errorf("stopped sandbox left %s, naming ports nobody listens on: %v", inv, err)
	}
	if !strings.Contains(r.stdout, "fleetdeploy up sandbox -i "+inv) {
		t.Errorf("sandbox did not print how to deploy to it:\n%s", r)
	}
}

func TestSandboxRestartReusesKeysAndApp(t *testing.T) {
	dir := t.TempDir()
	sb := startSandboxCmd(t, "sandbox", "--dir", dir, "--count", "2")
	inv := sb.waitServing(t)
	mustCLI(t, "up", "sandbox", "-i", inv)

	// Another sandbox on the same folder is refused at once.
	var out, errb bytes.Buffer
	if code := runWith(t.Context(), []string{"fleetdeploy", "sandbox", "--dir", dir}, &out, &errb, time.Now); code != exitFailed || !strings.Contains(errb.String(), "in use by another running sandbox") {
		t.Errorf("second sandbox on %s: exit %d, %s", dir, code, errb.String())
	}

	keys := []string{"id_ed25519", "host1/ssh_host_ed25519_key", "host2/ssh_host_ed25519_key"}
	before := readFiles(t, dir, keys)
	edited := filepath.Join(dir, "app", "VERSION")
	if err := os.WriteFile(edited, []byte("v1-edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, ok := sb.stop(); !ok || r.code != 0 {
		t.Fatalf("stopping the first sandbox (in time: %v): %s", ok, r)
	}

	sb2 := startSandboxCmd(t, "sandbox", "--dir", dir, "--count", "2")
	inv = sb2.waitServing(t)
	if after := readFiles(t, dir, keys); !equalMaps(before, after) {
		t.Errorf("keys changed across a restart")
	}
	mustCLI(t, "up", "sandbox", "-i", inv)
	for k := 1; k <= 2; k++ {
		root := filepath.Join(dir, "host"+string(rune('0'+k)), "www")
		if v, err := os.ReadFile(filepath.Join(root, "latest", "VERSION")); err != nil || string(v) != "v1-edited\n" {
			t.Errorf("host%d serves %q, %v; want the edited app", k, v, err)
		}
		if b, err := os.ReadDir(filepath.Join(root, "builds")); err != nil || len(b) != 2 {
			t.Errorf("host%d: %d builds, %v; want 2 (one per run)", k, len(b), err)
		}
	}
	if r, ok := sb2.stop(); !ok || r.code != 0 {
		t.Fatalf("stopping the second sandbox (in time: %v): %s", ok, r)
	}
}

func TestSandboxUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"sandbox", "--demo", "--dir", "x"}, "--demo runs in a temporary folder"},
		{[]string{"sandbox", "--count", "0"}, "--count must be between 1 and 500"},
		{[]string{"sandbox", "--count", "501"}, "--count must be between 1 and 500"},
		{[]string{"sandbox", "--dir", ""}, "--dir must not be empty"},
		{[]string{"sandbox", "extra"}, "no arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runWith(t.Context(), append([]string{"fleetdeploy"}, tc.args...), &out, &errb, time.Now)
			if code != exitUsage || !strings.Contains(errb.String(), tc.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errb.String(), exitUsage, tc.msg)
			}
		})
	}
}

func TestWriteTree(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, d := range []string{"builds/b1/public", "shared/storage", ".meta/x"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"builds/b1/public/index.php", "shared/.env", ".meta/a"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"latest": "builds/b1", "builds/b1/.env": "../../shared/.env"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	err := writeTree(&b, root, "www", func(rel string, _ os.DirEntry) (string, bool) {
		switch rel {
		case ".meta":
			return "internal", true
		case filepath.Join("builds", "b1"):
			return "v1", false
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `www/
├── .meta/  # internal (2 entries, not shown)
├── builds/
│   └── b1/  # v1
│       ├── .env -> ../../shared/.env
│       └── public/
│           └── index.php
├── latest -> builds/b1
└── shared/
    ├── .env
    └── storage/
`
	if b.String() != want {
		t.Errorf("tree:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/tmp/sbx/sandbox.yml": "/tmp/sbx/sandbox.yml",
		"/tmp/my sandbox":      "'/tmp/my sandbox'",
		"it's":                 `'it'\''s'`,
		"$HOME":                "'$HOME'",
		"":                     "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// sandboxCmd is `fleetdeploy sandbox` running in the background, as in a
// second terminal.
type sandboxCmd struct {
	dir    string
	out    *lockedBuffer
	cancel context.CancelFunc
	done   chan result
	once   sync.Once
	res    result
	ok     bool
}

// startSandboxCmd runs fleetdeploy with args (which must include --dir) in a
// goroutine; the test's cleanup stops it if the test does not.
func startSandboxCmd(t *testing.T, args ...string) *sandboxCmd {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	sb := &sandboxCmd{out: &lockedBuffer{}, cancel: cancel, done: make(chan result, 1)}
	for i, a := range args {
		if a == "--dir" && i+1 < len(args) {
			sb.dir = args[i+1]
		}
	}
	if sb.dir == "" {
		t.Fatal("startSandboxCmd needs --dir")
	}
	go func() {
		var errb bytes.Buffer
		code := runWith(ctx, append([]string{"fleetdeploy"}, args...), sb.out, &errb, time.Now)
		sb.done <- result{code, sb.out.String(), errb.String()}
	}()
	t.Cleanup(func() {
		if _, ok := sb.stop(); !ok {
			t.Errorf("sandbox in %s still running %s after cancel", sb.dir, stopWithin)
		}
	})
	return sb
}

// waitServing waits for the inventory, which the sandbox writes once every
// host listens, and for the usage it prints next, and fails at once if the
// sandbox exits instead. Reading the output under its lock also orders the
// sandbox's start before whatever the test runs next.
func (sb *sandboxCmd) waitServing(t *testing.T) string {
	t.Helper()
	inv := filepath.Join(sb.dir, "sandbox.yml")
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(inv); err == nil && strings.Contains(sb.out.String(), "serving until Ctrl-C") {
			return inv
		}
		select {
		case r := <-sb.done:
			sb.done <- r // for stop
			t.Fatalf("sandbox exited before serving: %s", r)
		case <-deadline.C:
			t.Fatalf("%s did not appear within 10s", inv)
		case <-tick.C:
		}
	}
}

// stop cancels the sandbox's context, as Ctrl-C does, and waits for it to
// return; ok is false when it did not within stopWithin.
func (sb *sandboxCmd) stop() (result, bool) {
	sb.once.Do(func() {
		sb.cancel()
		timer := time.NewTimer(stopWithin)
		defer timer.Stop()
		select {
		case sb.res = <-sb.done:
			sb.ok = true
		case <-timer.C:
		}
	})
	return sb.res, sb.ok
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func readFiles(t *testing.T, dir string, names []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		m[n] = string(b)
	}
	return m
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
