"""Offline schemas for the custom resources in the manifests (kubernetes-validate knows built-in kinds only).

They cover the parts of each CRD this project uses, closed (unknown fields are errors, as
`kubernetes-validate --strict` does for built-in kinds), with the operator's required fields and enums.
Field names follow the CloudNativePG v1 API (Cluster, Pooler, ScheduledBackup), the Barman Cloud plugin
(barmancloud.cnpg.io/v1 ObjectStore) and cert-manager's v1 API (Certificate, Issuer; its CRDs in
cert-manager/cert-manager `deploy/crds/`); fields the API has but this project does not set are allowed
without a deeper schema.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ANY: Schema = {}
STRING: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
QUANTITY: Schema = {"type": ["string", "integer"]}
NAME_REF: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": STRING},
    "additionalProperties": False,
}
SECRET_KEY_REF: Schema = {
    "type": "object",
    "required": ["name", "key"],
    "properties": {"name": STRING, "key": STRING},
    "additionalProperties": False,
}


def closed(
    properties: dict[str, Schema], required: tuple[str, ...] = (), others: tuple[str, ...] = ()
) -> Schema:
    """An object with exactly `properties` (and the known-but-unchecked fields `others`)."""
    props = dict(properties) | {name: ANY for name in others if name not in properties}
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


RESOURCES = closed(
    {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    }
)
METADATA = closed(
    {"name": STRING, "namespace": STRING, "labels": {"type": "object"}, "annotations": {"type": "object"}},
    required=("name",),
)

CLUSTER = closed(
    {
        "apiVersion": {"const": "postgresql.cnpg.io/v1"},
        "kind": {"const": "Cluster"},
        "metadata": METADATA,
        "spec": closed(
            {
                "description": STRING,
                "instances": {"type": "integer", "minimum": 1},
                "imageName": STRING,
                "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
                "primaryUpdateMethod": {"enum": ["switchover", "restart"]},
                "enableSuperuserAccess": BOOL,
                "bootstrap": closed(
                    {
                        "initdb": closed(
                            {"database": STRING, "owner": STRING, "secret": NAME_REF},
                            required=("database", "owner"),
                            others=(
                                "options",
                                "dataChecksums",
                                "encoding",
                                "localeCollate",
                                "localeCType",
                                "locale",
                                "localeProvider",
                                "icuLocale",
                                "icuRules",
                                "builtinLocale",
                                "walSegmentSize",
                                "postInitSQL",
                                "postInitApplicationSQL",
                                "postInitTemplateSQL",
                                "import",
                                "postInitSQLRefs",
                                "postInitApplicationSQLRefs",
                                "postInitTemplateSQLRefs",
                            ),
                        )
                    },
                    others=("recovery", "pg_basebackup"),
                ),
                "postgresql": closed(
                    {
                        "parameters": {"type": "object", "additionalProperties": STRING},
                        "synchronous": closed(
                            {
                                "method": {"enum": ["any", "first"]},
                                "number": {"type": "integer", "minimum": 1},
                                "dataDurability": {"enum": ["required", "preferred"]},
                            },
                            required=("method", "number"),
                            others=("standbyNamesPre", "standbyNamesPost", "maxStandbyNamesFromCluster"),
                        ),
                    },
                    others=(
                        "pg_hba",
                        "pg_ident",
                        "syncReplicaElectionConstraint",
                        "shared_preload_libraries",
                        "ldap",
                        "promotionTimeout",
                        "enableAlterSystem",
                        "extensions",
                    ),
                ),
                "storage": closed(
                    {"size": QUANTITY, "storageClass": STRING, "resizeInUseVolumes": BOOL},
                    required=("size",),
                    others=("pvcTemplate",),
                ),
                "walStorage": closed(
                    {"size": QUANTITY, "storageClass": STRING}, required=("size",), others=("pvcTemplate",)
                ),
                "resources": RESOURCES,
                "affinity": closed(
                    {
                        "enablePodAntiAffinity": BOOL,
                        "topologyKey": STRING,
                        "podAntiAffinityType": {"enum": ["preferred", "required"]},
                    },
                    others=(
                        "nodeSelector",
                        "nodeAffinity",
                        "tolerations",
                        "additionalPodAntiAffinity",
                        "additionalPodAffinity",
                    ),
                ),
                "plugins": {
                    "type": "array",
                    "items": closed(
                        {
                            "name": STRING,
                            "enabled": BOOL,
                            "isWALArchiver": BOOL,
                            "parameters": {"type": "object", "additionalProperties": STRING},
                        },
                        required=("name",),
                    ),
                },
            },
            required=("instances", "storage"),
            others=(
                "inheritedMetadata",
                "imageCatalogRef",
                "imagePullPolicy",
                "schedulerName",
                "postgresUID",
                "postgresGID",
                "minSyncReplicas",
                "maxSyncReplicas",
                "replicationSlots",
                "replica",
                "superuserSecret",
                "certificates",
                "imagePullSecrets",
                "serviceAccountTemplate",
                "ephemeralVolumeSource",
                "startDelay",
                "stopDelay",
                "smartShutdownTimeout",
                "switchoverDelay",
                "failoverDelay",
                "livenessProbeTimeout",
                "topologySpreadConstraints",
                "ephemeralVolumesSizeLimit",
                "priorityClassName",
                "backup",
                "nodeMaintenanceWindow",
                "monitoring",
                "externalClusters",
                "logLevel",
                "projectedVolumeTemplate",
                "env",
                "envFrom",
                "managed",
                "seccompProfile",
                "tablespaces",
                "enablePDB",
                "probes",
                "podSecurityContext",
                "securityContext",
            ),
        ),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

SCHEDULED_BACKUP = closed(
    {
        "apiVersion": {"const": "postgresql.cnpg.io/v1"},
        "kind": {"const": "ScheduledBackup"},
        "metadata": METADATA,
        "spec": closed(
            {
                # CNPG's schedule has six fields, seconds first.
                "schedule": {"type": "string", "pattern": r"^\S+( \S+){5}$"},
                "cluster": NAME_REF,
                "suspend": BOOL,
                "immediate": BOOL,
                "backupOwnerReference": {"enum": ["none", "self", "cluster"]},
                "method": {"enum": ["barmanObjectStore", "volumeSnapshot", "plugin"]},
                "pluginConfiguration": closed(
                    {"name": STRING, "parameters": {"type": "object", "additionalProperties": STRING}},
                    required=("name",),
                ),
            },
            required=("schedule", "cluster"),
            others=("target", "online", "onlineConfiguration"),
        ),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

OBJECT_STORE = closed(
    {
        "apiVersion": {"const": "barmancloud.cnpg.io/v1"},
        "kind": {"const": "ObjectStore"},
        "metadata": METADATA,
        "spec": closed(
            {
                "retentionPolicy": {"type": "string", "pattern": r"^[1-9][0-9]*[dwm]$"},
                "configuration": closed(
                    {
                        "destinationPath": {"type": "string", "pattern": r"^(s3|gs|https?)://"},
                        "endpointURL": STRING,
                        "s3Credentials": closed(
                            {
                                "accessKeyId": SECRET_KEY_REF,
                                "secretAccessKey": SECRET_KEY_REF,
                                "region": SECRET_KEY_REF,
                                "sessionToken": SECRET_KEY_REF,
                                "inheritFromIAMRole": BOOL,
                            }
                        ),
                        "wal": closed(
                            {
                                "compression": {"enum": ["bzip2", "gzip", "lz4", "snappy", "xz", "zstd"]},
                                "maxParallel": {"type": "integer", "minimum": 1},
                            },
                            others=(
                                "encryption",
                                "archiveAdditionalCommandArgs",
                                "restoreAdditionalCommandArgs",
                            ),
                        ),
                        "data": closed(
                            {
                                "compression": {"enum": ["bzip2", "gzip", "lz4", "snappy", "xz", "zstd"]},
                                "jobs": {"type": "integer", "minimum": 1},
                            },
                            others=("encryption", "immediateCheckpoint", "additionalCommandArgs"),
                        ),
                    },
                    required=("destinationPath",),
                    others=(
                        "endpointCA",
                        "azureCredentials",
                        "googleCredentials",
                        "serverName",
                        "tags",
                        "historyTags",
                    ),
                ),
            },
            required=("configuration",),
            others=("instanceSidecarConfiguration",),
        ),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

# The PgBouncer settings a Pooler may set: the operator's admission webhook refuses any other (it
# manages the rest itself, e.g. pool_mode, listen_port, auth_*_file).
PGBOUNCER_PARAMETERS = (
    "application_name_add_host",
    "auth_type",
    "auth_user",
    "autodb_idle_timeout",
    "cancel_wait_timeout",
    "client_idle_timeout",
    "client_login_timeout",
    "client_tls_ciphers",
    "client_tls_sslmode",
    "client_tls13_ciphers",
    "default_pool_size",
    "disable_pqexec",
    "dns_max_ttl",
    "dns_nxdomain_ttl",
    "idle_transaction_timeout",
    "ignore_startup_parameters",
    "listen_backlog",
    "log_connections",
    "log_disconnections",
    "log_pooler_errors",
    "log_stats",
    "max_client_conn",
    "max_db_connections",
    "max_packet_size",
    "max_prepared_statements",
    "max_user_connections",
    "min_pool_size",
    "pkt_buf",
    "query_timeout",
    "query_wait_timeout",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "sbuf_loopcnt",
    "server_check_delay",
    "server_check_query",
    "server_connect_timeout",
    "server_fast_close",
    "server_idle_timeout",
    "server_lifetime",
    "server_login_retry",
    "server_reset_query",
    "server_reset_query_always",
    "server_round_robin",
    "server_tls_ciphers",
    "server_tls13_ciphers",
    "server_tls_protocols",
    "server_tls_sslmode",
    "stats_period",
    "suspend_timeout",
    "tcp_defer_accept",
    "tcp_socket_buffer",
    "tcp_keepalive",
    "tcp_keepcnt",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_user_timeout",
    "track_extra_parameters",
    "verbose",
)
POD_SPEC_OTHERS = (
    "initContainers",
    "volumes",
    "nodeSelector",
    "tolerations",
    "topologySpreadConstraints",
    "priorityClassName",
    "terminationGracePeriodSeconds",
    "securityContext",
    "serviceAccountName",
    "imagePullSecrets",
)
CONTAINER_OTHERS = (
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "ports",
    "volumeMounts",
    "securityContext",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
)

POOLER = closed(
    {
        "apiVersion": {"const": "postgresql.cnpg.io/v1"},
        "kind": {"const": "Pooler"},
        "metadata": METADATA,
        "spec": closed(
            {
                "cluster": NAME_REF,
                "instances": {"type": "integer", "minimum": 0},
                "type": {"enum": ["rw", "ro", "r"]},
                "pgbouncer": closed(
                    {
                        "poolMode": {"enum": ["session", "transaction"]},
                        "parameters": {
                            "type": "object",
                            "propertyNames": {"enum": list(PGBOUNCER_PARAMETERS)},
                            "additionalProperties": STRING,
                        },
                        "pg_hba": {"type": "array", "items": STRING},
                        "paused": BOOL,
                        "image": STRING,
                        "authQuery": STRING,
                        "authQuerySecret": NAME_REF,
                    },
                    others=(
                        "serverTLSSecret",
                        "serverCASecret",
                        "clientCASecret",
                        "clientTLSSecret",
                        "imageCatalogRef",
                    ),
                ),
                "template": closed(
                    {
                        "metadata": closed({"labels": {"type": "object"}, "annotations": {"type": "object"}}),
                        "spec": closed(
                            {
                                "containers": {
                                    "type": "array",
                                    "items": closed(
                                        {"name": STRING, "resources": RESOURCES},
                                        required=("name",),
                                        others=CONTAINER_OTHERS,
                                    ),
                                },
                                "affinity": closed(
                                    {"podAntiAffinity": {"type": "object"}},
                                    others=("nodeAffinity", "podAffinity"),
                                ),
                            },
                            required=("containers",),
                            others=POD_SPEC_OTHERS,
                        ),
                    }
                ),
            },
            required=("cluster", "pgbouncer"),
            others=("deploymentStrategy", "monitoring", "serviceTemplate", "serviceAccountName"),
        ),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

# cert-manager: Go durations ("2160h", "90m"), its key usages, and the issuers this project uses.
DURATION: Schema = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"}
KEY_USAGES = (
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
)
STRINGS: Schema = {"type": "array", "items": STRING}

CERTIFICATE = closed(
    {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": METADATA,
        "spec": closed(
            {
                "secretName": STRING,
                "issuerRef": closed({"name": STRING, "kind": STRING, "group": STRING}, required=("name",)),
                "commonName": STRING,
                "dnsNames": STRINGS,
                "uris": STRINGS,
                "ipAddresses": STRINGS,
                "isCA": BOOL,
                "duration": DURATION,
                "renewBefore": DURATION,
                "usages": {"type": "array", "items": {"enum": list(KEY_USAGES)}},
                "privateKey": closed(
                    {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "encoding": {"enum": ["PKCS1", "PKCS8"]},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                        "size": {"type": "integer"},
                    }
                ),
            },
            required=("issuerRef", "secretName"),
            others=(
                "additionalOutputFormats",
                "emailAddresses",
                "encodeUsagesInRequest",
                "keystores",
                "literalSubject",
                "nameConstraints",
                "otherNames",
                "renewBeforePercentage",
                "revisionHistoryLimit",
                "secretTemplate",
                "signatureAlgorithm",
                "subject",
            ),
        ),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

ISSUER = closed(
    {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Issuer"},
        "metadata": METADATA,
        # Exactly one kind of issuer.
        "spec": {
            **closed(
                {
                    "selfSigned": closed({}, others=("crlDistributionPoints",)),
                    "ca": closed(
                        {"secretName": STRING},
                        required=("secretName",),
                        others=("crlDistributionPoints", "issuingCertificateURLs", "ocspServers"),
                    ),
                },
                others=("acme", "vault", "venafi"),
            ),
            "minProperties": 1,
            "maxProperties": 1,
        },
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("postgresql.cnpg.io/v1", "Cluster"): CLUSTER,
    ("postgresql.cnpg.io/v1", "Pooler"): POOLER,
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): SCHEDULED_BACKUP,
    ("barmancloud.cnpg.io/v1", "ObjectStore"): OBJECT_STORE,
    ("cert-manager.io/v1", "Certificate"): CERTIFICATE,
    ("cert-manager.io/v1", "Issuer"): ISSUER,
}
