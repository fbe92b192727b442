//go:build k8s_pre137

// Kubelet APIs of Kubernetes 1.34 to 1.36 (see compat_137.go).
package main

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/kubelet/cm/dra"
)

func (r *recordingHandler) ValidatePlugin(name, endpoint string, versions []string) error {
	return r.onValidate(name, endpoint, versions, r.inner.ValidatePlugin(name, endpoint, versions))
}

func (r *recordingHandler) RegisterPlugin(name, endpoint string, versions []string, timeout *time.Duration) error {
	return r.onRegister(name, endpoint, versions, r.inner.RegisterPlugin(name, endpoint, versions, timeout))
}

func (r *recordingHandler) DeRegisterPlugin(name, endpoint string) {
	r.inner.DeRegisterPlugin(name, endpoint)
	r.onDeregister(name, endpoint)
}

func updateAllocatedResourcesStatus(_ context.Context, m *dra.Manager, pod *v1.Pod, status *v1.PodStatus) {
	m.UpdateAllocatedResourcesStatus(pod, status)
}

func stopManager(*dra.Manager) {} // no Stop before 1.37; the process exits anyway
