package inventory

import (
	"fmt"
	"strings"
	"time"
)

// DefaultKeep is how many live builds a host keeps when the inventory says nothing.
const DefaultKeep = 5

// DefaultHookTimeout bounds a hook that sets no timeout of its own.
const DefaultHookTimeout = 5 * time.Minute

// Environment is one resolved environment: every top-level setting merged with
// the environment's overrides, paths made absolute, hosts in inventory order.
type Environment struct {
	Name string // environment name as given on the command line
	File string // inventory file, for messages

	App     string
	Source  string   // absolute local path of the folder that becomes the build
	Build   []string // local commands run in a scratch copy of Source
	Exclude []string // relative paths left out of the build (cleaned, no trailing slash)
	Root    string   // default absolute remote root
	Keep    int      // live builds kept per host (>= 1)
	Shared  []SharedPath
	Hooks   Hooks
	Hosts   []Host // inventory order; never empty
}

// SharedPath is one entry of `shared`: data that outlives builds.
type SharedPath struct {
	Path string // cleaned relative path without trailing slash, e.g. "storage/sessions"
	Dir  bool   // written with a trailing slash in the inventory
}

// Hooks are the user's shell snippets around the cutover.
type Hooks struct {
	BeforeCutover []Hook
	AfterCutover  []Hook
}

// Hook is one user command, run remotely with `sh -c`.
type Hook struct {
	Run     string
	Once    bool          // only on the first host in inventory order
	Timeout time.Duration // DefaultHookTimeout unless set
	Line    int           // line in the inventory, for messages
}

// Host is one SSH endpoint of an environment.
type Host struct {
	Name       string // exactly as the inventory writes it, used in every message
	Address    string
	Port       int
	User       string
	Root       string // absolute remote root for this host
	Identity   string // absolute path of a private key; "" means agent and ~/.ssh/id_*
	KnownHosts string // absolute path of the known_hosts file
	Line       int    // line in the inventory, for messages
}

// Key identifies a host uniquely: the same address on two ports is two hosts.
func (h Host) Key() string { return fmt.Sprintf("%s@%s:%d", h.User, h.Address, h.Port) }

// Addr is the host's address in host:port form, as net.Dial wants it.
func (h Host) Addr() string {
	if strings.Contains(h.Address, ":") {
		return fmt.Sprintf("[%s]:%d", h.Address, h.Port)
	}
	return fmt.Sprintf("%s:%d", h.Address, h.Port)
}

// Problem is one thing wrong with an inventory, at a place in the file.
type Problem struct {
	File string
	Line int // 0 when the problem has no line (e.g. unreadable file)
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// Errors lists every problem found in an inventory, so a user fixes them all in one go.
type Errors []Problem

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
