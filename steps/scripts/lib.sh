#!/bin/sh
# Functions shared by the host scripts: Go puts this file in front of each
# script that needs it (steps/scripts.go), so they cost no process start.

# identities lists the files below the current folder, one per line, as
# "path<TAB>size<TAB>mtime<TAB>inode". The record written after a deploy and
# the check made before the next must use the very same listing, or every
# file looks changed. (Records made from a delta by earlier versions hold
# lines for the files sent listed as "./path"; readers drop that prefix.)
identities() {
	find . -type f -printf '%P\t%s\t%T@\t%i\n'
}
