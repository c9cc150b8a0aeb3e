package remote

import (
	"errors"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
)

// Run does not wait for its exec's answer before going on, but a host
// that refuses the exec still makes an error of it. OpenSSH refuses a
// second exec on a session channel that already runs a command.
func TestRefusedExecIsAnError(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	c, err := Dial(t.Context(), Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.cmds.take(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ch.Close()
	first := s.exec("exec cat") // ends when the channel closes
	<-first.done
	if first.err != nil {
		t.Fatalf("first exec: %v", first.err)
	}
	second := s.exec("true")
	<-second.done
	if !errors.Is(second.err, errExecRefused) {
		t.Fatalf("second exec on one channel: %v, want it refused", second.err)
	}
	err = c.runOutcome(second.err, exitInfo{}, &tail{max: 10}, nil)
	if err == nil || err.Error() != "starting command: the host refused to run the command" {
		t.Errorf("Run would report %v", err)
	}
}
