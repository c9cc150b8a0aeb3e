package report

import (
	"fmt"
	"io"
	"strings"
)

// PlanView is a dry run for people: per host, the build it would switch
// to, what it would be sent, its hooks, what cleanup would remove, and
// what stands in the way.
type PlanView struct {
	Action  string // "deploy", "rollback"
	App     string
	Env     string
	Release string
	// Build says what is deployed: its checksum and size, or how it is made.
	Build string
	Hosts []PlanHost // inventory order
	// Next is what to type to do it, or to see more.
	Next string
}

// PlanHost is one host in a dry run.
type PlanHost struct {
	PlannedHost
	Hooks    []string // "before_cutover: php artisan migrate"
	Remove   []string // builds the cleanup removes
	Notes    []string
	Problems []string
}

// WritePlan writes the view. Hosts that would see exactly the same thing
// share one block: 200 alike hosts make one block, not 200.
func WritePlan(w io.Writer, v PlanView) {
	what := strings.TrimSpace(v.Action + " " + v.App + " " + v.Release)
	fmt.Fprintf(w, "%s to %s: %s\n", what, v.Env, count(len(v.Hosts), "host", "hosts"))
	if v.Build != "" {
		fmt.Fprintf(w, "build %s\n", v.Build)
	}
	type group struct {
		hosts []string
		block string
	}
	var groups []*group
	byBlock := map[string]*group{}
	problems, troubled := 0, 0
	for _, h := range v.Hosts {
		b := hostBlock(v, h)
		g, ok := byBlock[b]
		if !ok {
			g = &group{block: b}
			byBlock[b] = g
			groups = append(groups, g)
		}
		g.hosts = append(g.hosts, h.Host)
		problems += len(h.Problems)
		if len(h.Problems) > 0 {
			troubled++
		}
	}
	for _, g := range groups {
		head := names(g.hosts, 5)
		if len(g.hosts) > 1 {
			head += fmt.Sprintf(" (%d hosts)", len(g.hosts))
		}
		fmt.Fprintf(w, "\n%s\n%s", head, g.block)
	}
	fmt.Fprintln(w)
	if problems > 0 {
		run := "up"
		if v.Action == "rollback" {
			run = "rollback"
		}
		fmt.Fprintf(w, "%s on %s: %s would stop before changing any host\n", count(problems, "problem", "problems"),
			count(troubled, "host", "hosts"), run)
		return
	}
	fmt.Fprintf(w, "nothing in the way")
	if v.Next != "" {
		fmt.Fprintf(w, ": %s", v.Next)
	}
	fmt.Fprintln(w)
}

// hostBlock is what a dry run says of one host, without its name.
func hostBlock(v PlanView, h PlanHost) string {
	var b strings.Builder
	row := func(label, text string) {
		fmt.Fprintf(&b, "  %-9s %s\n", label, text)
	}
	live := h.Live
	if live == "" {
		live = "none"
	}
	switch {
	case v.Action == "rollback":
		row("live", fmt.Sprintf("%s, back to %s", live, v.Release))
	case h.Live == "":
		row("live", "none: its first deploy, of "+v.Release)
	default:
		row("live", fmt.Sprintf("%s, replaced by %s", live, v.Release))
	}
	switch {
	case v.Action == "rollback":
		row("sends", "nothing: the build is on the host")
	case !h.Known && h.From == "":
		row("sends", "the whole build (its size is known once built)")
	case !h.Known:
		row("sends", "the files that changed since "+h.From+" (known once built)")
	default:
		sent := fmt.Sprintf("%s, %s", count(h.Files, "file", "files"), Bytes(h.Bytes))
		if h.Gzip {
			sent += " before gzip"
		}
		switch {
		case h.From == "":
			row("sends", "the whole build: "+sent)
		case h.Files == 0:
			row("sends", "no file: every file is reused from "+h.From)
		default:
			row("sends", fmt.Sprintf("%s; the rest reused from %s", sent, h.From))
		}
	}
	lines := func(label string, list []string, none string) {
		if len(list) == 0 {
			if none != "" {
				row(label, none)
			}
			return
		}
		for i, l := range list {
			if i > 0 {
				label = ""
			}
			row(label, l)
		}
	}
	lines("hooks", h.Hooks, "none")
	if v.Action != "rollback" {
		removes := []string{}
		if len(h.Remove) > 0 {
			removes = append(removes, "removes "+strings.Join(h.Remove, ", "))
		}
		lines("cleanup", removes, "removes nothing")
	}
	lines("note", h.Notes, "")
	lines("PROBLEM", h.Problems, "")
	return b.String()
}
