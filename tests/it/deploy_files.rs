//! The deploy files parse and say what the README promises: Railway builds infra/Dockerfile and
//! health-checks `/healthz`; Cloud Run probes `/healthz`/`/readyz`, keeps CPU allocated and gives
//! SIGTERM time to flush; the Dockerfile runs as non-root with STOPSIGNAL SIGTERM. Issue 14
//! (security review L6): pinned base images, a HEALTHCHECK, a Railway volume the runtime user can
//! write, explicit Cloud Run ingress and service account, the API key from a secret.

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
    // A startCommand replaces the image's ENTRYPOINT (which makes the volume writable and drops
    // to UID 10001) and its `--log-format json`.
    assert!(v["deploy"].get("startCommand").is_none(), "railway.json must not override the entrypoint");
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
    // Issue 14: ingress chosen explicitly, a dedicated service account, the API key from a secret.
    let ingress = svc["metadata"]["annotations"]["run.googleapis.com/ingress"].as_str();
    assert!(
        matches!(ingress, Some("all" | "internal" | "internal-and-cloud-load-balancing")),
        "ingress must be set explicitly: {ingress:?}"
    );
    let sa = tmpl["spec"]["serviceAccountName"].as_str().unwrap_or_default();
    assert!(sa.starts_with("staylinked@") && !sa.contains("compute@developer"), "{sa}");
    let api_key =
        c["env"].as_vec().unwrap().iter().find(|e| e["name"].as_str() == Some("STAYLINKED_API_KEY"));
    assert!(api_key.is_some_and(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str().is_some()));
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

/// Issue 14: every base image is pinned (exact version or digest, no floating `-slim` or minor
/// tags), plain Docker gets a HEALTHCHECK through `staylinked healthcheck`, and the entrypoint
/// can make a root-owned volume (Railway) writable, then drops to UID 10001.
#[test]
fn dockerfile_pins_images_and_checks_health() {
    let d = read("infra/Dockerfile");
    let args: std::collections::HashMap<&str, &str> = d
        .lines()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    for from in d.lines().filter_map(|l| l.strip_prefix("FROM ")) {
        let image = from.split_whitespace().next().unwrap();
        let image = image.strip_prefix("${").and_then(|n| n.strip_suffix('}')).map_or(image, |name| {
            args.get(name).copied().unwrap_or_else(|| panic!("ARG {name} has no default"))
        });
        if image.contains("@sha256:") {
            continue;
        }
        let (name, tag) = image.split_once(':').unwrap_or_else(|| panic!("{image}: no tag"));
        let version = tag.split('-').next().unwrap_or_default();
        let parts =
            version.split('.').filter(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty()).count();
        let need = if name == "rust" { 3 } else { 2 };
        assert!(
            parts >= need,
            "{image}: pin an exact version (x.y{}) or a digest",
            if need == 3 { ".z" } else { "" }
        );
    }
    let hc = d.lines().find(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    let hc_cmd = d.lines().skip_while(|l| !l.starts_with("HEALTHCHECK")).take(2).collect::<String>();
    assert!(hc_cmd.contains("staylinked\", \"healthcheck"), "{hc}");
    assert!(d.contains("COPY infra/entrypoint.sh /usr/local/bin/staylinked-entrypoint"));
    assert!(d.contains(r#"ENTRYPOINT ["/usr/local/bin/staylinked-entrypoint"]"#));
    let e = read("infra/entrypoint.sh");
    assert!(e.contains("chown -R 10001:10001") && e.contains("setpriv --reuid=10001 --regid=10001"), "{e}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/entrypoint.sh");
        assert!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o111 != 0,
            "entrypoint.sh must be executable"
        );
    }
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target/"));
}
