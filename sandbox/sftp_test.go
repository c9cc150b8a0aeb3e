package sandbox

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/pkg/sftp"
)

// sftpBehaviour is what fleetdeploy needs from an SFTP server, checked
// through pkg/sftp's client. home is the directory relative paths resolve
// against (the user's home under OpenSSH).
func sftpBehaviour(t *testing.T, c *sftp.Client, home string) {
	t.Helper()
	if v, ok := c.HasExtension("posix-rename@openssh.com"); !ok || v != "1" {
		t.Fatalf("posix-rename@openssh.com not advertised (%q, %v)", v, ok)
	}

	wd, err := c.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want := realDir(t, home); realDir(t, wd) != want {
		t.Errorf("Getwd = %q, want %q", wd, want)
	}

	root := filepath.Join(home, "www")
	for _, d := range []string{"builds/1", "builds/2", "shared"} {
		if err := c.MkdirAll(filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}

	// Atomic write: exclusive temp name, then posix-rename over the final name.
	for _, b := range []string{"1", "2"} {
		final := filepath.Join(root, "builds", b, "VERSION")
		tmp := final + ".tmp"
		w, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("v" + b)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.PosixRename(tmp, final); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.OpenFile(filepath.Join(root, "builds/1/VERSION"), os.O_WRONLY|os.O_CREATE|os.O_EXCL); err == nil {
		t.Error("O_EXCL create over an existing file succeeded")
	}

	// Symlink(target, link) makes link -> target, target stored verbatim.
	latest := filepath.Join(root, "latest")
	if err := c.Symlink("builds/1", latest); err != nil {
		t.Fatal(err)
	}
	assertLink(t, c, latest, "builds/1")

	// The cutover: a new link at a temp name, posix-renamed over the live one.
	if err := c.Symlink("builds/2", latest+".next"); err != nil {
		t.Fatal(err)
	}
	if err := c.PosixRename(latest+".next", latest); err != nil {
		t.Fatal(err)
	}
	assertLink(t, c, latest, "builds/2")
	if _, err := c.Lstat(latest + ".next"); !os.IsNotExist(err) {
		t.Errorf("temp link still there after rename: %v", err)
	}
	if fi, err := c.Stat(latest); err != nil || !fi.IsDir() {
		t.Errorf("Stat(latest) = %v, %v; want the build directory", fi, err)
	}
	r, err := c.Open(filepath.Join(latest, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || string(got) != "v2" {
		t.Errorf("latest/VERSION = %q, %v; want v2", got, err)
	}

	entries, err := c.ReadDir(filepath.Join(root, "builds"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"1", "2"}) {
		t.Errorf("ReadDir(builds) = %v", names)
	}

	// Removing a link leaves its target.
	if err := c.Remove(latest); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(latest); !os.IsNotExist(err) {
		t.Errorf("latest still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "builds/2/VERSION")); err != nil {
		t.Errorf("removing the link hurt its target: %v", err)
	}
	if err := c.Remove(filepath.Join(root, "builds/1/VERSION")); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveDirectory(filepath.Join(root, "builds/1")); err != nil {
		t.Fatal(err)
	}

	// Relative paths resolve against home; relative link targets stay relative.
	if err := c.Mkdir("rel"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(home, "rel")); err != nil || !fi.IsDir() {
		t.Fatalf("Mkdir(rel) did not create %s/rel: %v", home, err)
	}
	if err := c.Symlink("../www/builds/2", "rel/current"); err != nil {
		t.Fatal(err)
	}
	assertLink(t, c, filepath.Join(home, "rel/current"), "../www/builds/2")
	if err := c.PosixRename("rel/current", "rel/live"); err != nil {
		t.Fatal(err)
	}
	if target, err := c.ReadLink("rel/live"); err != nil || target != "../www/builds/2" {
		t.Errorf("ReadLink(rel/live) = %q, %v", target, err)
	}
	if _, err := c.Stat("rel/live/VERSION"); err != nil {
		t.Errorf("relative link does not resolve: %v", err)
	}
}

// assertLink checks link -> target both over SFTP and on disk.
func assertLink(t *testing.T, c *sftp.Client, link, target string) {
	t.Helper()
	if got, err := c.ReadLink(link); err != nil || got != target {
		t.Errorf("ReadLink(%s) = %q, %v; want %q", link, got, err, target)
	}
	if got, err := os.Readlink(link); err != nil || got != target {
		t.Errorf("on disk %s -> %q, %v; want %q", link, got, err, target)
	}
	if fi, err := c.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("Lstat(%s) = %v, %v; want a symlink", link, fi, err)
	}
}

func realDir(t *testing.T, dir string) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The same behaviour against OpenSSH's own sftp-server, run in home as sshd
// runs it: this pins that pkg/sftp's client and both servers agree on the
// order of SSH_FXP_SYMLINK's arguments.
func TestSFTPBehaviourMatchesOpenSSH(t *testing.T) {
	var bin string
	for _, p := range []string{"/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server"} {
		if _, err := os.Stat(p); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("OpenSSH sftp-server not installed")
	}
	home := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = home
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	c, err := sftp.NewClientPipe(stdout, stdin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sftpBehaviour(t, c, home)
}

// packet frames an SFTP packet: uint32 length, type, body.
func packet(typ byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)+1))
	return append(append(out, typ), b...)
}

func str(s string) []byte { return appendSFTPString(nil, s) }

func TestSFTPPathsRewritesOnlyPaths(t *testing.T) {
	id := []byte{0, 0, 0, 9}
	attrs := []byte{0, 0, 0, 4, 0, 0, 1, 0xa4} // permissions 0644
	tests := []struct {
		name    string
		in, out []byte
	}{
		{"init untouched", packet(1, []byte{0, 0, 0, 3}), packet(1, []byte{0, 0, 0, 3})},
		{"relative open", packet(fxpOpen, id, str("www/a"), []byte{0, 0, 0, 0x1a}, attrs),
			packet(fxpOpen, id, str("/h/www/a"), []byte{0, 0, 0, 0x1a}, attrs)},
		{"absolute stat", packet(fxpStat, id, str("/etc/x")), packet(fxpStat, id, str("/etc/x"))},
		{"realpath dot", packet(fxpRealpath, id, str(".")), packet(fxpRealpath, id, str("/h/."))},
		{"realpath empty", packet(fxpRealpath, id, str("")), packet(fxpRealpath, id, str("/h"))},
		{"rename both", packet(fxpRename, id, str("a"), str("/b")), packet(fxpRename, id, str("/h/a"), str("/b"))},
		{"symlink target verbatim", packet(fxpSymlink, id, str("builds/1"), str("www/latest")),
			packet(fxpSymlink, id, str("builds/1"), str("/h/www/latest"))},
		{"posix-rename", packet(fxpExtended, id, str("posix-rename@openssh.com"), str("x.tmp"), str("x")),
			packet(fxpExtended, id, str("posix-rename@openssh.com"), str("/h/x.tmp"), str("/h/x"))},
		{"unknown extension untouched", packet(fxpExtended, id, str("fsync@openssh.com"), str("handle")),
			packet(fxpExtended, id, str("fsync@openssh.com"), str("handle"))},
		{"write untouched", packet(6, id, str("h1"), make([]byte, 8), str("data")), packet(6, id, str("h1"), make([]byte, 8), str("data"))},
		{"truncated left for pkg/sftp", packet(fxpStat, id, []byte{0, 0, 0, 99, 'a'}), packet(fxpStat, id, []byte{0, 0, 0, 99, 'a'})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two packets, read a byte at a time: framing must survive any split.
			in := append(append([]byte(nil), tt.in...), tt.in...)
			want := append(append([]byte(nil), tt.out...), tt.out...)
			got, err := io.ReadAll(iotest.OneByteReader(&sftpPaths{r: bytes.NewReader(in), dir: "/h"}))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func TestSFTPPathsTruncatedStream(t *testing.T) {
	p := packet(6, []byte{0, 0, 0, 1}, make([]byte, 100))
	_, err := io.ReadAll(&sftpPaths{r: bytes.NewReader(p[:50])})
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
}
