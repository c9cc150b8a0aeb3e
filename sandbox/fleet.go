package sandbox

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Fleet is N sandbox hosts plus the files a client needs to reach them.
type Fleet struct {
	Dir        string
	Hosts      []*Server
	Roots      []string // Dir/host1/www, Dir/host2/www, ... (absolute)
	KnownHosts string   // Dir/known_hosts, entries "[127.0.0.1]:PORT ssh-ed25519 ..."
	Identity   string   // Dir/id_ed25519 (OpenSSH private key format, 0600), and Dir/id_ed25519.pub
}

// StartFleet starts n hosts under dir, so a test or a demo gets a fleet, its
// known_hosts and a client key in one call.
//
// Host k lives in dir/hostK (its $HOME and working directory); its deploy
// root dir/hostK/www is not created, because creating roots is fleetdeploy's
// job. Keys are ed25519. Keys already in dir from an earlier run
// (dir/id_ed25519, dir/hostK/ssh_host_ed25519_key) are reused, so a client
// configured against an earlier fleet still authenticates; ports are new on
// every start, so known_hosts is always rewritten.
func StartFleet(dir string, n int) (*Fleet, error) {
	if n < 1 {
		return nil, fmt.Errorf("sandbox: fleet of %d hosts", n)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	f := &Fleet{
		Dir:        dir,
		KnownHosts: filepath.Join(dir, "known_hosts"),
		Identity:   filepath.Join(dir, "id_ed25519"),
	}
	client, err := loadOrCreateKey(f.Identity, "fleetdeploy-sandbox-client")
	if err != nil {
		return nil, err
	}

	var lines []string
	for k := 1; k <= n; k++ {
		hostDir := filepath.Join(dir, fmt.Sprintf("host%d", k))
		if err := os.MkdirAll(hostDir, 0o755); err != nil {
			return nil, errors.Join(fmt.Errorf("sandbox: %w", err), f.Close())
		}
		hostKey, err := loadOrCreateKey(filepath.Join(hostDir, "ssh_host_ed25519_key"), fmt.Sprintf("fleetdeploy-sandbox-host%d", k))
		if err != nil {
			return nil, errors.Join(err, f.Close())
		}
		srv, err := Listen(Config{
			HostKey:        hostKey,
			AuthorizedKeys: []ssh.PublicKey{client.PublicKey()},
			Dir:            hostDir,
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("sandbox: host%d: %w", k, err), f.Close())
		}
		f.Hosts = append(f.Hosts, srv)
		f.Roots = append(f.Roots, filepath.Join(hostDir, "www"))
		lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(srv.Addr().String())}, hostKey.PublicKey()))
	}
	if err := writeFileAtomic(f.KnownHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

// Close stops every host, concurrently, and reports each failure.
func (f *Fleet) Close() error {
	errs := make([]error, len(f.Hosts))
	var wg sync.WaitGroup
	for i, h := range f.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.Close(); err != nil {
				errs[i] = fmt.Errorf("host%d: %w", i+1, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// loadOrCreateKey reads the private key at path, or creates an ed25519 key
// there (0600) when there is none; either way it (re)writes path.pub.
func loadOrCreateKey(path, comment string) (ssh.Signer, error) {
	var signer ssh.Signer
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		signer, err = ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("sandbox: key %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("sandbox: generating key: %w", err)
		}
		block, err := ssh.MarshalPrivateKey(priv, comment)
		if err != nil {
			return nil, fmt.Errorf("sandbox: encoding key: %w", err)
		}
		if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
		if signer, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	default:
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	pub := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(signer.PublicKey())), "\n") + " " + comment + "\n"
	if err := writeFileAtomic(path+".pub", []byte(pub), 0o644); err != nil {
		return nil, err
	}
	return signer, nil
}

// writeFileAtomic replaces path with data so readers see the old file or the
// new one, never a torn write.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
			err = fmt.Errorf("sandbox: writing %s: %w", path, err)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
