package inventory

import (
	"slices"
	"strings"
	"testing"
)

// Escapes and block scalars smuggle control characters past YAML's own check
// on raw bytes; each is refused where it is written.
func TestControlCharacters(t *testing.T) {
	fakeHome(t)
	// head is a valid inventory but for its hosts; a case adds lines from line 6 on.
	head := []string{
		"app: shop",
		"source: .",
		"root: /srv/shop",
		"environments:",
		"  production:",
	}
	with := func(extra ...string) string { return lines(append(slices.Clone(head), extra...)...) }
	tests := []struct {
		name string
		src  string
		want []string
	}{{
		name: "escape in a value",
		src:  lines(`app: "shop\e[31m"`, "source: .", "root: /srv", "environments: {p: {hosts: [w]}}"),
		want: []string{`hosts.yml:1: app: control character U+001B (ESC) is not allowed`},
	}, {
		name: "every kind of control character",
		src: with(
			`    hosts: [web1]`,
			`build:`,
			`  - "make\0"`,
			`  - "make\a"`,
			`  - "make\x7f"`,
			`  - "make\x85"`,
			`  - "make\u009b"`,
			`  - "make\x9f"`,
			`  - "make\x1f"`,
			`  - "make\r"`,
			`  - "make\tall"`,
			`  - "make\nall"`,
		),
		want: []string{
			"hosts.yml:8: build: control character U+0000 (NUL) is not allowed",
			"hosts.yml:9: build: control character U+0007 (BEL) is not allowed",
			"hosts.yml:10: build: control character U+007F (DEL) is not allowed",
			"hosts.yml:11: build: control character U+0085 (NEL) is not allowed",
			"hosts.yml:12: build: control character U+009B (CSI) is not allowed",
			"hosts.yml:13: build: control character U+009F is not allowed",
			"hosts.yml:14: build: control character U+001F is not allowed",
			"hosts.yml:15: build: control character U+000D (carriage return) is not allowed",
			"hosts.yml:16: build: control character U+0009 (tab) is not allowed (only hook and health_check commands may hold newlines and tabs)",
			"hosts.yml:17: build: control character U+000A (newline) is not allowed (only hook and health_check commands may hold newlines and tabs)",
		},
	}, {
		name: "block scalar outside a command",
		src:  with(`    hosts: [web1]`, `exclude:`, `  - |`, `    docs`, `    tests`),
		want: []string{"hosts.yml:8: exclude: control character U+000A (newline) is not allowed (only hook and health_check commands may hold newlines and tabs)"},
	}, {
		name: "raw tab in a plain value",
		src:  with("    app: shop\tfront", "    hosts: [web1]"),
		want: []string{"hosts.yml:6: app: control character U+0009 (tab) is not allowed (only hook and health_check commands may hold newlines and tabs)"},
	}, {
		name: "keys",
		src:  with(`    hosts: [web1]`, `"kee\u0000p": 3`, `ssh: {"us\ter": x}`),
		want: []string{
			`hosts.yml:7: key "kee\x00p": control character U+0000 (NUL) is not allowed`,
			`hosts.yml:8: ssh: key "us\ter": control character U+0009 (tab) is not allowed (only hook and health_check commands may hold newlines and tabs)`,
		},
	}, {
		name: "environment name",
		src:  with("    hosts: [web1]", `  "stag\eing": {hosts: [w]}`),
		want: []string{`hosts.yml:7: environments: key "stag\x1bing": control character U+001B (ESC) is not allowed`},
	}, {
		name: "hosts",
		src: with(
			`    hosts:`,
			`      - "web1\e"`,
			`      - {address: "web2\0"}`,
			`      - {address: web3, user: "de\u0080ploy"}`,
			`      - {address: web4, root: "/srv/\x9b2J"}`,
			`      - {address: web5, identity: "k\r"}`,
		),
		want: []string{
			"hosts.yml:7: hosts: control character U+001B (ESC) is not allowed",
			"hosts.yml:8: hosts.address: control character U+0000 (NUL) is not allowed",
			"hosts.yml:9: hosts.user: control character U+0080 is not allowed",
			"hosts.yml:10: hosts.root: control character U+009B (CSI) is not allowed",
			"hosts.yml:11: hosts.identity: control character U+000D (carriage return) is not allowed",
		},
	}, {
		name: "paths",
		src:  with(`    hosts: [web1]`, `shared: ["storage\e/"]`, `source: "./app\0"`),
		want: []string{
			"hosts.yml:7: shared: control character U+001B (ESC) is not allowed",
			`hosts.yml:8: duplicate key "source" (first on line 2)`,
		},
	}, {
		name: "hooks hold newlines and tabs, nothing else",
		src: with(
			`    hosts: [web1]`,
			`hooks:`,
			`  before_cutover:`,
			`    - "echo \e[2J"`,
			`    - {run: "printf '\0'"}`,
			`    - "echo a\r"`,
		),
		want: []string{
			"hosts.yml:9: hooks.before_cutover: control character U+001B (ESC) is not allowed",
			"hosts.yml:10: hooks.before_cutover.run: control character U+0000 (NUL) is not allowed",
			"hosts.yml:11: hooks.before_cutover: control character U+000D (carriage return) is not allowed",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src, "production")
			if !slices.Equal(got, tt.want) {
				t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// Multi-line scripts are what hooks are for: newlines and tabs survive as written.
func TestMultilineHooks(t *testing.T) {
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"hooks:",
		"  before_cutover:",
		"    - |",
		"      set -e",
		"      if [ -f artisan ]; then",
		"      \tphp artisan migrate --force",
		"      fi",
		`    - {run: "a\n\tb"}`,
		"environments:",
		"  production:",
		"    hosts: [web1]",
	)
	e := resolve(t, src, "hosts.yml", "production")
	want := []string{"set -e\nif [ -f artisan ]; then\n\tphp artisan migrate --force\nfi\n", "a\n\tb"}
	var got []string
	for _, h := range e.Hooks.BeforeCutover {
		got = append(got, h.Run)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A file written on Windows still gives Unix line ends inside a script, not a refused carriage return.
func TestCRLF(t *testing.T) {
	src := strings.ReplaceAll(lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"hooks:",
		"  after_cutover:",
		"    - |",
		"      a",
		"      b",
		"environments:",
		"  production:",
		"    hosts: [web1]",
	), "\n", "\r\n")
	e := resolve(t, src, "hosts.yml", "production")
	if got := e.Hooks.AfterCutover[0].Run; got != "a\nb\n" {
		t.Errorf("run = %q", got)
	}
}

func TestBadText(t *testing.T) {
	tests := []struct {
		in      string
		command bool
		want    string
	}{
		{"plain text, ünïcödé ✓", false, ""},
		{"a\u00a0b", false, ""}, // no-break space is text
		{"a\nb\tc", true, ""},
		{"a\nb", false, "control character U+000A (newline) is not allowed (only hook and health_check commands may hold newlines and tabs)"},
		{"a\rb", true, "control character U+000D (carriage return) is not allowed"},
		{"\x1b", true, "control character U+001B (ESC) is not allowed"},
		{"\u009f", true, "control character U+009F is not allowed"},
		{"\xff", true, "holds bytes that are not UTF-8"},
	}
	for _, tt := range tests {
		if got := badText(tt.in, tt.command); got != tt.want {
			t.Errorf("badText(%q, %v) = %q, want %q", tt.in, tt.command, got, tt.want)
		}
	}
}
