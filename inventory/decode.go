package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fleetdeploy/fleetdeploy/internal/suggest"
	"gopkg.in/yaml.v3"
)

// The inventory is walked as a yaml.Node tree rather than decoded into structs,
// so that every problem, an unknown key included, carries its line and the walk
// goes on after it.

// Keys a settings block accepts, at the top level and in an environment.
var settingKeys = []string{"app", "source", "build", "exclude", "root", "keep", "hook_timeout", "shared", "hooks", "ssh",
	"health_check", "outside_symlinks", "lock_lease"}

var (
	topKeys  = append(slices.Clone(settingKeys), "environments")
	envKeys  = append(slices.Clone(settingKeys), "hosts", "roles")
	hostKeys = append(append([]string{"address"}, sshLoginKeys...), "root", "roles")
)

// maxAliases bounds alias expansion, so a small file cannot make the walk explode.
const maxAliases = 1000

// opt is a setting that may be absent, so an environment overrides only what it writes.
type opt[T any] struct {
	set bool
	val T
}

func some[T any](v T) opt[T] { return opt[T]{set: true, val: v} }

// or is o overridden by over when over is set.
func (o opt[T]) or(over opt[T]) opt[T] {
	if over.set {
		return over
	}
	return o
}

// settings is one block of settings as written, at the top level or in an environment.
type settings struct {
	app, source, root opt[string]
	build, exclude    opt[[]string]
	keep              opt[int]
	hookTimeout       opt[time.Duration]
	shared            opt[[]SharedPath]
	hooks             [len(phases)]opt[[]Hook] // by phase; a zero Timeout is filled in by Resolve
	login             login
	sshConfig         opt[string]
	health            health
	outsideSymlinks   opt[SymlinkPolicy]
	lockLease         opt[time.Duration]
}

// merge overrides s with env: maps merge key by key (each hook list, ssh key
// and health_check key is its own setting), lists and scalars replace.
func (s settings) merge(env settings) settings {
	return settings{
		app:             s.app.or(env.app),
		source:          s.source.or(env.source),
		root:            s.root.or(env.root),
		build:           s.build.or(env.build),
		exclude:         s.exclude.or(env.exclude),
		keep:            s.keep.or(env.keep),
		hookTimeout:     s.hookTimeout.or(env.hookTimeout),
		shared:          s.shared.or(env.shared),
		hooks:           mergeHooks(s.hooks, env.hooks),
		login:           s.login.merge(env.login),
		sshConfig:       s.sshConfig.or(env.sshConfig),
		health:          s.health.merge(env.health),
		outsideSymlinks: s.outsideSymlinks.or(env.outsideSymlinks),
		lockLease:       s.lockLease.or(env.lockLease),
	}
}

// decoder collects problems while walking the tree.
type decoder struct {
	file     string
	dir      string // absolute directory of file, the anchor of relative local paths
	problems Errors
	aliases  int
}

func (d *decoder) addf(line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// errors returns the problems in file order.
func (d *decoder) errors() Errors {
	sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
	return d.problems
}

var (
	yamlLine   = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	yamlAnchor = regexp.MustCompile(`^(?:unknown anchor '(.*)' referenced|anchor '(.*)' value contains itself)$`)
)

// parserProblems are yaml.v3's parser errors: it numbers their lines from 0,
// and its scanner's from 1.
var parserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// readerProblems are yaml.v3's errors about the bytes themselves, which it reports without a line.
var readerProblems = []string{
	"control characters are not allowed",
	"expected low surrogate area",
	"incomplete UTF-16",
	"incomplete UTF-8 octet sequence",
	"input error",
	"invalid Unicode character",
	"invalid leading UTF-8 octet",
	"invalid length of a UTF-8 sequence",
	"invalid trailing UTF-8 octet",
	"unexpected low surrogate area",
}

// parseYAML decodes the single document of data; nil when there is none or it is not YAML.
func (d *decoder) parseYAML(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 is not ours to fix: a panic on some input is still a bad file, not a crash.
		if r := recover(); r != nil {
			d.addf(0, "cannot parse YAML: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.yamlError(err, data)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.yamlError(err, data)
		return nil
	case len(next.Content) > 0 && !isNull(next.Content[0]):
		d.addf(next.Line, "a second YAML document: an inventory is one document")
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil
	}
	return doc.Content[0]
}

// yamlError turns a yaml.v3 error into a problem at the right line, which
// yaml.v3 does not always give: it is off by one for parser errors, and
// missing for errors on the first line, for bad bytes and for unknown anchors.
func (d *decoder) yamlError(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	switch {
	case slices.Contains(parserProblems, msg):
		line++
	case slices.ContainsFunc(readerProblems, func(p string) bool { return strings.HasPrefix(msg, p) }):
		line = badByteLine(data)
	case yamlAnchor.MatchString(msg):
		m := yamlAnchor.FindStringSubmatch(msg)
		line = aliasLine(data, m[1]+m[2])
	case line == 0:
		line = 1 // a scanner error on the first line
	}
	if msg == "mapping values are not allowed in this context" {
		msg += colonHint(data, line)
	}
	d.addf(line, "invalid YAML: %s", msg)
}

// colonHint explains YAML's "mapping values are not allowed" when line holds
// a value with ': ' in it (`run: echo live: now`), showing it quoted; "" when
// the error has another cause, such as a key indented too far.
func colonHint(data []byte, line int) string {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return ""
	}
	text := strings.TrimSpace(string(lines[line-1]))
	item := ""
	if rest, ok := strings.CutPrefix(text, "- "); ok {
		item, text = "- ", strings.TrimSpace(rest)
	}
	key, val, found := strings.Cut(text, ": ")
	if !found || !strings.Contains(val, ": ") && !strings.HasSuffix(val, ":") {
		return ""
	}
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	fix := item + quote(text) // a command in a list: quote it whole
	if isKeyLike(key) {
		fix = item + key + ": " + quote(val)
	}
	if badText(fix, false) != "" {
		return ""
	}
	return " (a value with ': ' in it must be quoted: " + fix + ")"
}

// isKeyLike is true for the keys an inventory uses: letters, digits, _ and -.
func isKeyLike(s string) bool {
	for _, r := range s {
		if !isAlnum(r) && r != '_' && r != '-' {
			return false
		}
	}
	return s != ""
}

// badByteLine is the line of the first byte YAML does not allow; 0 if there is none.
func badByteLine(data []byte) int {
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		data = data[size:]
		switch {
		case r == '\n':
			line++
		case r == utf8.RuneError && size == 1,
			r < 0x20 && r != '\t' && r != '\r',
			r >= 0x7f && r < 0xa0 && r != 0x85,
			r == 0xfffe || r == 0xffff:
			return line
		}
	}
	return 0
}

// aliasLine is the line where *name is first written; 0 if it is not found.
func aliasLine(data []byte, name string) int {
	i := bytes.Index(data, []byte("*"+name))
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// deref follows aliases; nil when the alias budget is spent (a problem is then recorded).
func (d *decoder) deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		d.aliases++
		if d.aliases > maxAliases {
			if d.aliases == maxAliases+1 {
				d.addf(n.Line, "too many aliases (more than %d)", maxAliases)
			}
			return nil
		}
		if n.Alias == nil {
			d.addf(n.Line, "alias *%s points nowhere", n.Value)
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what was found, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a map"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode && !isNull(n):
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// prefixed puts the key path in front of a message, as "ssh.port: ...".
func prefixed(key, msg string) string {
	if key == "" {
		return msg
	}
	return key + ": " + msg
}

// pair is one key of a mapping with its (dereferenced) value.
type pair struct {
	key  string
	line int
	val  *yaml.Node
}

// mapping lists the pairs of n, reporting duplicate and non-scalar keys; an empty value is an empty map.
func (d *decoder) mapping(n *yaml.Node, key string) ([]pair, bool) {
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.addf(n.Line, "%s", prefixed(key, "expected a map, got "+describe(n)))
		return nil, false
	}
	seen := map[string]int{}
	var out []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.deref(n.Content[i]), d.deref(n.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		switch {
		case k.Kind != yaml.ScalarNode:
			d.addf(k.Line, "%s", prefixed(key, "expected a key, got "+describe(k)))
			continue
		case k.ShortTag() == "!!merge":
			d.addf(k.Line, "%s", prefixed(key, "merge keys (<<) are not supported; environments already inherit the top-level settings"))
			continue
		}
		if msg := badText(k.Value, false); msg != "" {
			d.addf(k.Line, "%s", prefixed(key, fmt.Sprintf("key %q: %s", k.Value, msg)))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.addf(k.Line, "%s", prefixed(key, fmt.Sprintf("duplicate key %q (first on line %d)", k.Value, first)))
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, pair{key: k.Value, line: k.Line, val: v})
	}
	return out, true
}

// unknown reports a key that is not one of known, with the closest known key as a hint.
func (d *decoder) unknown(p pair, key string, known []string) {
	msg := fmt.Sprintf("unknown key %q", p.key)
	if s := closestKey(p.key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	d.addf(p.line, "%s", prefixed(key, msg))
}

// closestKey returns the known key closest to k, if it is close enough to be a typo.
func closestKey(k string, known []string) string {
	best, bestDist := "", 3
	if len(k) > 40 {
		return ""
	}
	for _, c := range known {
		if dist := suggest.Distance(strings.ToLower(k), c); dist < bestDist && dist < len(c) {
			best, bestDist = c, dist
		}
	}
	return best
}

// inventory walks the top-level mapping into inv.
func (d *decoder) inventory(root *yaml.Node, inv *Inventory) {
	if root.Kind != yaml.MappingNode {
		d.addf(root.Line, "expected a map of settings (app, source, root, environments, ...), got %s", describe(root))
		return
	}
	pairs, _ := d.mapping(root, "")
	haveEnvs := false
	for _, p := range pairs {
		switch {
		case d.setting(&inv.top, p):
		case p.key == "environments":
			haveEnvs = true
			inv.envLine = p.line
			d.environments(p, inv)
		case p.key == "hosts":
			d.addf(p.line, "unknown key %q (hosts belong to an environment: environments.<name>.hosts)", p.key)
		case p.key == "roles":
			d.addf(p.line, "unknown key %q (roles belong to a host, or to an environment: environments.<name>.roles)", p.key)
		default:
			d.unknown(p, "", topKeys)
		}
	}
	if !haveEnvs {
		d.addf(root.Line, "environments is missing: at least one environment is required")
	}
}

func (d *decoder) environments(p pair, inv *Inventory) {
	pairs, ok := d.mapping(p.val, "environments")
	if !ok {
		return
	}
	if len(pairs) == 0 {
		d.addf(p.line, "environments: at least one environment is required")
		return
	}
	for _, ep := range pairs {
		if ep.key == "" {
			d.addf(ep.line, "environments: an environment needs a name")
			continue
		}
		e := environment{name: ep.key, line: ep.line}
		body, ok := d.mapping(ep.val, "environments."+ep.key)
		if !ok {
			continue
		}
		haveHosts, hostsRead, rolesRead := false, false, true
		for _, bp := range body {
			switch {
			case d.setting(&e.set, bp):
			case bp.key == "hosts":
				haveHosts = true
				e.hosts, hostsRead = d.hosts(bp)
			case bp.key == "roles":
				e.roleMap, rolesRead = d.roleMap(bp)
			case bp.key == "environments":
				d.addf(bp.line, "unknown key %q (environments do not nest)", bp.key)
			default:
				d.unknown(bp, "", envKeys)
			}
		}
		if !haveHosts {
			d.addf(ep.line, "environment %q has no hosts", ep.key)
		}
		d.assignRoles(&e, hostsRead && rolesRead)
		inv.envs = append(inv.envs, e)
	}
}

// setting decodes p into s if p is a setting key; false if it is not one.
func (d *decoder) setting(s *settings, p pair) bool {
	n := p.val
	switch p.key {
	case "app":
		if v, ok := d.nonEmpty(n, p.key); ok {
			s.app = some(v)
		}
	case "source":
		if v, ok := d.localPath(n, p.key); ok {
			s.source = some(v)
		}
	case "build":
		if v, ok := d.commands(n, p.key); ok {
			s.build = some(v)
		}
	case "exclude":
		if v, ok := d.exclude(n, p.key); ok {
			s.exclude = some(v)
		}
	case "root":
		if v, ok := d.remoteRoot(n, p.key); ok {
			s.root = some(v)
		}
	case "keep":
		if v, ok := d.integer(n, p.key); ok {
			if v < 1 {
				d.addf(n.Line, "keep: must be at least 1, got %d", v)
			} else {
				s.keep = some(v)
			}
		}
	case "hook_timeout":
		if v, ok := d.duration(n, p.key); ok {
			s.hookTimeout = some(v)
		}
	case "shared":
		if v, ok := d.shared(n, p.key); ok {
			s.shared = some(v)
		}
	case "hooks":
		d.hooks(n, s)
	case "ssh":
		d.ssh(n, s)
	case "health_check":
		d.health(p, s)
	case "outside_symlinks":
		if v, ok := d.nonEmpty(n, p.key); ok {
			switch pol := SymlinkPolicy(v); pol {
			case RefuseOutside, CopyOutside, KeepOutside:
				s.outsideSymlinks = some(pol)
			default:
				d.addf(n.Line, "outside_symlinks: expected refuse, copy or keep, got %q", v)
			}
		}
	case "lock_lease":
		if v, ok := d.duration(n, p.key); ok {
			if v < MinLockLease {
				d.addf(n.Line, "lock_lease: must be at least %s, got %s", MinLockLease, describe(n))
			} else {
				s.lockLease = some(v)
			}
		}
	default:
		return false
	}
	return true
}

// item is a list element with the line where it is written (an alias's own line, not its anchor's).
type item struct {
	node *yaml.Node
	line int
}

// list returns the elements of a sequence; an empty value is an empty list.
func (d *decoder) list(n *yaml.Node, key string) ([]item, bool) {
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.addf(n.Line, "%s: expected a list, got %s", key, describe(n))
		return nil, false
	}
	out := make([]item, 0, len(n.Content))
	ok := true
	for _, c := range n.Content {
		line := c.Line
		if c = d.deref(c); c == nil {
			ok = false
			continue
		}
		out = append(out, item{node: c, line: line})
	}
	return out, ok
}

// str accepts any scalar as text: `app: 2024` is the name "2024", not an error.
// It refuses control characters, newlines and tabs included.
func (d *decoder) str(n *yaml.Node, key string) (string, bool) {
	return d.text(n, key, false)
}

// text is str for a value that may be a command: one of those may span lines.
func (d *decoder) text(n *yaml.Node, key string, command bool) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.addf(n.Line, "%s: expected a string, got %s", key, describe(n))
		return "", false
	}
	if msg := badText(n.Value, command); msg != "" {
		d.addf(n.Line, "%s", prefixed(key, msg))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) nonEmpty(n *yaml.Node, key string) (string, bool) {
	return d.filled(n, key, false)
}

// command is a non-empty shell command, which may be a multi-line script.
func (d *decoder) command(n *yaml.Node, key string) (string, bool) {
	return d.filled(n, key, true)
}

func (d *decoder) filled(n *yaml.Node, key string, command bool) (string, bool) {
	v, ok := d.text(n, key, command)
	if ok && strings.TrimSpace(v) == "" {
		d.addf(n.Line, "%s: must not be empty", key)
		return "", false
	}
	return v, ok
}

func (d *decoder) commands(n *yaml.Node, key string) ([]string, bool) {
	items, ok := d.list(n, key)
	out := []string{}
	for _, it := range items {
		if it.node.Kind == yaml.MappingNode && d.unquotedColon(it.node, it.line, key, "a command") {
			ok = false
			continue
		}
		v, good := d.nonEmpty(it.node, key)
		ok = ok && good
		out = append(out, v)
	}
	return out, ok
}

func (d *decoder) integer(n *yaml.Node, key string) (int, bool) {
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.Atoi(n.Value); err == nil {
			return v, true
		}
		if n.ShortTag() == "!!int" { // 0x1F and friends
			var v int
			if err := n.Decode(&v); err == nil {
				return v, true
			}
		}
	}
	d.addf(n.Line, "%s: expected a whole number, got %s", key, describe(n))
	return 0, false
}

func (d *decoder) port(n *yaml.Node, key string) (int, bool) {
	v, ok := d.integer(n, key)
	if ok && (v < 1 || v > 65535) {
		d.addf(n.Line, "%s: must be between 1 and 65535, got %d", key, v)
		return 0, false
	}
	return v, ok
}

func (d *decoder) boolean(n *yaml.Node, key string) (bool, bool) {
	if n.Kind == yaml.ScalarNode {
		switch strings.ToLower(n.Value) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	d.addf(n.Line, "%s: expected true or false, got %s", key, describe(n))
	return false, false
}

func (d *decoder) duration(n *yaml.Node, key string) (time.Duration, bool) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		v, err := time.ParseDuration(n.Value)
		switch {
		case err == nil && v > 0:
			return v, true
		case err == nil:
			d.addf(n.Line, "%s: must be positive, got %s", key, describe(n))
			return 0, false
		}
	}
	d.addf(n.Line, "%s: expected a duration like 90s or 10m, got %s", key, describe(n))
	return 0, false
}

// localPath resolves a path on this machine: ~ and ~/ are the user's home,
// relative paths are relative to the inventory's directory.
func (d *decoder) localPath(n *yaml.Node, key string) (string, bool) {
	if isNull(n) && n.Value == "~" {
		d.addf(n.Line, `%s: a bare ~ is YAML for nothing; write "~" for your home folder`, key)
		return "", false
	}
	p, ok := d.nonEmpty(n, key)
	if !ok {
		return "", false
	}
	switch {
	case p == "~" || strings.HasPrefix(p, "~/"):
		home, err := os.UserHomeDir()
		if err != nil {
			d.addf(n.Line, "%s: cannot expand ~: %v", key, err)
			return "", false
		}
		p = filepath.Join(home, p[1:])
	case strings.HasPrefix(p, "~"):
		d.addf(n.Line, "%s: only ~ and ~/ are expanded, got %q", key, p)
		return "", false
	case !filepath.IsAbs(p):
		p = filepath.Join(d.dir, p)
	}
	return filepath.Clean(p), true
}

// identity is a local path, or "" to say: use the agent and ~/.ssh/id_*.
func (d *decoder) identity(n *yaml.Node, key string) (string, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == "" {
		return "", true
	}
	return d.localPath(n, key)
}

// remoteRoot is an absolute path on the hosts; it is never expanded locally.
func (d *decoder) remoteRoot(n *yaml.Node, key string) (string, bool) {
	p, ok := d.nonEmpty(n, key)
	if !ok {
		return "", false
	}
	if !strings.HasPrefix(p, "/") {
		d.addf(n.Line, "%s: must be an absolute path on the hosts, got %q", key, p)
		return "", false
	}
	if path.Clean(p) == "/" {
		d.addf(n.Line, "%s: must be a folder of its own, not /: fleetdeploy makes builds/, shared/, latest and .fleetdeploy/ in it (e.g. /var/www/app)", key)
		return "", false
	}
	return path.Clean(p), true
}

// relPath checks a path inside the build, for shared and exclude entries.
func (d *decoder) relPath(it item, key string) (string, bool) {
	p, ok := d.str(it.node, key)
	if !ok {
		return "", false
	}
	switch {
	case strings.TrimSpace(p) == "":
		d.addf(it.line, "%s: an entry must not be empty", key)
	case strings.HasPrefix(p, "/"):
		d.addf(it.line, "%s: %q must be relative to the build, not absolute", key, p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		d.addf(it.line, "%s: %q must stay inside the build (no ..)", key, p)
	case path.Clean(p) == ".":
		d.addf(it.line, "%s: %q names the whole build, not a path inside it", key, p)
	default:
		return path.Clean(p), true
	}
	return "", false
}

func (d *decoder) exclude(n *yaml.Node, key string) ([]string, bool) {
	items, ok := d.list(n, key)
	out := []string{}
	for _, it := range items {
		p, good := d.relPath(it, key)
		ok = ok && good
		out = append(out, p)
	}
	return out, ok
}

// shared decodes the shared entries; one inside another would be linked twice, so it is refused.
func (d *decoder) shared(n *yaml.Node, key string) ([]SharedPath, bool) {
	items, ok := d.list(n, key)
	out := []SharedPath{}
	var lines []int
	for _, it := range items {
		p, good := d.relPath(it, key)
		if !good {
			ok = false
			continue
		}
		conflict := false
		for i, prev := range out {
			switch {
			case prev.Path == p:
				d.addf(it.line, "%s: %q is already shared on line %d", key, p, lines[i])
			case strings.HasPrefix(p, prev.Path+"/"):
				d.addf(it.line, "%s: %q is inside %q, already shared on line %d", key, p, prev.Path, lines[i])
			case strings.HasPrefix(prev.Path, p+"/"):
				d.addf(it.line, "%s: %q contains %q, already shared on line %d", key, p, prev.Path, lines[i])
			default:
				continue
			}
			conflict = true
			break
		}
		if conflict {
			ok = false
			continue
		}
		raw := it.node.Value
		out = append(out, SharedPath{Path: p, Dir: strings.HasSuffix(raw, "/")})
		lines = append(lines, it.line)
	}
	return out, ok
}

func (d *decoder) user(n *yaml.Node, key string) (string, bool) {
	v, ok := d.nonEmpty(n, key)
	if ok {
		if msg := checkUser(v); msg != "" {
			d.addf(n.Line, "%s: %s", key, msg)
			return "", false
		}
	}
	return v, ok
}
