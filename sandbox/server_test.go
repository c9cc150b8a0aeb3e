package sandbox

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func TestExec(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	home := filepath.Dir(f.Roots[0])
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		command    string
		stdin      io.Reader
		wantOut    string
		wantErr    string
		wantStatus int
	}{
		{name: "stdout", command: "echo hello", wantOut: "hello\n"},
		{name: "stderr and exit code", command: "echo oops >&2; exit 3", wantErr: "oops\n", wantStatus: 3},
		{name: "streams kept apart", command: "echo out; echo err >&2; echo out2", wantOut: "out\nout2\n", wantErr: "err\n"},
		{name: "cwd and home", command: `pwd; echo "$HOME"`, wantOut: home + "\n" + home + "\n"},
		{name: "path", command: `echo "$PATH"`, wantOut: "/usr/local/bin:/usr/bin:/bin\n"},
		{name: "user", command: `echo "$USER $LOGNAME $SHELL"`, wantOut: me.Username + " " + me.Username + " /bin/sh\n"},
		{name: "ssh connection", command: `set -- $SSH_CONNECTION; echo "$1 $3"`, wantOut: "127.0.0.1 127.0.0.1\n"},
		{name: "stdin", command: "tr a-z A-Z", stdin: strings.NewReader("shout\n"), wantOut: "SHOUT\n"},
		{name: "no stdin means EOF", command: "cat; echo end", wantOut: "end\n"},
		{name: "shell syntax", command: `for w in 'a b' "c"; do printf '[%s]' "$w"; done`, wantOut: "[a b][c]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := run(t, c, tt.command, tt.stdin)
			status := 0
			var exit *ssh.ExitError
			if errors.As(err, &exit) {
				status = exit.ExitStatus()
			} else if err != nil {
				t.Fatal(err)
			}
			if out != tt.wantOut || errOut != tt.wantErr || status != tt.wantStatus {
				t.Errorf("got stdout %q stderr %q status %d; want %q %q %d", out, errOut, status, tt.wantOut, tt.wantErr, tt.wantStatus)
			}
		})
	}
}

func TestExecLargeOutputArrivesBeforeExit(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	const size = 4 << 20
	out, _, err := run(t, c, "head -c 4194304 /dev/zero; exit 7", nil)
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 7 {
		t.Fatalf("got %v, want exit status 7", err)
	}
	if len(out) != size {
		t.Fatalf("got %d bytes of stdout, want %d", len(out), size)
	}
}

func TestExitSignal(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	_, _, err := run(t, c, "kill -TERM $$", nil)
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.Signal() != string(ssh.SIGTERM) {
		t.Fatalf("got %v, want exit-signal TERM", err)
	}
}

func TestSignalRequestReachesProcessGroup(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("sleep 100 & echo $!; wait"); err != nil {
		t.Fatal(err)
	}
	sleeper := readPID(t, out)
	if err := s.Signal(ssh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = s.Wait()
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.Signal() != string(ssh.SIGTERM) {
		t.Fatalf("got %v, want exit-signal TERM", err)
	}
	waitFor(t, "the background sleep to die", func() bool { return processGone(sleeper) })
}

func TestStdinStreamedToCat(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	data := make([]byte, 3<<20+17)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, c, "cat > upload.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(filepath.Dir(f.Roots[0]), "upload.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("uploaded file differs: %d bytes, want %d", len(got), len(data))
	}
}

func TestStdinStreamedToTar(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)

	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	entries := []struct {
		hdr  tar.Header
		body string
	}{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "public/", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "public/index.php", Mode: 0o644}, body: "<?php echo 'v1';\n"},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/console", Mode: 0o755}, body: "#!/bin/sh\n"},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: ".env", Linkname: "../../shared/.env"}},
	}
	for _, e := range entries {
		e.hdr.Size = int64(len(e.body))
		e.hdr.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	build := filepath.Join(f.Roots[0], "builds", "20240101T000000Z")
	if _, stderr, err := run(t, c, "mkdir -p www/builds/20240101T000000Z && tar -xpf - -C www/builds/20240101T000000Z", &archive); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	for _, check := range []struct {
		path string
		mode os.FileMode
		body string
	}{
		{"public/index.php", 0o644, "<?php echo 'v1';\n"},
		{"bin/console", 0o755, "#!/bin/sh\n"},
	} {
		fi, err := os.Stat(filepath.Join(build, check.path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != check.mode {
			t.Errorf("%s: mode %v, want %v", check.path, fi.Mode().Perm(), check.mode)
		}
		body, err := os.ReadFile(filepath.Join(build, check.path))
		if err != nil || string(body) != check.body {
			t.Errorf("%s: got %q, %v", check.path, body, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(build, ".env")); err != nil || target != "../../shared/.env" {
		t.Errorf(".env: got link to %q, %v", target, err)
	}
}

// A command reading stdin must see EOF when its client goes away, however it
// goes: fleetdeploy relies on that to notice a vanished client.
func TestCommandSeesStdinEOFWhenClientLeaves(t *testing.T) {
	f := startFleet(t, 1)
	home := filepath.Dir(f.Roots[0])
	tests := []struct {
		name  string
		leave func(c *ssh.Client, s *ssh.Session, stdin io.WriteCloser) error
	}{
		{"stdin closed", func(_ *ssh.Client, _ *ssh.Session, stdin io.WriteCloser) error { return stdin.Close() }},
		{"session closed", func(_ *ssh.Client, s *ssh.Session, _ io.WriteCloser) error { return s.Close() }},
		{"connection closed", func(c *ssh.Client, _ *ssh.Session, _ io.WriteCloser) error { return c.Close() }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f, 0)
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stdin, err := s.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(home, "marker"+string(rune('a'+i)))
			if err := s.Start("cat >/dev/null; echo done > " + filepath.Base(marker)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(stdin, "some input\n"); err != nil {
				t.Fatal(err)
			}
			if err := tt.leave(c, s, stdin); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the command to see EOF and write "+marker, exists(marker))
		})
	}
}

// Like sshd, closing the channel closes the command's pipes but does not
// kill it: a command that ignores its stdio runs on.
func TestChannelCloseDoesNotKillCommand(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	home := filepath.Dir(f.Roots[0])
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(`echo started; while ! [ -e go ]; do sleep 0.02; done; echo survived > marker`); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("started\n"))
	if _, err := io.ReadFull(out, line); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the command to outlive its channel", exists(filepath.Join(home, "marker")))
}

// A command still writing after its client left gets SIGPIPE, as under sshd.
func TestWriterGetsSIGPIPEWhenClientLeaves(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("echo $$; exec yes"); err != nil {
		t.Fatal(err)
	}
	pid := readPID(t, out)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "yes to die of SIGPIPE", func() bool { return processGone(pid) })
}

func TestSFTP(t *testing.T) {
	f := startFleet(t, 1)
	c, err := sftp.NewClient(dial(t, f, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sftpBehaviour(t, c, filepath.Dir(f.Roots[0]))
}

func TestAuthRefused(t *testing.T) {
	f := startFleet(t, 1)
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	strangerSigner, err := ssh.NewSignerFromKey(stranger)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		auth []ssh.AuthMethod
	}{
		{"wrong key", []ssh.AuthMethod{ssh.PublicKeys(strangerSigner)}},
		{"password", []ssh.AuthMethod{ssh.Password("hunter2")}},
		{"keyboard-interactive", []ssh.AuthMethod{ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
			return []string{"hunter2"}, nil
		})}},
		{"none", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientConfig(t, f)
			cfg.Auth = tt.auth
			c, err := ssh.Dial("tcp", f.Hosts[0].Addr().String(), cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("connected, want authentication refused")
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("got %v, want an authentication failure", err)
			}
		})
	}
}

func TestKeepaliveAnswered(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	for range 3 {
		if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRequestsSshdRefuses(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	tests := []struct {
		name string
		do   func(s *ssh.Session) error
	}{
		{"env", func(s *ssh.Session) error { return s.Setenv("LC_ALL", "C") }},
		{"pty-req", func(s *ssh.Session) error { return s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}) }},
		{"shell", func(s *ssh.Session) error { return s.Shell() }},
		{"unknown subsystem", func(s *ssh.Session) error { return s.RequestSubsystem("netconf") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := tt.do(s); err == nil {
				t.Fatal("accepted, want refused")
			}
		})
	}
	if _, _, err := c.OpenChannel("direct-tcpip", nil); err == nil {
		t.Error("direct-tcpip channel accepted, want refused")
	}
}

func TestCloseKillsRunningCommands(t *testing.T) {
	f := startFleet(t, 1)
	c := dial(t, f, 0)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("sleep 100 & echo $!; echo $$; wait"); err != nil {
		t.Fatal(err)
	}
	sleeper, shell := readPID(t, out), readPID(t, out)

	// A connection stuck before its handshake must not hold Close up either.
	raw, err := net.Dial("tcp", f.Hosts[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	start := time.Now()
	if err := f.Hosts[0].Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s", d)
	}
	if !processGone(shell) {
		t.Error("the command's shell outlived Close")
	}
	waitFor(t, "sleep 100 to be killed", func() bool { return processGone(sleeper) })
	if err := s.Wait(); err == nil {
		t.Error("session ended cleanly, want it cut off")
	}
	if _, err := net.Dial("tcp", f.Hosts[0].Addr().String()); err == nil {
		t.Error("still accepting connections after Close")
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	f, err := StartFleet(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Hosts {
		c, err := ssh.Dial("tcp", f.Hosts[i].Addr().String(), clientConfig(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := run(t, c, "cat; echo hi >&2", strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		sc, err := sftp.NewClient(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Getwd(); err != nil {
			t.Fatal(err)
		}
		_ = sc.Close()
		// Leave one command running for Close to kill.
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start("sleep 100"); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "goroutines to wind down", func() bool { return runtime.NumGoroutine() <= before })
}
