package fleet

import (
	"testing"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Handshakes are bounded per sshd that sees them unauthenticated: each
// host's own (hosts on one address share it), all ProxyCommands together
// (they usually reach one bastion), never the jump host's: hosts behind one
// share its connection, and their handshakes run over its channels.
func TestStartupBounds(t *testing.T) {
	b := startupBounds{}
	web1 := b.of(remote.Config{Addr: "10.0.0.1:22"})
	web2 := b.of(remote.Config{Addr: "10.0.0.2:22"})
	again := b.of(remote.Config{Addr: "10.0.0.1:22"})
	p1 := b.of(remote.Config{Addr: "10.0.1.1:22", ProxyCommand: "ssh -W %h:%p bastion"})
	p2 := b.of(remote.Config{Addr: "10.0.1.2:22", ProxyCommand: "ssh -W %h:%p bastion"})
	j1 := b.of(remote.Config{Addr: "10.0.2.1:22", Jumps: []remote.Config{{Addr: "bastion:22"}}})
	j2 := b.of(remote.Config{Addr: "10.0.2.2:22", Jumps: []remote.Config{{Addr: "bastion:22"}}})
	switch {
	case web1 == web2:
		t.Error("two hosts share a bound")
	case web1 != again:
		t.Error("one address, two bounds")
	case p1 != p2:
		t.Error("ProxyCommands do not share a bound")
	case j1 == j2 || j1 == p1:
		t.Error("hosts behind a jump host share a bound")
	case cap(web1) != maxStartups:
		t.Errorf("bound %d, want %d", cap(web1), maxStartups)
	}
}
