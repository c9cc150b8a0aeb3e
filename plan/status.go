package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/steps"
)

// FleetBuild is the build the fleet runs: the one most hosts have live;
// among as many, the one that went live last on its host (its own history),
// then the newer ID. from is a host that runs it ("" when no host has a live
// build).
func FleetBuild(targets []Target) (id string, from Target) {
	count := map[string]int{}
	for _, t := range targets {
		if t.State != nil && t.State.Latest != "" {
			count[t.State.Latest]++
		}
	}
	for _, t := range targets {
		if t.State == nil || t.State.Latest == "" {
			continue
		}
		c, n := t.State.Latest, count[t.State.Latest]
		switch {
		case id == "", n > count[id]:
		case n < count[id] || c == id:
			continue
		default: // as many hosts: the one live last, then the newer ID
			tc, ti := lastLive(t.State, c), lastLive(from.State, id)
			if tc.Before(ti) || (tc.Equal(ti) && c < id) {
				continue
			}
		}
		id, from = c, t
	}
	return id, from
}

// HostStatus is one host as `status` shows it.
type HostStatus struct {
	Host        string
	Unreachable error           // connecting or reading failed; nothing else is known
	Live        string          // the live build, or what latest is instead
	Previous    string          // "" when unknown
	Source      string          // where the live build came from (its marker's source: a git commit, a checksum); "" when unknown
	Builds      []string        // the builds on the host, oldest first
	Lock        *steps.LockInfo // nil when unlocked
	Notes       []string        // what is worth knowing
	Problems    []string        // what is wrong (drift): status exits 4
}

// Status is the fleet as `status` shows it.
type Status struct {
	FleetBuild string
	Hosts      []HostStatus // inventory order
}

// Problems lists every host's problems, one line each ("host: problem").
func (s Status) Problems() []string {
	var out []string
	for _, h := range s.Hosts {
		if h.Unreachable != nil {
			out = append(out, h.Host+": unreachable")
		}
		for _, p := range h.Problems {
			out = append(out, h.Host+": "+p)
		}
	}
	return out
}

// Assess compares every host with the fleet: targets as read (State nil
// where failed says why), verified the problems a re-hash found per host
// (when verify was asked for).
func Assess(targets []Target, failed map[string]error, verify bool, verified map[string][]string) Status {
	fleet, _ := FleetBuild(targets)
	// Hosts on the same build whose markers give different checksums.
	sums := map[string]map[string]bool{}
	for _, t := range targets {
		if st := t.State; st != nil && st.Latest != "" {
			if sums[st.Latest] == nil {
				sums[st.Latest] = map[string]bool{}
			}
			sums[st.Latest][st.Marker.Checksum] = true
		}
	}
	out := Status{FleetBuild: fleet}
	for _, t := range targets {
		hs := HostStatus{Host: t.Host.Name}
		if err, ok := failed[t.Host.Name]; ok || t.State == nil {
			if err == nil {
				err = fmt.Errorf("no state read")
			}
			hs.Unreachable = err
			out.Hosts = append(out.Hosts, hs)
			continue
		}
		st := t.State
		hs.Live, hs.Previous, hs.Builds, hs.Lock = st.Latest, st.Marker.Previous, slices.Sorted(slices.Values(st.Builds)), st.Lock
		hs.Source = liveSource(st)
		if st.Latest != "" && st.IsBad(st.Latest) {
			hs.Notes = append(hs.Notes, "the live build is marked bad (it failed a health check)")
		}
		problem := func(format string, a ...any) { hs.Problems = append(hs.Problems, fmt.Sprintf(format, a...)) }
		hs.Problems = append(hs.Problems, st.Problems...)
		switch {
		case st.Lock == nil:
		case st.Lock.NotOurs != "":
			problem("%s", st.Lock.Describe())
		case st.Lock.Stale():
			problem("stale lock of %s: the next up or rollback takes it over", st.Lock.Describe())
		}
		switch {
		case st.LatestKind == "dir":
			hs.Live = "(directory)"
			problem("latest is a real directory")
		case st.LatestKind == "link" && st.Latest == "":
			hs.Live = st.LatestLink
			problem("latest points outside builds/")
		}
		if st.Latest != "" && st.Latest != fleet {
			problem("DRIFT: the fleet runs %s", fleet)
		}
		if st.Latest != "" && st.Marker.Release != st.Latest {
			problem("DRIFT: no marker for the live build")
		} else if st.Latest != "" && len(sums[st.Latest]) > 1 {
			problem("DRIFT: checksum %s differs from other hosts on %s", short(st.Marker.Checksum), st.Latest)
		}
		if st.Manifest != "" && st.Manifest != st.Marker.Checksum {
			problem("DRIFT: the live build's manifest does not match its marker")
		}
		if len(st.Dirty) > 0 {
			problem("DRIFT: %d files changed on the host since the deploy (%s)", len(st.Dirty), firstFew(st.Dirty))
		}
		if p := verified[t.Host.Name]; len(p) > 0 {
			problem("DRIFT: %d files differ from the build's manifest (%s)", len(p), firstFew(p))
		} else if verify && st.Manifest == "" && st.Latest != "" {
			hs.Notes = append(hs.Notes, "cannot verify: the live build has no manifest")
		}
		if len(st.Staging) > 0 || len(st.Pending) > 0 {
			hs.Notes = append(hs.Notes, "leftovers of an unfinished run (the next up removes them)")
		}
		out.Hosts = append(out.Hosts, hs)
	}
	return out
}

func firstFew(list []string) string {
	if len(list) > 3 {
		return strings.Join(list[:3], ", ") + ", ..."
	}
	return strings.Join(list, ", ")
}

func short(sum string) string {
	if len(sum) > 19 {
		return sum[:19]
	}
	return sum
}

// lastLive is when id last went live on a host, by its own history.
func lastLive(st *steps.State, id string) time.Time {
	var t time.Time
	if st == nil {
		return t
	}
	for _, e := range st.History {
		if e.Release == id {
			t = e.Time
		}
	}
	return t
}
