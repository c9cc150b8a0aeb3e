package remote

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestQuoteSurvivesShell(t *testing.T) {
	cases := []string{
		"",
		"plain",
		"with space",
		"it's",
		`"double"`,
		"$(touch /tmp/pwned)",
		"`id`",
		"$HOME",
		"semi;colon && rm -rf /",
		"new\nline",
		"back\\slash",
		"tab\there",
		"'''",
		"-n",
		"*",
	}
	for _, c := range cases {
		out, err := exec.Command("sh", "-c", "printf '%s' "+Quote(c)).Output()
		if err != nil {
			t.Fatalf("%q: %v", c, err)
		}
		if string(out) != c {
			t.Errorf("Quote(%q) reached the shell as %q", c, out)
		}
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Cmd
		render  string
		display string
	}{
		{
			name:    "args",
			cmd:     Cmd{Args: []string{"rm", "-rf", "--", "/var/www/a b"}},
			render:  `'rm' '-rf' '--' '/var/www/a b'`,
			display: `'rm' '-rf' '--' '/var/www/a b'`,
		},
		{
			name:    "dir and env",
			cmd:     Cmd{Dir: "/srv/x", Env: []string{"A=it's"}, Args: []string{"sh", "-c", "echo $A"}},
			render:  `cd '/srv/x' && exec env 'A=it'\''s' 'sh' '-c' 'echo $A'`,
			display: `cd '/srv/x' && env 'A=it'\''s' 'sh' '-c' 'echo $A'`,
		},
		{
			name:    "script",
			cmd:     Cmd{Script: &Script{Name: "probe", Body: `echo "$1"`}, Params: []Param{{"root", "/r"}, {"id", "it's"}}},
			render:  `sh -c 'echo "$1"' 'fleetdeploy-probe' 'root=/r' 'id=it'\''s'`,
			display: `fleetdeploy-probe 'root=/r' 'id=it'\''s'`,
		},
		{
			name:    "input",
			cmd:     Cmd{Script: &Script{Name: "unpack", Body: `tar -x`}, Input: "payload (3 files)", Stdin: strings.NewReader("")},
			render:  `sh -c 'tar -x' 'fleetdeploy-unpack'`,
			display: `fleetdeploy-unpack < payload (3 files)`,
		},
		{
			name:    "secret",
			cmd:     Cmd{Env: []string{"TOKEN=hunter2"}, Secret: true, Args: []string{"true"}},
			render:  `exec env 'TOKEN=hunter2' 'true'`,
			display: `env 'TOKEN=***' 'true'`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cmd.Render(); got != tt.render {
				t.Errorf("Render:\n got %s\nwant %s", got, tt.render)
			}
			if got := tt.cmd.String(); got != tt.display {
				t.Errorf("String:\n got %s\nwant %s", got, tt.display)
			}
		})
	}
}

// The rendered command, run through two shells as it is on a host (the login
// shell, then the kill-on-hangup wrapper), hands every argument over intact.
func TestWireArgumentsArriveIntact(t *testing.T) {
	args := []string{"a b", "it's", "$(echo x)", "`id`", "new\nline", `"q"`, "$HOME", ";", "-n", ""}
	script := &Script{Name: "echo", Body: `printf '[%s]' "$V" "$@"`}
	var ps []Param
	for _, a := range args {
		ps = append(ps, Param{"p", a})
	}
	for name, c := range map[string]Cmd{
		"dir and env": {Dir: "/", Env: []string{"V=$(no) 'x'"}, Args: append([]string{"sh", "-c", script.Body, "sh"}, args...)},
		"script":      {Script: script, Params: ps},
		"argv":        {Args: append([]string{"printf", "[%s]", ""}, args...)},
		"brief":       {Script: &Script{Name: "echo", Body: script.Body, Brief: true}, Params: ps},
		"stdin":       {Script: script, Params: ps, Stdin: strings.NewReader("")},
		"stdin, dir":  {Dir: "/", Script: script, Params: ps, Stdin: strings.NewReader("")},
	} {
		t.Run(name, func(t *testing.T) {
			sh := exec.Command("sh", "-c", c.wire())
			stdin, err := sh.StdinPipe() // held open, as an SSH channel is while the command runs
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			out, err := sh.Output()
			if err != nil {
				t.Fatal(err)
			}
			want := "[]"
			if c.Env != nil {
				want = "[$(no) 'x']"
			}
			for _, a := range args {
				if c.Script != nil {
					a = "p=" + a // a named parameter
				}
				want += "[" + a + "]"
			}
			if string(out) != want {
				t.Errorf("got  %q\nwant %q", out, want)
			}
			wrapped := c.Stdin == nil && (c.Script == nil || !c.Script.Brief)
			if got := strings.Contains(c.wire(), "setsid"); got != wrapped {
				t.Errorf("under the kill-on-hangup wrapper: %v, want %v (only commands without stdin, except brief scripts)", got, wrapped)
			}
		})
	}
}

// The login shell does not stay around: it execs the command, wrapped or not.
func TestWireReplacesLoginShell(t *testing.T) {
	script := &Script{Name: "ppid", Body: `echo "$PPID"`}
	for name, c := range map[string]Cmd{
		"script": {Script: script, Stdin: strings.NewReader("")},
		"dir":    {Dir: "/", Script: script, Stdin: strings.NewReader("")},
		"env":    {Env: []string{"A=1"}, Script: script, Stdin: strings.NewReader("")},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command("sh", "-c", c.wire()).Output()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.TrimSpace(string(out)), strconv.Itoa(os.Getpid()); got != want {
				t.Errorf("the script's parent is %s, want %s (this process): the login shell stayed in between", got, want)
			}
		})
	}
}

// Closing stdin (what sshd does when the channel goes away) kills the command's
// whole process group, not just the shell.
func TestWireKillsProcessGroupOnHangup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pids")
	c := Cmd{Args: []string{"sh", "-c", `sleep 30 & echo $! > "$1"; echo $$ >> "$1"; wait`, "sh", pidfile}}
	sh := exec.Command("sh", "-c", c.wire())
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	deadline := time.Now().Add(5 * time.Second)
	for len(pids) < 2 && time.Now().Before(deadline) {
		data, _ := os.ReadFile(pidfile)
		pids = pids[:0]
		for _, f := range strings.Fields(string(data)) {
			n, _ := strconv.Atoi(f)
			pids = append(pids, n)
		}
		<-time.After(10 * time.Millisecond)
	}
	if len(pids) < 2 {
		t.Fatal("the command did not start")
	}
	stdin.Close()
	if err := sh.Wait(); err == nil {
		t.Fatal("command finished normally; want it killed")
	}
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d of the killed command's group lived on", pid)
			}
			<-time.After(10 * time.Millisecond)
		}
	}
}

// alive reports whether a process exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// People see the first values of a long list and how many more; the host
// gets them all.
func TestLongListShownShort(t *testing.T) {
	var ps []Param
	for i := range 7 {
		ps = append(ps, Param{Name: "skip", Value: fmt.Sprintf("f%d", i)})
	}
	ps = append(ps, Param{Name: "shared", Value: "d:a"}, Param{Name: "root", Value: "/r"})
	c := Cmd{Script: &Script{Name: "x", Body: "true"}, Params: ps}
	want := `fleetdeploy-x 'skip=f0' 'skip=f1' 'skip=f2' 'skip=f3' 'skip=… (3 more)' 'shared=d:a' 'root=/r'`
	if got := c.String(); got != want {
		t.Errorf("shown as\n%s\nwant\n%s", got, want)
	}
	if r := c.Render(); !strings.Contains(r, "'skip=f6'") || strings.Contains(r, "more") {
		t.Errorf("sent as %s", r)
	}
	c.Params = ps[2:]
	if got := c.String(); !strings.Contains(got, "'skip=f6'") || strings.Contains(got, "more") {
		t.Errorf("five values are shown in full: %s", got)
	}
}
