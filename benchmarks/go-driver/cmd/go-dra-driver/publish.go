package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/resourceslice"
)

// publishBench measures the ResourceSlice publish of one pool with the official controller:
// per round a controller for a fresh driver name is started with no resources and given time to
// sync its informer (its fixed 1 s wait is not measured), then the pool is handed over with
// Update and the time until the API server lists every device of it is taken (polled every
// 2 ms). Prints {"publish_ns": [...]}.
func publishBench(kubeconfig, node, driverBase, slicesFile string, rounds int) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(slicesFile)
	if err != nil {
		return err
	}
	var specs []resourceapi.ResourceSliceSpec
	if err := json.Unmarshal(raw, &specs); err != nil {
		return err
	}
	var slices []resourceslice.Slice
	want := 0
	for _, s := range specs {
		slices = append(slices, resourceslice.Slice{Devices: s.Devices, SharedCounters: s.SharedCounters})
		want += len(s.Devices)
	}
	ctx := context.Background()
	n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var out []int64
	for r := 0; r < rounds; r++ {
		name := fmt.Sprintf("r%d-%d.%s", r, time.Now().UnixNano()%1000000, driverBase)
		cctx, cancel := context.WithCancel(ctx)
		ctl, err := resourceslice.StartController(cctx, resourceslice.Options{DriverName: name, KubeClient: client,
			Owner: &resourceslice.Owner{APIVersion: "v1", Kind: "Node", Name: node, UID: n.UID},
			Resources: &resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{}}})
		if err != nil {
			cancel()
			return err
		}
		time.Sleep(500 * time.Millisecond)
		t := time.Now()
		ctl.Update(&resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{node: {Slices: slices}}})
		for {
			list, err := client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.driver=" + name})
			if err != nil {
				cancel()
				return err
			}
			got := 0
			for _, s := range list.Items {
				got += len(s.Spec.Devices)
			}
			if got == want {
				break
			}
			if time.Since(t) > 60*time.Second {
				cancel()
				return fmt.Errorf("round %d: %d of %d devices after 60 s", r, got, want)
			}
			time.Sleep(2 * time.Millisecond)
		}
		out = append(out, time.Since(t).Nanoseconds())
		ctl.Stop()
		cancel()
		_ = client.ResourceV1().ResourceSlices().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{FieldSelector: "spec.driver=" + name})
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"publish_ns": out})
}
