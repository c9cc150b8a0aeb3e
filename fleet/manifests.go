package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// MaxManifest bounds a manifest read from a host: some 5 million files.
const MaxManifest = 1 << 30

// Cache is this machine's cache folder for fleetdeploy: manifests of builds
// seen on hosts, by digest, so that a redeploy reads none from the hosts
// (and the build keeps its file hashes beside them).
type Cache struct {
	Dir string // "" for the user cache folder's fleetdeploy/
}

// Base is the cache's folder ("" when there is none).
func (c Cache) Base() string {
	if c.Dir != "" {
		return c.Dir
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "fleetdeploy")
}

// path is where a manifest with this digest is cached ("" for none).
func (c Cache) path(digest string) string {
	hexsum, ok := strings.CutPrefix(digest, "sha256:")
	base := c.Base()
	if !ok || len(hexsum) != 64 || strings.Trim(hexsum, "0123456789abcdef") != "" || base == "" {
		return ""
	}
	return filepath.Join(base, "manifests", hexsum)
}

// Store keeps a manifest for later deploys (the one just built, or one read
// from a host). Failing to is not an error: the cache only saves reads.
func (c Cache) Store(data []byte) {
	p := c.path(build.Digest(data))
	if p == "" || os.MkdirAll(filepath.Dir(p), 0o700) != nil {
		return
	}
	tmp := fmt.Sprintf("%s.tmp-%d", p, os.Getpid())
	if os.WriteFile(tmp, data, 0o600) == nil {
		os.Rename(tmp, p)
	}
}

// Manifest returns the manifest with this digest, which the host's live
// build (live, under root) has: from the cache, or read from the host and
// verified against the digest.
func (c Cache) Manifest(ctx context.Context, h remote.Host, root, live, digest string) (*build.Manifest, error) {
	p := c.path(digest)
	if data, err := os.ReadFile(p); p != "" && err == nil && build.Digest(data) == digest {
		return build.ParseManifest(data)
	}
	data, err := h.ReadFile(ctx, steps.Layout{Root: root}.Marker(live)+".manifest", MaxManifest)
	if err != nil {
		return nil, fmt.Errorf("reading the live build's manifest: %w", err)
	}
	if build.Digest(data) != digest {
		return nil, errors.New("the live build's manifest does not match its digest")
	}
	m, err := build.ParseManifest(data)
	if err != nil {
		return nil, err
	}
	c.Store(data)
	return m, nil
}
