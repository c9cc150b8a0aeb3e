package remote

import (
	"context"
	"fmt"
	"strings"
)

// Method names what a Call asks of a host.
type Method string

// The requests a step can make of a host.
const (
	MethodRun     Method = "run"     // run Cmd
	MethodSymlink Method = "symlink" // create Path -> Arg (fails if Path exists)
	MethodRename  Method = "rename"  // rename Path over Arg in one rename(2)
	MethodRemove  Method = "remove"  // remove the file or symlink Path
	MethodAppend  Method = "append"  // append Arg to the file Path
	MethodWrite   Method = "write"   // replace the file Path by one holding Arg
)

// Call is one request that changes a host, as data. A dry run prints what
// String renders from the very value a real run passes to Do, so the two
// cannot drift; a recording Host renders the calls it receives the same way.
// (Reads, which change nothing, are not Calls.)
type Call struct {
	Method Method
	Cmd    Cmd    // MethodRun
	Path   string // every other method
	Arg    string // MethodSymlink: the target; MethodRename: the new path; MethodAppend, MethodWrite: the data
}

// Run is a Call running cmd.
func Run(cmd Cmd) Call { return Call{Method: MethodRun, Cmd: cmd} }

// String is the call as people read it: a command as Cmd.String shows it, an
// SFTP request with its quoted paths.
func (c Call) String() string {
	switch c.Method {
	case MethodRun:
		return c.Cmd.String()
	case MethodSymlink:
		return fmt.Sprintf("sftp symlink %s -> %s", Quote(c.Path), Quote(c.Arg))
	case MethodRename:
		return fmt.Sprintf("sftp posix-rename %s %s", Quote(c.Path), Quote(c.Arg))
	case MethodAppend:
		return fmt.Sprintf("sftp append %s %s", Quote(c.Path), Quote(strings.TrimSuffix(c.Arg, "\n")))
	case MethodWrite:
		return fmt.Sprintf("sftp write %s %s", Quote(c.Path), Quote(c.Arg))
	}
	return fmt.Sprintf("sftp %s %s", c.Method, Quote(c.Path))
}

// Do sends c to h. Its output is a command's standard output.
func Do(ctx context.Context, h Host, c Call) ([]byte, error) {
	switch c.Method {
	case MethodRun:
		return h.Run(ctx, c.Cmd)
	case MethodSymlink:
		return nil, h.Symlink(ctx, c.Arg, c.Path)
	case MethodRename:
		return nil, h.Rename(ctx, c.Path, c.Arg)
	case MethodRemove:
		return nil, h.Remove(ctx, c.Path)
	case MethodAppend:
		return nil, h.AppendFile(ctx, c.Path, []byte(c.Arg))
	case MethodWrite:
		return nil, h.WriteFile(ctx, c.Path, []byte(c.Arg), 0o644)
	}
	return nil, fmt.Errorf("unknown request %q", c.Method)
}
