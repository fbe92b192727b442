// etcd: the upstream etcd server main (etcd-io/etcd server/etcdmain), built from the Go
// module proxy. Debian's etcd 3.4 is too old for kube-apiserver 1.35+ (no working
// RequestWatchProgress, so watch-list fails); kubeadm pairs these releases with etcd 3.6.
// The repo-root etcd module has relative replaces, hence this wrapper.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
