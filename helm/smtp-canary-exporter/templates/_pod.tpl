{{/*
The pod template of one location's Deployment or StatefulSet. Takes a dict: root (the chart's
context), item (an entry of sce.deployments), sums (config, secret, secretName). With sharding
and persistence, the state volume comes from the StatefulSet's volumeClaimTemplates.
*/}}
{{- define "sce.podTemplate" -}}
{{- $root := .root }}
{{- $item := .item }}
{{- $sums := .sums -}}
metadata:
  labels:
    {{- include "sce.selectorLabels" $root | nindent 4 }}
    {{- if $item.location }}
    location: {{ $item.location }}
    {{- end }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ $sums.config }}
    {{- if and $sums.secretName (not $root.Values.secret.existingSecret) }}
    checksum/secret: {{ $sums.secret }}
    {{- end }}
    {{- with ($item.overrides.podAnnotations | default $root.Values.podAnnotations) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "sce.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  containers:
    - name: exporter
      image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        - run
        - --config.file=/etc/smtp-canary-exporter/config.yaml
        - --web.listen-address=:{{ $root.Values.service.port }}
        {{- if $item.location }}
        - --exporter.location={{ $item.location }}
        {{- end }}
        {{- range $root.Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        - name: SMTP_CANARY_INSTANCE
          value: {{ include "sce.instance" $root | quote }}
        # A directory the exporter makes (mode 700) inside the state volume: an emptyDir
        # itself is world-writable, which the exporter refuses as a state_dir.
        - name: STATE_DIRECTORY
          value: /var/lib/smtp-canary-exporter/state
        {{- if $root.Values.sharding.enabled }}
        # The StatefulSet numbers its pods 0 to N-1: each takes the shard of its number.
        - name: SMTP_CANARY_SHARD
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        - name: SMTP_CANARY_TOTAL_SHARDS
          value: {{ $root.Values.sharding.shards | quote }}
        {{- end }}
        {{- with $root.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $item.overrides.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if and $sums.secretName (eq $root.Values.secret.exposeAs "env") }}
      envFrom:
        - secretRef:
            name: {{ $sums.secretName }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ $root.Values.service.port }}
          protocol: TCP
      livenessProbe:
        {{- toYaml $root.Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml $root.Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml ($item.overrides.resources | default $root.Values.resources) | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/smtp-canary-exporter/config.yaml
          subPath: config.yaml
          readOnly: true
        - name: state
          mountPath: /var/lib/smtp-canary-exporter
        - name: tmp
          mountPath: /tmp
        {{- if and $sums.secretName (eq $root.Values.secret.exposeAs "files") }}
        - name: secrets
          mountPath: {{ $root.Values.secret.mountPath }}
          readOnly: true
        {{- end }}
        {{- with $root.Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "sce.fullname" $root }}
    {{- if not (and $root.Values.sharding.enabled $root.Values.persistence.enabled) }}
    - name: state
      {{- if $root.Values.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ $root.Values.persistence.existingClaim | default (printf "%s-state" $item.name) }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- end }}
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
    {{- if and $sums.secretName (eq $root.Values.secret.exposeAs "files") }}
    - name: secrets
      secret:
        secretName: {{ $sums.secretName }}
        defaultMode: 0440
    {{- end }}
    {{- with $root.Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with ($item.overrides.nodeSelector | default $root.Values.nodeSelector) }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with ($item.overrides.affinity | default $root.Values.affinity) }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with ($item.overrides.tolerations | default $root.Values.tolerations) }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
