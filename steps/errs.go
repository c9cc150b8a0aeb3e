package steps

// LockedError is a host locked by another deploy.
type LockedError struct {
	Holder string // what the holder wrote in the lock
}

func (e *LockedError) Error() string {
	return "locked by another deploy (" + e.Holder + ")"
}
