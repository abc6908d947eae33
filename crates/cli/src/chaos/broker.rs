//! nats-server processes the harness can kill, stop and restart on the same ports and store:
//! one node, or a JetStream cluster of three on loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use edgepool_wire::nats::SERVER_CONF;

use super::free_port;

/// One nats-server of a [`Broker`].
#[derive(Debug)]
struct Node {
    name: String,
    client_port: u16,
    cluster_port: Option<u16>,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A broker of one or three nodes, each with its own file store under one temporary directory.
#[derive(Debug)]
pub struct Broker {
    binary: PathBuf,
    conf: PathBuf,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts `nodes` servers (1, or 3 for a JetStream cluster) with the project's server
    /// configuration, `sync_interval` replaced when given (e.g. "always", "2s", "2m").
    pub async fn start(binary: &Path, nodes: usize, sync_interval: Option<&str>) -> anyhow::Result<Self> {
        anyhow::ensure!(nodes == 1 || nodes >= 3, "a JetStream cluster needs 3 nodes (or 1)");
        let dir = tempfile::Builder::new().prefix("edgepool-chaos-").tempdir()?;
        let mut conf_text = SERVER_CONF.to_owned();
        if let Some(sync) = sync_interval {
            conf_text = conf_text.replace("sync_interval: 2s", &format!("sync_interval: {sync}"));
            anyhow::ensure!(
                conf_text.contains(&format!("sync_interval: {sync}")),
                "nats/nats-server.conf has no sync_interval to replace"
            );
        }
        let conf = dir.path().join("nats-server.conf");
        std::fs::write(&conf, conf_text)?;
        let mut list = Vec::new();
        for i in 0..nodes {
            let name = format!("n{}", i + 1);
            list.push(Node {
                client_port: free_port()?,
                cluster_port: if nodes > 1 { Some(free_port()?) } else { None },
                store: dir.path().join(&name).join("jetstream"),
                log: dir.path().join(format!("{name}.log")),
                name,
                child: None,
            });
        }
        let mut broker = Self { binary: binary.to_owned(), conf, nodes: list, dir };
        for i in 0..nodes {
            broker.spawn(i)?;
        }
        for i in 0..nodes {
            broker.wait_ready(i).await?;
        }
        Ok(broker)
    }

    /// Client URLs of every node, comma separated (what `--nats-url` takes).
    #[must_use]
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
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

    /// The node's name (`n1`, `n2`, ...), as JetStream reports it for stream leaders.
    #[must_use]
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The directory with the nodes' logs and stores.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let routes: Vec<String> =
            self.nodes.iter().filter_map(|n| n.cluster_port.map(|p| format!("nats://127.0.0.1:{p}"))).collect();
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.store)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-c")
            .arg(&self.conf)
            .args(["-a", "127.0.0.1", "-p", &node.client_port.to_string(), "-m", "-1", "-js", "-sd"])
            .arg(&node.store)
            .args(["--server_name", &node.name]);
        if let Some(port) = node.cluster_port {
            cmd.args(["--cluster_name", "edgepool-chaos", "--cluster", &format!("nats://127.0.0.1:{port}")])
                .args(["--routes", &routes.join(",")]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `i` accepts clients and, in a cluster, JetStream has a meta leader.
    pub async fn wait_ready(&mut self, i: usize) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        let url = format!("nats://127.0.0.1:{}", self.nodes[i].client_port);
        loop {
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("nats-server {} exited with {status}:\n{}", self.nodes[i].name, self.log(i));
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
                bail!("nats-server {} not ready within 30 s:\n{}", self.nodes[i].name, self.log(i));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9` node `i`: no flush, no goodbye to clients or peers.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Graceful stop of node `i` (SIGTERM; nats-server flushes its stores and closes clients).
    pub async fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            if let Some(pid) = c.id() {
                super::signal(pid, "TERM");
            }
            if tokio::time::timeout(Duration::from_secs(15), c.wait()).await.is_err() {
                let _ = c.start_kill();
                let _ = c.wait().await;
            }
        }
    }

    /// Starts node `i` again on its ports with its store; returns how long it took to be ready.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<Duration> {
        anyhow::ensure!(self.nodes[i].child.is_none(), "node {} is running", self.nodes[i].name);
        self.spawn(i)?;
        self.wait_ready(i).await
    }

    /// The node's log so far.
    #[must_use]
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}
