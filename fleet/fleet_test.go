package fleet

import "testing"

// Only OpenSSH hosts get a paced upload.
func TestWindow(t *testing.T) {
	f := &Fleet{openssh: map[string]bool{"web1": true, "sandbox1": false}}
	if got := f.Window("web1", 300); got != 300 {
		t.Errorf("OpenSSH host: window %d, want 300", got)
	}
	if got := f.Window("sandbox1", 300); got != 0 {
		t.Errorf("other server: window %d, want 0 (not paced)", got)
	}
}
