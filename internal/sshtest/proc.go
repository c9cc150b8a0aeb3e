package sshtest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A host's processes are found by walking /proc from its listener rather than
// by process group alone: sshd gives every connection, and every session in
// it, a session (and so process group) of its own with setsid, so a signal
// to the listener's group would miss exactly the processes that serve clients.

// proc identifies one process; start (clock ticks after boot) tells a reused
// pid from the process we saw.
type proc struct {
	pid, ppid, pgrp int
	state           byte // as in /proc/PID/stat: R, S, D, T, t, Z, ...
	start           uint64
}

// readProc reads /proc/PID/stat.
func readProc(pid int) (proc, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, err
	}
	// The command name may hold spaces and parentheses; fields follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return proc{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return proc{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	p := proc{pid: pid, state: f[0][0]}
	p.ppid, _ = strconv.Atoi(f[1])
	p.pgrp, _ = strconv.Atoi(f[2])
	p.start, _ = strconv.ParseUint(f[19], 10, 64)
	return p, nil
}

// processTree returns the live (non-zombie) processes descending from root,
// root included, plus any member of root's process group. Empty once root is gone.
func processTree(root int) ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]proc{}
	var group []proc
	var top *proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readProc(pid)
		if err != nil || p.state == 'Z' || p.state == 'X' {
			continue // exited meanwhile, or dead
		}
		switch {
		case pid == root:
			top = &p
		case p.pgrp == root:
			group = append(group, p)
		default:
			children[p.ppid] = append(children[p.ppid], p)
		}
	}
	if top == nil {
		return nil, nil
	}
	for _, p := range group {
		children[p.ppid] = append(children[p.ppid], p)
	}
	tree := []proc{*top}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].pid]...)
	}
	return tree, nil
}

// stopTree sends SIGSTOP to root and all its descendants and returns them once
// every one has stopped. Stopped processes cannot fork, so rescanning until no
// new process appears leaves none running, even while the tree was growing.
func stopTree(root int) ([]proc, error) {
	deadline := time.Now().Add(stopTimeout)
	seen := map[int]bool{}
	var all []proc
	for {
		tree, err := processTree(root)
		if err != nil {
			return all, err
		}
		var fresh []proc
		for _, p := range tree {
			if !seen[p.pid] {
				seen[p.pid] = true
				fresh = append(fresh, p)
			}
		}
		if len(fresh) == 0 {
			return all, nil
		}
		for _, p := range fresh {
			_ = syscall.Kill(p.pid, syscall.SIGSTOP)
		}
		_ = syscall.Kill(-root, syscall.SIGSTOP)
		all = append(all, fresh...)
		if err := waitAll(fresh, deadline, stoppedOrDead); err != nil {
			return all, err
		}
	}
}

// stoppedOrDead reports whether p can no longer run: stopped, exited or
// replaced, or waiting on a vfork child that was stopped before it could exec
// (as dash's children are started): such a parent sleeps in the kernel, where
// a stop signal cannot reach it, until that child runs again.
func stoppedOrDead(p proc) bool {
	now, err := readProc(p.pid)
	if err != nil || now.start != p.start || strings.IndexByte("TtZX", now.state) >= 0 {
		return true
	}
	return now.state == 'D' && inVfork(p.pid)
}

// inVfork reports whether a process waits for its vfork child (its wait
// channel is then the clone call itself).
func inVfork(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/wchan")
	return err == nil && string(b) == "kernel_clone"
}

// dead reports whether p has exited (a zombie counts: it runs nothing and holds
// no socket, only its parent may reap it).
func dead(p proc) bool {
	now, err := readProc(p.pid)
	return errors.Is(err, fs.ErrNotExist) || err == nil && (now.start != p.start || now.state == 'Z' || now.state == 'X')
}

// waitAll polls until cond holds for every process or the deadline passes.
func waitAll(procs []proc, deadline time.Time, cond func(proc) bool) error {
	backoff := 100 * time.Microsecond
	for {
		var pending []int
		for _, p := range procs {
			if !cond(p) {
				pending = append(pending, p.pid)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("processes %v did not stop in time", pending)
		}
		retry := time.NewTimer(backoff)
		<-retry.C
		backoff = min(2*backoff, 10*time.Millisecond)
	}
}
