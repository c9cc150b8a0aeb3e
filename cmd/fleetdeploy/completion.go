package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/urfave/cli/v2"
)

// completionCommand prints a shell's completion script, made from the
// app's own commands and flags so that it cannot drift from them. The
// scripts complete environments by asking `fleetdeploy completion
// --environments` (with the -i given so far), which reads only the names.
func completionCommand(c *common) *cli.Command {
	return &cli.Command{
		Name: "completion", Usage: "print the completion script for bash, zsh or fish", ArgsUsage: "bash|zsh|fish",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "environments", Hidden: true, Usage: "list the inventory's environments, one per line (for the scripts)"}},
		Action: func(cc *cli.Context) error {
			if cc.Bool("environments") {
				names, _ := inventory.LoadNames(c.inventory) // completing: say nothing rather than an error
				for _, n := range names {
					fmt.Fprintln(c.stdout, n)
				}
				return nil
			}
			shell := cc.Args().First()
			if cc.NArg() != 1 || !slices.Contains([]string{"bash", "zsh", "fish"}, shell) {
				return &usageError{"usage: fleetdeploy completion bash|zsh|fish"}
			}
			writeCompletion(c.stdout, cc.App, shell)
			return nil
		},
	}
}

// complSpec is what the scripts need to know of the app.
type complSpec struct {
	commands []*cli.Command
	globals  []cli.Flag
}

// envCommands take an environment as their argument.
var envCommands = []string{"up", "plan", "rollback", "status", "unlock"}

// fileFlags and dirFlags take a file or a folder as their value.
var (
	fileFlags = []string{"inventory", "ssh-config"}
	dirFlags  = []string{"cache-dir", "dir"}
)

func writeCompletion(w io.Writer, app *cli.App, shell string) {
	s := complSpec{globals: visible(app.Flags)}
	for _, c := range app.VisibleCommands() {
		s.commands = append(s.commands, c)
	}
	switch shell {
	case "bash":
		s.bash(w)
	case "zsh":
		s.zsh(w)
	case "fish":
		s.fish(w)
	}
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

func (s complSpec) bash(w io.Writer) {
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
		case slices.Contains(fileFlags, f.Names()[0]):
			files = appendNames(files, f)
		case slices.Contains(dirFlags, f.Names()[0]):
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
`, strings.Join(envCommands, " | "))
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

func (s complSpec) zsh(w io.Writer) {
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
		fmt.Fprintf(w, "\t\t%s \\\n", zshFlag(f))
	}
	fmt.Fprintf(w, "\t\t'1: :->command' \\\n\t\t'*:: :->args'\n")
	fmt.Fprintf(w, "\tcase $state in\n\tcommand) _describe command commands ;;\n\targs)\n\t\tcase $words[1] in\n")
	for _, c := range s.commands {
		fmt.Fprintf(w, "\t\t%s)\n\t\t\t_arguments \\\n", c.Name)
		for _, f := range append(visible(c.Flags), s.globals...) {
			fmt.Fprintf(w, "\t\t\t\t%s \\\n", zshFlag(f))
		}
		switch {
		case slices.Contains(envCommands, c.Name):
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
func zshFlag(f cli.Flag) string {
	names := f.Names()
	help := "[" + zshEscape(usageOf(f)) + "]"
	value := ""
	if takesValue(f) {
		value = ": :"
		switch {
		case slices.Contains(fileFlags, names[0]):
			value = ":file:_files"
		case slices.Contains(dirFlags, names[0]):
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

func (s complSpec) fish(w io.Writer) {
	fmt.Fprintf(w, "# fish completion for fleetdeploy: fleetdeploy completion fish > ~/.config/fish/completions/fleetdeploy.fish\n")
	fmt.Fprintf(w, "complete -c fleetdeploy -f\n")
	var names []string
	for _, c := range s.commands {
		names = append(names, c.Name)
		fmt.Fprintf(w, "complete -c fleetdeploy -n __fish_use_subcommand -a %s -d %s\n", c.Name, shq(c.Usage))
	}
	for _, f := range s.globals {
		fmt.Fprintf(w, "complete -c fleetdeploy%s\n", fishFlag(f))
	}
	for _, c := range s.commands {
		for _, f := range visible(c.Flags) {
			fmt.Fprintf(w, "complete -c fleetdeploy -n %s%s\n", shq("__fish_seen_subcommand_from "+c.Name), fishFlag(f))
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
	fmt.Fprintf(w, "complete -c fleetdeploy -n %s -a '(__fleetdeploy_environments)'\n", shq("__fish_seen_subcommand_from "+strings.Join(envCommands, " ")))
	fmt.Fprintf(w, "complete -c fleetdeploy -n %s -a 'bash zsh fish'\n", shq("__fish_seen_subcommand_from completion"))
}

func fishFlag(f cli.Flag) string {
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
		if slices.Contains(fileFlags, f.Names()[0]) || slices.Contains(dirFlags, f.Names()[0]) {
			b.WriteString(" -F")
		}
	}
	fmt.Fprintf(&b, " -d %s", shq(usageOf(f)))
	return b.String()
}
