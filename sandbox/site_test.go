package sandbox

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/inventory"
)

func TestSandboxInventoryReadsBack(t *testing.T) {
	t.Parallel()
	odd := "/tmp/it's a \"sandbox\" $HOME #1: `x`"
	spec := spec{
		path:       odd + "/sandbox.yml",
		source:     odd + "/app",
		identity:   odd + "/id_ed25519",
		knownHosts: odd + "/known_hosts",
		hosts: []specHost{
			{address: "127.0.0.1", port: 40001, root: odd + "/host1/www"},
			{address: "127.0.0.1", port: 40002, root: odd + "/host2/www"},
		},
	}
	inv, err := inventory.Parse(bytes.NewReader(inventoryYAML(spec)), "sandbox.yml")
	if err != nil {
		t.Fatalf("%v\n%s", err, inventoryYAML(spec))
	}
	env, err := inv.Resolve("sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if env.Source != spec.source {
		t.Errorf("source %q, want %q", env.Source, spec.source)
	}
	for i, h := range env.Hosts {
		want := spec.hosts[i]
		if h.Address != want.address || h.Port != want.port || h.Root != want.root || h.Identity != spec.identity || h.KnownHosts != spec.knownHosts {
			t.Errorf("host %d = %+v, want %+v with identity %q and known_hosts %q", i, h, want, spec.identity, spec.knownHosts)
		}
	}
	var shared []string
	for _, s := range env.Shared {
		shared = append(shared, s.Path)
	}
	if strings.Join(shared, " ") != "storage/sessions .env" {
		t.Errorf("shared %v, want the example app's (examples/hosts.yml)", shared)
	}
	for _, hk := range append(env.Hooks.BeforeCutover, env.Hooks.AfterCutover...) {
		if strings.Contains(hk.Run, "php") {
			t.Errorf("hook %q needs PHP, which the machine running the sandbox may lack", hk.Run)
		}
	}
}
