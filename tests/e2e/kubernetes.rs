//! The Kubernetes manifests in `deploy/kubernetes/`: every YAML document parses, and the
//! documents agree with each other and with the `hostel.toml` their ConfigMap holds — the
//! config path, the ports the probes and the Service use, the drain timing, the writable
//! folders — and the NATS chart's values give cluster mode what it needs.

use hostel_tests::*;
use serde::Deserialize;
use serde_norway::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn folder() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

/// Every YAML document of `file` (empty ones, such as a comment before the first `---`, left
/// out).
fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// The objects of `hostel.yaml`.
struct Manifests {
    objects: Vec<Value>,
}

impl Manifests {
    fn load() -> Manifests {
        Manifests {
            objects: documents(&folder().join("hostel.yaml")),
        }
    }

    /// The one object of `kind`.
    fn one(&self, kind: &str) -> &Value {
        let found: Vec<&Value> = self.objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "hostel.yaml should have one {kind}");
        found[0]
    }

    /// The ConfigMap's `hostel.toml`, parsed.
    fn config(&self) -> toml::Table {
        let text = self.config_text();
        text.parse()
            .unwrap_or_else(|e| panic!("the ConfigMap's hostel.toml: {e}\n{text}"))
    }

    fn config_text(&self) -> String {
        self.one("ConfigMap")["data"]["hostel.toml"]
            .as_str()
            .expect("the ConfigMap has a data key hostel.toml")
            .to_string()
    }

    fn pod(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]
    }

    fn container(&self) -> &Value {
        let containers = self.pod()["spec"]["containers"]
            .as_sequence()
            .expect("the pod has containers");
        assert_eq!(containers.len(), 1, "one container: hostel");
        &containers[0]
    }

    /// A probe's or a Service's port: a number, or the name of one of the container's ports.
    fn port(&self, port: &Value) -> u16 {
        if let Some(number) = port.as_u64() {
            return u16::try_from(number).expect("a port number");
        }
        let name = port.as_str().expect("a port is a number or a name");
        let ports = self.container()["ports"].as_sequence().expect("ports");
        let named = ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("the container has no port named {name}"));
        u16::try_from(named["containerPort"].as_u64().expect("containerPort")).unwrap()
    }

    /// The volume mounted at the folder holding `path`, by the longest mount path.
    fn volume_of(&self, path: &str) -> &Value {
        let mounts = self.container()["volumeMounts"]
            .as_sequence()
            .expect("volume mounts");
        let mount = mounts
            .iter()
            .filter(|m| Path::new(path).starts_with(m["mountPath"].as_str().unwrap()))
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
            .unwrap_or_else(|| panic!("nothing is mounted where {path} is"));
        let volumes = self.pod()["spec"]["volumes"]
            .as_sequence()
            .expect("volumes");
        volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {:?}", mount["name"]))
    }
}

fn text<'a>(table: &'a toml::Table, dotted: &str) -> &'a str {
    lookup(table, dotted)
        .as_str()
        .unwrap_or_else(|| panic!("hostel.toml: `{dotted}` is not a string"))
}

fn lookup<'a>(table: &'a toml::Table, dotted: &str) -> &'a toml::Value {
    let mut keys = dotted.split('.');
    let mut value = table
        .get(keys.next().unwrap())
        .unwrap_or_else(|| panic!("hostel.toml has no `{dotted}`"));
    for key in keys {
        value = value
            .get(key)
            .unwrap_or_else(|| panic!("hostel.toml has no `{dotted}`"));
    }
    value
}

fn listen(table: &toml::Table, dotted: &str) -> SocketAddr {
    text(table, dotted)
        .parse()
        .unwrap_or_else(|e| panic!("hostel.toml: `{dotted}`: {e}"))
}

/// A duration as the config writes these: `"5s"`, `"250ms"`, `"2m"`.
fn duration(table: &toml::Table, dotted: &str) -> Duration {
    let written = text(table, dotted);
    let (number, unit) = written.split_at(written.find(|c: char| !c.is_ascii_digit()).unwrap());
    let number: u64 = number.parse().unwrap();
    match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        _ => panic!("hostel.toml: `{dotted}` = {written:?}: write it in ms, s or m here"),
    }
}

fn seconds(value: &Value) -> Duration {
    Duration::from_secs(value.as_u64().expect("a number of seconds"))
}

#[test]
fn every_yaml_document_parses_and_names_its_kind() {
    let files: Vec<PathBuf> = std::fs::read_dir(folder())
        .expect("deploy/kubernetes/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["hostel.yaml", "nats-values.yaml"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    for file in &files {
        let documents = documents(file);
        assert!(!documents.is_empty(), "{}: no document", file.display());
        if file.ends_with("nats-values.yaml") {
            continue; // Helm values, not objects.
        }
        for object in documents {
            for key in ["apiVersion", "kind"] {
                assert!(
                    object[key].is_string(),
                    "{}: no {key}: {object:?}",
                    file.display()
                );
            }
            assert!(object["metadata"]["name"].is_string(), "{object:?}");
        }
    }
    let manifests = Manifests::load();
    for kind in ["ConfigMap", "Deployment", "Service"] {
        manifests.one(kind);
    }
}

#[test]
fn the_deployment_runs_the_configmaps_config_with_probes_and_service_on_its_ports() {
    let manifests = Manifests::load();
    let config = manifests.config();
    let deployment = manifests.one("Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(3));
    // The pods are the Deployment's and the Service's.
    let labels = &manifests.pod()["metadata"]["labels"];
    let selectors = [
        &deployment["spec"]["selector"]["matchLabels"],
        &manifests.one("Service")["spec"]["selector"],
    ];
    for selector in selectors {
        let selector = selector.as_mapping().expect("a selector");
        assert!(!selector.is_empty());
        for (key, value) in selector {
            assert_eq!(&labels[key], value, "the pods lack the label {key:?}");
        }
    }

    // `hostel serve --config PATH`, PATH in the ConfigMap's volume; the ports are the config's.
    let container = manifests.container();
    let command: Vec<&str> = [&container["command"], &container["args"]]
        .into_iter()
        .flat_map(|part| part.as_sequence().into_iter().flatten())
        .map(|word| word.as_str().expect("command words are strings"))
        .collect();
    assert_eq!(command[..2], ["hostel", "serve"], "{command:?}");
    let at = command.iter().position(|w| *w == "--config").unwrap();
    let path = command[at + 1];
    for flag in ["--listen", "--admin-listen"] {
        assert!(
            !command.contains(&flag),
            "{flag} would override the config: {command:?}"
        );
    }
    let volume = manifests.volume_of(path);
    let configmap = manifests.one("ConfigMap");
    assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"]);
    let file = Path::new(path).file_name().unwrap().to_str().unwrap();
    assert!(
        configmap["data"][file].is_string(),
        "the ConfigMap has no {file}"
    );

    // Reachable from outside the pod: the Service, the kubelet's probes, Prometheus.
    let app = listen(&config, "server.listen");
    let admin = listen(&config, "admin.listen");
    let metrics = listen(&config, "metrics.listen");
    for addr in [app, admin, metrics] {
        assert!(addr.ip().is_unspecified(), "{addr}: pods must be reachable");
    }
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            manifests.port(&get["port"]),
            admin.port(),
            "{probe}: admin.listen"
        );
    }
    let service_ports = manifests.one("Service")["spec"]["ports"]
        .as_sequence()
        .expect("the Service has ports");
    let targets: Vec<u16> = service_ports
        .iter()
        .map(|p| manifests.port(&p["targetPort"]))
        .collect();
    assert_eq!(
        targets,
        [app.port()],
        "the Service exposes server.listen only"
    );
    let annotations = &manifests.pod()["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        metrics.port().to_string().as_str()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    // Annotation-based scraping sends no token.
    assert_eq!(lookup(&config, "metrics.open").as_bool(), Some(true));
}

#[test]
fn the_drain_fits_the_probes_and_the_termination_grace_period() {
    let manifests = Manifests::load();
    let config = manifests.config();
    let drain_delay = duration(&config, "server.drain_delay");
    let shutdown_grace = duration(&config, "server.shutdown_grace");
    // The readiness probe sees the 503 before the listener closes.
    let readiness = &manifests.container()["readinessProbe"];
    let noticed = seconds(&readiness["periodSeconds"])
        * u32::try_from(readiness["failureThreshold"].as_u64().unwrap()).unwrap();
    assert!(
        noticed < drain_delay,
        "readiness takes {noticed:?} to notice, the drain delay is {drain_delay:?}"
    );
    // Kubernetes' SIGKILL comes after the drain, the grace, the admin listener's 5 s and the
    // last spans' 5 s.
    let grace = seconds(&manifests.pod()["spec"]["terminationGracePeriodSeconds"]);
    let needed = drain_delay + shutdown_grace + Duration::from_secs(10);
    assert!(
        grace >= needed,
        "terminationGracePeriodSeconds {grace:?} < {needed:?}"
    );
}

#[test]
fn the_pod_runs_as_non_root_on_a_read_only_root_writing_only_to_empty_dirs() {
    let manifests = Manifests::load();
    let config = manifests.config();
    let container = manifests.container();
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(
        manifests.pod()["spec"]["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    for writable in ["server.code_cache", "admin.state"] {
        let path = text(&config, writable);
        assert!(Path::new(path).is_absolute(), "{writable}: {path}");
        let volume = manifests.volume_of(path);
        assert!(
            volume["emptyDir"].is_mapping(),
            "{writable} = {path} is not on an emptyDir: {volume:?}"
        );
    }
    for limit in ["requests", "limits"] {
        assert!(
            container["resources"][limit]["memory"].is_string(),
            "resources.{limit}"
        );
    }
}

#[test]
fn the_config_is_in_cluster_mode_on_the_nats_the_values_install() {
    let config = Manifests::load().config();
    let url = text(&config, "cluster.url");
    assert_eq!(url, "nats://nats.nats.svc.cluster.local:4222");
    for bucket in ["deployments", "components", "usage"] {
        assert!(!text(&config, &format!("cluster.{bucket}")).is_empty());
    }
    assert_eq!(text(&config, "stores.default.kind"), "nats");
    assert_eq!(text(&config, "stores.default.url"), url);
    assert_eq!(text(&config, "stores.default.bucket"), "hostel-kv");

    let values = documents(&folder().join("nats-values.yaml"));
    assert_eq!(values.len(), 1);
    let nats = &values[0]["config"];
    assert_eq!(nats["cluster"]["enabled"].as_bool(), Some(true));
    let servers = nats["cluster"]["replicas"].as_u64().unwrap();
    assert_eq!(servers, 3);
    let jetstream = &nats["jetstream"];
    assert_eq!(jetstream["enabled"].as_bool(), Some(true));
    assert_eq!(jetstream["fileStore"]["enabled"].as_bool(), Some(true));
    assert_eq!(
        jetstream["fileStore"]["pvc"]["enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(jetstream["memoryStore"]["enabled"].as_bool(), Some(false));
    // JetStream cannot keep more copies of a bucket than there are servers.
    for replicas in ["cluster.replicas", "stores.default.replicas"] {
        let replicas = lookup(&config, replicas).as_integer().unwrap();
        assert!((1..=servers as i64).contains(&replicas), "{replicas}");
    }
}

/// The ConfigMap's config with its folders moved into `dir` (they are the pod's).
fn config_in(dir: &Path, text: &str) -> PathBuf {
    let text = text
        .replace(
            "/var/cache/hostel",
            &dir.join("cache").display().to_string(),
        )
        .replace("/var/lib/hostel", &dir.join("lib").display().to_string());
    let path = dir.join("hostel.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_config_passes_hostel_check() {
    // The check connects to nothing: NATS is reached when the host serves.
    let dir = tempfile::tempdir().unwrap();
    let path = config_in(dir.path(), &Manifests::load().config_text());
    let (status, stdout, stderr) =
        hostel_output(&["check", "--config", path.to_str().unwrap()], dir.path()).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains(": ok (0 apps"), "{stdout}");
}
