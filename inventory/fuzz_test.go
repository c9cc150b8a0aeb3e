package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse or Resolve panic, and that every
// failure comes as a non-empty Errors naming the file.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yml")
	seeds = append(seeds, "../hosts.example.yml")
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"~",
		"[]",
		"app: shop\nsource: .\nroot: /srv\nenvironments: {p: {hosts: [w]}}\n",
		"keep: five\nhooks: {before_cutover: [{run: x, once: true, timeout: 0s}]}\n",
		"environments:\n  a: &e {hosts: ['[::1]:22', 'u@h:0', {address: x, port: 99999}]}\n  b: *e\n",
		"shared: [a/, a/b, ../c, /d, '']\nexclude: [., '']\n",
		"x: &a [*a]\n",
		"a: 1\n---\nb: 2\n",
		"<<: {app: x}\n",
		"app: \"\\x01\"\n\xff",
		"app: \"a\\eb\"\nsource: .\nroot: /srv\nenvironments: {\"p\\x9b\": {hosts: [\"w\\0\"]}}\n",
		"hooks: {after_cutover: [\"a\\n\\tb\", {run: \"c\\r\"}]}\n",
		"app: a\nsource: .\nroot: /r\nhooks: {before_cutover: [{run: x, once: true, roles: [w]}], on_failure: [y]}\n" +
			"environments: {p: {hosts: [a, {address: b, roles: [w]}, c:22], roles: {w: [c], v: []}}}\n",
		"hooks:\n  after_cutover:\n    - echo \"live: $(date)\"\n    - run: a: b\n",
		"app: a\nsource: .\nroot: /r\nhealth_check: {run: x, timeout: 3s, interval: 1s, roles: [w]}\noutside_symlinks: copy\n" +
			"lock_lease: 10s\nenvironments: {p: {hosts: [{address: b, roles: [w]}], health_check: none}, q: {hosts: [c]}}\n",
		"environments: {p: {hosts: ['2001:db8::1', '[fe80::1%eth0]:22', '@h', 'u@', ':22', '[]']}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse(bytes.NewReader(data), "fuzz.yml")
		if err != nil {
			checkErrors(t, err)
			return
		}
		if inv == nil {
			t.Fatal("Parse returned neither an inventory nor an error")
		}
		for _, name := range append(inv.Environments(), "no-such-environment") {
			env, err := inv.Resolve(name)
			if err != nil {
				checkErrors(t, err)
				continue
			}
			if len(env.Hosts) == 0 || env.Keep < 1 {
				t.Fatalf("%s: resolved without hosts or keep: %+v", name, env)
			}
			checkClean(t, reflect.ValueOf(env), "Environment")
			if hc := env.HealthCheck; hc != nil && (hc.Run == "" || hc.Interval <= 0 || hc.Interval >= hc.Timeout) {
				t.Fatalf("%s: health check %+v", name, hc)
			}
			if !slices.Contains([]SymlinkPolicy{RefuseOutside, CopyOutside, KeepOutside}, env.OutsideSymlinks) ||
				env.LockLease != 0 && env.LockLease < MinLockLease {
				t.Fatalf("%s: outside_symlinks %q, lock_lease %s", name, env.OutsideSymlinks, env.LockLease)
			}
			checkHooks(t, env)
			for _, r := range env.Roles() {
				sel, err := env.Select([]string{r}, []string{env.Hosts[0].Address})
				var se *SelectError
				switch {
				case errors.As(err, &se) && len(se.Problems) > 0:
				case err != nil:
					t.Fatalf("Select(%s): %T %v", r, err, err)
				case len(sel.Hosts) == 0:
					t.Fatalf("Select(%s) selected nothing without an error", r)
				default:
					checkHooks(t, sel)
				}
			}
		}
	})
}

// checkHooks fails when a `once` hook would run on more than one host, or a
// hook on a host without its roles.
func checkHooks(t *testing.T, e *Environment) {
	t.Helper()
	for _, p := range Phases() {
		onces := map[string]string{}
		for _, h := range e.Hosts {
			for _, hk := range e.HooksFor(p, h.Name) {
				if p.Local() || !h.HasRole(hk.Roles) {
					t.Fatalf("%s: hook %+v on host %+v", p, hk, h)
				}
				if hk.Once {
					id := fmt.Sprint(hk.Line, hk.Run, hk.Roles)
					if other, dup := onces[id]; dup && other != h.Name {
						t.Fatalf("%s: once hook %+v runs on %s and %s", p, hk, other, h.Name)
					}
					onces[id] = h.Name
				}
			}
		}
	}
}

// checkClean fails when a string anywhere in v holds a control character
// (newlines and tabs are let through in commands).
func checkClean(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			checkClean(t, v.Elem(), path)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				checkClean(t, v.Field(i), path+"."+f.Name)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			checkClean(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if msg := badText(v.String(), strings.HasSuffix(path, ".Run")); msg != "" {
			t.Fatalf("%s = %q: %s", path, v.String(), msg)
		}
	}
}

func checkErrors(t *testing.T, err error) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
	}
	for _, p := range errs {
		if p.File != "fuzz.yml" || p.Msg == "" || p.Line < 0 {
			t.Fatalf("bad problem %#v", p)
		}
	}
}

// FuzzParseJump checks that an accepted jump chain is safe to hand to ssh
// (no option-like or control-laden hop) and reads back the same once written.
func FuzzParseJump(f *testing.F) {
	for _, s := range []string{"b1", "ops@b1:2222,b2", "none", "ssh://u@[::1]:22", "b1,,b2", "-oProxyCommand=x", "a@b@c", "[fe80::1%eth0]:22", " b1 , b2 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hops, err := ParseJump(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, h := range hops {
			if checkAddress(h.Address) != "" || h.User != "" && checkUser(h.User) != "" || h.Port < 0 || h.Port > 65535 {
				t.Fatalf("%q: accepted hop %+v", s, h)
			}
		}
		joined := JoinJump(hops)
		if badText(joined, false) != "" {
			t.Fatalf("%q: joined %q holds a control character", s, joined)
		}
		again, err := ParseJump(joined)
		if err != nil || !reflect.DeepEqual(again, hops) {
			t.Fatalf("%q: %q reads back as %+v, %v; want %+v", s, joined, again, err, hops)
		}
	})
}
