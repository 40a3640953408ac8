//! Services in containers: a plugin's exec and stream calls run inside a real podman container
//! when the deployment names one, through the very same plugin call as on the bare node.

mod support;

use std::fs;
use std::process::Command;

use sha2::{Digest, Sha256};
use support::*;

/// A running podman container made from a busybox root filesystem (no registry needed).
struct Container {
    name: String,
    image: String,
}

impl Container {
    fn start(dir: &std::path::Path, marker: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("coffer-test-{}-{n}", std::process::id());
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static is installed (scripts/test.sh installs it)");
        for tool in ["sh", "cat", "echo", "sleep", "mkdir"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
        }
        fs::write(rootfs.join("etc/marker"), marker).unwrap();
        sh(&format!(
            "tar -C {} -c . | podman import -q - {tag}:latest >/dev/null",
            rootfs.display()
        ));
        // This VM needs runc and cgroupfs (see FIELD-NOTES); `podman exec` then needs nothing.
        sh(&format!(
            "podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs run -d --name {tag} \
             --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 {tag}:latest /bin/sleep 100000 >/dev/null"
        ));
        Self {
            name: tag.clone(),
            image: format!("{tag}:latest"),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

fn plugin_sections(container: Option<&str>, role: &str) -> String {
    let section = container
        .map(|c| {
            format!(
                "[plugin.hostile.container]\nruntime = \"podman\"\nname = \"{c}\"\nroles = [\"{role}\"]\n\n"
            )
        })
        .unwrap_or_default();
    format!(
        "[plugin.hostile.grant]\ncommands = [\"cat /etc/marker\"]\n\n{section}\
         [plugin.hostile.settings]\nmode = \"marker\"\n"
    )
}

fn deployment(s: &Scratch, container: Option<&str>) {
    s.deployment(&plugin_sections(container, "undercloud"));
}

#[test]
fn exec_and_stream_run_inside_the_named_podman_container() {
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    let marker = format!("inside container {}\n", std::process::id());
    let container = Container::start(&s.path("image"), &marker);

    // On the bare node there is no /etc/marker: the same plugin call finds nothing.
    deployment(&s, None);
    s.init();
    s.ok(&["backup"]);
    let show = |id: &str| {
        let out = s.ok(&["snapshots", "show", id, "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let bare = show("latest");
    assert_eq!(bare["manifest"]["plugins"][0]["records"][0][1], "missing");
    assert!(bare["manifest"]["artifacts"].as_array().unwrap().is_empty());

    // In the container, the exec sees the container's file and the stream captures it.
    deployment(&s, Some(&container.name));
    let out = s.ok(&["backup", "--json", "--verbose"]);
    let m = &summary(&out);
    let inside = show(m["snapshot"].as_str().unwrap());
    assert_eq!(
        inside["manifest"]["plugins"][0]["records"][0][1],
        marker.as_str()
    );
    let artifact = &inside["manifest"]["artifacts"][0];
    assert_eq!(artifact["size"], marker.len());
    assert_eq!(
        artifact["sha256"].as_str().unwrap(),
        Sha256::digest(marker.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // And the operator sees where it ran.
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains(&format!(
            "\"podman\",\"exec\",\"-i\",\"{}\",\"cat\"",
            container.name
        )),
        "{events}"
    );
}

#[test]
fn a_container_on_an_ssh_node_is_reached_the_same_way() {
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    let marker = format!("container behind ssh {}\n", std::process::id());
    let container = Container::start(&s.path("image"), &marker);
    let cluster = support::nodes::Cluster::start(&s.path("nodes"), &["controller-0"]);
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &plugin_sections(Some(&container.name), "controller"),
    );
    s.init();
    let out = s.ok(&["backup", "--json"]);
    let artifact = &summary(&out)["artifacts"][0];
    assert_eq!(artifact["node"], "controller-0");
    assert_eq!(artifact["size"], marker.len());
    let shown = s.ok(&["snapshots", "show", "latest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        v["manifest"]["plugins"][0]["records"][0][1],
        marker.as_str()
    );

    // Logged in as an unprivileged user, root's container is reached through `sudo -n podman
    // exec`; without `become`, that user's podman does not know it.
    support::nodes::login_user("coffer-op", true);
    cluster.allow_other_logins();
    s.edit_deployment("user = \"root\"", "user = \"coffer-op\"\nbecome = \"sudo\"");
    let out = s.ok(&["backup", "--json"]);
    assert_eq!(summary(&out)["artifacts"][0]["size"], marker.len());
    s.edit_deployment("become = \"sudo\"", "become = \"none\"");
    let out = summary(&s.ok(&["backup", "--json"]));
    // The plugin records the marker as missing and stores nothing.
    assert_eq!(out["artifacts"].as_array().unwrap().len(), 0, "{out}");
}
