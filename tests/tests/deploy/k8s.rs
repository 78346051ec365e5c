//! `deploy/k8s/`: the manifests, against the Kubernetes schemas and against each other.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::daemons::{self, S2cs, S2ds, flag_value};
use crate::{STOP_AFTER_DRAIN, repo, run_tool, toml_table, tool, yaml_docs};

/// The manifests' files.
fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/k8s"))
        .expect("deploy/k8s")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/k8s");
    files
}

/// Every object of every manifest.
fn objects() -> Vec<Value> {
    files().iter().flat_map(|f| yaml_docs(f)).collect()
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| s(o, "/kind") == kind && s(o, "/metadata/name") == name)
}

/// Kubernetes versions whose schemas the manifests must pass: the oldest that
/// kubernetes-validate 1.37.0 ships (1.25 is long out of support; 1.28 still runs in many
/// facilities) and the newest.
const VERSIONS: [&str; 2] = ["1.28.0", "1.37.0"];

#[test]
fn manifests_pass_kubernetes_validate_strict_without_a_warning() {
    for version in VERSIONS {
        let (ok, out) =
            run_tool(Command::new(tool("kubernetes-validate")).args(["--strict", "-k", version]).args(files()));
        let bad: Vec<&str> = out.lines().filter(|l| !l.starts_with("INFO ")).collect();
        assert!(ok && bad.is_empty(), "kubernetes-validate --strict -k {version}:\n{out}");
    }
}

/// The workloads: `(daemon, object)`.
fn workloads(objects: &[Value]) -> Vec<(&str, &Value)> {
    let w: Vec<(&str, &Value)> = objects
        .iter()
        .filter(|o| ["StatefulSet", "Deployment", "DaemonSet"].contains(&s(o, "/kind")))
        .map(|o| (s(o, "/spec/template/spec/containers/0/name"), o))
        .collect();
    for daemon in ["s2cs", "s2ds"] {
        assert!(w.iter().any(|(d, _)| *d == daemon), "no workload runs {daemon}");
    }
    w
}

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    let objects = objects();
    for (daemon, w) in workloads(&objects) {
        let pod = w.pointer("/spec/template/spec").unwrap();
        assert_eq!(pod.pointer("/securityContext/runAsNonRoot"), Some(&Value::Bool(true)), "{daemon}: runAsNonRoot");
        assert_eq!(s(pod, "/securityContext/seccompProfile/type"), "RuntimeDefault", "{daemon}: seccompProfile");
        assert!(pod.pointer("/hostNetwork").is_none_or(|v| v == false), "{daemon}: hostNetwork");
        for c in list(pod, "/containers") {
            let sc = &c["securityContext"];
            assert_eq!(sc.pointer("/allowPrivilegeEscalation"), Some(&Value::Bool(false)), "{daemon}: escalation");
            assert_eq!(sc.pointer("/readOnlyRootFilesystem"), Some(&Value::Bool(true)), "{daemon}: read-only root");
            assert_eq!(list(sc, "/capabilities/drop"), [Value::from("ALL")], "{daemon}: capabilities");
        }
    }
    let ns = objects.iter().find(|o| s(o, "/kind") == "Namespace").expect("a Namespace");
    assert_eq!(s(ns, "/metadata/labels/pod-security.kubernetes.io~1enforce"), "restricted");
}

/// Where a file a container reads comes from.
#[derive(Debug, PartialEq)]
enum Source {
    ConfigMap(String, String),
    Secret(String, String),
    Claim(String),
}

/// The source of `path` in the pod of workload `w`: the volume mounted over it, and the item.
fn source(w: &Value, path: &Path) -> Result<Source> {
    let pod = w.pointer("/spec/template/spec").unwrap();
    let c = &pod["containers"][0];
    let (volume, rel) = list(c, "/volumeMounts")
        .iter()
        .find_map(|m| Some((s(m, "/name"), path.strip_prefix(s(m, "/mountPath")).ok()?)))
        .with_context(|| format!("no volume is mounted over {}", path.display()))?;
    let rel = rel.to_str().unwrap();
    let item = |items: &[Value]| -> Option<String> {
        if items.is_empty() {
            return Some(rel.to_owned());
        }
        items.iter().find(|i| s(i, "/path") == rel).map(|i| s(i, "/key").to_owned())
    };
    if let Some(claim) = list(w, "/spec/volumeClaimTemplates").iter().find(|t| s(t, "/metadata/name") == volume) {
        return Ok(Source::Claim(s(claim, "/metadata/name").to_owned()));
    }
    let v = list(pod, "/volumes").iter().find(|v| s(v, "/name") == volume).context("mounted volume undefined")?;
    if let Some(cm) = v.get("configMap") {
        let key = item(list(cm, "/items")).context("not among the ConfigMap's items")?;
        return Ok(Source::ConfigMap(s(cm, "/name").to_owned(), key));
    }
    if let Some(sec) = v.get("secret") {
        let key = item(list(sec, "/items")).context("not among the Secret's items")?;
        return Ok(Source::Secret(s(sec, "/secretName").to_owned(), key));
    }
    for src in list(v, "/projected/sources") {
        if let Some(sec) = src.get("secret")
            && let Some(key) = list(sec, "/items").iter().find(|i| s(i, "/path") == rel).map(|i| s(i, "/key"))
        {
            return Ok(Source::Secret(s(sec, "/name").to_owned(), key.to_owned()));
        }
        if let Some(cm) = src.get("configMap")
            && let Some(key) = list(cm, "/items").iter().find(|i| s(i, "/path") == rel).map(|i| s(i, "/key"))
        {
            return Ok(Source::ConfigMap(s(cm, "/name").to_owned(), key.to_owned()));
        }
    }
    bail!("volume {volume} does not provide {rel}")
}

/// The text of a ConfigMap's key, or that a Secret has the key.
fn provided<'a>(objects: &'a [Value], src: &Source) -> Result<Option<&'a str>> {
    match src {
        Source::ConfigMap(name, key) => {
            let cm = find(objects, "ConfigMap", name).with_context(|| format!("no ConfigMap {name}"))?;
            cm.pointer(&format!("/data/{key}")).and_then(Value::as_str).map(Some).context("no such key")
        }
        Source::Secret(name, key) => {
            let sec = find(objects, "Secret", name).with_context(|| format!("no Secret {name}"))?;
            ensure!(
                sec.pointer(&format!("/stringData/{key}")).is_some() || sec.pointer(&format!("/data/{key}")).is_some(),
                "Secret {name} has no key {key}"
            );
            Ok(None)
        }
        Source::Claim(_) => Ok(None),
    }
}

/// A container's args with `$(VAR)` expanded as the kubelet does, from the downward API (a
/// pod IP in a documentation range stands for the pod's).
fn args(daemon: &str, w: &Value) -> Vec<String> {
    let c = w.pointer("/spec/template/spec/containers/0").unwrap();
    list(c, "/args")
        .iter()
        .map(|a| {
            let mut a = a.as_str().unwrap().to_owned();
            for e in list(c, "/env") {
                let var = format!("$({})", s(e, "/name"));
                let value = match s(e, "/valueFrom/fieldRef/fieldPath") {
                    "status.podIP" => "198.51.100.20".to_owned(),
                    "" => s(e, "/value").to_owned(),
                    other => panic!("{daemon}: env from {other}: teach the test its value"),
                };
                a = a.replace(&var, &value);
            }
            assert!(!a.contains("$("), "{daemon}: {a}: a variable the pod does not define");
            a
        })
        .collect()
}

/// The containerPort a Service's or probe's port (a name or a number) reaches in workload `w`.
fn container_port(w: &Value, port: &Value) -> Option<u64> {
    let ports = list(w, "/spec/template/spec/containers/0/ports");
    match port {
        Value::String(name) => ports.iter().find(|p| s(p, "/name") == name).and_then(|p| p["containerPort"].as_u64()),
        n => n.as_u64(),
    }
}

/// One workload's pod: the image, the configuration through its mounts, the files the daemon
/// reads, its probes and its grace period. Returns the daemon's configuration.
fn check_pod(objects: &[Value], daemon: &str, w: &Value) -> Result<(String, Vec<String>)> {
    let c = w.pointer("/spec/template/spec/containers/0").unwrap();
    let image = s(c, "/image");
    ensure!(
        image.ends_with(&format!("/{daemon}:{}", env!("CARGO_PKG_VERSION"))),
        "image {image}: not the Dockerfile's {daemon} target at the workspace's version"
    );
    let args = args(daemon, w);
    let config = flag_value(&args, "--config").context("no --config")?;
    let src = source(w, Path::new(&config)).with_context(|| format!("--config {config}"))?;
    let text = provided(objects, &src)?.with_context(|| format!("--config {config} is not a ConfigMap's"))?.to_owned();
    let files = match daemon {
        "s2cs" => daemons::s2cs(&text, &args)?.files,
        _ => daemons::s2ds(&text, &args)?.files,
    };
    for f in files {
        let src = source(w, &f).with_context(|| format!("{daemon} reads {}", f.display()))?;
        provided(objects, &src).with_context(|| format!("{daemon} reads {} from {src:?}", f.display()))?;
    }
    let table = toml_table(&text, &config)?;
    let metrics = daemons::metrics_addr(&args, &table).context("no metrics-addr: the probes need it")?;
    let metrics_port = u64::from(daemons::port_of(&metrics)?);
    for (probe, path) in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let p = c.get(probe).with_context(|| format!("no {probe}"))?;
        ensure!(s(p, "/httpGet/path") == path, "{probe} asks {} instead of {path}", s(p, "/httpGet/path"));
        let port = p.pointer("/httpGet/port").context("probe port")?;
        ensure!(container_port(w, port) == Some(metrics_port), "{probe} on {port}, metrics on {metrics_port}");
    }
    let drain = daemons::drain(&args, &table)?;
    let grace = w.pointer("/spec/template/spec/terminationGracePeriodSeconds").and_then(Value::as_f64).unwrap_or(30.0);
    ensure!(
        grace > drain + STOP_AFTER_DRAIN,
        "terminationGracePeriodSeconds {grace} does not exceed drain-timeout {drain} + {STOP_AFTER_DRAIN} s"
    );
    Ok((text, args))
}

/// The workloads a Service's selector picks.
fn selected<'a>(objects: &'a [Value], svc: &Value) -> Vec<(&'a str, &'a Value)> {
    let Some(Value::Object(sel)) = svc.pointer("/spec/selector") else { return Vec::new() };
    workloads(objects)
        .into_iter()
        .filter(|(_, w)| {
            sel.iter().all(|(k, v)| w.pointer("/spec/template/metadata/labels").and_then(|l| l.get(k)) == Some(v))
        })
        .collect()
}

#[test]
fn pods_run_the_configmap_as_the_daemons_read_it() {
    let objects = objects();
    let mut cs: Vec<(S2cs, &Value)> = Vec::new();
    let mut ds: Vec<(S2ds, &Value)> = Vec::new();
    for (daemon, w) in workloads(&objects) {
        let name = s(w, "/metadata/name");
        let (text, args) = check_pod(&objects, daemon, w).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        match daemon {
            "s2cs" => cs.push((daemons::s2cs(&text, &args).unwrap(), w)),
            _ => ds.push((daemons::s2ds(&text, &args).unwrap(), w)),
        }
    }
    let [(cs, cs_w)] = &cs[..] else { panic!("one s2cs workload") };
    if let Some(dir) = &cs.state_dir {
        assert!(matches!(source(cs_w, dir), Ok(Source::Claim(_))), "s2cs's state-dir {} is on no claim", dir.display());
    }
    // Every node s2cs dials is a Service in front of one data server, port for port.
    for node in &cs.nodes {
        let (host, port) = node.rsplit_once(':').unwrap();
        let mut labels = host.split('.');
        let (svc, ns) = (labels.next().unwrap(), labels.next().unwrap_or_default());
        assert_eq!(labels.collect::<Vec<_>>(), ["svc", "cluster", "local"], "{node}: not a Service's name");
        let svc = find(&objects, "Service", svc).unwrap_or_else(|| panic!("{node}: no Service {svc}"));
        assert_eq!(s(svc, "/metadata/namespace"), ns, "{node}: namespace");
        let [(_, w)] = selected(&objects, svc)[..] else { panic!("{node}: its Service picks not one workload") };
        let (d, _) = ds.iter().find(|(_, dw)| std::ptr::eq(*dw, w)).expect("the Service picks a data server");
        let sp = list(svc, "/spec/ports").iter().find(|p| p["port"].as_u64() == port.parse().ok()).expect("the port");
        assert_eq!(container_port(w, &sp["targetPort"]), Some(u64::from(d.listen.port())), "{node}: link port");
        daemons::check_pair(cs, d, node).unwrap();
    }
    // Each data server's relays: one load-balanced Service, its ports exactly the port range.
    for (d, w) in &ds {
        let data: Vec<&Value> = objects
            .iter()
            .filter(|o| s(o, "/kind") == "Service" && s(o, "/spec/type") == "LoadBalancer")
            .filter(|o| selected(&objects, o).iter().any(|(_, x)| std::ptr::eq(*x, *w)))
            .collect();
        let [svc] = data[..] else { panic!("{}: not one LoadBalancer Service", s(w, "/metadata/name")) };
        assert_eq!(
            svc.pointer("/spec/publishNotReadyAddresses"),
            Some(&Value::Bool(true)),
            "relays cut while draining"
        );
        let mut ports = BTreeSet::new();
        for p in list(svc, "/spec/ports") {
            assert_eq!(p["port"], p["targetPort"], "a relay's port must reach the same port (it is advertised)");
            ports.insert(p["port"].as_u64().unwrap());
        }
        let want: BTreeSet<u64> = d.ports.clone().map(u64::from).collect();
        assert_eq!(ports, want, "{}: Service ports vs port-range", s(svc, "/metadata/name"));
        assert_eq!(s(svc, "/spec/loadBalancerIP"), d.sides.advertise.wan, "load-balancer address vs public-addr");
    }
    // The control port on the WAN.
    let control = objects
        .iter()
        .filter(|o| s(o, "/kind") == "Service" && s(o, "/spec/type") == "LoadBalancer")
        .find(|o| selected(&objects, o).iter().any(|(_, x)| std::ptr::eq(*x, *cs_w)))
        .expect("a LoadBalancer Service for s2cs");
    assert_eq!(
        control.pointer("/spec/publishNotReadyAddresses"),
        Some(&Value::Bool(true)),
        "the control Service would cut the held sessions' calls off while s2cs drains"
    );
    let reaches: Vec<Option<u64>> =
        list(control, "/spec/ports").iter().map(|p| container_port(cs_w, &p["targetPort"])).collect();
    assert_eq!(reaches, [Some(u64::from(cs.port))], "the control Service reaches s2cs's port");
}

#[test]
fn services_pick_a_workload_and_reach_its_ports() {
    let objects = objects();
    for svc in objects.iter().filter(|o| s(o, "/kind") == "Service") {
        let name = s(svc, "/metadata/name");
        let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
        assert!(["ClusterIP", "LoadBalancer", "NodePort"].contains(&ty), "{name}: type {ty}");
        let picked = selected(&objects, svc);
        let [(_, w)] = picked[..] else { panic!("{name}: its selector picks {} workloads", picked.len()) };
        for p in list(svc, "/spec/ports") {
            let target = p.get("targetPort").unwrap_or(&p["port"]);
            assert!(container_port(w, target).is_some(), "{name}: targetPort {target} is no port of its pod");
        }
    }
}
