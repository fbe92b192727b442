// go-dra-driver: the Go side of benchmarks/vs_go.py. A DRA driver on the official helper
// (k8s.io/dynamic-resource-allocation/kubeletplugin) doing, per claim, the work that
// `dra-framework run` does with the example backend (benchmarks/README.md, "Equal work"):
//
//   - the helper GETs the ResourceClaim fresh and checks UID and allocation;
//   - a per-claim stripe flock (serialize-NN.lock, crc32(uid) % 64) in the plugin directory;
//   - the checkpoint <kubelet root>/plugins/<driver>/checkpoint.json in dra-framework's format
//     (header line with sha256 + canonical JSON payload), updated two-phase on prepare
//     (PrepareStarted with the exclusivity check, PrepareCompleted) and on unprepare
//     (unprepareStarted, drop), each update under flock(checkpoint.lock) as temp file + fsync +
//     rename + fsync(dir);
//   - one CDI spec per claim, validated with the CDI reference library, written as temp file +
//     fsync + rename + fsync(dir) while the PrepareCompleted update commits; unlinked on unprepare.
//
// usage: go-dra-driver -kubeconfig FILE -node-name NODE -driver-name NAME -kubelet-root DIR
//
//	-cdi-root DIR [-slices FILE] [-qps 1000 -burst 1000]
//
// -slices: JSON list of ResourceSlice specs ({"devices": [...], "sharedCounters": [...]});
// published as the node's pool with PublishResources; the devices named there are the
// inventory prepare checks allocations against.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

const stripes = 64

type driver struct {
	name, cdiRoot, pluginDir, vendor, class string
	devices                                  map[string]bool // pool/device
	cp                                       *checkpoint
	bootID                                   string
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	nodeName := flag.String("node-name", "", "Node name")
	driverName := flag.String("driver-name", "", "DRA driver name")
	kubeletRoot := flag.String("kubelet-root", "/var/lib/kubelet", "kubelet root dir")
	cdiRoot := flag.String("cdi-root", "/var/run/cdi", "CDI spec dir")
	slicesFile := flag.String("slices", "", "JSON list of ResourceSlice specs to publish")
	qps := flag.Float64("qps", 1000, "API client QPS")
	burst := flag.Int("burst", 1000, "API client burst")
	publishRounds := flag.Int("publish-bench", 0, "instead of serving: publish the -slices pool this many times (fresh driver name each) and print the times as JSON")
	klog.InitFlags(nil)
	flag.Parse()
	if *publishRounds > 0 {
		if err := publishBench(*kubeconfig, *nodeName, *driverName, *slicesFile, *publishRounds); err != nil {
			fmt.Fprintln(os.Stderr, "go-dra-driver:", err)
			os.Exit(1)
		}
		return
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if err := run(ctx, *kubeconfig, *nodeName, *driverName, *kubeletRoot, *cdiRoot, *slicesFile, float32(*qps), *burst); err != nil {
		fmt.Fprintln(os.Stderr, "go-dra-driver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, node, name, kubeletRoot, cdiRoot, slicesFile string, qps float32, burst int) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = qps, burst
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	pluginDir := filepath.Join(kubeletRoot, "plugins", name)
	for _, d := range []string{pluginDir, cdiRoot} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	d := &driver{name: name, cdiRoot: cdiRoot, pluginDir: pluginDir, vendor: "k8s." + name, class: "claim",
		devices: map[string]bool{}, bootID: strings.TrimSpace(string(boot))}
	d.cp = &checkpoint{path: filepath.Join(pluginDir, "checkpoint.json"), lock: filepath.Join(pluginDir, "checkpoint.lock"),
		bootID: d.bootID, claims: map[string]map[string]any{}}
	if err := d.cp.load(); err != nil {
		return err
	}
	var slices []resourceslice.Slice
	if slicesFile != "" {
		raw, err := os.ReadFile(slicesFile)
		if err != nil {
			return err
		}
		var specs []resourceapi.ResourceSliceSpec
		if err := json.Unmarshal(raw, &specs); err != nil {
			return fmt.Errorf("%s: %w", slicesFile, err)
		}
		for _, s := range specs {
			slices = append(slices, resourceslice.Slice{Devices: s.Devices, SharedCounters: s.SharedCounters})
			for _, dev := range s.Devices {
				d.devices[node+"/"+dev.Name] = true
			}
		}
	}
	helper, err := kubeletplugin.Start(ctx, d,
		kubeletplugin.KubeClient(client), kubeletplugin.NodeName(node), kubeletplugin.DriverName(name),
		kubeletplugin.RegistrarDirectoryPath(filepath.Join(kubeletRoot, "plugins_registry")),
		kubeletplugin.PluginDataDirectoryPath(pluginDir),
		// dra-framework runs independent claims concurrently (per-claim locks), so does this.
		kubeletplugin.Serialize(false))
	if err != nil {
		return err
	}
	defer helper.Stop()
	if len(slices) > 0 {
		res := resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{node: {Slices: slices}}}
		if err := helper.PublishResources(ctx, res); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// --- per-claim cross-process lock --------------------------------------------------------

func (d *driver) claimLock(uid string) (func(), error) {
	p := filepath.Join(d.pluginDir, fmt.Sprintf("serialize-%02d.lock", crc32.ChecksumIEEE([]byte(uid))%stripes))
	fd, err := syscall.Open(p, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	delay := time.Millisecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			syscall.Close(fd)
			return nil, err
		}
		time.Sleep(delay)
		delay = min(delay*2, 50*time.Millisecond)
	}
	return func() { syscall.Close(fd) }, nil
}

// --- DRAPlugin ---------------------------------------------------------------------------

func (d *driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			devs, err := d.prepare(c)
			mu.Lock()
			out[c.UID] = kubeletplugin.PrepareResult{Devices: devs, Err: err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, nil
}

func (d *driver) prepare(c *resourceapi.ResourceClaim) ([]kubeletplugin.Device, error) {
	uid := string(c.UID)
	label := c.Namespace + "/" + c.Name
	unlock, err := d.claimLock(uid)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := d.cp.refresh(); err != nil {
		return nil, err
	}
	type planned struct{ request, pool, device string }
	var plan []planned
	for _, r := range c.Status.Allocation.Devices.Results {
		if r.Driver != d.name {
			continue
		}
		if !d.devices[r.Pool+"/"+r.Device] {
			return nil, fmt.Errorf("claim %s: device %q in pool %q is not published by driver %s on this node", label, r.Device, r.Pool, d.name)
		}
		plan = append(plan, planned{r.Request, r.Pool, r.Device})
	}
	if len(plan) == 0 {
		return nil, nil
	}
	devices := make([]any, 0, len(plan))
	mine := map[[2]string]bool{}
	for _, p := range plan {
		devices = append(devices, map[string]any{"backend": "example", "request": p.request, "pool": p.pool,
			"device": p.device, "shareId": nil, "adminAccess": false, "exclusive": true, "configs": []any{}})
		mine[[2]string{p.pool, p.device}] = true
	}
	entry := map[string]any{"uid": uid, "namespace": c.Namespace, "name": c.Name, "state": "PrepareStarted",
		"bootId": d.bootID, "startedAt": now(), "backends": []any{"example"}, "devices": devices,
		"journal": map[string]any{}, "partitions": []any{}}
	err = d.cp.update(func(claims map[string]map[string]any) error {
		for other, e := range claims {
			if other == uid {
				continue
			}
			if b, _ := e["bootId"].(string); b != "" && d.bootID != "" && b != d.bootID {
				continue
			}
			ds, _ := e["devices"].([]any)
			for _, x := range ds {
				dev, _ := x.(map[string]any)
				if excl, ok := dev["exclusive"].(bool); ok && !excl {
					continue
				}
				pool, _ := dev["pool"].(string)
				name, _ := dev["device"].(string)
				if mine[[2]string{pool, name}] {
					return fmt.Errorf("claim %s: device %q (pool %q) is already in use by claim %s", label, name, pool, other)
				}
			}
		}
		claims[uid] = entry
		return nil
	})
	if err != nil {
		return nil, err
	}

	// CDI spec: one device per allocated device, env edits as the example backend makes them.
	spec := &cdispec.Spec{Kind: d.vendor + "/" + d.class}
	var result []kubeletplugin.Device
	var cdiDevs, prepared []any
	for _, p := range plan {
		devName := uid + "-" + p.device
		env := []string{"EXAMPLE_DEVICE=" + p.device, "EXAMPLE_MODE=normal"}
		spec.Devices = append(spec.Devices, cdispec.Device{Name: devName, ContainerEdits: cdispec.ContainerEdits{Env: env}})
		id := spec.Kind + "=" + devName
		result = append(result, kubeletplugin.Device{Requests: []string{p.request}, PoolName: p.pool, DeviceName: p.device, CDIDeviceIDs: []string{id}})
		cdiDevs = append(cdiDevs, map[string]any{"device": p.device, "shareId": nil,
			"edits": map[string]any{"env": []any{env[0], env[1]}}})
		prepared = append(prepared, map[string]any{"request": p.request, "pool": p.pool, "device": p.device,
			"cdiDeviceIds": []any{id}})
	}
	data, err := d.buildSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("claim %s: CDI spec: %w", label, err)
	}
	specPath := filepath.Join(d.cdiRoot, d.vendor+"-"+d.class+"_"+uid+".json")
	cdiErr := make(chan error, 1)
	go func() { cdiErr <- atomicWrite(specPath, data, 0o644) }()
	err = d.cp.update(func(claims map[string]map[string]any) error {
		e := claims[uid]
		n := make(map[string]any, len(e)+5)
		for k, v := range e {
			n[k] = v
		}
		n["state"], n["completedAt"], n["teardown"] = "PrepareCompleted", now(), map[string]any{"example": map[string]any{}}
		n["cdi"] = map[string]any{"devices": cdiDevs, "claimEdits": nil}
		n["prepared"], n["partitions"] = prepared, []any{}
		claims[uid] = n
		return nil
	})
	if werr := <-cdiErr; err == nil && werr != nil {
		err = fmt.Errorf("claim %s: writing the CDI spec: %w", label, werr)
	}
	if err != nil {
		return nil, err
	}
	return result, nil
}

// buildSpec validates the spec with the CDI reference library and returns its JSON.
func (d *driver) buildSpec(spec *cdispec.Spec) ([]byte, error) {
	if err := parser.ValidateVendorName(d.vendor); err != nil {
		return nil, err
	}
	if err := parser.ValidateClassName(d.class); err != nil {
		return nil, err
	}
	for _, dev := range spec.Devices {
		if err := parser.ValidateDeviceName(dev.Name); err != nil {
			return nil, err
		}
		if err := (&cdiapi.ContainerEdits{ContainerEdits: &dev.ContainerEdits}).Validate(); err != nil {
			return nil, err
		}
	}
	v, err := cdispec.MinimumRequiredVersion(spec)
	if err != nil {
		return nil, err
	}
	spec.Version = v
	if err := cdispec.ValidateVersion(spec); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	return append(data, '\n'), err
}

func (d *driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	out := make(map[types.UID]error, len(claims))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.unprepare(string(c.UID))
			mu.Lock()
			out[c.UID] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, nil
}

func (d *driver) unprepare(uid string) error {
	unlock, err := d.claimLock(uid)
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.cp.refresh(); err != nil {
		return err
	}
	if d.cp.get(uid) == nil {
		return nil
	}
	// Before the first side effect, like the framework: a half-done teardown is never reused.
	if err := d.cp.update(func(claims map[string]map[string]any) error {
		if e, ok := claims[uid]; ok {
			n := make(map[string]any, len(e)+1)
			for k, v := range e {
				n[k] = v
			}
			n["unprepareStarted"] = now()
			claims[uid] = n
		}
		return nil
	}); err != nil {
		return err
	}
	specPath := filepath.Join(d.cdiRoot, d.vendor+"-"+d.class+"_"+uid+".json")
	rmErr := make(chan error, 1)
	go func() {
		err := os.Remove(specPath)
		if err == nil {
			err = syncDir(d.cdiRoot)
		} else if os.IsNotExist(err) {
			err = nil
		}
		rmErr <- err
	}()
	err = d.cp.update(func(claims map[string]map[string]any) error { delete(claims, uid); return nil })
	if rerr := <-rmErr; err == nil {
		err = rerr
	}
	return err
}

func (d *driver) HandleError(ctx context.Context, err error, msg string) {
	klog.FromContext(ctx).Error(err, msg)
}

func (d *driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// --- checkpoint (dra-framework's file format, docs/design.md) ------------------------------

type checkpoint struct {
	path, lock, bootID string
	mu                 sync.Mutex
	claims             map[string]map[string]any
	stat               [4]int64
}

func statKey(path string) [4]int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return [4]int64{}
	}
	return [4]int64{int64(st.Dev), int64(st.Ino), st.Mtim.Nano(), st.Size}
}

func (c *checkpoint) flock() (func(), error) {
	fd, err := syscall.Open(c.lock, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return func() { syscall.Close(fd) }, nil
}

func (c *checkpoint) load() error   { return c.refresh() }
func (c *checkpoint) get(uid string) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims[uid]
}

func (c *checkpoint) refresh() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if statKey(c.path) == c.stat {
		return nil
	}
	unlock, err := c.flock()
	if err != nil {
		return err
	}
	defer unlock()
	return c.readLocked()
}

func (c *checkpoint) readLocked() error {
	key := statKey(c.path)
	if key == c.stat {
		return nil
	}
	raw, err := os.ReadFile(c.path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	head, payload, _ := strings.Cut(string(raw), "\n")
	var header struct {
		Checksum string `json:"checksum"`
		Format   string `json:"format"`
	}
	if err := json.Unmarshal([]byte(head), &header); err != nil || header.Format != "dra-framework-checkpoint" {
		return fmt.Errorf("%s: not a checkpoint", c.path)
	}
	sum := sha256.Sum256([]byte(payload))
	if header.Checksum != "sha256:"+hex.EncodeToString(sum[:]) {
		return fmt.Errorf("%s: checksum mismatch", c.path)
	}
	var data struct {
		Claims map[string]map[string]any `json:"claims"`
	}
	if err := json.Unmarshal([]byte(payload), &data); err != nil {
		return err
	}
	if data.Claims == nil {
		data.Claims = map[string]map[string]any{}
	}
	c.claims, c.stat = data.Claims, key
	return nil
}

// update runs fn on a copy of the state under the file lock and writes the result durably.
func (c *checkpoint) update(fn func(map[string]map[string]any) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := c.flock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.readLocked(); err != nil {
		return err
	}
	working := make(map[string]map[string]any, len(c.claims)+1)
	for k, v := range c.claims {
		working[k] = v
	}
	if err := fn(working); err != nil {
		return err
	}
	payload, err := json.Marshal(map[string]any{"bootId": c.bootID, "claims": working})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(payload)
	header, _ := json.Marshal(map[string]any{"checksum": "sha256:" + hex.EncodeToString(sum[:]),
		"format": "dra-framework-checkpoint", "length": len(payload), "version": 1})
	if err := atomicWrite(c.path, append(append(header, '\n'), payload...), 0o600); err != nil {
		return err
	}
	c.claims, c.stat = working, statKey(c.path)
	return nil
}

// --- files -------------------------------------------------------------------------------

func atomicWrite(path string, data []byte, mode os.FileMode) error {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
