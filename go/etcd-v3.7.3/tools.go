//go:build tools

// The main packages this module builds; never compiled (build tag), it keeps `go mod tidy`
// from dropping what `go build` needs.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
