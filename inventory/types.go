package inventory

import (
	"fmt"
	"net"
	"strconv"
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

	// HealthCheck runs on the hosts after the cutover; nil when there is none.
	HealthCheck *HealthCheck
	// OutsideSymlinks says what to do with a build's symlinks that point
	// outside it; RefuseOutside unless set.
	OutsideSymlinks SymlinkPolicy
	// LockLease is how long a run's lock stays valid without a refresh; 0
	// when the inventory sets none (the CLI then uses --lock-lease, default
	// DefaultLockLease). Never below MinLockLease.
	LockLease time.Duration

	// SSHConfig is the ssh_config file to read: "" for the usual ones
	// (~/.ssh/config, then /etc/ssh/ssh_config), None for none, or an absolute path.
	SSHConfig string

	roles []string // every role name of the environment, kept by Select; see Roles
}

// Lock lease bounds: a lock not refreshed within its lease is stale, and a
// shorter lease than the minimum would be lost to one slow round trip.
const (
	DefaultLockLease = 2 * time.Minute
	MinLockLease     = 10 * time.Second
)

// SymlinkPolicy is what a deploy does with symlinks of the build that point
// outside it.
type SymlinkPolicy string

// The symlink policies, as outside_symlinks: writes them.
const (
	RefuseOutside SymlinkPolicy = "refuse" // refuse the build, listing every such link
	CopyOutside   SymlinkPolicy = "copy"   // ship the target's content, which must exist locally
	KeepOutside   SymlinkPolicy = "keep"   // ship the link as it is: the hosts provide its target
)

// SharedPath is one entry of `shared`: data that outlives builds.
type SharedPath struct {
	Path string // cleaned relative path without trailing slash, e.g. "storage/sessions"
	Dir  bool   // written with a trailing slash in the inventory
}

// Hooks are the user's shell snippets, by phase (see HookPhase). Those of
// OnSuccess and OnFailure run locally and have no Once or Roles.
type Hooks struct {
	BeforeCutover []Hook
	AfterCutover  []Hook
	AfterRollback []Hook
	OnSuccess     []Hook
	OnFailure     []Hook
}

// Hook is one user command, run with `sh -c` on the hosts, or on this
// machine for a local phase.
type Hook struct {
	Run     string
	Once    bool          // only on the first host, in inventory order, among those with any of Roles
	Roles   []string      // only on hosts with any of these roles (sorted); none means every host
	Timeout time.Duration // DefaultHookTimeout unless set
	Line    int           // line in the inventory, for messages
}

// Host is one SSH endpoint of an environment. Its login fields hold only what
// the inventory says explicitly; an empty one is for ssh_config to supply, then
// the defaults (DefaultUser, DefaultPort, DefaultKnownHosts; FillDefaults
// applies them).
type Host struct {
	Name       string // exactly as the inventory writes it, used in every message
	Address    string // a host name, an IP address or an ssh_config Host alias
	Port       int    // 0: not set
	User       string // "": not set
	Root       string // absolute remote root for this host
	Identity   string // absolute path of a private key; "": not set (ssh_config's IdentityFile, the agent, ~/.ssh/id_*)
	KnownHosts string // absolute path of the known_hosts file; "": not set
	// Jump is the ProxyJump chain, hops separated by commas as ParseJump reads
	// them; "": not set, None: connect directly whatever ssh_config says.
	Jump string
	// StrictHostKeyChecking is "", StrictYes or StrictAcceptNew; never "no".
	StrictHostKeyChecking string
	IdentitiesOnly        *bool    // nil: not set
	Roles                 []string // sorted, distinct; none means the host has no role
	Line                  int      // line in the inventory, for messages
}

// Key identifies a host by what the inventory writes explicitly:
// [user@]address[:port], an IPv6 address in brackets, then " via JUMP" when a
// jump is set (one private address behind two bastions is two hosts). Within
// an environment no two hosts share a key. Hosts with different keys may still
// turn out to be one machine once ssh_config fills in users and ports.
func (h Host) Key() string {
	k := h.Address
	if isIPv6(k) {
		k = "[" + k + "]"
	}
	if h.Port != 0 {
		k += ":" + strconv.Itoa(h.Port)
	}
	if h.User != "" {
		k = h.User + "@" + k
	}
	if h.Jump != "" {
		k += " via " + h.Jump
	}
	return k
}

// Addr is the host's address in host:port form, as net.Dial wants it, with
// DefaultPort when the inventory sets no port: a caller that reads ssh_config
// sets Port (and Address, from HostName) before calling it.
func (h Host) Addr() string {
	port := h.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port))
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
