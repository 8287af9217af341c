#!/usr/bin/env bash
# Every Catch2 test case must run in some CTest group (tests/CMakeLists.txt runs the suite by
# tag): a test whose tags are all missing from the group list would silently never run.
# Usage: check_tags.sh <blocklab_tests> <group>...
set -euo pipefail
bin=$1
shift
all=$("$bin" --list-test-names-only || true)
all=$(printf '%s\n' "$all" | sed '/^$/d' | sort -u)
covered=$(for group in "$@"; do "$bin" --list-test-names-only "[$group]" || true; done | sed '/^$/d' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$all") <(printf '%s\n' "$covered"))
if [ -n "$missing" ]; then
  echo "test cases that no CTest group runs (give them a tag from the list in tests/CMakeLists.txt,"
  echo "or add their tag to that list):"
  printf '  %s\n' "$missing"
  exit 1
fi
echo "all $(printf '%s\n' "$all" | wc -l) test cases run in one of $# CTest groups"
