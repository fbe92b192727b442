// dra-bench-client: the kubelet side of benchmarks/vs_go.py. One persistent gRPC connection to
// a plugin's DRA socket (v1 DRAPlugin, like the kubelet), one claim per call. Prints one JSON
// object on stdout. Latencies are in nanoseconds.
//
//	dra-bench-client -mode cycle -socket S -claims FILE -n N          prepare+unprepare, one after another
//	dra-bench-client -mode storm -socket S -claims FILE -n ROUNDS -c C
//	    per round: every claim prepared by C concurrent callers, then unprepared the same way
//	dra-bench-client -mode prepare|unprepare -socket S -claims FILE   every claim once, one after another
//	dra-bench-client -mode empty -socket S -n N                      unprepare of an unknown UID
//	dra-bench-client -mode startup -reg SOCK -n N -- CMD ARGS...     exec CMD, poll GetInfo on SOCK
//	    every 1 ms; time from exec to the first answer; then SIGTERM and wait (N times)
//
// -claims: JSON list of {"uid","namespace","name"}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type claimRef struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type result struct {
	Prepare   []int64  `json:"prepare_ns,omitempty"`
	Unprepare []int64  `json:"unprepare_ns,omitempty"`
	Wall      []int64  `json:"prepare_wall_ns,omitempty"`
	Startup   []int64  `json:"startup_ns,omitempty"`
	Errors    []string `json:"errors"`
}

func main() {
	mode := flag.String("mode", "cycle", "cycle|prepare|unprepare|storm|empty|startup")
	socket := flag.String("socket", "", "DRA socket")
	reg := flag.String("reg", "", "registration socket (startup)")
	claimsFile := flag.String("claims", "", "claims JSON")
	n := flag.Int("n", 100, "cycles / rounds / calls")
	conc := flag.Int("c", 1, "concurrent callers (storm)")
	flag.Parse()
	res := result{Errors: []string{}}
	var err error
	switch *mode {
	case "startup":
		err = startup(&res, *reg, *n, flag.Args())
	default:
		err = calls(&res, *mode, *socket, *claimsFile, *n, *conc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dra-bench-client:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

func dial(path string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func calls(res *result, mode, socket, claimsFile string, n, conc int) error {
	var claims []claimRef
	if claimsFile != "" {
		raw, err := os.ReadFile(claimsFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &claims); err != nil {
			return err
		}
	}
	conn, err := dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	stub := drapb.NewDRAPluginClient(conn)
	var mu sync.Mutex
	fail := func(what string, c claimRef, err error, perClaim string) {
		mu.Lock()
		defer mu.Unlock()
		if len(res.Errors) < 20 {
			res.Errors = append(res.Errors, fmt.Sprintf("%s %s/%s: %v%s", what, c.Namespace, c.Name, err, perClaim))
		}
	}
	prepare := func(c claimRef) int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		t := time.Now()
		r, err := stub.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Uid: c.UID, Namespace: c.Namespace, Name: c.Name}}})
		d := time.Since(t).Nanoseconds()
		if err != nil {
			fail("prepare", c, err, "")
		} else if e := r.Claims[c.UID]; e == nil || e.Error != "" || len(e.Devices) == 0 {
			fail("prepare", c, fmt.Errorf("bad answer"), fmt.Sprintf(" %v", e))
		}
		return d
	}
	unprepare := func(c claimRef) int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		t := time.Now()
		r, err := stub.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{{Uid: c.UID, Namespace: c.Namespace, Name: c.Name}}})
		d := time.Since(t).Nanoseconds()
		if err != nil {
			fail("unprepare", c, err, "")
		} else if e := r.Claims[c.UID]; e == nil || e.Error != "" {
			fail("unprepare", c, fmt.Errorf("bad answer"), fmt.Sprintf(" %v", e))
		}
		return d
	}
	// The kubelet keeps its connection: a first call (not measured) opens it.
	unprepare(claimRef{UID: "00000000-0000-0000-0000-000000000000", Namespace: "default", Name: "warm-up"})
	switch mode {
	case "cycle":
		for i := 0; i < n; i++ {
			c := claims[i%len(claims)]
			res.Prepare = append(res.Prepare, prepare(c))
			res.Unprepare = append(res.Unprepare, unprepare(c))
		}
	case "prepare":
		for _, c := range claims {
			res.Prepare = append(res.Prepare, prepare(c))
		}
	case "unprepare":
		for _, c := range claims {
			res.Unprepare = append(res.Unprepare, unprepare(c))
		}
	case "empty":
		c := claimRef{UID: "00000000-0000-0000-0000-000000000000", Namespace: "default", Name: "nothing"}
		for i := 0; i < n; i++ {
			res.Unprepare = append(res.Unprepare, unprepare(c))
		}
	case "storm":
		for r := 0; r < n; r++ {
			for phase := 0; phase < 2; phase++ {
				next := make(chan claimRef, len(claims))
				for _, c := range claims {
					next <- c
				}
				close(next)
				var wg sync.WaitGroup
				t := time.Now()
				for w := 0; w < conc; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for c := range next {
							var d int64
							if phase == 0 {
								d = prepare(c)
							} else {
								d = unprepare(c)
							}
							mu.Lock()
							if phase == 0 {
								res.Prepare = append(res.Prepare, d)
							} else {
								res.Unprepare = append(res.Unprepare, d)
							}
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				if phase == 0 {
					res.Wall = append(res.Wall, time.Since(t).Nanoseconds())
				}
			}
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	return nil
}

func startup(res *result, reg string, n int, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("startup needs a command after --")
	}
	for i := 0; i < n; i++ {
		os.Remove(reg)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		t := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		var d int64 = -1
		for time.Since(t) < 60*time.Second {
			if _, err := os.Stat(reg); err == nil {
				conn, err := dial(reg)
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					_, err = registerapi.NewRegistrationClient(conn).GetInfo(ctx, &registerapi.InfoRequest{})
					cancel()
					conn.Close()
					if err == nil {
						d = time.Since(t).Nanoseconds()
						break
					}
				}
			}
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if d < 0 {
			res.Errors = append(res.Errors, "GetInfo not answered within 60 s")
		}
		res.Startup = append(res.Startup, d)
	}
	return nil
}
