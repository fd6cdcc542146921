// Command etcd is etcd's own server main (etcd server/main.go), built from the
// etcd version that k8s.io/kubernetes pins in this module's graph, so the test
// etcd always matches the kube-apiserver built next to it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
