package inventory

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseJump(t *testing.T) {
	tests := []struct {
		in      string
		want    []Hop
		joined  string // JoinJump(want)
		wantErr string
	}{
		{in: "bastion", want: []Hop{{Address: "bastion"}}, joined: "bastion"},
		{in: "ops@bastion:2222", want: []Hop{{User: "ops", Address: "bastion", Port: 2222}}, joined: "ops@bastion:2222"},
		{in: "b1, ops@b2:22 ,b3", want: []Hop{{Address: "b1"}, {User: "ops", Address: "b2", Port: 22}, {Address: "b3"}},
			joined: "b1,ops@b2:22,b3"},
		{in: "[2001:db8::1]:22,2001:db8::2", want: []Hop{{Address: "2001:db8::1", Port: 22}, {Address: "2001:db8::2"}},
			joined: "[2001:db8::1]:22,2001:db8::2"},
		{in: "ssh://ops@b1:2200", want: []Hop{{User: "ops", Address: "b1", Port: 2200}}, joined: "ops@b1:2200"},
		{in: "none", want: nil, joined: "none"},
		{in: "", wantErr: "a jump host must not be empty"},
		{in: "b1,", wantErr: `jump host "": a host must not be empty`},
		{in: "b1,none", wantErr: "none turns jumping off and cannot be part of a chain"},
		{in: "-oProxyCommand=x", wantErr: `jump host "-oProxyCommand=x": address "-oProxyCommand=x" must start with a letter or digit`},
		{in: "b1:0", wantErr: `jump host "b1:0": port must be between 1 and 65535, got 0`},
		{in: "a b@b1", wantErr: `jump host "a b@b1": user "a b" has ' '; only letters, digits, '.', '_', '-' and '+' are allowed`},
		{in: "b1;reboot", wantErr: `jump host "b1;reboot": address "b1;reboot" has ';', which no host name or IP address has`},
		{in: "b1\x1b", wantErr: "control character U+001B (ESC) is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseJump(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseJump(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseJump(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if j := JoinJump(got); j != tt.joined {
				t.Errorf("JoinJump = %q, want %q", j, tt.joined)
			}
		})
	}
}

func TestSSHSettings(t *testing.T) {
	home := fakeHome(t)
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"ssh: {config: ~/.ssh/fleet_config, jump: b1, identities_only: true}",
		"environments:",
		"  production:",
		"    hosts:",
		"      - web1",
		"      - {address: web2, jump: none, identities_only: false, strict_host_key_checking: yes}",
		"  staging:",
		"    ssh: {config: ./none, jump: 'ops@b2:2200,b3'}",
		"    hosts: [web3]",
	)
	inv, err := Parse(strings.NewReader(src), "conf/hosts.yml")
	if err != nil {
		t.Fatal(err)
	}
	prod, err := inv.Resolve("production")
	if err != nil {
		t.Fatal(err)
	}
	if want := home + "/.ssh/fleet_config"; prod.SSHConfig != want {
		t.Errorf("SSHConfig = %q, want %q", prod.SSHConfig, want)
	}
	want := []Host{
		{Name: "web1", Address: "web1", Root: "/srv", Jump: "b1", IdentitiesOnly: new(true), Line: 8},
		{Name: "web2", Address: "web2", Root: "/srv", Jump: None, IdentitiesOnly: new(false), StrictHostKeyChecking: StrictYes, Line: 9},
	}
	if !reflect.DeepEqual(prod.Hosts, want) {
		t.Errorf("hosts:\n got  %+v\n want %+v", prod.Hosts, want)
	}
	if k := prod.Hosts[0].Key(); k != "web1 via b1" {
		t.Errorf("Key() = %q", k)
	}
	staging, err := inv.Resolve("staging")
	if err != nil {
		t.Fatal(err)
	}
	if want := abs(t, "conf/none"); staging.SSHConfig != want {
		t.Errorf("SSHConfig = %q, want %q", staging.SSHConfig, want)
	}
	if h := staging.Hosts[0]; h.Jump != "ops@b2:2200,b3" || *h.IdentitiesOnly != true {
		t.Errorf("staging host %+v", h)
	}
}

func TestSSHErrors(t *testing.T) {
	fakeHome(t)
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"ssh:",
		"  config: ''",
		"  jump: 'b1,,b2'",
		"  strict_host_key_checking: no",
		"  identities_only: yes",
		"  jmp: b1",
		"environments:",
		"  production:",
		"    ssh: {strict_host_key_checking: ask, jump: [b1]}",
		"    hosts:",
		"      - {address: web1, config: /etc/ssh/ssh_config}",
		"      - {address: web2, jump: 'none,b1'}",
		"      - {address: web3, strict_host_key_checking: off}",
	)
	want := []string{
		"hosts.yml:5: ssh.config: must not be empty",
		`hosts.yml:6: ssh.jump: jump host "": a host must not be empty`,
		`hosts.yml:7: ssh.strict_host_key_checking: host keys are always checked; use yes or accept-new (which records the keys of new hosts), got "no"`,
		`hosts.yml:8: ssh.identities_only: expected true or false, got "yes"`,
		`hosts.yml:9: ssh: unknown key "jmp" (did you mean jump?)`,
		`hosts.yml:12: ssh.strict_host_key_checking: expected yes or accept-new, got "ask"`,
		"hosts.yml:12: ssh.jump: expected a string, got a list",
		"hosts.yml:14: hosts: config is not set per host: ssh.config names one ssh_config file for the environment",
		"hosts.yml:15: hosts.jump: none turns jumping off and cannot be part of a chain",
		`hosts.yml:16: hosts.strict_host_key_checking: host keys are always checked; use yes or accept-new (which records the keys of new hosts), got "off"`,
	}
	if got := problems(t, src, "production"); !slices.Equal(got, want) {
		t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// Addr and Key with and without explicit values.
func TestHostAddrKey(t *testing.T) {
	tests := []struct {
		h         Host
		addr, key string
	}{
		{Host{Address: "web1"}, "web1:22", "web1"},
		{Host{Address: "web1", Port: 2222, User: "ops"}, "web1:2222", "ops@web1:2222"},
		{Host{Address: "::1"}, "[::1]:22", "[::1]"},
		{Host{Address: "fe80::1%eth0", Port: 22}, "[fe80::1%eth0]:22", "[fe80::1%eth0]:22"},
		{Host{Address: "10.0.0.5", User: "app", Jump: "ops@b1:2200,b2"}, "10.0.0.5:22", "app@10.0.0.5 via ops@b1:2200,b2"},
	}
	for _, tt := range tests {
		if a, k := tt.h.Addr(), tt.h.Key(); a != tt.addr || k != tt.key {
			t.Errorf("%+v: Addr() = %q, Key() = %q; want %q, %q", tt.h, a, k, tt.addr, tt.key)
		}
	}
}
