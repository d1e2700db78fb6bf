//! The deploy files parse and say what the README promises: Railway builds infra/Dockerfile and
//! health-checks `/healthz`; Cloud Run probes `/healthz`/`/readyz`, keeps CPU allocated and gives
//! SIGTERM time to flush; the Dockerfile runs as non-root with STOPSIGNAL SIGTERM.

use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// railway.json is valid JSON with the Dockerfile builder, the health check and a restart policy.
#[test]
fn railway_json_is_valid() {
    let v: serde_json::Value = serde_json::from_str(&read("railway.json")).unwrap();
    assert_eq!(v["build"]["builder"], "DOCKERFILE");
    assert_eq!(v["build"]["dockerfilePath"], "infra/Dockerfile");
    assert_eq!(v["deploy"]["healthcheckPath"], "/healthz");
    assert_eq!(v["deploy"]["restartPolicyType"], "ON_FAILURE");
    // Railway's parser wants numbers here, not strings.
    assert!(v["deploy"]["drainingSeconds"].is_u64());
}

/// cloudrun.yaml is a Knative Service with probes, CPU always allocated and a grace period
/// longer than our default 8 s flush deadline.
#[test]
fn cloudrun_yaml_is_valid() {
    let docs = YamlLoader::load_from_str(&read("infra/cloudrun.yaml")).unwrap();
    let svc = &docs[0];
    assert_eq!(svc["kind"].as_str(), Some("Service"));
    let tmpl = &svc["spec"]["template"];
    assert_eq!(tmpl["metadata"]["annotations"]["run.googleapis.com/cpu-throttling"].as_str(), Some("false"));
    let grace = tmpl["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(grace > 8, "grace period {grace}s must exceed the 8 s flush deadline");
    let c = &tmpl["spec"]["containers"][0];
    assert_eq!(c["startupProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    let env: Vec<&str> = c["env"].as_vec().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    for name in ["STAYLINKED_STORE", "GOOGLE_CLOUD_PROJECT", "STAYLINKED_MASTER_KEY", "STAYLINKED_API_KEY"] {
        assert!(env.contains(&name), "cloudrun.yaml lacks {name}");
    }
    assert!(!matches!(c["ports"], Yaml::BadValue));
}

/// The Dockerfile is multi-stage, runs as a non-root user and stops with SIGTERM.
#[test]
fn dockerfile_is_multistage_non_root() {
    let d = read("infra/Dockerfile");
    assert_eq!(d.lines().filter(|l| l.starts_with("FROM ")).count(), 2);
    assert!(d.lines().any(|l| l.trim() == "STOPSIGNAL SIGTERM"));
    let user = d.lines().rev().find(|l| l.starts_with("USER ")).unwrap();
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(d.contains("--locked"));
}
