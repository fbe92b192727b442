// kube-apiserver: the upstream main of cmd/kube-apiserver, built from the pinned
// k8s.io/kubernetes module (go install @version cannot build it; see README.md).
package main

import (
	"os"
	_ "time/tzdata" // upstream embeds tzdata for CronJob time zones

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
