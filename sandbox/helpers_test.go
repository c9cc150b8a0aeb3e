package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// waitTimeout bounds every poll in these tests.
const waitTimeout = 10 * time.Second

// startFleet starts a fleet in a temporary directory, closed when the test ends.
func startFleet(t *testing.T, n int) *Fleet {
	t.Helper()
	f, err := StartFleet(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// clientConfig is what fleetdeploy would build from the fleet's files: the
// identity key and a known_hosts callback, no shortcuts.
func clientConfig(t *testing.T, f *Fleet) *ssh.ClientConfig {
	t.Helper()
	hostKeys, err := knownhosts.New(f.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(f.Identity)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return &ssh.ClientConfig{
		User:            "deploy",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         waitTimeout,
	}
}

// dial connects to host i of the fleet; the client is closed when the test ends.
func dial(t *testing.T, f *Fleet, i int) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", f.Hosts[i].Addr().String(), clientConfig(t, f))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// run runs command in a new session, feeding it stdin when not nil.
func run(t *testing.T, c *ssh.Client, command string, stdin io.Reader) (stdout, stderr string, err error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	s.Stdin, s.Stdout, s.Stderr = stdin, &out, &errOut
	err = s.Run(command)
	return out.String(), errOut.String(), err
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		<-tick.C
	}
}

func exists(path string) func() bool {
	return func() bool {
		_, err := os.Stat(path)
		return err == nil
	}
}

// processGone reports whether pid has exited: no such process, or a zombie
// left for an init that does not reap (common in containers).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// Format: pid (comm) state ...; comm may hold spaces and parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// readPID reads one line holding a process ID.
func readPID(t *testing.T, r io.Reader) int {
	t.Helper()
	var pid int
	if _, err := fmt.Fscanln(r, &pid); err != nil {
		t.Fatalf("reading pid: %v", err)
	}
	return pid
}
