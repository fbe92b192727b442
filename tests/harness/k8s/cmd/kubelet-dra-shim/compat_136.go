//go:build !k8s_pre136

// dra.GetNodeFunc takes a context as of 1.36 (k8s_pre136: compat_pre136.go).
package main

import (
	"k8s.io/kubernetes/pkg/kubelet/cm/dra"
)

func (k *kubelet) getNodeFunc() dra.GetNodeFunc { return k.getNode }
