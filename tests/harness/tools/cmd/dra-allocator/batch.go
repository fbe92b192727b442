package main

// Batch mode: many claims against fixed ResourceSlices, DeviceClasses and already allocated
// claims, offline (no apiserver), one JSON line per claim. Used as the oracle for
// `dra-framework explain` (docs/explain.md): is a claim allocatable, and does a proposed
// allocation pass the allocator?
//
// Input (JSON, a file or "-" for stdin):
//
//	{"scenarios": [{"name": "...",
//	    "node": {Node} | "nodeName": "node-1",
//	    "slices": [ResourceSlice...], "classes": [DeviceClass...],
//	    "claims": [ResourceClaim with status.allocation...],   // already allocated: in use
//	    "cases": [{"name": "...", "claim": {ResourceClaim},
//	               "check": {AllocationResult}}]}]}           // check: optional proposal
//
// Output, one line per case:
//
//	{"scenario", "case", "allocated": bool, "allocation": {AllocationResult} | null,
//	 "error": "allocator error (invalid input, CEL errors)",
//	 "check": {"ok": bool, "error": "...", "allocation": {...}}}  // only with "check"
//
// The check runs the allocator again with every free device that is not in the proposal
// removed from the slices (devices in use stay, their counters and capacity still count):
// the proposal passes when the allocator then allocates exactly the proposed devices for
// the same requests, with the same consumed capacity.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"

	"dra-framework.invalid/harness/tools/internal/kube"
)

type batchInput struct {
	Scenarios []batchScenario `json:"scenarios"`
}

type batchScenario struct {
	Name     string                      `json:"name"`
	Node     *v1.Node                    `json:"node"`
	NodeName string                      `json:"nodeName"`
	Slices   []resourceapi.ResourceSlice `json:"slices"`
	Classes  []resourceapi.DeviceClass   `json:"classes"`
	Claims   []resourceapi.ResourceClaim `json:"claims"`
	Cases    []batchCase                 `json:"cases"`
}

type batchCase struct {
	Name  string                        `json:"name"`
	Claim resourceapi.ResourceClaim     `json:"claim"`
	Check *resourceapi.AllocationResult `json:"check"`
}

type batchCheck struct {
	OK         bool                          `json:"ok"`
	Error      string                        `json:"error,omitempty"`
	Allocation *resourceapi.AllocationResult `json:"allocation"`
}

type batchResult struct {
	Scenario   string                        `json:"scenario"`
	Case       string                        `json:"case"`
	Allocated  bool                          `json:"allocated"`
	Allocation *resourceapi.AllocationResult `json:"allocation"`
	Error      string                        `json:"error,omitempty"`
	Check      *batchCheck                   `json:"check,omitempty"`
}

func runBatch(path string) error {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	var in batchInput
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	features := structured.Features{}
	kube.EnableAllBools(&features)
	celFeatures := cel.Features{}
	kube.EnableAllBools(&celFeatures)
	cache := cel.NewCache(100, celFeatures)
	enc := json.NewEncoder(os.Stdout)
	for si := range in.Scenarios {
		sc := &in.Scenarios[si]
		node := sc.Node
		if node == nil {
			if sc.NodeName == "" {
				return fmt.Errorf("scenario %q: node or nodeName required", sc.Name)
			}
			node = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: sc.NodeName}}
		}
		classes := classLister{}
		for i := range sc.Classes {
			classes[sc.Classes[i].Name] = &sc.Classes[i]
		}
		for i := range sc.Claims {
			defaultClaim(&sc.Claims[i])
		}
		state := allocatedState(sc.Claims, "")
		slices := make([]*resourceapi.ResourceSlice, 0, len(sc.Slices))
		for i := range sc.Slices {
			slices = append(slices, &sc.Slices[i])
		}
		for ci := range sc.Cases {
			c := &sc.Cases[ci]
			defaultClaim(&c.Claim)
			out := batchResult{Scenario: sc.Name, Case: c.Name}
			alloc, err := allocateOffline(features, state, classes, slices, cache, node, &c.Claim)
			if err != nil {
				out.Error = err.Error()
			} else if alloc != nil {
				out.Allocated, out.Allocation = true, alloc
			}
			if c.Check != nil {
				out.Check = checkProposal(features, state, classes, sc.Slices, cache, node, &c.Claim, c.Check)
			}
			if err := enc.Encode(out); err != nil {
				return err
			}
		}
	}
	return nil
}

func allocateOffline(features structured.Features, state structured.AllocatedState, classes classLister,
	slices []*resourceapi.ResourceSlice, cache *cel.Cache, node *v1.Node,
	claim *resourceapi.ResourceClaim) (*resourceapi.AllocationResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := structured.NewAllocator(ctx, features, state, classes, slices, cache)
	if err != nil {
		return nil, fmt.Errorf("create allocator: %w", err)
	}
	results, err := a.Allocate(ctx, node, []*resourceapi.ResourceClaim{claim})
	if err != nil {
		return nil, err
	}
	if len(results) == 0 {
		return nil, nil
	}
	return &results[0], nil
}

// checkProposal: see the file comment.
func checkProposal(features structured.Features, state structured.AllocatedState, classes classLister,
	all []resourceapi.ResourceSlice, cache *cel.Cache, node *v1.Node, claim *resourceapi.ResourceClaim,
	proposal *resourceapi.AllocationResult) *batchCheck {
	keep := map[structured.DeviceID]bool{}
	for _, r := range proposal.Devices.Results {
		keep[structured.MakeDeviceID(r.Driver, r.Pool, r.Device)] = true
	}
	inUse := map[structured.DeviceID]bool{}
	for id := range state.AllocatedDevices {
		inUse[id] = true
	}
	for id := range state.AllocatedSharedDeviceIDs {
		inUse[structured.MakeDeviceID(id.Driver.String(), id.Pool.String(), id.Device.String())] = true // GetDeviceID is 1.35+
	}
	for id := range state.AggregatedCapacity {
		inUse[id] = true
	}
	pinned := make([]*resourceapi.ResourceSlice, 0, len(all))
	for i := range all {
		s := all[i].DeepCopy()
		devices := s.Spec.Devices[:0]
		for _, d := range s.Spec.Devices {
			id := structured.MakeDeviceID(s.Spec.Driver, s.Spec.Pool.Name, d.Name)
			if keep[id] || inUse[id] {
				devices = append(devices, d)
			}
		}
		s.Spec.Devices = devices
		pinned = append(pinned, s)
	}
	alloc, err := allocateOffline(features, state, classes, pinned, cache, node, claim)
	res := &batchCheck{Allocation: alloc}
	switch {
	case err != nil:
		res.Error = err.Error()
	case alloc == nil:
		res.Error = "the allocator cannot allocate the claim with only the proposed devices free"
	default:
		got, want := resultKeys(alloc), resultKeys(proposal)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			res.Error = fmt.Sprintf("the allocator allocated [%s], the proposal is [%s]",
				strings.Join(got, " "), strings.Join(want, " "))
		} else {
			res.OK = true
		}
	}
	return res
}

// resultKeys: "request=driver/pool/device{capacity}" per result, sorted (share IDs are random).
func resultKeys(a *resourceapi.AllocationResult) []string {
	out := make([]string, 0, len(a.Devices.Results))
	for _, r := range a.Devices.Results {
		caps := make([]string, 0, len(r.ConsumedCapacity))
		for k, q := range r.ConsumedCapacity {
			caps = append(caps, fmt.Sprintf("%s=%d", k, q.MilliValue()))
		}
		sort.Strings(caps)
		out = append(out, fmt.Sprintf("%s=%s/%s/%s{%s}", r.Request, r.Driver, r.Pool, r.Device, strings.Join(caps, ",")))
	}
	sort.Strings(out)
	return out
}

// defaultClaim applies the apiserver's defaults (pkg/apis/resource/v1/defaults.go) that the
// allocator relies on: allocationMode ExactCount, count 1, toleration operator Equal.
func defaultClaim(c *resourceapi.ResourceClaim) {
	one := func(mode *resourceapi.DeviceAllocationMode, count *int64, tols []resourceapi.DeviceToleration) {
		if *mode == "" {
			*mode = resourceapi.DeviceAllocationModeExactCount
		}
		if *mode == resourceapi.DeviceAllocationModeExactCount && *count == 0 {
			*count = 1
		}
		for i := range tols {
			if tols[i].Operator == "" {
				tols[i].Operator = resourceapi.DeviceTolerationOpEqual
			}
		}
	}
	for i := range c.Spec.Devices.Requests {
		r := &c.Spec.Devices.Requests[i]
		if r.Exactly != nil {
			one(&r.Exactly.AllocationMode, &r.Exactly.Count, r.Exactly.Tolerations)
		}
		for j := range r.FirstAvailable {
			s := &r.FirstAvailable[j]
			one(&s.AllocationMode, &s.Count, s.Tolerations)
		}
	}
}
