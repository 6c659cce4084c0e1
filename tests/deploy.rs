//! The files in deploy/: Prometheus config and alert rules pass `promtool`; compose, Kubernetes
//! and Grafana files parse; rules and dashboard name only metrics the service exports.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ontrack::telemetry::Telemetry;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

/// `promtool` (Debian package `prometheus`, installed by .ci/run); under CI its absence fails.
fn promtool() -> Option<&'static str> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some("promtool");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "promtool is missing: .ci/run installs the Debian package prometheus"
    );
    eprintln!("skipped: no promtool (apt-get install prometheus)");
    None
}

#[test]
fn promtool_accepts_the_prometheus_config_and_the_alert_rules() {
    let Some(promtool) = promtool() else { return };
    for (what, file) in [("config", "prometheus/prometheus.yml"), ("rules", "prometheus/rules.yml")]
    {
        let out = Command::new(promtool).args(["check", what]).arg(deploy(file)).output().unwrap();
        assert!(
            out.status.success(),
            "promtool check {what} {file}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every metric name a fresh service exports, before it has consumed or sent anything: every
/// family is there from the start (its known label values at zero).
pub fn exported_names() -> BTreeSet<String> {
    let topics = ontrack::pipeline::Topics::default();
    let t = Telemetry::for_inputs(&topics.inputs());
    // And `ontrack edfi`'s own families (the same conventions, another process).
    t.edfi_series();
    names_in_exposition(&t.render())
}

/// Metric names of a Prometheus text exposition, histogram series included.
pub fn names_in_exposition(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// Every `ontrack_…` identifier in `text`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ontrack_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

fn yaml(file: &str) -> Vec<yaml_rust2::Yaml> {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn rules_and_dashboard_name_only_exported_metrics() {
    let exported = exported_names();
    let rules = std::fs::read_to_string(deploy("prometheus/rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy("grafana/dashboards/ontrack.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let exprs: Vec<String> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 12, "{exprs:?}");
    for (file, text) in [("rules.yml", rules), ("dashboard", exprs.join("\n"))] {
        let unknown: Vec<String> = referenced(&text).difference(&exported).cloned().collect();
        assert!(unknown.is_empty(), "{file} names metrics ontrack does not export: {unknown:?}");
    }
    // Every exported family is on the dashboard.
    let on_dashboard = referenced(&exprs.join("\n"));
    let families: Vec<&String> = exported
        .iter()
        .filter(|n| !n.ends_with("_sum") && !n.ends_with("_count") && !n.ends_with("_bucket"))
        .filter(|n| !on_dashboard.contains(*n) && !on_dashboard.contains(&format!("{n}_bucket")))
        .collect();
    assert!(families.is_empty(), "not on the dashboard: {families:?}");
}

#[test]
fn compose_and_kubernetes_files_parse_and_agree_with_the_service() {
    let compose = &yaml("docker-compose.yml")[0];
    let services = &compose["services"];
    for s in ["kafka", "topics", "ontrack", "prometheus", "grafana"] {
        assert!(!services[s].is_badvalue(), "compose has no service {s}");
    }
    let env = &services["ontrack"]["environment"];
    assert_eq!(env["ONTRACK__ADMIN__ADDR"].as_str(), Some("0.0.0.0:9898"));
    assert_eq!(
        services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller")
    );
    // Every ONTRACK__ variable is a key the config accepts.
    let vars: Vec<(String, String)> = env
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap_or_default().to_owned()))
        .filter(|(k, _)| k.starts_with("ONTRACK__"))
        .collect();
    ontrack::config::Config::load(None, vars).unwrap();
    let edfi = &services["ontrack-edfi"];
    assert_eq!(edfi["command"][0].as_str(), Some("edfi"));
    assert_eq!(edfi["environment"]["ONTRACK__EDFI__ADMIN_ADDR"].as_str(), Some("0.0.0.0:9899"));

    let mut kinds = BTreeSet::new();
    let listed = &yaml("k8s/kustomization.yaml")[0]["resources"];
    for file in [
        "k8s/configmap.yaml",
        "k8s/service.yaml",
        "k8s/statefulset.yaml",
        "k8s/edfi-statefulset.yaml",
        "k8s/kustomization.yaml",
    ] {
        let name = file.trim_start_matches("k8s/");
        assert!(
            name == "kustomization.yaml"
                || listed.as_vec().unwrap().iter().any(|r| r.as_str() == Some(name)),
            "{file} is not in the kustomization"
        );
        // The translator's admin server has its own port.
        let admin_port = if name.starts_with("edfi") { "9899" } else { "9898" };
        for doc in yaml(file) {
            kinds.insert(doc["kind"].as_str().unwrap().to_owned());
            if doc["kind"].as_str() == Some("ConfigMap") {
                // The mounted config is one the service accepts.
                let toml = doc["data"]["ontrack.toml"].as_str().unwrap();
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("ontrack.toml");
                std::fs::write(&path, toml).unwrap();
                ontrack::config::Config::load(Some(&path), Vec::new()).unwrap();
            }
            if doc["kind"].as_str() == Some("StatefulSet") {
                let pod = &doc["spec"]["template"];
                let ann = &pod["metadata"]["annotations"];
                assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
                assert_eq!(ann["prometheus.io/port"].as_str(), Some(admin_port));
                let container = &pod["spec"]["containers"][0];
                let args = container["args"][0].as_str();
                assert_eq!(args, Some(if admin_port == "9899" { "edfi" } else { "run" }));
                assert_eq!(
                    container["readinessProbe"]["httpGet"]["path"].as_str(),
                    Some("/readyz")
                );
                assert_eq!(
                    container["livenessProbe"]["httpGet"]["path"].as_str(),
                    Some("/healthz")
                );
                assert!(
                    !doc["spec"]["volumeClaimTemplates"].is_badvalue(),
                    "a volume for the store"
                );
            }
        }
    }
    assert_eq!(
        kinds,
        ["ConfigMap", "Kustomization", "Service", "StatefulSet"].map(String::from).into()
    );
    for file in [
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/ontrack.yml",
    ] {
        yaml(file);
    }
}
