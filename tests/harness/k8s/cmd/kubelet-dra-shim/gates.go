package main

import (
	"fmt"
	"sort"
	"strings"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	"k8s.io/klog/v2"
	_ "k8s.io/kubernetes/pkg/features" // registers the kube feature gates, as in the kubelet
)

// isDRAGate selects the gates of DRA and of the kubelet-side DRA features (health).
func isDRAGate(name string) bool {
	return strings.HasPrefix(name, "DRA") || name == "DynamicResourceAllocation" ||
		strings.HasPrefix(name, "ResourceHealthStatus") || name == "KubeletPodResourcesDynamicResources"
}

// draGates returns every DRA gate of this Kubernetes version that can be switched on, as
// a sorted name->true map. Gates locked to their default are left out (setting them is
// an error), and so are gates whose dependencies (1.35+ declares them) are not on: the
// apiserver refuses such a set at startup. The harness passes this exact set to the
// apiserver and to this shim, so all components agree.
func draGates() map[string]bool {
	fg := utilfeature.DefaultMutableFeatureGate
	all := fg.GetAll()
	on := map[string]bool{}
	for name, spec := range all {
		if isDRAGate(string(name)) {
			if spec.LockToDefault {
				klog.V(2).InfoS("DRA gate locked to its default, not set", "gate", name, "default", spec.Default)
				continue
			}
			on[string(name)] = true
		}
	}
	deps := gateDependencies()
	enabled := func(f featuregate.Feature) bool {
		if on[string(f)] {
			return true
		}
		spec, ok := all[f]
		return ok && spec.Default
	}
	for changed := true; changed; {
		changed = false
		for name := range on {
			for _, d := range deps[featuregate.Feature(name)] {
				if !enabled(d) {
					klog.V(2).InfoS("DRA gate left out, a dependency is off", "gate", name, "dependency", d)
					delete(on, name)
					changed = true
					break
				}
			}
		}
	}
	return on
}

// gatesFlag renders gates as a --feature-gates value.
func gatesFlag(gates map[string]bool) string {
	names := make([]string, 0, len(gates))
	for n := range gates {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%t", n, gates[n]))
	}
	return strings.Join(parts, ",")
}
