//go:build tools

// The main package this module builds; never compiled (build tag), it keeps `go mod tidy`
// from dropping what `go build` needs.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
