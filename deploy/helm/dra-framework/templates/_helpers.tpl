{{- define "dra-framework.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dra-framework.namespace" -}}
{{- if .Values.namespace.create -}}{{ .Values.namespace.name }}{{- else -}}{{ .Release.Namespace }}{{- end -}}
{{- end -}}

{{- define "dra-framework.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "dra-framework.fullname" .) -}}
{{- end -}}

{{- define "dra-framework.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dra-framework.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Whether node group (dict root, group) runs privileged: "true" or "". */}}
{{- define "dra-framework.groupPrivileged" -}}
{{- $g := .group -}}
{{- if kindIs "bool" $g.privileged -}}
{{- if $g.privileged }}true{{ end -}}
{{- else -}}
{{- $priv := false -}}
{{- range $g.drivers }}{{ range .backends }}{{ if has .name $.root.Values.privilegedBackends }}{{ $priv = true }}{{ end }}{{ end }}{{ end -}}
{{- if $priv }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/* Backends of a node group that get a driver root mount: a sorted list, as YAML. */}}
{{- define "dra-framework.groupDriverRoots" -}}
{{- $names := list -}}
{{- range .group.drivers }}{{ range .backends }}{{ if hasKey $.root.Values.paths.driverRoots .name }}{{ $names = append $names .name }}{{ end }}{{ end }}{{ end -}}
{{- toYaml (dict "backends" ($names | uniq | sortAlpha)) -}}
{{- end -}}

{{/* The composed-driver config of a node group (docs/config.md), paths from .Values.paths. */}}
{{- define "dra-framework.groupConfig" -}}
{{- $v := .root.Values -}}
{{- $cfg := deepCopy ($v.settings | default dict) -}}
{{- $_ := set $cfg "kubeletRootDir" $v.paths.kubeletRootDir -}}
{{- $_ := set $cfg "cdiRoot" $v.paths.cdiRoot -}}
{{- $_ := set $cfg "stateDir" $v.paths.stateDir -}}
{{- $_ := set $cfg "metricsPort" $v.ports.metrics -}}
{{- $_ := set $cfg "healthzPort" $v.ports.healthz -}}
{{- $drivers := list -}}
{{- range .group.drivers -}}
{{- $d := deepCopy . -}}
{{- $backends := list -}}
{{- range $d.backends -}}
{{- $b := deepCopy . -}}
{{- $opts := deepCopy ($b.options | default dict) -}}
{{- $_ := set $opts "hostRoot" "/host" -}}
{{- if hasKey $v.paths.driverRoots $b.name -}}
{{- $_ := set $opts "driverRoot" (printf "/driver-root/%s" $b.name) -}}
{{- $_ := set $opts "hostDriverRoot" (get $v.paths.driverRoots $b.name) -}}
{{- end -}}
{{- $_ := set $b "options" $opts -}}
{{- $backends = append $backends $b -}}
{{- end -}}
{{- $_ := set $d "backends" $backends -}}
{{- $drivers = append $drivers $d -}}
{{- end -}}
{{- $_ := set $cfg "drivers" $drivers -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Every driver name of every node group, sorted (RBAC resourceNames). */}}
{{- define "dra-framework.driverNames" -}}
{{- $names := list -}}
{{- range .Values.nodeGroups }}{{ range .drivers }}{{ $names = append $names .name }}{{ end }}{{ end -}}
{{- toYaml (dict "names" ($names | uniq | sortAlpha)) -}}
{{- end -}}

{{- define "dra-framework.anyPrivileged" -}}
{{- $any := false -}}
{{- range .Values.nodeGroups }}{{ if include "dra-framework.groupPrivileged" (dict "root" $ "group" .) }}{{ $any = true }}{{ end }}{{ end -}}
{{- if $any }}true{{ end -}}
{{- end -}}
