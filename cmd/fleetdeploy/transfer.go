package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// payloads decides what each host receives: only the files its live build
// lacks, when the host holds that build's manifest; everything otherwise.
// Manifests are read once per distinct build (cached on this machine by
// digest) and verified against their digest; a host whose own copy turns
// out corrupt asks for the whole build (see steps.Payload.Redo): a full
// upload, never a wrong build.
func (g *globals) payloads(ctx context.Context, f *fleet, env *inventory.Environment, targets []plan.Target, art *build.Artifact) (map[string]steps.Payload, error) {
	shared := plan.SharedArgs(env)
	copyReused := len(env.Hooks.BeforeCutover)+len(env.Hooks.AfterCutover) > 0
	manifests := map[string]*build.Manifest{}
	out := map[string]steps.Payload{}
	// Hosts on the same build with the same dirty files and shared folders
	// get the same payload: decided once (at 200 hosts, 200 diffs of a
	// 3,000-entry manifest otherwise).
	decided := map[string]decision{}
	for _, t := range targets {
		st := t.State
		var old *build.Manifest
		if st.Latest != "" && st.Manifest != "" {
			m, ok := manifests[st.Manifest]
			if !ok {
				var err error
				m, err = g.manifest(ctx, f, t, st.Manifest)
				if err != nil {
					fmt.Fprintf(g.stdout, "%s: %v: sending the whole build\n", t.Host.Name, err)
				}
				manifests[st.Manifest] = m
			}
			old = m
		}
		present := presentShared(env, st)
		key := fmt.Sprintf("%t\x00%s\x00%q\x00%q", old != nil, st.Manifest, slices.Sorted(slices.Values(st.Dirty)), present)
		d, ok := decided[key]
		if !ok {
			var err error
			if d, err = g.decide(art, old, st.Dirty, shared, present, copyReused); err != nil {
				return nil, err
			}
			decided[key] = d
		}
		sp := d.p
		window := f.window(t.Host.Name, g.window)
		sp.Window = window
		if d.reuse {
			sp.From = st.Latest
			// The host checks the files reused against their record, under
			// the lock: those changed or removed by hand since are sent in a
			// second attempt, as is everything when the host's manifest is
			// found corrupt.
			name, latest := t.Host.Name, st.Latest
			sp.Redo = func(dirty []string, whole bool) (steps.Payload, error) {
				o := old
				if whole {
					o = nil
					fmt.Fprintf(g.stdout, "%s: the live build's manifest is corrupt: sending the whole build\n", name)
				} else {
					what := fmt.Sprintf("%d files", len(dirty))
					if len(dirty) == 1 {
						what = "1 file"
					}
					fmt.Fprintf(g.stdout, "%s: %s of the live build changed or removed on the host since it was made (%s): sending again\n", name, what, brief(dirty))
				}
				d, err := g.decide(art, o, dirty, shared, present, copyReused)
				if err != nil {
					return steps.Payload{}, err
				}
				p := d.p
				p.Window = window
				if d.reuse {
					p.From = latest
				}
				return p, nil
			}
		}
		out[t.Host.Name] = sp
	}
	return out, nil
}

// decision is a payload decided for hosts alike, and whether it builds on
// their live build (steps.Payload.From, theirs to fill in).
type decision struct {
	p     steps.Payload
	reuse bool
}

// decide makes the payload for a host whose live build has manifest old (nil:
// send everything), with the given files changed on it by hand.
func (g *globals) decide(art *build.Artifact, old *build.Manifest, dirty, shared, present []string, copyReused bool) (decision, error) {
	tr := art.Manifest.Diff(old, dirty, shared, present)
	tr.Link = !tr.Full && !copyReused
	// A delta is mostly tar headers (directories, hard-link entries), which
	// gzip shrinks ~20x for a few ms of CPU: always compressed. A whole
	// build is mostly file content: compressed only when asked, since on a
	// LAN gunzip costs the host more than the bytes saved.
	p, err := art.Payload(tr, g.compress || !tr.Full)
	if err != nil {
		return decision{}, fmt.Errorf("making the payload: %w", err)
	}
	return decision{steps.Payload{Open: p.Open, Copy: copyReused, Skip: p.Skip, Gzip: p.Gzip, ManifestSum: art.ManifestSum, Sent: p.Sent, Size: p.Size}, p.Reuse}, nil
}

// brief lists a few paths, and how many more.
func brief(paths []string) string {
	if len(paths) <= 3 {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:3], ", "), len(paths)-3)
}

// manifest returns the manifest with this digest: from the local cache, or
// read from the host and verified.
func (g *globals) manifest(ctx context.Context, f *fleet, t plan.Target, digest string) (*build.Manifest, error) {
	cache := g.manifestCache(digest)
	if data, err := os.ReadFile(cache); cache != "" && err == nil && build.Digest(data) == digest {
		return build.ParseManifest(data)
	}
	l := steps.Layout{Root: t.Host.Root}
	data, err := f.conns[t.Host.Name].ReadFile(ctx, l.Marker(t.State.Latest)+".manifest")
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
	g.storeManifest(data)
	return m, nil
}

// storeManifest keeps a manifest for later deploys (the one just built, or
// one read from a host), so that a redeploy reads none from the hosts.
func (g *globals) storeManifest(data []byte) {
	cache := g.manifestCache(build.Digest(data))
	if cache == "" || os.MkdirAll(filepath.Dir(cache), 0o700) != nil {
		return
	}
	tmp := fmt.Sprintf("%s.tmp-%d", cache, os.Getpid())
	if os.WriteFile(tmp, data, 0o600) == nil {
		os.Rename(tmp, cache)
	}
}

// manifestCache is where a manifest with this digest is cached ("" for none).
func (g *globals) manifestCache(digest string) string {
	hexsum, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexsum) != 64 || strings.Trim(hexsum, "0123456789abcdef") != "" {
		return ""
	}
	dir := g.cacheDir
	if dir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(d, "fleetdeploy")
	}
	return filepath.Join(dir, "manifests", hexsum)
}

// presentShared lists the shared directories a host has: nothing to seed there.
func presentShared(env *inventory.Environment, st *steps.State) []string {
	var present []string
	for _, sp := range env.Shared {
		if sp.Dir && !slices.Contains(st.NoShared, sp.Path) {
			present = append(present, sp.Path)
		}
	}
	return present
}
