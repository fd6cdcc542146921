{{/*
Helpers of the coder-guard chart. Nothing here may be random or time-dependent: `helm template`
must give byte-identical output for the same values (no genCA, randAlphaNum, now, lookup).
*/}}

{{- define "coder-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "coder-guard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The webhook configurations and the leader-election Lease have fixed names: the code patches
caBundle of, and elects a leader on, objects called `coder-guard` (api::webhooks::CONFIGURATION_NAME).
One release per cluster.
*/}}
{{- define "coder-guard.configurationName" -}}
coder-guard
{{- end }}

{{- define "coder-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "coder-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coder-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "coder-guard.labels" -}}
helm.sh/chart: {{ include "coder-guard.chart" . }}
{{ include "coder-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "coder-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "coder-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "coder-guard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret with tls.crt and tls.key (certManager and external modes). */}}
{{- define "coder-guard.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "external" }}
{{- .Values.certificates.external.secretName }}
{{- else }}
{{- printf "%s-tls" (include "coder-guard.fullname" .) }}
{{- end }}
{{- end }}

{{/* The self-signed CA's Secret, shared by the replicas (selfSigned mode). */}}
{{- define "coder-guard.caSecretName" -}}
{{- default (printf "%s-ca" (include "coder-guard.fullname" .)) .Values.certificates.selfSigned.caSecretName }}
{{- end }}

{{/* The names the API server may use for the Service; the serving certificate names all of them. */}}
{{- define "coder-guard.dnsNames" -}}
{{- $svc := include "coder-guard.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- if eq .Values.certificates.mode "selfSigned" }}
{{- $names = concat $names .Values.certificates.selfSigned.extraDnsNames }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* Does anything run only on the leader (so that serve elects one on the Lease)? */}}
{{- define "coder-guard.leaderElection" -}}
{{- if or .Values.reconcile.enabled (eq .Values.certificates.mode "selfSigned") }}true{{ end }}
{{- end }}

{{/* Value checks the schema cannot express; included by the Deployment. */}}
{{- define "coder-guard.validate" -}}
{{- $c := .Values.certificates }}
{{- if and (eq $c.mode "external") (not $c.external.secretName) }}
{{- fail "certificates.mode=external needs certificates.external.secretName (a Secret with tls.crt and tls.key)" }}
{{- end }}
{{- if and (eq $c.mode "external") (not (hasPrefix "-----BEGIN CERTIFICATE-----" (trim $c.external.caBundle))) }}
{{- fail "certificates.mode=external needs certificates.external.caBundle: the PEM of the CA that signed tls.crt (starting with -----BEGIN CERTIFICATE-----)" }}
{{- end }}
{{- if and .Values.hostNetwork (or (eq (int .Values.ports.webhook) 10250) (eq (int .Values.ports.admin) 10250)) }}
{{- fail "hostNetwork=true: port 10250 is the kubelet's on every node; choose another ports.webhook/ports.admin (e.g. 10260 and 10261)" }}
{{- end }}
{{- if eq (int .Values.ports.webhook) (int .Values.ports.admin) }}
{{- fail "ports.webhook and ports.admin must differ" }}
{{- end }}
{{- end }}
