//! Which device is this (issue 18)? A worker reports the machine it runs on: in `/metrics`
//! (`edgepool_worker_info`, `edgepool_device_*`, the standard `process_*` series), in its fleet
//! registry entry, and through `edgepool status`. The SoC sensors come from a fake sysfs tree
//! shaped like a Raspberry Pi 4's (`worker.sysfs_root`): the machines that run these tests have
//! none. Memory, cores and CPU are this machine's own.

use std::path::Path;
use std::time::Duration;

use edgepool_wire::fleet::{BUCKET, REFRESH, WorkerEntry};
use edgepool_worker::WorkerConfig;

use crate::common::{cluster, engine};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The exposition lines of metric `name` in `registry`, as a scrape would see them.
fn series(registry: &prometheus::Registry, name: &str) -> Vec<String> {
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reports_its_device_and_a_restart_keeps_its_series() {
    let sysfs = tempfile::tempdir().unwrap();
    write(sysfs.path(), "class/thermal/thermal_zone0/type", "cpu-thermal\n");
    write(sysfs.path(), "class/thermal/thermal_zone0/temp", "58500\n");
    write(sysfs.path(), "devices/platform/soc/soc:firmware/get_throttled", "0x0\n");
    let mut p = cluster().await;
    let cfg = WorkerConfig {
        label: Some("pi4".into()),
        node: Some("pi-node-1".into()),
        sysfs_root: sysfs.path().to_owned(),
        ..Default::default()
    };
    let first = edgepool_runtime::metrics::role_registry();
    p.add_worker("pi", cfg.clone(), engine(), &first).await.unwrap();

    // What the device is, once per worker.
    let info = series(&first, "edgepool_worker_info");
    assert_eq!(info.len(), 1, "{info:?}");
    let cores =
        std::fs::read_to_string("/proc/cpuinfo").unwrap().lines().filter(|l| l.starts_with("processor")).count();
    for label in [
        "worker=\"pi\"".to_owned(),
        "device=\"pi4\"".to_owned(),
        "node=\"pi-node-1\"".to_owned(),
        format!("cpu_cores=\"{cores}\""),
        format!("pid=\"{}\"", std::process::id()),
    ] {
        assert!(info[0].contains(&label), "{label} not in {}", info[0]);
    }
    assert!(info[0].ends_with(" 1"), "{}", info[0]);
    // This process, as every role exports it.
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_threads"] {
        let s = series(&first, name);
        assert_eq!(s.len(), 1, "{name}: {s:?}");
        let v: f64 = s[0].rsplit(' ').next().unwrap().parse().unwrap();
        // The crate counts CPU in whole seconds: a young test process may have 0.
        assert!(v > 0.0 || (name == "process_cpu_seconds_total" && v == 0.0), "{}", s[0]);
    }
    // How the device is doing, read at each scrape.
    let memory = series(&first, "edgepool_device_memory_available_bytes");
    assert_eq!(memory.len(), 1, "{memory:?}");
    assert_eq!(
        series(&first, "edgepool_device_temperature_celsius"),
        ["edgepool_device_temperature_celsius{arch=\"".to_owned()
            + edgepool_worker::ARCH
            + "\",node=\"pi-node-1\",sensor=\"cpu-thermal\",worker=\"pi\"} 58.5"]
    );
    let throttled = series(&first, "edgepool_device_throttled");
    assert_eq!(throttled.len(), 4, "one series per condition: {throttled:?}");
    assert!(throttled.iter().all(|s| s.ends_with(" 0")), "{throttled:?}");
    write(sysfs.path(), "devices/platform/soc/soc:firmware/get_throttled", "0x50004\n");
    let on: Vec<String> =
        series(&first, "edgepool_device_throttled").into_iter().filter(|s| s.ends_with(" 1")).collect();
    assert_eq!(on.len(), 1, "{on:?}");
    assert!(on[0].contains("condition=\"throttled\""), "bit 2 is `throttled` (16 and 18: since boot): {on:?}");

    // The fleet registry entry carries the same device, with its readings.
    tokio::time::sleep(REFRESH + Duration::from_secs(1)).await;
    let kv = p.js.get_key_value(BUCKET).await.unwrap();
    let entry: WorkerEntry = serde_json::from_slice(&kv.get("pi").await.unwrap().expect("an entry")).unwrap();
    let d = entry.device.expect("the entry names its device");
    assert_eq!((d.node.as_str(), d.cpu_cores), ("pi-node-1", cores));
    assert_eq!(d.temperature_celsius, Some(58.5));
    assert_eq!(d.throttled, Some(vec!["throttled".to_owned()]));
    assert!(d.memory_total_bytes > 0 && d.memory_used_ratio.is_some_and(|r| r > 0.0 && r < 1.0), "{d:?}");
    assert!(d.cpu_ratio.is_some_and(|r| (0.0..=1.0).contains(&r)), "{d:?}");

    // `edgepool status` shows it.
    let url = p.url().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_edgepool"))
            .args(["status", "--sample", "200ms", "--nats-url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["pi-node-1", "58°C", "THROTTLED: throttled"] {
        assert!(screen.contains(needle), "`status` lacks {needle:?}:\n{screen}");
    }

    // A restart with the same id in the same process (a container restart: the id is the pod
    // name, the process pid 1) exports the very same info series: no new series per restart.
    p.stop_worker("pi").await.unwrap();
    let second = edgepool_runtime::metrics::role_registry();
    p.add_worker("pi", cfg, engine(), &second).await.unwrap();
    assert_eq!(series(&second, "edgepool_worker_info"), info);

    // A sensor that goes away is absent, not 0.
    std::fs::remove_dir_all(sysfs.path().join("class")).unwrap();
    assert_eq!(series(&second, "edgepool_device_temperature_celsius"), Vec::<String>::new());
    p.stop_workers().await;
}
