package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// NoSSHConfig, as the file of LoadSSHConfig or Resolve, reads no ssh_config
// at all (ssh -F none).
const NoSSHConfig = "none"

// SSHConfig is OpenSSH's client configuration, read once per run and shared
// by every host's Resolve. It is read-only once loaded, so safe for
// concurrent use.
type SSHConfig struct {
	files []configFile // in the order OpenSSH reads them: the first value found wins
	env   environment
}

type configFile struct {
	name string // as shown in messages
	cfg  *ssh_config.Config
}

// environment is what resolving depends on besides the config files.
type environment struct {
	home      string // the local user's home folder (%d, ~)
	localUser string // %u, and the login name by default
	getenv    func(string) string
	hostname  string // %L, %l
}

func osEnvironment() (environment, error) {
	env := environment{getenv: os.Getenv}
	u, err := user.Current()
	if err != nil {
		return env, fmt.Errorf("cannot tell the local user: %w", err)
	}
	env.localUser = u.Username
	env.home = u.HomeDir
	if h, err := os.UserHomeDir(); err == nil {
		env.home = h // $HOME, as tests and containers set it
	}
	env.hostname, _ = os.Hostname()
	return env, nil
}

// LoadSSHConfig reads ~/.ssh/config then /etc/ssh/ssh_config (either may be
// absent), as ssh(1) does; or only file when it is given (ssh -F; it must
// exist); or nothing when file is NoSSHConfig.
func LoadSSHConfig(file string) (*SSHConfig, error) {
	env, err := osEnvironment()
	if err != nil {
		return nil, err
	}
	var files []string
	switch file {
	case NoSSHConfig:
	case "":
		files = []string{filepath.Join(env.home, ".ssh", "config"), "/etc/ssh/ssh_config"}
	default:
		files = []string{expandTilde(file, env.home)}
	}
	return loadSSHConfig(files, file != "", env)
}

// loadSSHConfig parses files in order; a missing one is skipped unless it
// was named explicitly.
func loadSSHConfig(files []string, explicit bool, env environment) (*SSHConfig, error) {
	s := &SSHConfig{env: env}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ssh_config: %w", err)
		}
		flat, err := flatten(f, b, strings.HasPrefix(f, "/etc/ssh/"), env, 0)
		if err != nil {
			return nil, err
		}
		cfg, err := ssh_config.DecodeBytes(flat)
		if err != nil {
			return nil, fmt.Errorf("ssh_config %s: %v (fix it, or give fleetdeploy another file, or none, to read)", f, err)
		}
		s.files = append(s.files, configFile{name: f, cfg: cfg})
	}
	return s, nil
}

// maxIncludeDepth bounds Include nesting, as ssh(1) does, against loops.
const maxIncludeDepth = 16

// flatten prepares a config file for the parser, which reads neither what
// distributions ship nor every Include as ssh(1) does:
//   - an Include outside any block (or in a Host * / Match all block) is
//     replaced by the files it names, then the block it was in is opened
//     again, which is what ssh(1) does; one inside a narrower block is left
//     to the parser (it applies only when the block matches, as in ssh(1))
//     with its relative paths made absolute;
//   - Match lines are rewritten into what the parser knows: "final" and
//     "localuser" are decided here (Fedora and RHEL ship "Match final all"),
//     "canonical" never matches (hosts are not canonicalized), "originalhost"
//     and "host" match the name as given, comma lists become pattern lists;
//     "exec", "user" and the like are refused with file:line.
func flatten(name string, data []byte, system bool, env environment, depth int) ([]byte, error) {
	if depth > maxIncludeDepth {
		return nil, fmt.Errorf("ssh_config %s: Include nested more than %d deep (a loop?)", name, maxIncludeDepth)
	}
	var out strings.Builder
	header := "" // the line that opened the current block; "" before any
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		key, rest := configKeyword(line)
		where := fmt.Sprintf("ssh_config %s:%d", name, i+1)
		switch strings.ToLower(key) {
		case "host":
			header = line
		case "match":
			m, err := rewriteMatch(rest, env)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", where, err)
			}
			line, header = m, m
		case "include":
			var paths []string
			for _, pattern := range splitArgs(rest) {
				p := expandTilde(pattern, env.home)
				if !filepath.IsAbs(p) {
					if system {
						p = filepath.Join("/etc/ssh", p)
					} else {
						p = filepath.Join(env.home, ".ssh", p)
					}
				}
				paths = append(paths, p)
			}
			if !matchesAll(header) {
				line = "Include " + strings.Join(paths, " ")
				break
			}
			for _, p := range paths {
				matches, err := filepath.Glob(p)
				if err != nil {
					return nil, fmt.Errorf("%s: Include %s: %v", where, p, err)
				}
				for _, m := range matches {
					b, err := os.ReadFile(m)
					if err != nil {
						return nil, fmt.Errorf("%s: Include: %w", where, err)
					}
					inner, err := flatten(m, b, system, env, depth+1)
					if err != nil {
						return nil, err
					}
					out.Write(inner)
					out.WriteString("\n")
				}
			}
			if header == "" {
				header = "Host *"
			}
			line = header // back to the block the Include was in
		}
		out.WriteString(line)
		out.WriteString("\n")
	}
	return []byte(out.String()), nil
}

// configKeyword splits a config line into its keyword and value ("Key
// value" or "Key=value"); "" for blank and comment lines.
func configKeyword(line string) (string, string) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' {
		return "", ""
	}
	i := strings.IndexAny(t, " \t=")
	if i < 0 {
		return t, ""
	}
	rest := strings.TrimLeft(t[i:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	if j := strings.Index(rest, " #"); j >= 0 {
		rest = rest[:j]
	}
	return t[:i], strings.TrimSpace(rest)
}

// matchesAll reports whether a block header applies to every host.
func matchesAll(header string) bool {
	if header == "" {
		return true
	}
	key, rest := configKeyword(header)
	switch strings.ToLower(key) {
	case "host":
		return strings.TrimSpace(rest) == "*"
	case "match":
		return strings.EqualFold(strings.TrimSpace(rest), "all")
	}
	return false
}

// neverMatches is a block header no host matches.
const neverMatches = "Host !*"

// rewriteMatch turns a Match line's criteria into one the parser reads.
func rewriteMatch(criteria string, env environment) (string, error) {
	f := strings.Fields(criteria)
	var hosts []string
	all, never := false, false
	for i := 0; i < len(f); i++ {
		c := strings.ToLower(f[i])
		switch c {
		case "all":
			all = true
			continue
		case "final":
			continue
		case "canonical":
			never = true
			continue
		}
		if i+1 == len(f) {
			return "", fmt.Errorf("Match %s: %q needs an argument", criteria, c)
		}
		arg := f[i+1]
		i++
		switch c {
		case "host", "originalhost":
			if hosts != nil {
				return "", fmt.Errorf("Match %s: only one host criterion is supported", criteria)
			}
			hosts = strings.Split(arg, ",")
		case "localuser":
			if !matchList(env.localUser, arg) {
				never = true
			}
		default:
			return "", fmt.Errorf("Match %s: the %q criterion is not supported here (fleetdeploy runs no Match exec); put the hosts in a config file without it, or read none", criteria, c)
		}
	}
	switch {
	case never:
		return neverMatches, nil
	case hosts != nil:
		return "Match host " + strings.Join(hosts, " "), nil
	case all || len(f) > 0:
		return "Match all", nil
	}
	return "", errors.New("Match without criteria")
}

// matchList matches s against a comma-separated ssh_config pattern list.
func matchList(s, list string) bool {
	matched := false
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		if ok, _ := filepath.Match(strings.TrimPrefix(p, "!"), s); ok {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

// Files are the ssh_config files that were read, for messages.
func (s *SSHConfig) Files() []string {
	names := make([]string, len(s.files))
	for i, f := range s.files {
		names[i] = f.name
	}
	return names
}

// get is the first value of key for alias (OpenSSH: the first obtained value wins).
func (s *SSHConfig) get(alias, key string) (string, string) {
	for _, f := range s.files {
		if v, err := f.cfg.Get(alias, key); err == nil && v != "" {
			return v, f.name
		}
	}
	return "", ""
}

// getAll is every value of a key that accumulates (IdentityFile, CertificateFile).
func (s *SSHConfig) getAll(alias, key string) []string {
	var all []string
	for _, f := range s.files {
		if v, err := f.cfg.GetAll(alias, key); err == nil {
			all = append(all, v...)
		}
	}
	return all
}

// Overrides are what the inventory or the command line say explicitly about
// one host. They win over ssh_config, which wins over the defaults; a zero
// field means "not said".
type Overrides struct {
	Name     string // the host as the inventory writes it, for messages; the alias when ""
	HostName string // address to connect to, instead of ssh_config's HostName or the alias itself
	Port     int
	User     string
	// Identity is a key file offered before ssh_config's IdentityFiles; a
	// missing or unreadable one is an error. It applies to jump hosts too.
	Identity string
	// KnownHosts replaces ssh_config's UserKnownHostsFile (jump hosts included).
	KnownHosts string
	// Jump is a ProxyJump value ("[user@]host[:port],..."), or "none" to
	// ignore ssh_config's ProxyJump and ProxyCommand.
	Jump string
	// AcceptNewHostKeys records the keys of hosts not yet in known_hosts
	// (--accept-new-host-keys), whatever ssh_config says.
	AcceptNewHostKeys bool
	// Given by a command-line flag: zero means not given, so ssh_config's
	// ConnectTimeout and ServerAliveInterval/CountMax apply, then the defaults.
	// They apply to every hop.
	ConnectTimeout    time.Duration
	KeepaliveInterval time.Duration
	KeepaliveMax      int
}

// Resolve loads the ssh_config files (see LoadSSHConfig) and resolves one host;
// a fleet should load once and call SSHConfig.Resolve for each host.
func Resolve(alias string, o Overrides, configFile string) (Config, error) {
	s, err := LoadSSHConfig(configFile)
	if err != nil {
		return Config{}, err
	}
	return s.Resolve(alias, o)
}

// maxJumpDepth bounds ProxyJump chains, which ssh_config can make circular.
const maxJumpDepth = 8

// Resolve says how to reach the host named alias, as ssh(1) would, with o
// taking precedence: HostName, User, Port, IdentityFile, IdentitiesOnly,
// IdentityAgent, CertificateFile, ProxyJump (every jump host resolved through
// ssh_config in turn), ProxyCommand, UserKnownHostsFile, GlobalKnownHostsFile,
// HostKeyAlias, StrictHostKeyChecking, HashKnownHosts, BatchMode,
// ConnectTimeout and ServerAliveInterval/CountMax. StrictHostKeyChecking no
// (or off) is read as accept-new: host keys are always verified. A
// ServerAliveInterval of 0 leaves the default: keepalives are never off.
// ProxyJump wins over ProxyCommand when a host has both (ssh(1) takes the
// first one found). It does no network I/O: a name that resolves nowhere
// is reported by Dial, naming the files read here.
func (s *SSHConfig) Resolve(alias string, o Overrides) (Config, error) {
	return s.resolve(alias, o, 0, nil)
}

func (s *SSHConfig) resolve(alias string, o Overrides, depth int, path []string) (Config, error) {
	if alias == "" {
		return Config{}, errors.New("no host name to resolve")
	}
	cfg, err := s.resolveOne(alias, o)
	if err != nil {
		return Config{}, err
	}
	jump, jumpFrom := o.Jump, "the inventory"
	if jump == "" {
		jump, jumpFrom = s.get(cfg.alias, "ProxyJump")
	}
	if jump == "" || strings.EqualFold(jump, "none") {
		if o.Jump == "" {
			if pc, _ := s.get(cfg.alias, "ProxyCommand"); pc != "" && !strings.EqualFold(pc, "none") {
				cfg.ProxyCommand, err = expandTokens(pc, cfg.tokens(s.env), "hnpr", true)
				if err != nil {
					return Config{}, fmt.Errorf("%s: ProxyCommand: %w", alias, err)
				}
			}
		}
		return cfg, nil
	}
	if depth >= maxJumpDepth {
		return Config{}, fmt.Errorf("ProxyJump chain too long or circular: %s", strings.Join(append(path, alias), " -> "))
	}
	hops, err := parseJump(jump)
	if err != nil {
		return Config{}, fmt.Errorf("%s: ProxyJump %q (from %s): %w", alias, jump, jumpFrom, err)
	}
	// As ssh -J a,b: b is reached through a, and a through whatever
	// ssh_config says for a; only the first hop's own ProxyJump applies.
	for i, h := range hops {
		ho := Overrides{
			Port: h.port, User: h.user, Identity: o.Identity, KnownHosts: o.KnownHosts,
			AcceptNewHostKeys: o.AcceptNewHostKeys, ConnectTimeout: o.ConnectTimeout,
			KeepaliveInterval: o.KeepaliveInterval, KeepaliveMax: o.KeepaliveMax,
		}
		var hop Config
		if i == 0 {
			hop, err = s.resolve(h.host, ho, depth+1, append(path, alias))
		} else {
			hop, err = s.resolveOne(h.host, ho)
		}
		if err != nil {
			return Config{}, fmt.Errorf("jump host %s of %s: %w", h.host, alias, err)
		}
		jumps := hop.Jumps
		hop.Jumps = nil
		cfg.Jumps = append(cfg.Jumps, jumps...)
		cfg.Jumps = append(cfg.Jumps, hop)
	}
	return cfg, nil
}

// resolveOne resolves a host's own settings, leaving out how to reach it.
func (s *SSHConfig) resolveOne(alias string, o Overrides) (Config, error) {
	env := s.env
	alias = strings.ToLower(alias) // as ssh(1) does before matching Host patterns
	cfg := Config{Name: o.Name, alias: alias, sshConfigFiles: s.Files()}
	if cfg.Name == "" {
		cfg.Name = alias
	}
	bad := func(key, val, from string, err error) error {
		return fmt.Errorf("%s: %s %q in %s: %v", alias, key, val, from, err)
	}

	host := o.HostName
	if host == "" {
		if v, from := s.get(alias, "HostName"); v != "" {
			h, err := expandTokens(v, map[byte]string{'h': alias}, "h", false)
			if err != nil {
				return Config{}, bad("HostName", v, from, err)
			}
			host, cfg.hostNameFrom = strings.ToLower(h), from
		} else {
			host = alias
		}
	}
	cfg.host = host

	port := o.Port
	if port == 0 {
		port = 22
		if v, from := s.get(alias, "Port"); v != "" {
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return Config{}, bad("Port", v, from, errors.New("not a port number"))
			}
			port = p
		}
	}
	cfg.Addr = net.JoinHostPort(host, strconv.Itoa(port))

	cfg.User = o.User
	if cfg.User == "" {
		cfg.User, _ = s.get(alias, "User")
	}
	if cfg.User == "" {
		cfg.User = env.localUser
	}
	tokens := cfg.tokens(env)

	yes := func(key string) (bool, error) {
		v, from := s.get(alias, key)
		switch strings.ToLower(v) {
		case "", "no":
			return false, nil
		case "yes":
			return true, nil
		}
		return false, bad(key, v, from, errors.New("want yes or no"))
	}
	var err error
	if cfg.IdentitiesOnly, err = yes("IdentitiesOnly"); err != nil {
		return Config{}, err
	}
	if cfg.HashKnownHosts, err = yes("HashKnownHosts"); err != nil {
		return Config{}, err
	}
	if cfg.BatchMode, err = yes("BatchMode"); err != nil {
		return Config{}, err
	}

	if o.Identity != "" {
		cfg.Identity = expandTilde(o.Identity, env.home)
	}
	for _, v := range s.getAll(alias, "IdentityFile") {
		if strings.EqualFold(v, "none") {
			continue
		}
		p, err := expandPath(v, tokens, env)
		if err != nil {
			return Config{}, bad("IdentityFile", v, "ssh_config", err)
		}
		cfg.IdentityFiles = appendNew(cfg.IdentityFiles, p)
	}
	for _, v := range s.getAll(alias, "CertificateFile") {
		p, err := expandPath(v, tokens, env)
		if err != nil {
			return Config{}, bad("CertificateFile", v, "ssh_config", err)
		}
		cfg.CertificateFiles = appendNew(cfg.CertificateFiles, p)
	}

	switch v, from := s.get(alias, "IdentityAgent"); {
	case v == "":
		cfg.Agent = env.getenv("SSH_AUTH_SOCK")
	case strings.EqualFold(v, "none"):
	case v == "SSH_AUTH_SOCK":
		cfg.Agent = env.getenv("SSH_AUTH_SOCK")
	case strings.HasPrefix(v, "$"):
		cfg.Agent = env.getenv(strings.Trim(v[1:], "{}"))
	default:
		if cfg.Agent, err = expandPath(v, tokens, env); err != nil {
			return Config{}, bad("IdentityAgent", v, from, err)
		}
	}

	if o.KnownHosts != "" {
		cfg.KnownHosts = expandTilde(o.KnownHosts, env.home)
	} else if v, from := s.get(alias, "UserKnownHostsFile"); v != "" {
		for _, f := range splitArgs(v) {
			if strings.EqualFold(f, "none") {
				continue
			}
			p, err := expandPath(f, tokens, env)
			if err != nil {
				return Config{}, bad("UserKnownHostsFile", v, from, err)
			}
			cfg.KnownHostsFiles = appendNew(cfg.KnownHostsFiles, p)
		}
		if len(cfg.KnownHostsFiles) == 0 {
			cfg.KnownHostsFiles = []string{os.DevNull}
		}
	}
	if v, from := s.get(alias, "GlobalKnownHostsFile"); v != "" {
		for _, f := range splitArgs(v) {
			if strings.EqualFold(f, "none") {
				continue
			}
			p, err := expandPath(f, tokens, env)
			if err != nil {
				return Config{}, bad("GlobalKnownHostsFile", v, from, err)
			}
			cfg.GlobalKnownHostsFiles = appendNew(cfg.GlobalKnownHostsFiles, p)
		}
		if len(cfg.GlobalKnownHostsFiles) == 0 {
			cfg.GlobalKnownHostsFiles = []string{os.DevNull}
		}
	}
	if v, from := s.get(alias, "HostKeyAlias"); v != "" {
		if strings.ContainsAny(v, " \t,") {
			return Config{}, bad("HostKeyAlias", v, from, errors.New("one name without spaces or commas"))
		}
		cfg.HostKeyAlias = strings.ToLower(v)
	}

	switch v, from := s.get(alias, "StrictHostKeyChecking"); strings.ToLower(v) {
	case "", "yes", "ask":
		cfg.HostKeys = StrictHostKeys
	case "accept-new", "no", "off":
		cfg.HostKeys = AcceptNewHostKeys
	default:
		return Config{}, bad("StrictHostKeyChecking", v, from, errors.New("want yes, ask, accept-new, no or off"))
	}
	if o.AcceptNewHostKeys {
		cfg.HostKeys = AcceptNewHostKeys
	}

	cfg.ConnectTimeout = o.ConnectTimeout
	if cfg.ConnectTimeout == 0 {
		if v, from := s.get(alias, "ConnectTimeout"); v != "" && v != "none" {
			d, err := parseSSHTime(v)
			if err != nil {
				return Config{}, bad("ConnectTimeout", v, from, err)
			}
			cfg.ConnectTimeout = d
		}
	}
	cfg.KeepaliveInterval = o.KeepaliveInterval
	if cfg.KeepaliveInterval == 0 {
		if v, from := s.get(alias, "ServerAliveInterval"); v != "" {
			d, err := parseSSHTime(v)
			if err != nil {
				return Config{}, bad("ServerAliveInterval", v, from, err)
			}
			cfg.KeepaliveInterval = d // 0 leaves the default: keepalives are never off
		}
	}
	cfg.KeepaliveMax = o.KeepaliveMax
	if cfg.KeepaliveMax == 0 {
		if v, from := s.get(alias, "ServerAliveCountMax"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return Config{}, bad("ServerAliveCountMax", v, from, errors.New("not a count"))
			}
			cfg.KeepaliveMax = n
		}
	}
	return cfg, nil
}

// tokens are the values of the % tokens ssh_config allows in paths and commands.
func (c *Config) tokens(env environment) map[byte]string {
	host, port, _ := net.SplitHostPort(c.Addr)
	short, _, _ := strings.Cut(env.hostname, ".")
	k := c.HostKeyAlias
	if k == "" {
		k = host
	}
	return map[byte]string{
		'd': env.home, 'u': env.localUser, 'i': strconv.Itoa(os.Getuid()),
		'h': host, 'p': port, 'r': c.User, 'n': c.alias, 'k': k,
		'L': short, 'l': env.hostname,
	}
}

// expandTokens replaces %X tokens by their values; allowed lists the tokens
// the keyword accepts ("" for all of tokens). %% is always a %. With quote
// (a ProxyCommand), a value with characters a shell would act on is
// single-quoted, so that no host or user name can inject a command; plain
// values stay bare, so a command that quotes its tokens itself still works.
func expandTokens(s string, tokens map[byte]string, allowed string, quote bool) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", errors.New("ends with a lone %")
		}
		i++
		t := s[i]
		if t == '%' {
			b.WriteByte('%')
			continue
		}
		v, ok := tokens[t]
		if !ok || (allowed != "" && !strings.ContainsRune(allowed, rune(t))) {
			return "", fmt.Errorf("token %%%c is not supported here", t)
		}
		if quote && !shellSafe(v) {
			v = Quote(v)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// shellSafe reports whether s means itself to a shell, unquoted.
func shellSafe(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:@%+=,/[]", r)) {
			return false
		}
	}
	return true
}

// expandPath expands ~, ${VAR} and % tokens in a file name.
func expandPath(p string, tokens map[byte]string, env environment) (string, error) {
	p = expandTilde(p, env.home)
	var err error
	p = os.Expand(p, func(name string) string {
		v := env.getenv(name)
		if v == "" && err == nil {
			err = fmt.Errorf("environment variable %s is not set", name)
		}
		return v
	})
	if err != nil {
		return "", err
	}
	return expandTokens(p, tokens, "", false)
}

func expandTilde(p, home string) string {
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// splitArgs splits a value holding several words, honouring double quotes.
func splitArgs(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case (r == ' ' || r == '\t') && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// parseSSHTime parses OpenSSH's time format: seconds, or a sequence of
// numbers with units s, m, h, d, w ("1m30s").
func parseSSHTime(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	var total time.Duration
	rest := strings.ToLower(s)
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, errors.New("not a time (seconds, or e.g. 1m30s)")
		}
		n, _ := strconv.Atoi(rest[:i])
		unit := time.Second
		rest = rest[i:]
		if rest != "" {
			switch rest[0] {
			case 's':
			case 'm':
				unit = time.Minute
			case 'h':
				unit = time.Hour
			case 'd':
				unit = 24 * time.Hour
			case 'w':
				unit = 7 * 24 * time.Hour
			default:
				return 0, errors.New("not a time (seconds, or e.g. 1m30s)")
			}
			rest = rest[1:]
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

// jumpHop is one element of a ProxyJump value.
type jumpHop struct {
	user, host string
	port       int
}

// parseJump parses "[user@]host[:port]" and "ssh://[user@]host[:port]"
// elements separated by commas.
func parseJump(s string) ([]jumpHop, error) {
	var hops []jumpHop
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		part = strings.TrimPrefix(part, "ssh://")
		if part == "" {
			return nil, errors.New("empty element")
		}
		var h jumpHop
		if at := strings.LastIndexByte(part, '@'); at >= 0 {
			h.user, part = part[:at], part[at+1:]
			if h.user == "" {
				return nil, errors.New("empty user name")
			}
		}
		h.host = part
		if host, port, err := net.SplitHostPort(part); err == nil {
			p, err := strconv.Atoi(port)
			if err != nil || p < 1 || p > 65535 {
				return nil, fmt.Errorf("bad port %q", port)
			}
			h.host, h.port = host, p
		} else if strings.HasPrefix(part, "[") && strings.HasSuffix(part, "]") {
			h.host = part[1 : len(part)-1]
		}
		if h.host == "" || strings.ContainsAny(h.host, " \t/") || strings.HasPrefix(h.host, "-") {
			return nil, fmt.Errorf("bad host %q", h.host)
		}
		hops = append(hops, h)
	}
	return hops, nil
}
