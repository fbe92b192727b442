//go:build k8s_pre135

// APIs of Kubernetes 1.34 (see compat_135.go).
package main

import (
	"context"

	"k8s.io/component-base/featuregate"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

func runPluginManager(ctx context.Context, pm pluginmanager.PluginManager, sr config.SourcesReady) {
	pm.Run(sr, ctx.Done())
}

// 1.34 gates declare no dependencies.
func gateDependencies() map[featuregate.Feature][]featuregate.Feature { return nil }
