// dra-allocator allocates one ResourceClaim for one node with the scheduler's own
// structured allocator (k8s.io/dynamic-resource-allocation/structured), reading the live
// ResourceSlices, DeviceClasses and claims from the apiserver, and writes the result the
// way kube-scheduler's DynamicResources plugin does in PreBind: finalizer first, then
// status.allocation plus status.reservedFor through UpdateStatus.
//
// Exit codes: 0 allocated (JSON of the claim status on stdout), 1 the claim cannot be
// allocated on that node, 2 bad input or API errors. --batch: offline, many claims (batch.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"

	"dra-framework.invalid/harness/tools/internal/kube"
)

// classLister serves DeviceClasses from one List call (the scheduler uses an informer).
type classLister map[string]*resourceapi.DeviceClass

func (l classLister) List() ([]*resourceapi.DeviceClass, error) {
	out := make([]*resourceapi.DeviceClass, 0, len(l))
	for _, c := range l {
		out = append(out, c)
	}
	return out, nil
}

func (l classLister) Get(name string) (*resourceapi.DeviceClass, error) {
	if c, ok := l[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("DeviceClass %q not found", name)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "admin kubeconfig")
	ns := flag.String("namespace", "default", "claim namespace")
	claimName := flag.String("claim", "", "ResourceClaim name")
	nodeName := flag.String("node", "", "Node to allocate for")
	pod := flag.String("pod", "", "namespace/name of the pod to add to status.reservedFor (optional)")
	dryRun := flag.Bool("dry-run", false, "print the allocation, do not write it")
	batch := flag.String("batch", "", "offline: allocate every case of this JSON file (- for stdin), see batch.go")
	flag.Parse()
	if *batch != "" {
		if err := runBatch(*batch); err != nil {
			kube.Fail(2, "dra-allocator: %v", err)
		}
		return
	}
	if *kubeconfig == "" || *claimName == "" || *nodeName == "" {
		kube.Fail(2, "usage: dra-allocator --kubeconfig FILE --namespace NS --claim NAME --node NODE [--pod NS/NAME] [--dry-run]\n"+
			"       dra-allocator --batch FILE")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := kube.Client(*kubeconfig)
	if err != nil {
		kube.Fail(2, "%v", err)
	}
	status, code, err := run(ctx, client, *ns, *claimName, *nodeName, *pod, *dryRun)
	if err != nil {
		kube.Fail(code, "dra-allocator: %v", err)
	}
	kube.PrintJSON(status)
}

func run(ctx context.Context, client kubernetes.Interface, ns, claimName, nodeName, podRef string, dryRun bool) (*resourceapi.ResourceClaimStatus, int, error) {
	rapi := client.ResourceV1()
	claim, err := rapi.ResourceClaims(ns).Get(ctx, claimName, metav1.GetOptions{})
	if err != nil {
		return nil, 2, fmt.Errorf("get claim %s/%s: %w", ns, claimName, err)
	}
	node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return nil, 2, fmt.Errorf("get node %s: %w", nodeName, err)
	}
	var binding *resourceapi.ResourceClaimConsumerReference
	if podRef != "" {
		pns, pname, ok := strings.Cut(podRef, "/")
		if !ok {
			return nil, 2, fmt.Errorf("--pod must be NAMESPACE/NAME, got %q", podRef)
		}
		p, err := client.CoreV1().Pods(pns).Get(ctx, pname, metav1.GetOptions{})
		if err != nil {
			return nil, 2, fmt.Errorf("get pod %s: %w", podRef, err)
		}
		binding = &resourceapi.ResourceClaimConsumerReference{Resource: "pods", Name: p.Name, UID: p.UID}
	}

	allocation := claim.Status.Allocation
	features := structured.Features{}
	kube.EnableAllBools(&features)
	if allocation == nil {
		allocation, err = allocate(ctx, client, features, claim, node)
		if err != nil {
			return nil, 1, err
		}
	}
	if dryRun {
		return &resourceapi.ResourceClaimStatus{Allocation: allocation}, 0, nil
	}
	updated, err := persist(ctx, client, claim, allocation, binding, features)
	if err != nil {
		return nil, 2, err
	}
	return &updated.Status, 0, nil
}

// allocate runs the structured allocator for one claim on one node.
func allocate(ctx context.Context, client kubernetes.Interface, features structured.Features,
	claim *resourceapi.ResourceClaim, node *v1.Node) (*resourceapi.AllocationResult, error) {
	rapi := client.ResourceV1()
	sliceList, err := rapi.ResourceSlices().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ResourceSlices: %w", err)
	}
	classList, err := rapi.DeviceClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list DeviceClasses: %w", err)
	}
	claimList, err := rapi.ResourceClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ResourceClaims: %w", err)
	}
	sl := make([]*resourceapi.ResourceSlice, 0, len(sliceList.Items))
	for i := range sliceList.Items {
		sl = append(sl, &sliceList.Items[i])
	}
	classes := classLister{}
	for i := range classList.Items {
		classes[classList.Items[i].Name] = &classList.Items[i]
	}
	state := allocatedState(claimList.Items, claim.UID)

	celFeatures := cel.Features{}
	kube.EnableAllBools(&celFeatures)
	alloc, err := structured.NewAllocator(ctx, features, state, classes, sl, cel.NewCache(10, celFeatures))
	if err != nil {
		return nil, fmt.Errorf("create allocator: %w", err)
	}
	results, err := alloc.Allocate(ctx, node, []*resourceapi.ResourceClaim{claim})
	if err != nil {
		// Errors mean bad input (invalid CEL, unknown class): the scheduler aborts on them too.
		return nil, fmt.Errorf("claim %s/%s: allocator error: %w", claim.Namespace, claim.Name, err)
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("claim %s/%s cannot be allocated on node %s "+
			"(%d ResourceSlices, %d DeviceClasses, %d devices already allocated; "+
			"no matching free device, or a pool is incomplete)",
			claim.Namespace, claim.Name, node.Name, len(sl), len(classes), state.AllocatedDevices.Len())
	}
	return &results[0], nil
}

// allocatedState mirrors the scheduler's foreachAllocatedDevice: admin-access results do
// not count, shared (ShareID) results count per share and add consumed capacity.
func allocatedState(claims []resourceapi.ResourceClaim, skip types.UID) structured.AllocatedState {
	state := structured.AllocatedState{
		AllocatedDevices:         sets.New[structured.DeviceID](),
		AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](),
		AggregatedCapacity:       structured.NewConsumedCapacityCollection(),
	}
	for _, c := range claims {
		if c.Status.Allocation == nil || (skip != "" && c.UID == skip) {
			continue
		}
		for _, r := range c.Status.Allocation.Devices.Results {
			if r.AdminAccess != nil && *r.AdminAccess {
				continue
			}
			id := structured.MakeDeviceID(r.Driver, r.Pool, r.Device)
			if r.ShareID != nil {
				state.AllocatedSharedDeviceIDs.Insert(structured.MakeSharedDeviceID(id, r.ShareID))
				if r.ConsumedCapacity != nil {
					state.AggregatedCapacity.Insert(structured.NewDeviceConsumedCapacity(id, r.ConsumedCapacity))
				}
				continue
			}
			state.AllocatedDevices.Insert(id)
		}
	}
	return state
}

// persist writes the claim like the scheduler's bindClaim: add the finalizer with Update,
// then set allocation and append the reservation with UpdateStatus.
func persist(ctx context.Context, client kubernetes.Interface, claim *resourceapi.ResourceClaim,
	allocation *resourceapi.AllocationResult, binding *resourceapi.ResourceClaimConsumerReference,
	features structured.Features) (*resourceapi.ResourceClaim, error) {
	rapi := client.ResourceV1().ResourceClaims(claim.Namespace)
	claim = claim.DeepCopy()
	var err error
	if !slices.Contains(claim.Finalizers, resourceapi.Finalizer) {
		claim.Finalizers = append(claim.Finalizers, resourceapi.Finalizer)
		if claim, err = rapi.Update(ctx, claim, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("add finalizer to claim %s/%s: %w", claim.Namespace, claim.Name, err)
		}
	}
	claim.Status.Allocation = allocation
	if binding != nil && !slices.ContainsFunc(claim.Status.ReservedFor, func(r resourceapi.ResourceClaimConsumerReference) bool { return r.UID == binding.UID }) {
		claim.Status.ReservedFor = append(claim.Status.ReservedFor, *binding)
	}
	// With binding conditions and device status on (they are, see EnableAllBools) the
	// scheduler stamps the allocation time. By name: 1.34 split this field in two.
	if kube.BoolField(&features, "DeviceBindingAndStatus") && claim.Status.Allocation.AllocationTimestamp == nil {
		claim.Status.Allocation.AllocationTimestamp = &metav1.Time{Time: time.Now()}
	}
	updated, err := rapi.UpdateStatus(ctx, claim, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("write allocation and reservation to claim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
	return updated, nil
}
