package steps

import "fmt"

// LockedError is a host locked by another run, or by something that is not
// fleetdeploy's lock.
type LockedError struct {
	Lock *LockInfo
	Env  string // the environment, for the unlock command in the message ("" to leave it out)
}

func (e *LockedError) Error() string {
	li := e.Lock
	env := e.Env
	if env == "" {
		env = "ENV"
	}
	switch {
	case li.NotOurs != "":
		return fmt.Sprintf("%s: look at it, then remove it (fleetdeploy unlock --force %s)", li.Describe(), env)
	case li.Stale():
		return fmt.Sprintf("locked by a run that stopped refreshing its lock: %s", li.Describe())
	case li.Holder.Lease > 0 && !li.Now.IsZero():
		return fmt.Sprintf("locked by another deploy: %s; it is alive: wait for it to finish (if you know it is dead: fleetdeploy unlock --force %s)", li.Describe(), env)
	}
	return fmt.Sprintf("locked by another deploy: %s; if that run is dead: fleetdeploy unlock %s", li.Describe(), env)
}
