package remote

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testEnv is a made-up user: home /home/me, user me, agent socket /run/agent.
func testEnv() environment {
	return environment{
		home: "/home/me", localUser: "me", hostname: "laptop.example",
		getenv: func(k string) string {
			return map[string]string{"SSH_AUTH_SOCK": "/run/agent", "OTHER_SOCK": "/run/other", "KEYS": "/keys"}[k]
		},
	}
}

// loadTestConfig writes the given files (name -> content) in a temporary
// folder, with @DIR@ standing for it, and loads the first two as user and
// system config.
func loadTestConfig(t *testing.T, user, system string, extra map[string]string) *SSHConfig {
	t.Helper()
	dir := t.TempDir()
	return loadTestConfigIn(t, dir, user, system, extra)
}

func loadTestConfigIn(t *testing.T, dir, user, system string, extra map[string]string) *SSHConfig {
	t.Helper()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(content, "@DIR@", dir)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, content := range extra {
		write(name, content)
	}
	s, err := loadSSHConfig([]string{write("config", user), write("ssh_config", system)}, false, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const userConfig = `
Include @DIR@/included.conf

Host web1 web1-alias
    HostName 10.0.0.11
    User deploy
    Port 2222
    IdentityFile ~/.ssh/web_ed25519
    IdentityFile %d/.ssh/%r@%h
    CertificateFile ~/.ssh/web-cert.pub
    IdentitiesOnly yes
    IdentityAgent none

Host db*.internal !db9.internal
    ProxyJump ops@bastion.example:2200
    UserKnownHostsFile ~/.ssh/kh_internal "/etc/ssh/two words"
    StrictHostKeyChecking accept-new
    HashKnownHosts yes

Host chained
    ProxyJump j1,j2
Host j1
    HostName 192.0.2.1
    User hop1
Host j2
    HostName 192.0.2.2
    Port 2022
    ProxyJump ignored-because-not-first
Host j0
    HostName 192.0.2.9

Host viaj1
    ProxyJump j1
Host j1
    ProxyJump j0

Host proxied
    ProxyCommand ssh -W %h:%p gateway
Host evil
    HostName a;reboot
    ProxyCommand nc %h %p

Host agentenv
    IdentityAgent SSH_AUTH_SOCK
Host agentvar
    IdentityAgent $OTHER_SOCK
Host agentpath
    IdentityAgent ~/agent.sock

Host slow
    ConnectTimeout 1m30s
    ServerAliveInterval 7
    ServerAliveCountMax 9
Host wild-*
    HostName %h.example.com
Host loop1
    ProxyJump loop2
Host loop2
    ProxyJump loop1
Host strictno
    StrictHostKeyChecking no
Host nojump
    ProxyJump none
Host aliased
    HostKeyAlias shared-name
Host envkey
    IdentityFile ${KEYS}/id
`

const systemConfig = `
Host *
    User fallback-from-system
    GlobalKnownHostsFile /etc/ssh/g1 /etc/ssh/g2
    IdentityFile ~/.ssh/system_default
`

const includedConfig = `
Host incl
    HostName 10.9.9.9
    Port 2200
`

func TestResolve(t *testing.T) {
	t.Parallel()
	s := loadTestConfig(t, userConfig, systemConfig, map[string]string{"included.conf": includedConfig})
	for _, tc := range []struct {
		alias string
		o     Overrides
		check func(t *testing.T, c Config)
	}{
		{"web1", Overrides{}, func(t *testing.T, c Config) {
			want := Config{
				Name: "web1", Addr: "10.0.0.11:2222", User: "deploy",
				IdentityFiles:    []string{"/home/me/.ssh/web_ed25519", "/home/me/.ssh/deploy@10.0.0.11", "/home/me/.ssh/system_default"},
				CertificateFiles: []string{"/home/me/.ssh/web-cert.pub"},
				IdentitiesOnly:   true, Agent: "",
				GlobalKnownHostsFiles: []string{"/etc/ssh/g1", "/etc/ssh/g2"},
			}
			checkFields(t, c, want, "Name", "Addr", "User", "IdentityFiles", "CertificateFiles", "IdentitiesOnly", "Agent", "GlobalKnownHostsFiles", "Jumps", "ProxyCommand", "HostKeys")
		}},
		{"web1-alias", Overrides{}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{Addr: "10.0.0.11:2222", User: "deploy"}, "Addr", "User")
		}},
		{"WEB1", Overrides{}, func(t *testing.T, c Config) { // ssh(1) lowercases before matching
			checkFields(t, c, Config{Addr: "10.0.0.11:2222"}, "Addr")
		}},
		{"web1", Overrides{Name: "front", User: "root", Port: 22, Identity: "~/id_inv", KnownHosts: "~/kh", HostName: "10.1.1.1"}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{Name: "front", Addr: "10.1.1.1:22", User: "root", Identity: "/home/me/id_inv", KnownHosts: "/home/me/kh"},
				"Name", "Addr", "User", "Identity", "KnownHosts")
		}},
		{"unknown-host", Overrides{}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{Addr: "unknown-host:22", User: "fallback-from-system", Agent: "/run/agent",
				IdentityFiles: []string{"/home/me/.ssh/system_default"}, HostKeys: StrictHostKeys}, "Addr", "User", "Agent", "IdentityFiles", "HostKeys")
			if c.hostNameFrom != "" {
				t.Errorf("hostNameFrom %q for a host no block names", c.hostNameFrom)
			}
		}},
		{"db1.internal", Overrides{}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{
				KnownHostsFiles: []string{"/home/me/.ssh/kh_internal", "/etc/ssh/two words"},
				HostKeys:        AcceptNewHostKeys, HashKnownHosts: true,
			}, "KnownHostsFiles", "HostKeys", "HashKnownHosts")
			if len(c.Jumps) != 1 {
				t.Fatalf("jumps %+v, want one", c.Jumps)
			}
			checkFields(t, c.Jumps[0], Config{Name: "bastion.example", Addr: "bastion.example:2200", User: "ops"}, "Name", "Addr", "User")
		}},
		{"db9.internal", Overrides{}, func(t *testing.T, c Config) { // negated pattern
			checkFields(t, c, Config{Jumps: nil, HostKeys: StrictHostKeys}, "Jumps", "HostKeys")
		}},
		{"db1.internal", Overrides{Jump: "none", AcceptNewHostKeys: true}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{Jumps: nil, HostKeys: AcceptNewHostKeys}, "Jumps", "HostKeys")
		}},
		{"db1.internal", Overrides{Jump: "admin@[2001:db8::1]:22,ssh://gw"}, func(t *testing.T, c Config) {
			if len(c.Jumps) != 2 {
				t.Fatalf("jumps %+v, want two", c.Jumps)
			}
			checkFields(t, c.Jumps[0], Config{Addr: "[2001:db8::1]:22", User: "admin"}, "Addr", "User")
			checkFields(t, c.Jumps[1], Config{Addr: "gw:22", User: "fallback-from-system"}, "Addr", "User")
		}},
		{"chained", Overrides{ConnectTimeout: 3 * time.Second}, func(t *testing.T, c Config) {
			// j1's own ProxyJump (j0) applies, being first; j2's does not.
			var got []string
			for _, j := range c.Jumps {
				got = append(got, j.Name+"="+j.User+"@"+j.Addr)
				if j.ConnectTimeout != 3*time.Second {
					t.Errorf("jump %s: connect timeout %v, want the explicit 3s on every hop", j.Name, j.ConnectTimeout)
				}
			}
			want := []string{"j0=fallback-from-system@192.0.2.9:22", "j1=hop1@192.0.2.1:22", "j2=fallback-from-system@192.0.2.2:2022"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("jumps %v, want %v", got, want)
			}
		}},
		{"viaj1", Overrides{}, func(t *testing.T, c Config) {
			if len(c.Jumps) != 2 || c.Jumps[0].Name != "j0" || c.Jumps[1].Name != "j1" {
				t.Errorf("jumps %+v, want j0 then j1", c.Jumps)
			}
		}},
		{"proxied", Overrides{}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{ProxyCommand: "ssh -W proxied:22 gateway"}, "ProxyCommand")
		}},
		{"evil", Overrides{}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{ProxyCommand: "nc 'a;reboot' 22"}, "ProxyCommand")
		}},
		{"proxied", Overrides{Jump: "none"}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{ProxyCommand: ""}, "ProxyCommand")
		}},
		{"agentenv", Overrides{}, func(t *testing.T, c Config) { checkFields(t, c, Config{Agent: "/run/agent"}, "Agent") }},
		{"agentvar", Overrides{}, func(t *testing.T, c Config) { checkFields(t, c, Config{Agent: "/run/other"}, "Agent") }},
		{"agentpath", Overrides{}, func(t *testing.T, c Config) { checkFields(t, c, Config{Agent: "/home/me/agent.sock"}, "Agent") }},
		{"slow", Overrides{}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{ConnectTimeout: 90 * time.Second, KeepaliveInterval: 7 * time.Second, KeepaliveMax: 9},
				"ConnectTimeout", "KeepaliveInterval", "KeepaliveMax")
		}},
		{"slow", Overrides{ConnectTimeout: time.Second, KeepaliveInterval: 2 * time.Second, KeepaliveMax: 1}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{ConnectTimeout: time.Second, KeepaliveInterval: 2 * time.Second, KeepaliveMax: 1},
				"ConnectTimeout", "KeepaliveInterval", "KeepaliveMax")
		}},
		{"wild-one", Overrides{}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{Addr: "wild-one.example.com:22"}, "Addr")
		}},
		{"strictno", Overrides{}, func(t *testing.T, c Config) { // "no" never turns verification off
			checkFields(t, c, Config{HostKeys: AcceptNewHostKeys}, "HostKeys")
		}},
		{"nojump", Overrides{}, func(t *testing.T, c Config) { checkFields(t, c, Config{Jumps: nil}, "Jumps") }},
		{"aliased", Overrides{}, func(t *testing.T, c Config) {
			checkFields(t, c, Config{HostKeyAlias: "shared-name"}, "HostKeyAlias")
			if got := c.knownHostsName(); got != "shared-name:22" {
				t.Errorf("known_hosts name %q", got)
			}
		}},
		{"envkey", Overrides{}, func(t *testing.T, c Config) {
			if c.IdentityFiles[0] != "/keys/id" {
				t.Errorf("identity files %v, want /keys/id first", c.IdentityFiles)
			}
		}},
		{"incl", Overrides{}, func(t *testing.T, c Config) { checkFields(t, c, Config{Addr: "10.9.9.9:2200"}, "Addr") }},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			c, err := s.Resolve(tc.alias, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// checkFields compares the named fields of got and want.
func checkFields(t *testing.T, got, want Config, fields ...string) {
	t.Helper()
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for _, f := range fields {
		gv, wv := g.FieldByName(f).Interface(), w.FieldByName(f).Interface()
		if f == "Jumps" && wv.([]Config) == nil {
			if n := len(gv.([]Config)); n != 0 {
				t.Errorf("%s: %d jumps, want none", f, n)
			}
			continue
		}
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s = %#v, want %#v", f, gv, wv)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	s := loadTestConfig(t, userConfig+`
Host badport
    Port 70000
Host badstrict
    StrictHostKeyChecking maybe
Host badtime
    ConnectTimeout soon
Host badjump
    ProxyJump user@
Host badtoken
    IdentityFile ~/.ssh/%z
`, "", map[string]string{"included.conf": ""})
	for _, tc := range []struct{ alias, want string }{
		{"badport", `Port "70000" in `},
		{"badstrict", `StrictHostKeyChecking "maybe"`},
		{"badtime", `ConnectTimeout "soon"`},
		{"badjump", `ProxyJump "user@"`},
		{"badtoken", `token %z`},
		{"loop1", `circular: loop1 -> loop2 -> loop1`},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			_, err := s.Resolve(tc.alias, Overrides{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// A config the parser refuses, and a config file named explicitly that is
// missing, are errors naming the file; the usual files may be absent.
func TestLoadSSHConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("Match exec \"true\"\n  User x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSSHConfig([]string{bad}, true, testEnv()); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("unparsable config: %v, want an error naming %s", err, bad)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := loadSSHConfig([]string{missing}, true, testEnv()); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing explicit config: %v, want an error naming it", err)
	}
	s, err := loadSSHConfig([]string{missing, filepath.Join(dir, "also-missing")}, false, testEnv())
	if err != nil || len(s.Files()) != 0 {
		t.Errorf("absent usual configs: %v, files %v; want none read and no error", err, s.Files())
	}
	c, err := s.Resolve("plain", Overrides{})
	if err != nil || c.Addr != "plain:22" || c.User != "me" {
		t.Errorf("without config: %+v, %v; want plain:22 as the local user", c, err)
	}
	s, err = LoadSSHConfig(NoSSHConfig)
	if err != nil || len(s.Files()) != 0 {
		t.Errorf("none: %v, files %v", err, s.Files())
	}
}

func TestParseSSHTime(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"0": 0, "10": 10 * time.Second, "1m30s": 90 * time.Second, "2h": 2 * time.Hour, "1m30": 90 * time.Second, "1w": 7 * 24 * time.Hour} {
		if got, err := parseSSHTime(in); err != nil || got != want {
			t.Errorf("parseSSHTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"x", "10y", "-1", "m"} {
		if _, err := parseSSHTime(in); err == nil {
			t.Errorf("parseSSHTime(%q) accepted", in)
		}
	}
}

// Include and Match as distributions ship them: Fedora's ssh_config.d has
// "Match final all"; an Include in a Host block applies to that host only,
// and the block goes on after it.
func TestResolveIncludeAndMatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := loadTestConfigIn(t, dir, `
Include @DIR@/conf.d/*.conf
Host web
    Include @DIR@/web-extra.conf
    User fromweb
Match localuser me
    Port 2201
Match localuser other
    Port 2202
Match canonical all
    User never
Match host a,b
    User ab-user
Host *
    Include @DIR@/tail.conf
`, "", map[string]string{
		"conf.d/50-redhat.conf": "Match final all\n    IdentityFile ~/.ssh/from_redhat\n",
		"web-extra.conf":        "HostName 10.1.1.1\n",
		"tail.conf":             "ConnectTimeout 7\n",
	})
	for _, tc := range []struct {
		alias string
		want  Config
	}{
		{"web", Config{Addr: "10.1.1.1:2201", User: "fromweb", IdentityFiles: []string{"/home/me/.ssh/from_redhat"}, ConnectTimeout: 7 * time.Second}},
		{"a", Config{Addr: "a:2201", User: "ab-user", IdentityFiles: []string{"/home/me/.ssh/from_redhat"}, ConnectTimeout: 7 * time.Second}},
		{"c", Config{Addr: "c:2201", User: "me", IdentityFiles: []string{"/home/me/.ssh/from_redhat"}, ConnectTimeout: 7 * time.Second}},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			c, err := s.Resolve(tc.alias, Overrides{})
			if err != nil {
				t.Fatal(err)
			}
			checkFields(t, c, tc.want, "Addr", "User", "IdentityFiles", "ConnectTimeout")
		})
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("Host x\n  User y\nMatch exec \"test -f /x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSSHConfig([]string{bad}, true, testEnv()); err == nil || !strings.Contains(err.Error(), bad+":3") || !strings.Contains(err.Error(), `"exec"`) {
		t.Errorf("Match exec: %v, want an error at %s:3", err, bad)
	}
	loop := filepath.Join(dir, "loop")
	if err := os.WriteFile(loop, []byte("Include "+loop+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSSHConfig([]string{loop}, true, testEnv()); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Errorf("Include loop: %v", err)
	}
}
