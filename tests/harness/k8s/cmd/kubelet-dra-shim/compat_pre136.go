//go:build k8s_pre136

// dra.GetNodeFunc of 1.34 and 1.35 (see compat_136.go).
package main

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/kubelet/cm/dra"
)

func (k *kubelet) getNodeFunc() dra.GetNodeFunc {
	return func() (*v1.Node, error) { return k.getNode(context.Background()) }
}
