#!/usr/bin/env bash
# Maintainers: write go/kubernetes-vX.Y.Z/ (go.mod with one replace line per staging module that
# k8s.io/kubernetes' own go.mod points at ./staging, their published v0.Y.Z; tools.go; go.sum by
# `go mod tidy`). Then add the directory to src/artifacts/build.rs. Usage: go/new-kubernetes-module.sh 1.37.2
set -euo pipefail
v=${1#v}; minor=$(cut -d. -f2 <<<"$v"); patch=$(cut -d. -f3 <<<"$v")
cd "$(dirname "$0")"
dir=kubernetes-v$v
mod=$(go mod download -json "k8s.io/kubernetes@v$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
gover=$(sed -n 's/^go \(.*\)/\1/p' "$mod")
mkdir -p "$dir"
{
  echo "// Builds the Kubernetes components of release v$v from the Go module proxy (kubicluster artifacts build)."
  echo "module kubicluster.local/build/kubernetes"
  echo
  echo "go $gover"
  grep "^godebug" "$mod" | sed "s/^/\n/" || true
  echo
  echo "require k8s.io/kubernetes v$v"
  echo
  echo "replace ("
  grep '=> ./staging' "$mod" | awk -v sv="v0.$minor.$patch" '{print "\t" $1 " => " $1 " " sv}'
  echo ")"
} >"$dir/go.mod"
cp kubernetes-v1.37.2/tools.go "$dir/tools.go" 2>/dev/null || true
(cd "$dir" && go mod tidy)
echo "wrote go/$dir"
