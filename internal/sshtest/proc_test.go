package sshtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A shell's child stopped between vfork and exec leaves the shell asleep in the
// kernel, out of reach of SIGSTOP: stopping the tree must still succeed (it
// used to wait 5 s and fail when Kill caught a host's shell at that moment).
func TestStopTreeVforkParent(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to make a vfork parent")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "vf.c")
	prog := `#include <signal.h>
#include <unistd.h>
int main(void) {
	if (vfork() == 0) { raise(SIGSTOP); execl("/bin/true", "true", (char *)0); _exit(1); }
	return 0;
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "vf")
	if out, err := exec.Command(cc, "-o", bin, src).CombinedOutput(); err != nil {
		t.Skipf("cc: %v: %s", err, out)
	}
	cmd := exec.Command(bin)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	parent := cmd.Process.Pid
	defer func() {
		if tree, _ := processTree(parent); len(tree) > 0 {
			for _, p := range tree {
				syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
		cmd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tree, err := processTree(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(tree) == 2 && tree[1].state == 'T' && inVfork(parent) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no vfork parent with a stopped child: %+v", tree)
		}
		// Nothing signals a process's state: poll /proc, as waitAll does.
		poll := time.NewTimer(time.Millisecond)
		<-poll.C
	}
	start := time.Now()
	if _, err := stopTree(parent); err != nil {
		t.Fatalf("stopTree: %v", err)
	}
	if d := time.Since(start); d > stopTimeout/2 {
		t.Errorf("stopTree took %v", d)
	}
}
