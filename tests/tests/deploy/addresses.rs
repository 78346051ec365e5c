//! Every IPv4 address the deployment files and their walk-through name is in a documentation
//! range (RFC 5737), loopback or unspecified: never a private range, which a reader could
//! collide with, never a real host.

use std::net::Ipv4Addr;

use crate::{read, repo};

/// The dotted quads in `text`.
fn quads(text: &str) -> Vec<Ipv4Addr> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_matches('.'))
        .filter(|w| w.split('.').count() == 4)
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn allowed(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113)) || ip.is_loopback() || ip.is_unspecified()
}

#[test]
fn deployment_files_use_documentation_addresses_only() {
    let mut files = vec!["Dockerfile".to_owned(), "docs/deploy.md".to_owned()];
    for dir in ["deploy/systemd", "deploy/systemd/sysusers.d", "deploy/k8s"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                files.push(p.strip_prefix(repo()).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut seen = 0;
    for f in &files {
        for ip in quads(&read(f)) {
            assert!(allowed(ip), "{f}: {ip} is not in 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24");
            seen += 1;
        }
    }
    assert!(seen > 0, "no address found: the scan reads nothing");
}

#[test]
fn the_scan_finds_what_it_must_refuse() {
    let found = quads("listen = \"10.0.0.5:5010\" and 192.168.1.1, [172.16.0.1], 1.2.3.4.");
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found.into_iter().all(|ip| !allowed(ip)));
    assert!(quads("version 0.1.0, 1.95").is_empty());
}
