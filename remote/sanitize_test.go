package remote

import "testing"

func TestSanitize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want, lines string }{
		{"plain text, üñíçødé", "plain text, üñíçødé", "plain text, üñíçødé"},
		{"two\nlines", `two\nlines`, "two\nlines"},
		{"tab\there\r", `tab\there\r`, `tab\there\r`},
		{"\x1b]0;pwned\x07title", `\x1b]0;pwned\x07title`, `\x1b]0;pwned\x07title`},
		{"red \x1b[31mtext\x1b[0m", `red \x1b[31mtext\x1b[0m`, `red \x1b[31mtext\x1b[0m`},
		{"nul\x00del\x7f", `nul\x00del\x7f`, `nul\x00del\x7f`},
		{"c1 \u009b2J csi", `c1 \u009b2J csi`, `c1 \u009b2J csi`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`, `bidi \u202egnp.exe`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`, `bad \xff\xfe utf8`},
		{`back\slash`, `back\slash`, `back\slash`},
	} {
		if got := Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := SanitizeLines(tc.in); got != tc.lines {
			t.Errorf("SanitizeLines(%q) = %q, want %q", tc.in, got, tc.lines)
		}
	}
}
