#!/usr/bin/env bash
# cmake/code_version.cmake, the build-time code version runs record (env.json, run ids): the
# commit of a clean tree; a dirty flag and a hash that follows the content of uncommitted
# changes to tracked sources (results/ and untracked files aside); "unknown" outside git; and
# no rewrite of the generated file when nothing changed (so a build relinks nothing).
#   code_version_test.sh <cmake> <cmake/code_version.cmake>
set -euo pipefail
cmake_bin=$1 script=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; echo "--- generated:"; cat "$work/out.cpp" 2>/dev/null; exit 1; }
generate() { "$cmake_bin" -DSOURCE_DIR="$work/repo" -DOUTPUT="$work/out.cpp" -P "$script"; }
version() { grep -o 'CodeVersion{[^}]*}' "$work/out.cpp"; }

mkdir -p "$work/repo/results" && cd "$work/repo"
generate
[[ $(version) == 'CodeVersion{"unknown", false, ""}' ]] || fail "outside git: $(version)"
git init -q . && git config user.email t@t && git config user.name t
echo 'int main() {}' > main.cpp && echo '1' > results/table.md
git add . && git commit -qm one
head=$(git rev-parse HEAD)
generate
[[ $(version) == "CodeVersion{\"$head\", false, \"\"}" ]] || fail "clean tree: $(version)"
stamp=$(stat -c %Y.%N "$work/out.cpp"); sleep 1.1
generate
[[ $(stat -c %Y.%N "$work/out.cpp") == "$stamp" ]] || fail "rewritten although nothing changed"
echo '2' > results/table.md && echo 'scratch' > untracked.txt
generate
[[ $(version) == "CodeVersion{\"$head\", false, \"\"}" ]] || fail "results/ or untracked files made it dirty: $(version)"
echo 'int main() { return 1; }' > main.cpp
generate
first=$(version)
[[ $first =~ ^CodeVersion\{\"$head\",\ true,\ \"[0-9a-f]{12}\"\}$ ]] || fail "dirty tree: $first"
echo 'int main() { return 2; }' > main.cpp
generate
[[ $(version) != "$first" && $(version) == *"\"$head\", true,"* ]] || fail "another change, same hash: $(version)"
git commit -qam two
generate
[[ $(version) == "CodeVersion{\"$(git rev-parse HEAD)\", false, \"\"}" ]] || fail "after the commit: $(version)"
echo "code_version: ok"
