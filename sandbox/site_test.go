package sandbox

import (
	"bytes"
	"os"
	"path/filepath"
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

// A sandbox folder others can write to, or that holds what another user
// put there, is refused: its keys, app and hooks are taken from it. A new
// one is made 0700.
func TestOpenRefusesFoldersOthersControl(t *testing.T) {
	fresh := filepath.Join(t.TempDir(), "new")
	if err := ownFolder(fresh); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o700 {
		t.Errorf("new folder mode %04o, want 0700", fi.Mode().Perm())
	}
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if _, err := Open(open, 1); err == nil || !strings.Contains(err.Error(), "can be written by other users (mode 0777)") {
		t.Errorf("world-writable folder: %v", err)
	}
	if entries, _ := os.ReadDir(open); len(entries) != 0 {
		t.Errorf("refused, yet it wrote %v", entries)
	}
	planted := filepath.Join(t.TempDir(), "planted")
	os.Mkdir(planted, 0o700)
	os.WriteFile(filepath.Join(planted, "id_ed25519"), []byte("someone's key"), 0o666)
	os.Chmod(filepath.Join(planted, "id_ed25519"), 0o666)
	if _, err := Open(planted, 1); err == nil || !strings.Contains(err.Error(), "id_ed25519 can be written by other users") {
		t.Errorf("planted key: %v", err)
	}
	if os.Geteuid() == 0 {
		os.Chmod(filepath.Join(planted, "id_ed25519"), 0o600)
		os.Lchown(filepath.Join(planted, "id_ed25519"), 65534, 65534)
		if _, err := Open(planted, 1); err == nil || !strings.Contains(err.Error(), "belongs to another user") {
			t.Errorf("a key of another user: %v", err)
		}
	}
}
