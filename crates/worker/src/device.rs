//! The device a worker runs on: what it is (node, CPU model, cores, memory) and how it is doing
//! (memory, CPU, SoC temperature, Raspberry Pi throttling). Read from `/proc` and from a sysfs
//! root (`worker.sysfs_root`, `/sys` unless a test points it at a fake tree), for
//! `edgepool_worker_info`, the `edgepool_device_*` metrics and the fleet registry entry.
//!
//! A source that is missing is reported as absent (no series, `None`), never as 0; a source that
//! exists but holds garbage is absent too, and logged once.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edgepool_runtime::metrics as cat;

use crate::config::WorkerConfig;
use edgepool_wire::fleet::DeviceEntry;
use prometheus::core::{Collector, Desc};
use prometheus::{GaugeVec, IntGaugeVec, Registry, proto::MetricFamily};

/// What one read of an optional source gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading<T> {
    Present(T),
    /// No such source on this device.
    Absent,
    /// The source exists but its content does not parse: the path and what was there.
    Invalid(String),
}

impl<T> Reading<T> {
    pub fn present(self) -> Option<T> {
        match self {
            Self::Present(t) => Some(t),
            Self::Absent | Self::Invalid(_) => None,
        }
    }
}

/// What the device is: constant for a process's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub node: String,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub memory_total_bytes: u64,
}

impl Facts {
    /// Reads the facts of this machine; `node` is the configured node name (Kubernetes:
    /// `spec.nodeName` through the downward API), else the host name.
    #[must_use]
    pub fn read(node: Option<&str>) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            node: node.map_or_else(host_name, str::to_owned),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
            cpu_cores: cpu_cores(&cpuinfo),
            memory_total_bytes: memory().map_or(0, |m| m.total_bytes),
        }
    }
}

/// The host name (the pod name on Kubernetes): `$HOSTNAME`, else `/proc/sys/kernel/hostname`,
/// else `unknown`.
#[must_use]
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// This machine's CPU model (see [`Facts::cpu_model`]), `unknown` where `/proc/cpuinfo` names
/// none.
#[must_use]
pub fn cpu_model_name() -> String {
    cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()).unwrap_or_else(|| "unknown".to_owned())
}

/// The CPU's name: `model name` (x86, most arm64 kernels), else the board's `Model` (a Pi's
/// "Raspberry Pi 4 Model B Rev 1.4"), else `Hardware`. Whitespace runs are collapsed, and the
/// value is cut at 96 characters so the label stays tidy.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name && !v.trim().is_empty()).then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
    };
    let model = field("model name").or_else(|| field("Model")).or_else(|| field("Hardware")).or_else(|| {
        let dt = std::fs::read_to_string("/sys/firmware/devicetree/base/model").ok()?;
        Some(dt.trim_end_matches('\0').trim().to_owned()).filter(|m| !m.is_empty())
    })?;
    Some(model.chars().take(96).collect())
}

/// Logical CPUs of the device: `processor` entries of `/proc/cpuinfo` (all of the device's
/// CPUs, not the container's share), else what the OS offers this process.
fn cpu_cores(cpuinfo: &str) -> usize {
    let n = cpuinfo.lines().filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor")).count();
    if n > 0 { n } else { std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) }
}

/// The device's memory now, from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl Memory {
    #[must_use]
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 { 0.0 } else { 1.0 - self.available_bytes as f64 / self.total_bytes as f64 }
    }
}

#[must_use]
pub fn memory() -> Option<Memory> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_meminfo(text: &str) -> Option<Memory> {
    let kib = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.split(':').next() == Some(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|k| k * 1024)
    };
    let total_bytes = kib("MemTotal")?;
    // Kernels before 3.14 have no MemAvailable; free + cached is the usual estimate there.
    let available_bytes = kib("MemAvailable").or_else(|| Some(kib("MemFree")? + kib("Cached").unwrap_or(0)))?;
    Some(Memory { total_bytes, available_bytes: available_bytes.min(total_bytes) })
}

/// Busy and total jiffies of all CPUs (first line of `/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    #[must_use]
    pub fn read() -> Option<Self> {
        parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The device's CPU utilisation between `earlier` and `self`, 0..=1.
    #[must_use]
    pub fn utilisation_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| (busy as f64 / total as f64).clamp(0.0, 1.0))
    }
}

fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice].
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes { busy: total.saturating_sub(idle), total })
}

/// A temperature and the sensor it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Temperature {
    pub sensor: String,
    pub celsius: f64,
}

/// Thermal zone types that are the SoC or CPU package, most specific first.
const SOC_ZONES: &[&str] = &[
    "cpu-thermal",
    "cpu_thermal",
    "cpu0-thermal",
    "soc-thermal",
    "soc_thermal",
    "bcm2835_thermal",
    "x86_pkg_temp",
    "cpu",
];
/// hwmon chip names that measure the CPU.
const CPU_HWMON: &[&str] = &["cpu_thermal", "soc_thermal", "coretemp", "k10temp", "zenpower", "cpu"];

/// The SoC temperature under `sysfs`: the best thermal zone (`class/thermal/thermal_zone*`,
/// a SoC/CPU zone before any other), else a CPU hwmon chip (`class/hwmon/hwmon*/temp1_input`).
#[must_use]
pub fn temperature(sysfs: &Path) -> Reading<Temperature> {
    let zones = entries(&sysfs.join("class/thermal"), "thermal_zone");
    let chips = entries(&sysfs.join("class/hwmon"), "hwmon");
    let zone_type = |d: &PathBuf| std::fs::read_to_string(d.join("type")).map(|t| t.trim().to_owned()).ok();
    let chip_name = |d: &PathBuf| std::fs::read_to_string(d.join("name")).map(|t| t.trim().to_owned()).ok();
    let rank = |name: &str, list: &[&str]| list.iter().position(|z| name == *z).unwrap_or(list.len());
    // Ranks, lower first: SoC/CPU zones (even numbers, in SOC_ZONES order), then a CPU hwmon chip,
    // then any other zone (wifi, battery, acpitz), whose `sensor` label says what it is.
    let mut candidates: Vec<(usize, String, PathBuf)> =
        zones.iter().filter_map(|d| zone_type(d).map(|t| (2 * rank(&t, SOC_ZONES), t, d.join("temp")))).collect();
    candidates.extend(
        chips
            .iter()
            .filter_map(|d| chip_name(d).map(|n| (n, d.join("temp1_input"))))
            .filter(|(n, _)| CPU_HWMON.contains(&n.as_str()))
            .map(|(n, p)| (2 * SOC_ZONES.len() - 1, n, p)),
    );
    candidates.sort_by_key(|c| c.0);
    let Some((_, sensor, path)) = candidates.into_iter().next() else {
        return Reading::Absent;
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse_millidegrees(&text) {
            Some(celsius) => Reading::Present(Temperature { sensor, celsius }),
            None => Reading::Invalid(format!("{}: {:?}", path.display(), text.trim())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Reading::Absent,
        Err(e) => Reading::Invalid(format!("{}: {e}", path.display())),
    }
}

/// `temp` files hold millidegrees Celsius; anything outside -60..=200 °C is not a real reading.
fn parse_millidegrees(text: &str) -> Option<f64> {
    let milli: i64 = text.trim().parse().ok()?;
    let c = milli as f64 / 1000.0;
    (-60.0..=200.0).contains(&c).then_some(c)
}

/// `dir/prefix*` entries, sorted by name (so `thermal_zone0` comes first).
fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The Raspberry Pi firmware's throttle word (`get_throttled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle(pub u32);

impl Throttle {
    /// The current-state conditions (bits 0-3) and whether each holds.
    pub const CONDITIONS: [&'static str; 4] =
        ["under_voltage", "frequency_capped", "throttled", "soft_temperature_limit"];

    #[must_use]
    pub fn holds(&self, bit: usize) -> bool {
        self.0 & (1 << bit) != 0
    }

    /// Names of the conditions that hold now.
    #[must_use]
    pub fn active(&self) -> Vec<String> {
        (0..Self::CONDITIONS.len()).filter(|b| self.holds(*b)).map(|b| Self::CONDITIONS[b].to_owned()).collect()
    }
}

/// `0x50005`, `50005` (the sysfs file) or `throttled=0x50005` (`vcgencmd get_throttled`); hex.
fn parse_throttled(text: &str) -> Option<Throttle> {
    let t = text.trim().trim_start_matches("throttled=");
    let t = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(t, 16).ok().map(Throttle)
}

const THROTTLED_FILE: &str = "devices/platform/soc/soc:firmware/get_throttled";

/// The Pi's throttle state under `sysfs`, or from `vcgencmd` when `use_vcgencmd` and the file is
/// not there (older kernels).
#[must_use]
pub fn throttled(sysfs: &Path, use_vcgencmd: bool) -> Reading<Throttle> {
    let path = sysfs.join(THROTTLED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse_throttled(&text) {
            Some(t) => Reading::Present(t),
            None => Reading::Invalid(format!("{}: {:?}", path.display(), text.trim())),
        },
        Err(_) if use_vcgencmd => match std::process::Command::new("vcgencmd").arg("get_throttled").output() {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                parse_throttled(&text).map_or_else(|| Reading::Invalid(format!("vcgencmd: {text:?}")), Reading::Present)
            }
            _ => Reading::Absent,
        },
        Err(_) => Reading::Absent,
    }
}

/// How often the collector may run `vcgencmd` (a subprocess) at most.
const VCGENCMD_EVERY: Duration = Duration::from_secs(10);

/// Reads the device when Prometheus scrapes: the `edgepool_device_*` series of one worker.
pub struct DeviceCollector {
    sysfs: PathBuf,
    /// `vcgencmd` is only tried on the real `/sys` (a fake tree in tests must not reach out).
    vcgencmd: bool,
    labels: [String; 3],
    cores: GaugeVec,
    mem_total: GaugeVec,
    mem_available: GaugeVec,
    temperature: GaugeVec,
    throttled: GaugeVec,
    last_vcgencmd: Mutex<Option<(Instant, Reading<Throttle>)>>,
    warned_temperature: AtomicBool,
    warned_throttle: AtomicBool,
}

impl std::fmt::Debug for DeviceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCollector").field("sysfs", &self.sysfs).field("labels", &self.labels).finish()
    }
}

impl DeviceCollector {
    fn new(sysfs: &Path, worker: &str, arch: &str, node: &str) -> prometheus::Result<Self> {
        Ok(Self {
            vcgencmd: sysfs == Path::new("/sys"),
            sysfs: sysfs.to_owned(),
            labels: [worker.to_owned(), arch.to_owned(), node.to_owned()],
            cores: cat::DEVICE_CPU_CORES.unregistered_gauge_vec()?,
            mem_total: cat::DEVICE_MEMORY_TOTAL.unregistered_gauge_vec()?,
            mem_available: cat::DEVICE_MEMORY_AVAILABLE.unregistered_gauge_vec()?,
            temperature: cat::DEVICE_TEMPERATURE.unregistered_gauge_vec()?,
            throttled: cat::DEVICE_THROTTLED.unregistered_gauge_vec()?,
            last_vcgencmd: Mutex::new(None),
            warned_temperature: AtomicBool::new(false),
            warned_throttle: AtomicBool::new(false),
        })
    }

    fn throttle(&self) -> Reading<Throttle> {
        if !self.vcgencmd || self.sysfs.join(THROTTLED_FILE).exists() {
            return throttled(&self.sysfs, false);
        }
        let mut last = self.last_vcgencmd.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*last {
            Some((at, r)) if at.elapsed() < VCGENCMD_EVERY => r.clone(),
            _ => {
                let r = throttled(&self.sysfs, true);
                *last = Some((Instant::now(), r.clone()));
                r
            }
        }
    }

    fn refresh(&self, facts: &Facts) {
        let l: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        self.cores.with_label_values(&l).set(facts.cpu_cores as f64);
        if let Some(m) = memory() {
            self.mem_total.with_label_values(&l).set(m.total_bytes as f64);
            self.mem_available.with_label_values(&l).set(m.available_bytes as f64);
        }
        self.temperature.reset();
        match temperature(&self.sysfs) {
            Reading::Present(t) => {
                self.temperature.with_label_values(&[l[0], l[1], l[2], &t.sensor]).set(t.celsius);
            }
            Reading::Absent => {}
            Reading::Invalid(what) => warn_once(&self.warned_temperature, "temperature", &what),
        }
        self.throttled.reset();
        match self.throttle() {
            Reading::Present(t) => {
                for (bit, condition) in Throttle::CONDITIONS.iter().enumerate() {
                    let v = if t.holds(bit) { 1.0 } else { 0.0 };
                    self.throttled.with_label_values(&[l[0], l[1], l[2], condition]).set(v);
                }
            }
            Reading::Absent => {}
            Reading::Invalid(what) => warn_once(&self.warned_throttle, "throttle state", &what),
        }
    }
}

fn warn_once(flag: &AtomicBool, what: &str, detail: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!(source = detail, "device {what} unreadable; its series is left out");
    }
}

/// The collector, with the facts it reports cores from.
struct Scraped {
    collector: DeviceCollector,
    facts: Facts,
}

impl Collector for Scraped {
    fn desc(&self) -> Vec<&Desc> {
        let c = &self.collector;
        [&c.cores, &c.mem_total, &c.mem_available, &c.temperature, &c.throttled]
            .into_iter()
            .flat_map(Collector::desc)
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let c = &self.collector;
        c.refresh(&self.facts);
        [&c.cores, &c.mem_total, &c.mem_available, &c.temperature, &c.throttled]
            .into_iter()
            .flat_map(Collector::collect)
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}

/// Registers `edgepool_worker_info` and the `edgepool_device_*` collector of worker `worker` in
/// `registry`, and returns the device's facts.
pub fn register(registry: &Registry, worker: &str, arch: &str, cfg: &WorkerConfig) -> prometheus::Result<Facts> {
    let facts = Facts::read(cfg.node.as_deref());
    let sysfs = cfg.sysfs_root.as_path();
    let info: IntGaugeVec = cat::WORKER_INFO.gauge_vec(registry)?;
    info.with_label_values(&[
        worker,
        arch,
        cfg.label.as_deref().unwrap_or(""),
        &facts.node,
        &facts.cpu_model,
        &facts.cpu_cores.to_string(),
        &facts.memory_total_bytes.to_string(),
        &std::process::id().to_string(),
    ])
    .set(1);
    let collector = DeviceCollector::new(sysfs, worker, arch, &facts.node)?;
    registry.register(Box::new(Scraped { collector, facts: facts.clone() }))?;
    Ok(facts)
}

/// Tracks the device's CPU between fleet registry refreshes and builds the entry's device part.
#[derive(Debug)]
pub struct DeviceProbe {
    facts: Facts,
    sysfs: PathBuf,
    last_cpu: Option<CpuTimes>,
}

impl DeviceProbe {
    #[must_use]
    pub fn new(facts: Facts, sysfs: PathBuf) -> Self {
        Self { facts, sysfs, last_cpu: CpuTimes::read() }
    }

    /// The device now; CPU utilisation is over the time since the previous call.
    pub fn entry(&mut self) -> DeviceEntry {
        let now = CpuTimes::read();
        let cpu_ratio = now.zip(self.last_cpu).and_then(|(n, l)| n.utilisation_since(&l));
        self.last_cpu = now;
        let vcgencmd = self.sysfs == Path::new("/sys");
        DeviceEntry {
            node: self.facts.node.clone(),
            cpu_model: self.facts.cpu_model.clone(),
            cpu_cores: self.facts.cpu_cores,
            memory_total_bytes: self.facts.memory_total_bytes,
            memory_used_ratio: memory().map(|m| m.used_ratio()),
            cpu_ratio,
            temperature_celsius: temperature(&self.sysfs).present().map(|t| t.celsius),
            throttled: throttled(&self.sysfs, vcgencmd).present().map(|t| t.active()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn temperature_present_absent_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(temperature(root), Reading::Absent, "no class/thermal at all");
        std::fs::create_dir_all(root.join("class/thermal")).unwrap();
        assert_eq!(temperature(root), Reading::Absent, "an empty class/thermal");

        // A Pi 4: one zone. A laptop: wifi first, the package second; the package wins.
        write(root, "class/thermal/thermal_zone0/type", "iwlwifi_1\n");
        write(root, "class/thermal/thermal_zone0/temp", "39000\n");
        write(root, "class/thermal/thermal_zone1/type", "x86_pkg_temp\n");
        write(root, "class/thermal/thermal_zone1/temp", "61500\n");
        assert_eq!(temperature(root), Reading::Present(Temperature { sensor: "x86_pkg_temp".into(), celsius: 61.5 }));

        write(root, "class/thermal/thermal_zone1/temp", "hot\n");
        assert!(matches!(temperature(root), Reading::Invalid(s) if s.contains("hot")), "garbage is not 0");
        write(root, "class/thermal/thermal_zone1/temp", "-273150\n");
        assert!(matches!(temperature(root), Reading::Invalid(_)), "an impossible value is not a reading");
        write(root, "class/thermal/thermal_zone1/temp", "");
        assert!(matches!(temperature(root), Reading::Invalid(_)), "an empty file is not 0");
        assert_eq!(temperature(root).present(), None);

        // No zones but a CPU hwmon chip (an AMD desktop).
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "class/hwmon/hwmon0/name", "nvme\n");
        write(dir.path(), "class/hwmon/hwmon0/temp1_input", "30000\n");
        assert_eq!(temperature(dir.path()), Reading::Absent, "a disk's sensor is not the CPU's");
        write(dir.path(), "class/hwmon/hwmon1/name", "k10temp\n");
        write(dir.path(), "class/hwmon/hwmon1/temp1_input", "55250\n");
        assert_eq!(temperature(dir.path()), Reading::Present(Temperature { sensor: "k10temp".into(), celsius: 55.25 }));
    }

    #[test]
    fn pi_throttle_word() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(throttled(dir.path(), false), Reading::Absent);
        write(dir.path(), THROTTLED_FILE, "50005\n");
        let t = throttled(dir.path(), false).present().unwrap();
        assert_eq!(t.active(), ["under_voltage", "throttled"], "bits 0 and 2 now; 16 and 18 happened since boot");
        assert_eq!(parse_throttled("throttled=0x0"), Some(Throttle(0)));
        assert_eq!(parse_throttled("throttled=0x8"), Some(Throttle(8)));
        write(dir.path(), THROTTLED_FILE, "n/a\n");
        assert!(matches!(throttled(dir.path(), false), Reading::Invalid(_)));
    }

    #[test]
    fn proc_files() {
        let m = parse_meminfo("MemTotal:       8000000 kB\nMemFree:  100 kB\nMemAvailable:   2000000 kB\n").unwrap();
        assert_eq!(m, Memory { total_bytes: 8_192_000_000, available_bytes: 2_048_000_000 });
        assert!((m.used_ratio() - 0.75).abs() < 1e-9);
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        let a = parse_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        let b = parse_stat("cpu  200 0 100 850 50 0 0 0 0 0\n").unwrap();
        assert_eq!(b.utilisation_since(&a), Some(0.75), "150 busy of 200 jiffies");
        assert_eq!(a.utilisation_since(&b), None, "counters went backwards");
        let x86 = "processor\t: 0\nmodel name\t: AMD EPYC   7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_cores(x86), 2);
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n\
                  Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(cpu_model(pi).as_deref(), Some("Raspberry Pi 4 Model B Rev 1.4"));
        let here = Facts::read(None);
        assert!(here.cpu_cores >= 1 && here.memory_total_bytes > 0 && !here.node.is_empty(), "{here:?}");
        assert_eq!(Facts::read(Some("node-a")).node, "node-a");
    }

    #[test]
    fn scrape_reads_the_tree_and_leaves_absent_sources_out() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::new();
        let cfg = WorkerConfig { node: Some("pi-1".into()), sysfs_root: dir.path().to_owned(), ..Default::default() };
        register(&r, "w1", "aarch64", &cfg).unwrap();
        let names = |r: &Registry| r.gather().iter().map(|f| f.name().to_owned()).collect::<Vec<_>>();
        let first = names(&r);
        assert!(
            first.contains(&"edgepool_worker_info".to_owned())
                && first.contains(&"edgepool_device_cpu_cores".to_owned())
        );
        assert!(!first.iter().any(|n| n.contains("temperature") || n.contains("throttled")), "{first:?}");

        write(dir.path(), "class/thermal/thermal_zone0/type", "cpu-thermal\n");
        write(dir.path(), "class/thermal/thermal_zone0/temp", "71234\n");
        write(dir.path(), THROTTLED_FILE, "0x4\n");
        let families = r.gather();
        let temp = families.iter().find(|f| f.name() == "edgepool_device_temperature_celsius").unwrap();
        assert_eq!(temp.get_metric().len(), 1);
        assert!((temp.get_metric()[0].get_gauge().get_value() - 71.234).abs() < 1e-9);
        let throttled = families.iter().find(|f| f.name() == "edgepool_device_throttled").unwrap();
        let on: Vec<_> = throttled
            .get_metric()
            .iter()
            .filter(|m| m.get_gauge().get_value() == 1.0)
            .flat_map(|m| m.get_label().iter().filter(|l| l.name() == "condition").map(|l| l.value().to_owned()))
            .collect();
        assert_eq!(on, ["throttled"]);

        std::fs::remove_dir_all(dir.path().join("class")).unwrap();
        assert!(!names(&r).iter().any(|n| n.contains("temperature")), "a sensor that went away is absent again");
    }
}
