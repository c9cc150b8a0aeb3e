package plan

import (
	"fmt"
	"slices"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// Shipment is what one host is sent of a build: which files (the build's
// manifest against the host's live one), how the host makes the rest, and
// whether the payload is compressed. Deciding it is pure; making the payload
// is the build's.
type Shipment struct {
	Transfer build.Transfer
	From     string // the live build whose files are reused; "" for a whole build
	Copy     bool   // reused files are copied (hooks may rewrite them in place), not hard-linked
	Gzip     bool
}

// CopiesReused says whether hosts copy the files they reuse rather than
// hard-link them: when hooks run, one could rewrite a file in place, which
// would change the live build too.
func CopiesReused(env *inventory.Environment) bool {
	return len(env.Hooks.BeforeCutover)+len(env.Hooks.AfterCutover) > 0
}

// PresentShared lists the shared directories a host has: nothing to seed there.
func PresentShared(env *inventory.Environment, st *steps.State) []string {
	var present []string
	for _, sp := range env.Shared {
		if sp.Dir && !slices.Contains(st.NoShared, sp.Path) {
			present = append(present, sp.Path)
		}
	}
	return present
}

// Ship decides what a host with state st is sent of the build with manifest
// m. old is the manifest of the host's live build (nil: unknown or
// unreadable, so the whole build is sent), dirty the files of that build
// changed on the host by hand. A delta is mostly tar headers (directories,
// hard-link entries), which gzip shrinks ~20x for a few ms of CPU: always
// compressed. A whole build is mostly file content: compressed only when
// compressWhole says so.
func Ship(m *build.Manifest, env *inventory.Environment, st *steps.State, old *build.Manifest, dirty []string, compressWhole bool) Shipment {
	copyReused := CopiesReused(env)
	tr := m.Diff(old, dirty, SharedArgs(env), PresentShared(env, st))
	tr.Link = !tr.Full && !copyReused
	s := Shipment{Transfer: tr, Copy: copyReused, Gzip: compressWhole || !tr.Full}
	if !tr.Full {
		s.From = st.Latest
	}
	return s
}

// shipKey says which hosts get the same shipment: those on the same live
// build, with the same files changed by hand and the same shared folders.
// Deciding it once for them all saves 200 diffs of a 3,000-entry manifest at
// 200 hosts.
func shipKey(env *inventory.Environment, st *steps.State, haveOld bool) string {
	return fmt.Sprintf("%t\x00%s\x00%s\x00%q\x00%q", haveOld, st.Latest, st.Manifest, slices.Sorted(slices.Values(st.Dirty)), PresentShared(env, st))
}

// ShipAll decides every host's shipment; olds holds the live builds'
// manifests by digest (State.Manifest), nil where unreadable.
func ShipAll(m *build.Manifest, env *inventory.Environment, targets []Target, olds map[string]*build.Manifest, compressWhole bool) map[string]Shipment {
	out := map[string]Shipment{}
	decided := map[string]Shipment{}
	for _, t := range targets {
		st := t.State
		var old *build.Manifest
		if st.Latest != "" && st.Manifest != "" {
			old = olds[st.Manifest]
		}
		key := shipKey(env, st, old != nil)
		s, ok := decided[key]
		if !ok {
			s = Ship(m, env, st, old, st.Dirty, compressWhole)
			decided[key] = s
		}
		out[t.Host.Name] = s
	}
	return out
}
