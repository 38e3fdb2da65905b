{{/* The prefix of every object's name: the release name, with the chart's name added unless the
release name already holds it (release "netdiag" gives netdiag-agent, netdiag-collector). */}}
{{- define "netdiag.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: include "netdiag.selectorLabels" (list . "agent"). */}}
{{- define "netdiag.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every label of one component's objects. */}}
{{- define "netdiag.labels" -}}
{{- $root := index . 0 -}}
{{ include "netdiag.selectorLabels" . }}
app.kubernetes.io/part-of: netdiag
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Pod template labels: the selector labels and part-of (no version: an upgrade that changes
only the chart must not restart pods). */}}
{{- define "netdiag.podLabels" -}}
{{ include "netdiag.selectorLabels" . }}
app.kubernetes.io/part-of: netdiag
{{- end -}}

{{- define "netdiag.collectorHost" -}}
{{- printf "%s-collector.%s.svc" (include "netdiag.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* Collector replicas: at least 1, at most 8 (an agent streams to each). */}}
{{- define "netdiag.collectorReplicas" -}}
{{- $n := int .Values.collector.replicas -}}
{{- if or (lt $n 1) (gt $n 8) -}}
{{- fail (printf "collector.replicas must be 1 to 8 (every agent streams to each replica), not %d" $n) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* Every collector replica's session address, comma-separated: agents stream to each, through
the peers Service's per-pod names. */}}
{{- define "netdiag.collectorAddresses" -}}
{{- $fullname := include "netdiag.fullname" . -}}
{{- $addresses := list -}}
{{- range $i := until (int (include "netdiag.collectorReplicas" .)) -}}
{{- $addresses = append $addresses (printf "https://%s-collector-%d.%s-collector-peers.%s.svc:%v" $fullname $i $fullname $.Release.Namespace $.Values.collector.agentsPort) -}}
{{- end -}}
{{- join "," $addresses -}}
{{- end -}}

{{- define "netdiag.apiTokenSecret" -}}
{{- default (printf "%s-api-token" (include "netdiag.fullname" .)) .Values.apiToken.existingSecret -}}
{{- end -}}

{{- define "netdiag.checkTlsMode" -}}
{{- if not (has .Values.tls.mode (list "generate" "cert-manager" "existing")) -}}
{{- fail (printf "tls.mode must be generate, cert-manager or existing, not %q" .Values.tls.mode) -}}
{{- end -}}
{{- end -}}
