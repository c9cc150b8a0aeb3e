//go:build bench

package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Machine describes where a run happened, for BENCHMARKS.md.
type Machine struct {
	Date     string
	NProc    int
	CPU      string
	MemTotal string
	Kernel   string
	OS       string
	OpenSSH  string
	Rsync    string
	Go       string
	Storage  string // where the hosts' files (and the app) live
}

// DescribeStorage names the file system holding dir, and says whether
// removing files there slows down later file creation (ext4 without journal).
func DescribeStorage(dir string) (desc string, slowAfterDeletes bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "?", false
	}
	switch st.Type {
	case unix.TMPFS_MAGIC:
		return "tmpfs (in memory, in a private mount namespace made by bench/run.sh)", false
	case unix.EXT4_SUPER_MAGIC:
		dev := mountDevice(dir)
		if j, err := os.ReadFile("/sys/fs/ext4/" + filepath.Base(dev) + "/journal_task"); err == nil && strings.TrimSpace(string(j)) == "<none>" {
			return "ext4 without a journal on " + dev + " (roots kept until the run ends: see bench/README.md)", true
		}
		return "ext4 on " + dev, true
	}
	return fmt.Sprintf("file system type %#x", st.Type), true
}

// mountDevice returns the device of the mount holding dir (longest mount point prefix).
func mountDevice(dir string) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "?"
	}
	best, dev := "", "?"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if (dir == f[1] || strings.HasPrefix(dir, strings.TrimSuffix(f[1], "/")+"/")) && len(f[1]) > len(best) {
			best, dev = f[1], f[0]
		}
	}
	return dev
}

func firstMatch(path, prefix string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(v), ":="))
		}
	}
	return "?"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// DescribeMachine collects the facts; repo is fleetdeploy's checkout.
func DescribeMachine(repo string) Machine {
	m := Machine{
		Date:     time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		NProc:    runtime.NumCPU(),
		CPU:      firstMatch("/proc/cpuinfo", "model name"),
		MemTotal: memTotal(),
		OS:       strings.Trim(firstMatch("/etc/os-release", "PRETTY_NAME"), `"`),
		Go:       runtime.Version(),
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	out, _ := exec.Command("/usr/sbin/sshd", "-V").CombinedOutput() // exits non-zero by design
	m.OpenSSH = firstLine(string(out))
	out, _ = exec.Command("rsync", "--version").Output()
	m.Rsync = firstLine(string(out))
	return m
}

// describeWorktree names the checkout's HEAD and says whether files differ from it.
func describeWorktree(repo string) string {
	out, err := exec.Command("git", "-C", repo, "log", "-1", "--format=%h %cd %s", "--date=format:%Y-%m-%d %H:%M").Output()
	if err != nil {
		return "not a git checkout"
	}
	d := "HEAD " + strings.TrimSpace(string(out))
	st, _ := exec.Command("git", "-C", repo, "status", "--porcelain", "--", ".", ":!bench", ":!BENCHMARKS.md").Output()
	if lines := strings.TrimSpace(string(st)); lines != "" {
		d += fmt.Sprintf(", plus uncommitted changes (%d files changed or new)", strings.Count(lines, "\n")+1)
	}
	return d
}

// clockTicks is USER_HZ, the unit of /proc/stat (100 on every Linux that matters).
const clockTicks = 100

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }

// machineCPU returns the CPU time the machine has spent running tasks (user,
// nice, system) and the time the hypervisor gave to others (steal), since boot.
// Interrupt time is left out: loopback traffic is largely softirq work, ours.
func machineCPU() (run, steal time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]int64
	for i := range v {
		fmt.Sscan(f[i+1], &v[i])
	}
	return ticks(v[0] + v[1] + v[2]), ticks(v[7])
}

// treeCPU is the CPU time of this process, of every child it has waited for,
// and of every live descendant (with the children each of those has waited
// for): the sshd hosts, whose sessions come and go, included. kernel is the
// CPU time of kernel threads (softirq, writeback...), which work for everyone.
func treeCPU() (total, kernel time.Duration) {
	for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
		var ru unix.Rusage
		if unix.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total, 0
	}
	type st struct {
		ppid int
		cpu  int64
	}
	procs := map[int]st{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		var x st
		x.ppid, _ = strconv.Atoi(f[1])
		for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			n, _ := strconv.ParseInt(f[k], 10, 64)
			x.cpu += n
		}
		procs[pid] = x
	}
	self := os.Getpid()
	for pid, p := range procs {
		if pid == 2 || p.ppid == 2 { // kthreadd and its children
			kernel += ticks(p.cpu)
			continue
		}
		if pid == self {
			continue
		}
		for a, hops := p.ppid, 0; a > 1 && hops < 64; hops++ {
			if a == self {
				total += ticks(p.cpu)
				break
			}
			a = procs[a].ppid
		}
	}
	return total, kernel
}

// CPUMark is a point in time to measure other processes' load from.
type CPUMark struct {
	at                       time.Time
	run, steal, tree, kernel time.Duration
}

func MarkCPU() CPUMark {
	m := CPUMark{at: time.Now()}
	m.run, m.steal = machineCPU()
	m.tree, m.kernel = treeCPU()
	return m
}

// Foreign returns the CPU time used since m by processes outside the bench's
// tree (kernel threads left out, plus time stolen by the hypervisor), and its
// share of the machine.
func (m CPUMark) Foreign() (time.Duration, float64) {
	now := MarkCPU()
	f := max(now.run-m.run-(now.tree-m.tree)-(now.kernel-m.kernel), 0) + (now.steal - m.steal)
	return f, float64(f) / float64(now.at.Sub(m.at)*time.Duration(runtime.NumCPU()))
}

// Tree returns the CPU time used since m by the bench's own process tree: the
// bench, every child it started (and waited for) and every live descendant.
func (m CPUMark) Tree() time.Duration {
	now, _ := treeCPU()
	return now - m.tree
}

// LoadAvg is /proc/loadavg's three averages.
func LoadAvg() string {
	la, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(la))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func memTotal() string {
	v := firstMatch("/proc/meminfo", "MemTotal")
	var kb int64
	if _, err := fmt.Sscan(v, &kb); err != nil {
		return v
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}
