package main

import (
	"os"
	"os/exec"
	"testing"
)

// TestMain lets a test run this very binary as fleetdeploy itself (main,
// its signal handling and its exit code), for tests that need a real
// process: a terminal, a SIGINT. See fdCommand.
func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// asMain set to 1 makes the test binary run main.
const asMain = "FLEETDEPLOY_TEST_AS_MAIN"

// fdCommand is fleetdeploy as a process: this test binary running main.
func fdCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	// Under -race, a process sleeps a second before it exits (GORACE's
	// atexit_sleep_ms): not fleetdeploy's time.
	cmd.Env = append(os.Environ(), asMain+"=1", "GORACE=atexit_sleep_ms=0")
	return cmd
}
