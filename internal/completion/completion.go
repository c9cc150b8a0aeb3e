// Package completion writes fleetdeploy's shell completion scripts (bash,
// zsh, fish), made from the app's own commands and flags so that they cannot
// drift from them. The scripts complete environments by asking `fleetdeploy
// completion --environments` (with the -i given so far), which the app
// answers by reading only the inventory's names.
package completion

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Spec is what the scripts need to know that the app's flags do not say.
type Spec struct {
	EnvCommands []string // commands whose argument is an environment
	FileFlags   []string // flags, by first name, whose value is a file
	DirFlags    []string // flags, by first name, whose value is a folder
}

// script is one app's completion, whatever the shell.
type script struct {
	Spec
	commands []*cli.Command
	globals  []cli.Flag
}

// Write writes app's completion script for shell ("bash", "zsh" or
// "fish"). It fails, writing nothing, for another shell, and with the first
// error w returns.
func Write(w io.Writer, app *cli.App, shell string, spec Spec) error {
	s := script{Spec: spec, globals: visible(app.Flags)}
	for _, c := range app.VisibleCommands() {
		s.commands = append(s.commands, c)
	}
	ew := &errWriter{w: w}
	switch shell {
	case "bash":
		s.bash(ew)
	case "zsh":
		s.zsh(ew)
	case "fish":
		s.fish(ew)
	default:
		return fmt.Errorf("no completion for shell %q (bash, zsh, fish)", shell)
	}
	return ew.err
}

// errWriter keeps the first error of w, and writes nothing after it.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	e.err = err
	return n, err
}

func visible(flags []cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, f := range flags {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		out = append(out, f)
	}
	return out
}

func takesValue(f cli.Flag) bool {
	d, ok := f.(cli.DocGenerationFlag)
	return ok && d.TakesValue()
}

func usageOf(f cli.Flag) string {
	if d, ok := f.(cli.DocGenerationFlag); ok {
		return d.GetUsage()
	}
	return ""
}

// spellings are the flags' command-line forms, and which of them take a value.
func spellings(flags []cli.Flag) (all, valued []string) {
	for _, f := range flags {
		for _, n := range f.Names() {
			all = append(all, spelling(n))
			if takesValue(f) {
				valued = append(valued, spelling(n))
			}
		}
	}
	return all, valued
}

func (s script) bash(w io.Writer) {
	globals, valued := spellings(s.globals)
	var names []string
	for _, c := range s.commands {
		names = append(names, c.Name)
		_, v := spellings(c.Flags)
		valued = append(valued, v...)
	}
	slices.Sort(valued)
	valued = slices.Compact(valued)
	var files, dirs []string
	for _, f := range append(slices.Clone(s.globals), allCommandFlags(s.commands)...) {
		switch {
		case slices.Contains(s.FileFlags, f.Names()[0]):
			files = appendNames(files, f)
		case slices.Contains(s.DirFlags, f.Names()[0]):
			dirs = appendNames(dirs, f)
		}
	}
	// Plain arrays and compgen, no mapfile: macOS still ships bash 3.2.
	fmt.Fprintf(w, `# bash completion for fleetdeploy: source <(fleetdeploy completion bash)
_fleetdeploy_reply() {
	local line
	COMPREPLY=()
	while IFS= read -r line; do COMPREPLY+=("$line"); done < <(compgen "$@")
}
_fleetdeploy() {
	local cur prev cmd="" inv="" i w
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	case $prev in
	%s) _fleetdeploy_reply -f -- "$cur"; return ;;
	%s) _fleetdeploy_reply -d -- "$cur"; return ;;
	%s) return ;;
	esac
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-i | --inventory) inv=${COMP_WORDS[i+1]} ;;
		--inventory=*) inv=${w#--inventory=} ;;
		esac
		case $w in
		%s) i=$((i + 1)) ;;
		-*) ;;
		*) if [ -z "$cmd" ]; then cmd=$w; fi ;;
		esac
	done
	if [ -z "$cmd" ]; then
		case $cur in
		-*) _fleetdeploy_reply -W %s -- "$cur" ;;
		*) _fleetdeploy_reply -W %s -- "$cur" ;;
		esac
		return
	fi
	case $cur in
	-*)
		case $cmd in
`, strings.Join(files, " | "), strings.Join(dirs, " | "), strings.Join(valued, " | "), strings.Join(valued, " | "),
		shq(strings.Join(globals, " ")), shq(strings.Join(names, " ")))
	for _, c := range s.commands {
		own, _ := spellings(visible(c.Flags))
		fmt.Fprintf(w, "\t\t%s) _fleetdeploy_reply -W %s -- \"$cur\" ;;\n", c.Name, shq(strings.Join(append(own, globals...), " ")))
	}
	fmt.Fprintf(w, `		esac
		return ;;
	esac
	case $cmd in
	%s)
		_fleetdeploy_reply -W "$(fleetdeploy ${inv:+-i "$inv"} completion --environments 2>/dev/null)" -- "$cur" ;;
	completion) _fleetdeploy_reply -W 'bash zsh fish' -- "$cur" ;;
	esac
}
complete -F _fleetdeploy fleetdeploy
`, strings.Join(s.EnvCommands, " | "))
}

func allCommandFlags(cmds []*cli.Command) []cli.Flag {
	var out []cli.Flag
	for _, c := range cmds {
		out = append(out, c.Flags...)
	}
	return out
}

func appendNames(list []string, f cli.Flag) []string {
	for _, n := range f.Names() {
		list = append(list, spelling(n))
	}
	return list
}

// shq quotes a word for the scripts (POSIX shells and fish alike).
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (s script) zsh(w io.Writer) {
	fmt.Fprintf(w, "#compdef fleetdeploy\n# zsh completion for fleetdeploy: fleetdeploy completion zsh > \"${fpath[1]}/_fleetdeploy\"\n\n")
	fmt.Fprintf(w, "_fleetdeploy_environments() {\n\tlocal inv=${opt_args[-i]:-${opt_args[--inventory]}}\n")
	fmt.Fprintf(w, "\tlocal -a envs\n\tenvs=(${(f)\"$(fleetdeploy ${inv:+-i \"$inv\"} completion --environments 2>/dev/null)\"})\n")
	fmt.Fprintf(w, "\t_describe environment envs\n}\n\n")
	fmt.Fprintf(w, "_fleetdeploy() {\n\tlocal curcontext=$curcontext state line\n\ttypeset -A opt_args\n\tlocal -a commands\n\tcommands=(\n")
	for _, c := range s.commands {
		fmt.Fprintf(w, "\t\t%s\n", shq(c.Name+":"+zshEscape(c.Usage)))
	}
	fmt.Fprintf(w, "\t)\n\t_arguments -C \\\n")
	for _, f := range s.globals {
		fmt.Fprintf(w, "\t\t%s \\\n", s.zshFlag(f))
	}
	fmt.Fprintf(w, "\t\t'1: :->command' \\\n\t\t'*:: :->args'\n")
	fmt.Fprintf(w, "\tcase $state in\n\tcommand) _describe command commands ;;\n\targs)\n\t\tcase $words[1] in\n")
	for _, c := range s.commands {
		fmt.Fprintf(w, "\t\t%s)\n\t\t\t_arguments \\\n", c.Name)
		for _, f := range append(visible(c.Flags), s.globals...) {
			fmt.Fprintf(w, "\t\t\t\t%s \\\n", s.zshFlag(f))
		}
		switch {
		case slices.Contains(s.EnvCommands, c.Name):
			fmt.Fprintf(w, "\t\t\t\t'1:environment:_fleetdeploy_environments'\n")
		case c.Name == "completion":
			fmt.Fprintf(w, "\t\t\t\t'1:shell:(bash zsh fish)'\n")
		default:
			fmt.Fprintf(w, "\t\t\t\t'*: :'\n")
		}
		fmt.Fprintf(w, "\t\t\t;;\n")
	}
	fmt.Fprintf(w, "\t\tesac ;;\n\tesac\n}\n\n_fleetdeploy \"$@\"\n")
}

// zshFlag is a flag as _arguments takes it.
func (s script) zshFlag(f cli.Flag) string {
	names := f.Names()
	help := "[" + zshEscape(usageOf(f)) + "]"
	value := ""
	if takesValue(f) {
		value = ": :"
		switch {
		case slices.Contains(s.FileFlags, names[0]):
			value = ":file:_files"
		case slices.Contains(s.DirFlags, names[0]):
			value = ":folder:_files -/"
		}
	}
	var forms []string
	for _, n := range names {
		sp := spelling(n)
		if takesValue(f) && len(n) > 1 {
			sp += "="
		}
		forms = append(forms, sp)
	}
	if len(forms) == 1 {
		return shq(forms[0] + help + value)
	}
	excl := "(" + strings.Join(spellingsOf(names), " ") + ")"
	return shq(excl) + "{" + strings.Join(quoteEach(forms), ",") + "}" + shq(help+value)
}

func spellingsOf(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = spelling(n)
	}
	return out
}

func quoteEach(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = shq(s)
	}
	return out
}

// zshEscape keeps a description from ending an _arguments spec early.
func zshEscape(s string) string {
	r := strings.NewReplacer("[", `\[`, "]", `\]`, ":", `\:`, "`", "")
	return r.Replace(s)
}

func (s script) fish(w io.Writer) {
	fmt.Fprintf(w, "# fish completion for fleetdeploy: fleetdeploy completion fish > ~/.config/fish/completions/fleetdeploy.fish\n")
	fmt.Fprintf(w, "complete -c fleetdeploy -f\n")
	var names []string
	for _, c := range s.commands {
		names = append(names, c.Name)
		fmt.Fprintf(w, "complete -c fleetdeploy -n __fish_use_subcommand -a %s -d %s\n", c.Name, shq(c.Usage))
	}
	for _, f := range s.globals {
		fmt.Fprintf(w, "complete -c fleetdeploy%s\n", s.fishFlag(f))
	}
	for _, c := range s.commands {
		for _, f := range visible(c.Flags) {
			fmt.Fprintf(w, "complete -c fleetdeploy -n %s%s\n", shq("__fish_seen_subcommand_from "+c.Name), s.fishFlag(f))
		}
	}
	fmt.Fprintf(w, `function __fleetdeploy_environments
	set -l args (commandline -opc)
	set -l inv
	for i in (seq (count $args))
		switch $args[$i]
			case -i --inventory
				set inv -i $args[(math $i + 1)]
			case '--inventory=*'
				set inv -i (string replace -- --inventory= '' $args[$i])
		end
	end
	fleetdeploy $inv completion --environments 2>/dev/null
end
`)
	fmt.Fprintf(w, "complete -c fleetdeploy -n %s -a '(__fleetdeploy_environments)'\n", shq("__fish_seen_subcommand_from "+strings.Join(s.EnvCommands, " ")))
	fmt.Fprintf(w, "complete -c fleetdeploy -n %s -a 'bash zsh fish'\n", shq("__fish_seen_subcommand_from completion"))
}

func (s script) fishFlag(f cli.Flag) string {
	var b strings.Builder
	for _, n := range f.Names() {
		if len(n) == 1 {
			fmt.Fprintf(&b, " -s %s", n)
		} else {
			fmt.Fprintf(&b, " -l %s", n)
		}
	}
	if takesValue(f) {
		b.WriteString(" -r")
		if slices.Contains(s.FileFlags, f.Names()[0]) || slices.Contains(s.DirFlags, f.Names()[0]) {
			b.WriteString(" -F")
		}
	}
	fmt.Fprintf(&b, " -d %s", shq(usageOf(f)))
	return b.String()
}

// spelling is a flag's name as typed: -i, --inventory.
func spelling(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
