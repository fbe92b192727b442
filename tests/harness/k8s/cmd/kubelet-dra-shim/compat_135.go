//go:build !k8s_pre135

// APIs as of Kubernetes 1.35: plugin manager Run takes a context, feature gates declare
// dependencies. build-harness.sh sets k8s_pre135 for 1.34 (compat_pre135.go).
package main

import (
	"context"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

func runPluginManager(ctx context.Context, pm pluginmanager.PluginManager, sr config.SourcesReady) {
	pm.Run(ctx, sr, ctx.Done())
}

func gateDependencies() map[featuregate.Feature][]featuregate.Feature {
	return utilfeature.DefaultMutableFeatureGate.Dependencies()
}
