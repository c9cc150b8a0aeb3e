package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// makeCAs creates the certificate authorities the options ask for.
func (f *Fleet) makeCAs() error {
	if f.opts.HostCertificates {
		s, err := newSigner()
		if err != nil {
			return err
		}
		f.hostCA, f.HostCA = s, s.PublicKey()
	}
	if f.opts.UserCA {
		s, err := newSigner()
		if err != nil {
			return err
		}
		f.UserCA = s
		if err := os.WriteFile(f.userCAFile(), ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fleet) userCAFile() string { return filepath.Join(f.Dir, "user_ca.pub") }

func newSigner() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

func (h *Host) certPath() string { return h.hostKeyPath() + "-cert.pub" }

// writeCertificate signs the host's key for its IP address, once.
func (h *Host) writeCertificate() error {
	if _, err := os.Stat(h.certPath()); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	c := &ssh.Certificate{
		Key:             h.HostKey,
		Serial:          1,
		CertType:        ssh.HostCert,
		KeyId:           "sshtest " + h.listenIP(),
		ValidPrincipals: []string{h.listenIP()},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := c.SignCert(rand.Reader, h.fleet.hostCA); err != nil {
		return fmt.Errorf("signing the host certificate: %w", err)
	}
	h.Certificate = c
	return os.WriteFile(h.certPath(), ssh.MarshalAuthorizedKey(c), 0o644)
}
