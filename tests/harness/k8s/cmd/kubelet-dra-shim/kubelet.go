package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"k8s.io/kubernetes/pkg/kubelet/cm/dra"
	"k8s.io/kubernetes/pkg/kubelet/cm/dra/state"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

// kubelet hosts the pieces of the kubelet that DRA drivers talk to: the plugin manager
// (watches <root>/plugins_registry, GetInfo, NotifyRegistrationStatus) and the DRA
// manager (gRPC client, NodePrepare/NodeUnprepare, checkpoint <root>/dra_manager_state,
// health streams, ResourceSlice wiping). Pods are read from the apiserver, as the kubelet
// does; there is no container runtime, so "running a pod" means PrepareResources plus
// GetResources, which is exactly what the kubelet does before creating containers.
type kubelet struct {
	client   kubernetes.Interface
	nodeName string
	root     string
	manager  *dra.Manager
	handler  *recordingHandler

	mu sync.Mutex
	// active are the pods prepared and not yet unprepared by this process, by UID
	// (also used to unprepare a pod that is already gone from the apiserver).
	active map[string]*v1.Pod
	// terminated are pods explicitly unprepared: for the shim that is the moment the
	// kubelet would have stopped their containers.
	terminated sets.Set[string]
	// healthUpdates counts pod-status updates the DRA manager requested after health
	// changes (Manager.Updates(), which the kubelet feeds into its pod-status sync).
	healthUpdates []healthUpdate
}

type healthUpdate struct {
	Time    time.Time `json:"time"`
	PodUIDs []string  `json:"podUIDs"`
}

func startKubelet(ctx context.Context, client kubernetes.Interface, nodeName, root string) (*kubelet, error) {
	logger := klog.FromContext(ctx)
	for _, d := range []string{"plugins_registry", "plugins"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			return nil, err
		}
	}
	k := &kubelet{client: client, nodeName: nodeName, root: root, active: map[string]*v1.Pod{}, terminated: sets.New[string]()}

	// Like the kubelet (pkg/kubelet/cm/container_manager_linux.go): state dir = root dir.
	m, err := dra.NewManager(logger, client, root)
	if err != nil {
		return nil, fmt.Errorf("create DRA manager: %w", err)
	}
	// The kubelet's sources (apiserver, file, http) are ready as soon as we start.
	sourcesReady := config.NewSourcesReady(func(sets.Set[string]) bool { return true })
	if err := m.Start(ctx, k.activePods, k.getNodeFunc(), sourcesReady); err != nil {
		return nil, fmt.Errorf("start DRA manager: %w", err)
	}
	k.manager = m
	k.handler = newRecordingHandler(m.GetWatcherHandler()) // only valid after Start
	go k.drainHealthUpdates(ctx)

	recorder := record.NewFakeRecorder(100)
	go func() {
		for ev := range recorder.Events {
			logger.Info("plugin manager event", "event", ev)
		}
	}()
	pm := pluginmanager.NewPluginManager(filepath.Join(root, "plugins_registry"), recorder)
	pm.AddHandler(registerapi.DRAPlugin, k.handler)
	go runPluginManager(ctx, pm, sourcesReady)
	return k, nil
}

// activePods is what the kubelet's activePods() would return: pods bound to this node
// that are not in a terminal phase, plus pods prepared here, minus pods unprepared here.
// The DRA manager's reconcile loop (every 60 s, and right at start) unprepares claims
// of pods not in this list, so after a restart it must come from the apiserver, as in
// the kubelet, or every checkpointed claim would be unprepared at once.
func (k *kubelet) activePods() []*v1.Pod {
	byUID := map[string]*v1.Pod{}
	list, err := k.client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", k.nodeName).String()})
	if err != nil {
		klog.Background().Error(err, "listing pods for the DRA reconcile loop, using prepared pods only")
	} else {
		for i := range list.Items {
			p := &list.Items[i]
			if p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed {
				byUID[string(p.UID)] = p
			}
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for uid, p := range k.active {
		byUID[uid] = p
	}
	pods := make([]*v1.Pod, 0, len(byUID))
	for uid, p := range byUID {
		if !k.terminated.Has(uid) {
			pods = append(pods, p)
		}
	}
	return pods
}

func (k *kubelet) getNode(ctx context.Context) (*v1.Node, error) {
	return k.client.CoreV1().Nodes().Get(ctx, k.nodeName, metav1.GetOptions{})
}

// shareID reads Device.ShareID (consumable capacity, 1.35+) by name, so the same
// source builds against 1.34, which lacks the field.
func shareID(d state.Device) string {
	f := reflect.ValueOf(d).FieldByName("ShareID")
	if !f.IsValid() || f.IsNil() {
		return ""
	}
	return fmt.Sprint(f.Elem().Interface())
}

func (k *kubelet) drainHealthUpdates(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-k.manager.Updates():
			k.mu.Lock()
			k.healthUpdates = append(k.healthUpdates, healthUpdate{Time: time.Now(), PodUIDs: u.PodUIDs})
			k.mu.Unlock()
		}
	}
}

// getPod reads the pod from the apiserver. After a pod was deleted, the copy from
// prepare is used, so unprepare after deletion works as it does in the kubelet.
func (k *kubelet) getPod(ctx context.Context, ns, name string) (*v1.Pod, error) {
	pod, err := k.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, p := range k.active {
			if p.Namespace == ns && p.Name == name {
				return p, nil
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != k.nodeName {
		return nil, fmt.Errorf("pod %s/%s is bound to node %q, this kubelet is %q", ns, name, pod.Spec.NodeName, k.nodeName)
	}
	return pod, nil
}

type claimResult struct {
	UID        string         `json:"uid"`
	Namespace  string         `json:"namespace"`
	CDIDevices []string       `json:"cdiDevices"`
	Devices    []deviceResult `json:"devices"`
}

type deviceResult struct {
	Driver       string   `json:"driver"`
	Pool         string   `json:"pool"`
	Device       string   `json:"device"`
	RequestNames []string `json:"requestNames"`
	CDIDeviceIDs []string `json:"cdiDeviceIDs"`
	ShareID      string   `json:"shareID,omitempty"`
}

type prepareResult struct {
	PodUID string                 `json:"podUID"`
	Claims map[string]claimResult `json:"claims"` // by claim name
	// Containers are the CDI device IDs the kubelet would pass to the runtime in
	// CreateContainerRequest.CDIDevices (Manager.GetResources), by container name.
	Containers map[string][]string `json:"containers"`
}

func (k *kubelet) prepare(ctx context.Context, ns, name string) (*prepareResult, error) {
	pod, err := k.getPod(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.active[string(pod.UID)] = pod
	k.terminated.Delete(string(pod.UID))
	k.mu.Unlock()
	if err := k.manager.PrepareResources(ctx, pod); err != nil {
		// The kubelet retries the pod later; the pod stays active for it too.
		return nil, fmt.Errorf("PrepareResources: %w", err)
	}
	return k.resources(pod)
}

// resources reports what the DRA manager recorded for the pod's containers.
func (k *kubelet) resources(pod *v1.Pod) (*prepareResult, error) {
	res := &prepareResult{PodUID: string(pod.UID), Claims: map[string]claimResult{}, Containers: map[string][]string{}}
	containers := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for i := range containers {
		c := &containers[i]
		info, err := k.manager.GetResources(pod, c)
		if err != nil {
			return nil, fmt.Errorf("GetResources(%s): %w", c.Name, err)
		}
		ids := []string{}
		for _, d := range info.CDIDevices {
			ids = append(ids, d.Name)
		}
		res.Containers[c.Name] = ids
		claimInfos, err := k.manager.GetContainerClaimInfos(pod, c)
		if err != nil {
			return nil, fmt.Errorf("GetContainerClaimInfos(%s): %w", c.Name, err)
		}
		for _, ci := range claimInfos {
			cr := claimResult{UID: string(ci.ClaimUID), Namespace: ci.Namespace, CDIDevices: []string{}, Devices: []deviceResult{}}
			for driver, st := range ci.DriverState {
				for _, d := range st.Devices {
					dr := deviceResult{Driver: driver, Pool: d.PoolName, Device: d.DeviceName,
						RequestNames: d.RequestNames, CDIDeviceIDs: d.CDIDeviceIDs}
					dr.ShareID = shareID(d)
					cr.Devices = append(cr.Devices, dr)
					cr.CDIDevices = append(cr.CDIDevices, d.CDIDeviceIDs...)
				}
			}
			res.Claims[ci.ClaimName] = cr
		}
	}
	return res, nil
}

func (k *kubelet) unprepare(ctx context.Context, ns, name string) error {
	pod, err := k.getPod(ctx, ns, name)
	if err != nil {
		return err
	}
	if err := k.manager.UnprepareResources(ctx, pod); err != nil {
		return fmt.Errorf("UnprepareResources: %w", err)
	}
	k.mu.Lock()
	delete(k.active, string(pod.UID))
	k.terminated.Insert(string(pod.UID))
	k.mu.Unlock()
	return nil
}

// health returns, per container, the allocatedResourcesStatus the kubelet would write
// into the pod status (Manager.UpdateAllocatedResourcesStatus, fed by the drivers'
// health streams), plus the pod-status updates the manager has asked for so far.
func (k *kubelet) health(ctx context.Context, ns, name string) (map[string]any, error) {
	pod, err := k.getPod(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	status := pod.Status.DeepCopy()
	status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		status.ContainerStatuses = append(status.ContainerStatuses, v1.ContainerStatus{Name: c.Name})
	}
	updateAllocatedResourcesStatus(ctx, k.manager, pod, status)
	containers := map[string][]v1.ResourceStatus{}
	for _, cs := range status.ContainerStatuses {
		containers[cs.Name] = cs.AllocatedResourcesStatus
	}
	k.mu.Lock()
	updates := append([]healthUpdate{}, k.healthUpdates...)
	k.mu.Unlock()
	return map[string]any{"podUID": string(pod.UID), "containers": containers, "updates": updates}, nil
}
