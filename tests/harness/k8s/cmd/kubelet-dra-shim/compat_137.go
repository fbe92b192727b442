//go:build !k8s_pre137

// Kubelet APIs as of Kubernetes 1.37. build-harness.sh sets the k8s_pre137 tag for older
// versions, which selects compat_pre137.go instead.
package main

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/cm/dra"
)

func (r *recordingHandler) ValidatePlugin(ctx context.Context, name, endpoint string, versions []string) error {
	return r.onValidate(name, endpoint, versions, r.inner.ValidatePlugin(ctx, name, endpoint, versions))
}

func (r *recordingHandler) RegisterPlugin(ctx context.Context, name, endpoint string, versions []string, timeout *time.Duration) error {
	return r.onRegister(name, endpoint, versions, r.inner.RegisterPlugin(ctx, name, endpoint, versions, timeout))
}

func (r *recordingHandler) DeRegisterPlugin(ctx context.Context, name, endpoint string) {
	r.inner.DeRegisterPlugin(ctx, name, endpoint)
	r.onDeregister(name, endpoint)
}

func updateAllocatedResourcesStatus(ctx context.Context, m *dra.Manager, pod *v1.Pod, status *v1.PodStatus) {
	m.UpdateAllocatedResourcesStatus(klog.FromContext(ctx), pod, status)
}

// stopManager waits for the DRA plugin manager's goroutines (1.37+).
func stopManager(m *dra.Manager) { m.Stop() }
