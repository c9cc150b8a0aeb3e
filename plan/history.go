package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/steps"
)

// FleetEvent is one run's switch of the fleet, merged from the hosts' live
// histories: the records of one run share its time, action and who.
type FleetEvent struct {
	Time   time.Time
	Action string // up, rollback, revert or observed (older "deploy" lines read as up)
	By     string
	// As most hosts recorded it. Previous, missing in older lines, is the
	// build of the host's record before; Source, not recorded by rollbacks
	// and reverts, is the source of the release's latest up.
	Release, Previous, Source string
	Hosts                     []string // hosts that recorded it, inventory order
	// Missing are hosts with no record of it although their history goes
	// back that far; Differ says, one per host, what hosts whose record of
	// this run says otherwise recorded ("web3: 20261125-101500 from 20261124-100000").
	Missing []string
	Differ  []string
}

// Disagree reports whether the hosts' records of this event differ.
func (e FleetEvent) Disagree() bool { return len(e.Missing) > 0 || len(e.Differ) > 0 }

// BuildOnHosts is one build as found on the hosts.
type BuildOnHosts struct {
	ID       string
	Hosts    []string  // hosts that have it, inventory order
	Live     []string  // hosts serving it
	Bad      bool      // marked bad on some host
	LastLive time.Time // when it last went live on any host (zero: never)
}

// FleetHistory is the fleet's live history, merged, and the builds on the
// hosts.
type FleetHistory struct {
	Hosts  []string // the hosts read (with a state), inventory order
	Events []FleetEvent
	Builds []BuildOnHosts // newest live first, then builds never live
	// Targets are the builds `rollback --to` could take, newest live
	// first; Bad ones only when named.
	Targets, BadTargets []string
}

// History merges the live histories of the targets read (those with a
// State), oldest event first.
func History(targets []Target) FleetHistory {
	var read []Target
	for _, t := range targets {
		if t.State != nil {
			read = append(read, t)
		}
	}
	out := FleetHistory{}
	// One run's records share its time (to the second), action and who
	// (with the pid); n tells apart runs a host recorded alike.
	type key struct {
		at         int64 // UnixNano
		action, by string
		n          int
	}
	type variant struct{ release, previous, source string }
	type group struct {
		time     time.Time
		variants []variant
		hosts    [][]string // per variant
	}
	groups := map[key]*group{}
	var order []key
	first := map[string]time.Time{} // each host's oldest record read
	for _, t := range read {
		name := t.Host.Name
		out.Hosts = append(out.Hosts, name)
		prev := ""
		seen := map[key]int{}
		for i, e := range t.State.History {
			if i == 0 {
				first[name] = e.Time
			}
			v := variant{e.Release, e.Previous, e.Source}
			if v.previous == "" && e.Kind() != steps.ActionObserved {
				v.previous = prev
			}
			prev = e.Release
			k := key{at: e.Time.UnixNano(), action: e.Kind(), by: e.By}
			k.n = seen[k]
			seen[key{at: k.at, action: k.action, by: k.by}]++
			g, ok := groups[k]
			if !ok {
				g = &group{time: e.Time}
				groups[k] = g
				order = append(order, k)
			}
			j := slices.Index(g.variants, v)
			if j < 0 {
				g.variants = append(g.variants, v)
				g.hosts = append(g.hosts, nil)
				j = len(g.variants) - 1
			}
			if !slices.Contains(g.hosts[j], name) {
				g.hosts[j] = append(g.hosts[j], name)
			}
		}
	}
	slices.SortStableFunc(order, func(a, b key) int { return groups[a].time.Compare(groups[b].time) })
	for _, k := range order {
		g := groups[k]
		best := 0 // the variant most hosts recorded
		for j := range g.variants {
			if len(g.hosts[j]) > len(g.hosts[best]) {
				best = j
			}
		}
		v := g.variants[best]
		ev := FleetEvent{Time: g.time, Action: k.action, By: k.by, Release: v.release, Previous: v.previous, Source: v.source}
		seen := map[string]bool{}
		for j := range g.variants {
			for _, h := range g.hosts[j] {
				seen[h] = true
			}
		}
		for _, h := range out.Hosts {
			switch {
			case slices.Contains(g.hosts[best], h):
				ev.Hosts = append(ev.Hosts, h)
			case seen[h]:
				j := slices.IndexFunc(g.hosts, func(hs []string) bool { return slices.Contains(hs, h) })
				ev.Hosts = append(ev.Hosts, h)
				ev.Differ = append(ev.Differ, fmt.Sprintf("%s: %s from %s", h, orNone(g.variants[j].release), orNone(g.variants[j].previous)))
			case !first[h].IsZero() && !g.time.Before(first[h]):
				ev.Missing = append(ev.Missing, h)
			}
		}
		out.Events = append(out.Events, ev)
	}
	// Rollbacks and reverts record no source: the release's latest up knows it.
	for i := range out.Events {
		ev := &out.Events[i]
		for j := i - 1; j >= 0 && ev.Source == "" && ev.Action != steps.ActionUp; j-- {
			if out.Events[j].Action == steps.ActionUp && out.Events[j].Release == ev.Release {
				ev.Source = out.Events[j].Source
			}
		}
	}
	out.Builds = buildsOnHosts(read)
	out.Targets, out.BadTargets = RollbackTargets(read)
	return out
}

// buildsOnHosts lists every build found on the hosts, newest live first.
func buildsOnHosts(read []Target) []BuildOnHosts {
	byID := map[string]*BuildOnHosts{}
	var ids []string
	for _, t := range read {
		st := t.State
		for _, id := range st.Builds {
			b, ok := byID[id]
			if !ok {
				b = &BuildOnHosts{ID: id}
				byID[id] = b
				ids = append(ids, id)
			}
			b.Hosts = append(b.Hosts, t.Host.Name)
			if st.Latest == id {
				b.Live = append(b.Live, t.Host.Name)
			}
			b.Bad = b.Bad || st.IsBad(id)
		}
	}
	for _, t := range read {
		for _, e := range t.State.History {
			if b, ok := byID[e.Release]; ok && e.Time.After(b.LastLive) {
				b.LastLive = e.Time
			}
		}
	}
	out := make([]BuildOnHosts, 0, len(ids))
	for _, id := range ids {
		out = append(out, *byID[id])
	}
	slices.SortFunc(out, func(a, b BuildOnHosts) int {
		if c := b.LastLive.Compare(a.LastLive); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	return out
}

func orNone(id string) string {
	if id == "" {
		return "none"
	}
	return id
}

// String is the event on one line, for people.
func (e FleetEvent) String() string {
	s := fmt.Sprintf("%s  %-8s %s", e.Time.UTC().Format("2006-01-02 15:04:05"), e.Action, orNone(e.Release))
	if e.Action != steps.ActionObserved {
		s += " from " + orNone(e.Previous)
	}
	s += "  by " + e.By
	if e.Source != "" {
		s += "  source " + e.Source
	}
	return s
}

// Problems says, on one line, how the hosts' records of the event differ.
func (e FleetEvent) Problems() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, "no record on "+strings.Join(e.Missing, ", "))
	}
	if len(e.Differ) > 0 {
		parts = append(parts, "recorded otherwise on "+strings.Join(e.Differ, "; "))
	}
	return strings.Join(parts, "; ")
}
