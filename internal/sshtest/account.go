package sshtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// testUser is the login user when tests run as root: root's own shell start-up
// files are slow here and would be paid on every remote command.
const testUser = "fdtest"

// account is the login user of a fleet.
type account struct {
	name   string
	home   string
	uid    int
	gid    int
	groups []uint32
	other  bool // not the user running the test: switch credentials to act as it
}

// loginAccount returns the current user, or fdtest (created if absent) for root.
func loginAccount() (*account, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, err
		}
		return newAccount(u, false)
	}
	u, err := ensureTestUser()
	if err != nil {
		return nil, err
	}
	return newAccount(u, true)
}

func newAccount(u *user.User, other bool) (*account, error) {
	a := &account{name: u.Username, home: u.HomeDir, other: other}
	var err error
	if a.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, err
	}
	if a.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, err
	}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, err
	}
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, err
		}
		a.groups = append(a.groups, uint32(n))
	}
	return a, nil
}

// ensureTestUser creates testUser if absent and unlocks it if locked, once
// even when several test binaries (go test ./... runs packages in parallel)
// get here at the same time.
func ensureTestUser() (*user.User, error) {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "fleetdeploy-sshtest-user.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close() // releases the flock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	// With PAM off, sshd refuses a locked account (password "!..."), which is
	// what a plain useradd creates; "*" allows no password login either.
	if u, err := user.Lookup(testUser); err == nil {
		locked, err := passwordLocked(testUser)
		if err != nil || !locked {
			return u, err
		}
		if out, err := exec.Command("/usr/sbin/usermod", "--password", "*", testUser).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("unlocking user %s: %v: %s", testUser, err, out)
		}
		return u, nil
	}
	out, err := exec.Command("/usr/sbin/useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", testUser).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 9) { // 9: name in use, made by someone else
		return nil, fmt.Errorf("creating user %s: %v: %s", testUser, err, out)
	}
	return user.Lookup(testUser)
}

// passwordLocked reports whether /etc/shadow marks name's password as locked.
func passwordLocked(name string) (bool, error) {
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(string(shadow)) {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.HasPrefix(rest, "!"), nil
		}
	}
	return false, nil
}

// env is the environment a login shell of the account would start with.
func (a *account) env() []string {
	return []string{
		"HOME=" + a.home,
		"USER=" + a.name,
		"LOGNAME=" + a.name,
		"SHELL=/bin/sh",
		"PATH=/usr/local/bin:/usr/bin:/bin",
	}
}

// sysProcAttr makes a child process run as the account.
func (a *account) sysProcAttr() *syscall.SysProcAttr {
	if !a.other {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(a.uid), Gid: uint32(a.gid), Groups: a.groups,
	}}
}
