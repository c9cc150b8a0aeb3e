package remote_test

import (
	"testing"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// BenchmarkDialAndRun times what every command starts with on one real
// OpenSSH host: connect, verify the host key, authenticate, open SFTP, and run
// one brief command (a second session). On Linux, before ackAtOnce, a
// delayed ACK held OpenSSH's answer to the first channel open for 40 ms.
//
//	go test -run '^$' -bench DialAndRun ./remote
func BenchmarkDialAndRun(b *testing.B) {
	f := sshtest.Start(b, 1)
	h := f.Hosts[0]
	cfg := remote.Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts}
	for b.Loop() {
		c, err := remote.Dial(b.Context(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(b.Context(), remote.Cmd{Args: []string{"true"}}); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
