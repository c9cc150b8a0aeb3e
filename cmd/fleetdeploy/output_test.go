package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/fleetdeploy/fleetdeploy/internal/eventcheck"
	"github.com/fleetdeploy/fleetdeploy/internal/golden"
)

const schemaFile = "../../docs/events.schema.json"

// fdPlain runs fleetdeploy in-process with exactly these flags (fd adds -v).
func fdPlain(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"fleetdeploy", "--connect-timeout", "5s", "--cache-dir", t.TempDir()}, args...)
	code := runWith(ctx, full, &out, &errb, time.Now)
	return result{code, out.String(), errb.String()}
}

// events validates a --json stream against the schema and decodes it.
func events(t *testing.T, stream string) []map[string]any {
	t.Helper()
	evs, err := eventcheck.Validate(schemaFile, []byte(stream))
	if err != nil {
		t.Fatalf("the stream does not follow docs/events.schema.json: %v\n%s", err, stream)
	}
	return evs
}

// ofType are the events of one type.
func ofType(evs []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e["type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

// --json on real OpenSSH hosts: a successful run, a failed one, and one
// interrupted by SIGINT all follow the schema and end with their result.
func TestJSONEventsOfRealRuns(t *testing.T) {
	f := startOpenSSH(t, 3)
	f.provision(t)
	src := writeApp(t, "v1")
	inv := f.writeInventory(t, inventoryOpts{source: src, before: []string{
		`'echo "to stdout from $(hostname)"; echo to stderr >&2'`,
		`'if [ -e "$FLEETDEPLOY_ROOT/shared/fail" ]; then echo "migration broke" >&2; exit 7; fi'`,
		`'if [ -e "$FLEETDEPLOY_ROOT/shared/wait" ]; then touch "$FLEETDEPLOY_ROOT/shared/started"; sleep 60; fi'`,
	}})

	t.Run("success", func(t *testing.T) {
		r := fdPlain(t, t.Context(), "--json", "up", "test", "-i", inv)
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		if r.stderr != "" {
			t.Errorf("with --json and no terminal, standard error says nothing on success: %q", r.stderr)
		}
		evs := events(t, r.stdout)
		last := evs[len(evs)-1]
		if last["exit_code"] != 0.0 || last["ok"] != true || last["release"] == "" {
			t.Errorf("result %v", last)
		}
		planned := ofType(evs, "planned")
		if len(planned) != 1 {
			t.Fatalf("%d planned events", len(planned))
		}
		want := map[string]float64{}
		for _, h := range planned[0]["hosts"].([]any) {
			h := h.(map[string]any)
			want[h["host"].(string)] = h["bytes"].(float64)
		}
		for _, e := range ofType(evs, "phase_end") {
			if e["phase"] == "preparing" && e["host"] != nil {
				if got, w := e["bytes"].(float64), want[e["host"].(string)]; got != w || got == 0 {
					t.Errorf("%v: %v bytes counted sent, the payload has %v", e["host"], got, w)
				}
			}
		}
		streams := map[string]int{}
		for _, e := range ofType(evs, "output") {
			streams[fmt.Sprint(e["stream"], ":", e["text"])]++
		}
		if streams["stderr:to stderr"] != 3 || streams["stdout:to stderr"] != 0 {
			t.Errorf("a hook's stderr lines are not told apart: %v", streams)
		}
		cut := ofType(evs, "cutover")
		if len(cut) != 1 || len(cut[0]["hosts"].([]any)) != 3 {
			t.Fatalf("cutover events: %v", cut)
		}
		for _, h := range cut[0]["hosts"].([]any) {
			if h.(map[string]any)["state"] != "switched" {
				t.Errorf("swap %v", h)
			}
		}
		if s := ofType(evs, "summary"); len(s) != 1 || len(s[0]["hosts"].([]any)) != 3 {
			t.Errorf("summary: %v", s)
		}
	})

	// status: one host_status event per host, in inventory order, with what
	// its table row says; a host out of line carries its problems (exit 4).
	t.Run("status", func(t *testing.T) {
		live := f.live(t, 0)
		r := fdPlain(t, t.Context(), "--json", "status", "test", "-i", inv)
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		hs := ofType(events(t, r.stdout), "host_status")
		if len(hs) != 3 {
			t.Fatalf("%d host_status events, want 3:\n%s", len(hs), r.stdout)
		}
		for i, h := range hs {
			builds := h["builds"].([]any)
			if h["host"] != f.names[i] || h["ok"] != true || h["error"] != nil || "builds/"+fmt.Sprint(h["live"]) != live ||
				len(builds) == 0 || "builds/"+fmt.Sprint(builds[len(builds)-1]) != live || h["lock"] != nil || len(h["problems"].([]any)) != 0 {
				t.Errorf("host %d: %v", i, h)
			}
		}
		f.exec(t, 2, `cp -p "$ROOT/latest/index.php" "$ROOT/shared/index.orig" && echo tampered >> "$ROOT/latest/index.php"`)
		defer f.exec(t, 2, `cat "$ROOT/shared/index.orig" > "$ROOT/latest/index.php" && touch -r "$ROOT/shared/index.orig" "$ROOT/latest/index.php" && rm "$ROOT/shared/index.orig"`)
		r = fdPlain(t, t.Context(), "--json", "status", "test", "-i", inv)
		if r.code != exitDrift {
			t.Fatalf("want exit %d: %s", exitDrift, r)
		}
		hs = ofType(events(t, r.stdout), "host_status")
		if len(hs) != 3 || len(hs[1]["problems"].([]any)) != 0 || !strings.Contains(fmt.Sprint(hs[2]["problems"]), "index.php") {
			t.Errorf("a hand edit on %s is not its problem: %v", f.names[2], hs)
		}
	})

	t.Run("failed", func(t *testing.T) {
		f.exec(t, 1, `touch "$ROOT/shared/fail"`)
		defer f.exec(t, 1, `rm "$ROOT/shared/fail"`)
		r := fdPlain(t, t.Context(), "--json", "up", "test", "-i", inv)
		if r.code != 1 {
			t.Fatalf("want exit 1: %s", r)
		}
		evs := events(t, r.stdout)
		last := evs[len(evs)-1]
		if last["exit_code"] != 1.0 || last["ok"] != false || !strings.Contains(fmt.Sprint(last["error"]), f.names[1]+": running before_cutover hook") {
			t.Errorf("result %v", last)
		}
		failed := false
		for _, e := range ofType(evs, "step_end") {
			if e["host"] == f.names[1] && e["ok"] == false && e["stopped"] == nil && strings.Contains(fmt.Sprint(e["error"]), "exit 7") {
				failed = true
			}
		}
		if !failed {
			t.Errorf("no failed step_end for %s", f.names[1])
		}
		if len(ofType(evs, "undo")) == 0 {
			t.Errorf("no undo events")
		}
		if !strings.Contains(r.stderr, "migration broke") || strings.Count(r.stderr, "fleetdeploy: ") != 1 {
			t.Errorf("standard error: the error once: %q", r.stderr)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		for i := range f.names {
			f.exec(t, i, `touch "$ROOT/shared/wait"`)
		}
		defer func() {
			for i := range f.names {
				f.exec(t, i, `rm -f "$ROOT/shared/wait" "$ROOT/shared/started"`)
			}
		}()
		cmd := fdCommand(t, "--json", "--connect-timeout", "5s", "--cache-dir", t.TempDir(), "up", "test", "-i", inv)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		for i := range f.names {
			waitFile(t, filepath.Join(f.roots[i], "shared", "started"), 30*time.Second)
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
			t.Fatalf("want exit 130 after SIGINT, got %v\n%s\n%s", err, out.String(), errb.String())
		}
		evs := events(t, out.String())
		last := evs[len(evs)-1]
		if last["exit_code"] != float64(exitInterrupted) || !strings.Contains(fmt.Sprint(last["error"]), "interrupted") {
			t.Errorf("result %v", last)
		}
		stopped := 0
		for _, e := range ofType(evs, "step_end") {
			if e["stopped"] == true {
				stopped++
			}
		}
		if stopped != 3 || len(ofType(evs, "undo")) == 0 {
			t.Errorf("%d hooks stopped, %d undo events: want 3 and some", stopped, len(ofType(evs, "undo")))
		}
		f.assertClean(t)
	})
}

// Off a terminal, people get plain lines: hook output prefixed by its
// host, the summary, the result; no escape sequence. -q: only the result.
func TestPlainAndQuietOutput(t *testing.T) {
	f := startSandbox(t, 2)
	f.provision(t)
	inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"), before: []string{`'echo migrated; echo warned >&2'`}})
	r := fdPlain(t, t.Context(), "up", "test", "-i", inv)
	if r.code != 0 {
		t.Fatal(r)
	}
	if strings.ContainsAny(r.stdout+r.stderr, "\x1b\r") {
		t.Errorf("escape sequences off a terminal:\n%q", r.stdout)
	}
	for _, want := range []string{
		f.names[0] + " | migrated\n", f.names[1] + " | warned\n", f.names[0] + " prepared in ",
		"\nHOST ", "\ncutover skew ", "\ndeployed ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q in:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "uploading build") {
		t.Errorf("steps shown without -v:\n%s", r.stdout)
	}

	q := fdPlain(t, t.Context(), "-q", "up", "test", "-i", inv)
	if q.code != 0 || !regexp.MustCompile(`^deployed \S+ to 2 hosts in \S+\n$`).MatchString(q.stdout) || q.stderr != "" {
		t.Errorf("-q shows more than the result: %s", q)
	}
}

// On a terminal, progress is redrawn in place and never silent for more
// than a second, through the build, the connections and a slow hook.
func TestLiveProgressOnATerminal(t *testing.T) {
	f := startSandbox(t, 3)
	f.provision(t)
	inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"), before: []string{`'sleep 2; echo slept'`}})
	cmd := fdCommand(t, "--cache-dir", t.TempDir(), "up", "test", "-i", inv)
	start := time.Now()
	chunks, ended, werr := onTerminal(t, cmd, true)
	if len(chunks) == 0 {
		t.Fatalf("nothing on the terminal: %v", werr)
	}
	// Silences are counted from the first write: before it, the process
	// is being loaded (seconds for a -race test binary on a busy machine).
	var all []byte
	last, worst, at := chunks[0].at, time.Duration(0), time.Duration(0)
	for _, c := range chunks {
		if d := c.at.Sub(last); d > worst {
			worst, at = d, last.Sub(start)
		}
		last = c.at
		all = append(all, c.data...)
	}
	if d := ended.Sub(last); d > worst {
		worst, at = d, last.Sub(start)
	}
	out := string(all)
	if werr != nil {
		t.Fatalf("%v:\n%s", werr, out)
	}
	if worst > time.Second {
		t.Errorf("silent for %s on a terminal, from %s after the start", worst, at)
	}
	for _, want := range []string{hideCursorSeq, "\x1b[J", "preparing  ", "running before_cutover hook", showCursorSeq} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q on the terminal:\n%q", want, out)
		}
	}
	// After the last erase: the summary and the result, and no frame.
	tail := out[strings.LastIndex(out, "\x1b[J"):]
	for _, want := range []string{"HOST ", "deployed "} {
		if !strings.Contains(tail, want) {
			t.Errorf("the end lacks %q:\n%q", want, tail)
		}
	}
	if regexp.MustCompile(`(?m)^\S \d\d:\d\d  `).MatchString(strings.ReplaceAll(tail, "\r", "")) {
		t.Errorf("a frame is left on screen:\n%q", tail)
	}
	t.Logf("%d writes to the terminal over %s, the first after %s; longest silence %s", len(chunks),
		ended.Sub(start).Round(time.Millisecond), chunks[0].at.Sub(start).Round(time.Millisecond), worst.Round(time.Millisecond))
}

// With --json piped and standard error on a terminal, the events stay
// whole on standard output and people see the live view on the terminal.
func TestJSONWithProgressOnTheTerminal(t *testing.T) {
	f := startSandbox(t, 2)
	f.provision(t)
	inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1")})
	cmd := fdCommand(t, "--json", "--cache-dir", t.TempDir(), "up", "test", "-i", inv)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	chunks, _, err := onTerminal(t, cmd, false)
	if err != nil {
		t.Fatal(err)
	}
	var tty strings.Builder
	for _, c := range chunks {
		tty.Write(c.data)
	}
	evs := events(t, stdout.String())
	if evs[len(evs)-1]["exit_code"] != 0.0 {
		t.Errorf("result %v", evs[len(evs)-1])
	}
	if !strings.Contains(tty.String(), hideCursorSeq) || !strings.Contains(tty.String(), "deployed ") || strings.Contains(tty.String(), `"schema"`) {
		t.Errorf("the terminal shows:\n%q", tty.String())
	}
}

// chunk is one read from a terminal.
type chunk struct {
	at   time.Time
	data []byte
}

// onTerminal runs cmd with its standard error (and output, with stdout) on
// a pseudo-terminal of 120 columns, and returns what it wrote there, with
// when, and when it ended.
func onTerminal(t *testing.T, cmd *exec.Cmd, stdout bool) ([]chunk, time.Time, error) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := pty.Setsize(tty, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = tty
	if stdout {
		cmd.Stdout = tty
	}
	cmd.Env = append(cmd.Env, "TERM=xterm")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var chunks []chunk
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 64<<10)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				chunks = append(chunks, chunk{time.Now(), slices.Clone(buf[:n])})
			}
			if err != nil {
				return // EIO once the process is gone
			}
		}
	}()
	werr := cmd.Wait()
	ended := time.Now()
	<-read
	return chunks, ended, werr
}

const (
	hideCursorSeq = "\x1b[?25l"
	showCursorSeq = "\x1b[?25h"
)

// Usage errors exit 2 and are said once, on standard error; close typos
// get a suggestion, far ones none; --json still ends with its result.
func TestUsageErrorsSaidOnce(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "hosts.yml")
	os.WriteFile(inv, []byte("app: a\nsource: .\nroot: /srv/a\nenvironments:\n  production:\n    hosts: [web1]\n  staging:\n    hosts: [st1]\n"), 0o644)
	for _, tc := range []struct {
		args    []string
		want    string
		notWant string
	}{
		{[]string{"up", "production", "--paralel", "3"}, "unknown flag --paralel: did you mean --parallel?", ""},
		{[]string{"up", "production", "--xq"}, "unknown flag --xq (fleetdeploy up --help lists the flags)", "did you mean"},
		{[]string{"--verbos", "status", "production"}, "did you mean --verbose?", ""},
		{[]string{"stat", "production"}, `unknown command "stat": did you mean status?`, ""},
		{[]string{"zzz"}, `unknown command "zzz" (commands: up, plan, rollback, status, history, unlock, check, sandbox, init, version, completion)`, "did you mean"},
		{[]string{"plan", "-i", inv}, "usage: fleetdeploy plan ENV: name an environment of " + inv + ": production, staging", ""},
		{[]string{"rollback", "-i", inv}, "name an environment of " + inv + ": production, staging", ""},
		{[]string{"up", "a", "b"}, "one environment, got 2 arguments", ""},
		{[]string{"-q", "-v", "up", "production"}, "-q and -v cannot be combined", ""},
		{[]string{"completion", "tcsh"}, "usage: fleetdeploy completion bash|zsh|fish", ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runWith(t.Context(), append([]string{"fleetdeploy"}, tc.args...), &out, &errb, time.Now)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if out.String() != "" {
				t.Errorf("standard output: %q", out.String())
			}
			if n := strings.Count(errb.String(), "fleetdeploy: "); n != 1 || !strings.Contains(errb.String(), tc.want) ||
				(tc.notWant != "" && strings.Contains(errb.String(), tc.notWant)) {
				t.Errorf("standard error %q: want %q once", errb.String(), tc.want)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		var out, errb bytes.Buffer
		code := runWith(t.Context(), []string{"fleetdeploy", "--json", "up", "production", "--nope"}, &out, &errb, time.Now)
		evs := events(t, out.String())
		if code != exitUsage || len(evs) != 1 || evs[0]["exit_code"] != float64(exitUsage) {
			t.Errorf("exit %d, events %v", code, evs)
		}
	})
}

// version and --version say the module version, the commit and the Go.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errb bytes.Buffer
		code := runWith(t.Context(), append([]string{"fleetdeploy"}, args...), &out, &errb, time.Now)
		if code != 0 || !strings.HasPrefix(out.String(), "fleetdeploy ") || !strings.Contains(out.String(), runtime.Version()) ||
			!strings.Contains(out.String(), "\ncommit ") || errb.String() != "" {
			t.Errorf("%v: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
	}
	v := version{module: "v1.2.0", commit: "0123456789abcdef0123", date: "2026-11-25T10:00:00Z", modified: true, goVersion: "go1.26.8"}
	if got := v.String(); !strings.Contains(got, "fleetdeploy v1.2.0\ncommit  0123456789abcdef0123 (2026-11-25T10:00:00Z, with local changes)\ngo      go1.26.8 ") {
		t.Errorf("version:\n%s", got)
	}
}

// Each command's help lists the global flags it takes, and examples.
func TestHelpListsGlobalFlagsAndExamples(t *testing.T) {
	// Every global flag is some command's (a new one must be listed in
	// globalsOf, or no command's help tells of it).
	app := newApp(&common{out: newPrinter(io.Discard), stderr: io.Discard, now: time.Now}, realRunners())
	for _, fl := range app.Flags {
		name := fl.Names()[0]
		used := name == "help" || name == "version"
		for _, names := range globalsOf {
			used = used || slices.Contains(names, name)
		}
		if !used {
			t.Errorf("global flag --%s is in no command's list (globalsOf, cli.go)", name)
		}
	}
	for cmd, globals := range globalsOf {
		var out, errb bytes.Buffer
		code := runWith(t.Context(), []string{"fleetdeploy", cmd, "--help"}, &out, &errb, time.Now)
		if code != 0 || errb.String() != "" {
			t.Errorf("%s --help: exit %d: %s", cmd, code, errb.String())
		}
		help := out.String()
		_, ex, _ := strings.Cut(help, "EXAMPLES:\n")
		if !strings.Contains(help, "GLOBAL OPTIONS") || !strings.Contains(ex, "fleetdeploy "+cmd) {
			t.Errorf("%s --help lacks global options or examples:\n%s", cmd, help)
		}
		for _, g := range globals {
			if !strings.Contains(help, "--"+g) {
				t.Errorf("%s --help does not list --%s", cmd, g)
			}
		}
		if strings.Contains(help, "(default: false)") {
			t.Errorf("%s --help: boolean defaults are noise:\n%s", cmd, help)
		}
	}
}

// The completion scripts parse in their shells, and bash's completes
// commands, flags and environments (read from the inventory by name).
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	for _, shell := range []string{"bash", "zsh", "fish"} {
		var out, errb bytes.Buffer
		if code := runWith(t.Context(), []string{"fleetdeploy", "completion", shell}, &out, &errb, time.Now); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, errb.String())
		}
		path := filepath.Join(dir, "fleetdeploy."+shell)
		os.WriteFile(path, out.Bytes(), 0o644)
		check := map[string][]string{"bash": {"bash", "-n", path}, "zsh": {"zsh", "-n", path}, "fish": {"fish", "--no-execute", path}}[shell]
		if _, err := exec.LookPath(check[0]); err != nil {
			t.Logf("%s not installed: its script is not parsed", shell)
			continue
		}
		if b, err := exec.Command(check[0], check[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%s script does not parse: %v\n%s", shell, err, b)
		}
	}
	// bash, for real: `fleetdeploy` on PATH is this binary running main.
	self, _ := os.Executable()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "fleetdeploy"), []byte("#!/bin/sh\n"+asMain+"=1 exec "+shellQuote(self)+` "$@"`+"\n"), 0o755)
	inv := filepath.Join(dir, "hosts.yml")
	os.WriteFile(inv, []byte("app: a\nsource: .\nroot: /srv/a\nenvironments:\n  production:\n    hosts: [web1]\n  preview:\n    hosts: [p1]\n"), 0o644)
	complete := func(line string) []string {
		t.Helper()
		script := fmt.Sprintf(`source %s
COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_fleetdeploy
printf '%%s\n' "${COMPREPLY[@]}"`, shellQuote(filepath.Join(dir, "fleetdeploy.bash")), line)
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, b)
		}
		return strings.Fields(string(b))
	}
	cases := []struct {
		line string
		want []string
	}{
		{`fleetdeploy st`, []string{"status"}},
		{`fleetdeploy up --dr`, []string{"--dry-run"}},
		{`fleetdeploy --para`, []string{"--parallel"}},
		{`fleetdeploy -i ` + shellQuote(inv) + ` plan p`, []string{"preview", "production"}},
		{`fleetdeploy rollback --inventory=` + shellQuote(inv) + ` pre`, []string{"preview"}},
		{`fleetdeploy completion z`, []string{"zsh"}},
	}
	for _, tc := range cases {
		got := complete(tc.line)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s<TAB>: %q, want %q", tc.line, got, tc.want)
		}
	}
	// fish, for real too, when it is installed (zsh's script is only parsed:
	// its completion needs an interactive shell).
	if _, err := exec.LookPath("fish"); err != nil {
		return
	}
	for _, tc := range cases {
		cmd := exec.Command("fish", "--no-config", "-c", "source "+shellQuote(filepath.Join(dir, "fleetdeploy.fish"))+"; complete -C "+shellQuote(tc.line))
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %s: %v\n%s", tc.line, err, b)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if w, _, _ := strings.Cut(l, "\t"); w != "" {
				got = append(got, w)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("fish: %s<TAB>: %q, want %q", tc.line, got, tc.want)
		}
	}
}

// plan for people, on a fixed clock: per host the build, what it would be
// sent (exact: the build is made when it has no commands), hooks, cleanup.
func TestPlanView(t *testing.T) {
	f := startSandbox(t, 3)
	f.provision(t)
	src := writeApp(t, "v1")
	inv := f.writeInventory(t, inventoryOpts{source: src, keep: 1, before: []string{`'echo migrated'`}})
	mustCLI(t, "up", "test", "-i", inv)
	os.WriteFile(filepath.Join(src, "VERSION"), []byte("v2\n"), 0o644)
	mustCLI(t, "up", "test", "-i", inv)
	os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 'hello v3';\n"), 0o644)
	clock := func() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }
	var out, errb bytes.Buffer
	code := runWith(t.Context(), []string{"fleetdeploy", "--cache-dir", t.TempDir(), "plan", "test", "-i", inv}, &out, &errb, clock)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	got := out.String()
	for i, n := range f.names {
		got = strings.ReplaceAll(got, n, fmt.Sprintf("host%d", i+1))
	}
	for i := range f.names {
		for j, b := range f.builds(t, i) {
			got = strings.ReplaceAll(got, b, fmt.Sprintf("BUILD%d", j+1))
		}
	}
	got = regexp.MustCompile(`sha256:[0-9a-f]+`).ReplaceAllString(got, "sha256:CHECKSUM")
	got = strings.ReplaceAll(got, src, "SRC")
	// Building and connecting go on at once: their lines come in either
	// order (seen: "connected" before "built"), so they are compared sorted.
	if stages, rest, ok := strings.Cut(got, "deploy testapp"); ok {
		lines := strings.Split(strings.TrimSuffix(stages, "\n"), "\n")
		sort.Strings(lines)
		got = strings.Join(lines, "\n") + "\ndeploy testapp" + rest
	}
	golden.Check(t, "plan_view", []byte(got))
}

// A plan on a fleet locked by a running deploy shows every host with its
// problem, and exits as up would: 3, locked.
func TestPlanShowsProblemsPerHost(t *testing.T) {
	f := startSandbox(t, 2)
	f.provision(t)
	inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"),
		before: []string{`'touch "$FLEETDEPLOY_ROOT/shared/started"; while [ ! -e "$FLEETDEPLOY_ROOT/shared/go" ]; do sleep 0.05; done'`}})
	done := make(chan result, 1)
	go func() { done <- fdPlain(t, t.Context(), "up", "test", "-i", inv) }()
	for i := range f.names {
		waitFile(t, filepath.Join(f.roots[i], "shared", "started"), 30*time.Second)
	}
	r := fdPlain(t, t.Context(), "plan", "test", "-i", inv)
	for i := range f.names {
		f.exec(t, i, `touch "$ROOT/shared/go"`)
	}
	if up := <-done; up.code != 0 {
		t.Errorf("the deploy holding the locks: %s", up)
	}
	// Alike hosts share a block (locked by the same run, they may): the
	// count says every host was looked at.
	if r.code != exitLocked || !strings.Contains(r.stdout, "  PROBLEM   checking lock: locked by another deploy: ") ||
		!strings.Contains(r.stdout, f.names[0]) || !strings.Contains(r.stdout, f.names[1]) ||
		!strings.Contains(r.stdout, "2 problems on 2 hosts: up would stop before changing any host") ||
		!strings.Contains(r.stderr, "the plan found problems on 2 hosts (listed above)") {
		t.Errorf("want exit 3 and each host's problem: %s", r)
	}
}
