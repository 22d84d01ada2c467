#!/bin/sh
# Runs a command, prints its output and then "rc=<exit status>", so that one
# ctest regular expression checks both the message and the exit status.
"$@" 2>&1
echo "rc=$?"
