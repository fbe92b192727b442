// cdi-check loads a CDI spec directory with the reference CDI library
// (tags.cncf.io/container-device-interface, the code containerd and CRI-O use), resolves
// fully-qualified device IDs (vendor/class=name) and injects them into an empty OCI spec,
// as a runtime does for the CDI IDs the kubelet passes in CreateContainer.
//
// Output: JSON {"devices": {id: spec file}, "edits": {env, mounts, deviceNodes, hooks,
// additionalGids, annotations}}. Exit 1 with a message on stderr when any spec in the
// directory fails to load or validate, or any ID is unresolvable.
//
// usage: cdi-check --spec-dir DIR ID...
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"dra-framework.invalid/harness/tools/internal/kube"
)

type edits struct {
	Env            []string          `json:"env"`
	Mounts         []oci.Mount       `json:"mounts"`
	DeviceNodes    []oci.LinuxDevice `json:"deviceNodes"`
	Hooks          *oci.Hooks        `json:"hooks,omitempty"`
	AdditionalGIDs []uint32          `json:"additionalGids,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
}

func main() {
	var dirs multi
	flag.Var(&dirs, "spec-dir", "CDI spec directory (repeatable; later dirs have priority, as in a runtime)")
	flag.Parse()
	ids := flag.Args()
	if len(dirs) == 0 {
		kube.Fail(2, "usage: cdi-check --spec-dir DIR [--spec-dir DIR2] ID...")
	}
	// No auto refresh: one deterministic scan, like a runtime's initial load.
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
	if err != nil && len(cache.GetErrors()) == 0 {
		kube.Fail(1, "cdi-check: %v", err)
	}
	// A runtime skips invalid spec files and logs them; for a driver's own output that is
	// a bug, so every load or validation error fails the check.
	if errs := cache.GetErrors(); len(errs) > 0 {
		var msgs []string
		for path, list := range errs {
			for _, e := range list {
				msgs = append(msgs, fmt.Sprintf("%s: %v", path, e))
			}
		}
		sort.Strings(msgs)
		kube.Fail(1, "cdi-check: invalid CDI spec(s):\n  %s", strings.Join(msgs, "\n  "))
	}
	spec := &oci.Spec{Process: &oci.Process{}, Linux: &oci.Linux{}}
	if unresolved, err := cache.InjectDevices(spec, ids...); err != nil {
		if len(unresolved) > 0 {
			kube.Fail(1, "cdi-check: unresolvable CDI device(s): %s (known: %s)",
				strings.Join(unresolved, ", "), strings.Join(cache.ListDevices(), ", "))
		}
		kube.Fail(1, "cdi-check: %v", err)
	}
	devices := map[string]string{}
	for _, id := range ids {
		devices[id] = cache.GetDevice(id).GetSpec().GetPath()
	}
	out := edits{Env: spec.Process.Env, Mounts: spec.Mounts, DeviceNodes: spec.Linux.Devices,
		Hooks: spec.Hooks, AdditionalGIDs: spec.Process.User.AdditionalGids, Annotations: spec.Annotations}
	kube.PrintJSON(map[string]any{"devices": devices, "edits": out})
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func init() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: cdi-check --spec-dir DIR ID...")
		flag.PrintDefaults()
	}
}
