package remote

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
)

// HostKeyError is a host key that could not be verified: unknown to
// known_hosts, or different from the one recorded there.
type HostKeyError struct {
	Addr        string // host:port dialled
	KeyType     string
	Fingerprint string // SHA256:...
	KnownHosts  string
	Changed     bool
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		return fmt.Sprintf("host key verification failed: the server offered %s key %s, which differs from the key recorded for it in %s; refusing to connect (the host was reinstalled, or someone is intercepting the connection: check before you update known_hosts)",
			e.KeyType, e.Fingerprint, e.KnownHosts)
	}
	return fmt.Sprintf("host key verification failed: %s key %s is not in %s; if that fingerprint is the server's, add it (e.g. ssh once to the host, or ssh-keyscan and compare)",
		e.KeyType, e.Fingerprint, e.KnownHosts)
}

// hostKeyCheck verifies host keys against a known_hosts file and tells which
// key algorithms to ask for, so that a host with several keys offers the one
// known_hosts holds (as OpenSSH does; x/crypto's knownhosts alone cannot).
func hostKeyCheck(file, addr string) (ssh.HostKeyCallback, []string, error) {
	if _, err := os.Stat(file); err != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", err)
	}
	db, err := knownhosts.NewDB(file)
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts %s: %w", file, err)
	}
	inner := db.HostKeyCallback()
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := inner(hostname, remote, key)
		if err == nil {
			return nil
		}
		hkErr := &HostKeyError{Addr: addr, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), KnownHosts: file}
		switch {
		case knownhosts.IsHostKeyChanged(err):
			hkErr.Changed = true
			return hkErr
		case knownhosts.IsHostUnknown(err):
			return hkErr
		}
		return err
	}
	return cb, db.HostKeyAlgorithms(addr), nil
}

// asHostKeyError finds a HostKeyError in err, however the ssh package wrapped it.
func asHostKeyError(err error) (*HostKeyError, bool) {
	var hk *HostKeyError
	ok := errors.As(err, &hk)
	return hk, ok
}
