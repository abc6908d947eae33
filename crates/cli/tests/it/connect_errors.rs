//! What a person sees when the broker cannot be reached, for every role, from the real
//! `edgepool` binary: nothing listening (refused), something listening that never speaks (timed
//! out), TLS that fails, and credentials the server refuses. One-shot commands fail at once with
//! exit code 2 and the message on stderr; long-running roles (worker, sink, camera) warn once and
//! wait, and a SIGTERM ends the wait cleanly. No message sends the reader to `edgepool setup`
//! when the problem is the connection.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use edgepool_harness::server::{Signal, signal};
use edgepool_harness::{Broker, BrokerOptions, Conf, fixtures};

use crate::security::TestCa;
use tempfile::TempDir;

/// How long a one-shot command may take to fail: the client's 5 s connect timeout plus start-up.
const ONE_SHOT_LIMIT: Duration = Duration::from_secs(15);
/// How long a waiting role may take to exit after SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(5);

/// What every "nothing answers" message says: where, and how to fix it.
const UNREACHABLE: &str = "no NATS server answers at";
const HOW_TO_FIX: &str = "point --nats-url / EDGEPOOL_NATS_URL at a running server";

// ---- helpers ----

/// `edgepool <args>` with the test's configuration only: no `EDGEPOOL_*` from the environment
/// except where the nats-server binary is.
fn edgepool(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgepool"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("EDGEPOOL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1").args(args).stdin(Stdio::null());
    cmd
}

/// A URL nobody listens on: a port the OS just gave us, released again.
fn refused_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("nats://127.0.0.1:{port}")
}

/// A listener that accepts connections and never says anything (no NATS INFO), so the client's
/// connect timeout fires. Lives as long as the returned guard.
struct Silent {
    url: String,
    _thread: std::thread::JoinHandle<()>,
}

fn silent_server() -> Silent {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    Silent { url, _thread: thread }
}

/// Output of a finished command.
struct Done {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs a one-shot command to its end (killed after [`ONE_SHOT_LIMIT`]).
fn run(mut cmd: Command) -> Done {
    let dir = TempDir::new().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdout(std::fs::File::create(&out).unwrap()).stderr(std::fs::File::create(&err).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = wait(&mut child, ONE_SHOT_LIMIT)
        .unwrap_or_else(|| panic!("still running after {ONE_SHOT_LIMIT:?}:\n{}", read(&err)));
    Done { status, stdout: read(&out), stderr: read(&err), took: started.elapsed() }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits up to `limit` for `child`; kills it and returns `None` when it is still running.
fn wait(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A one-shot command failed as a person needs: exit code 2, quickly, and stderr says `what`
/// about `url` and never blames missing setup.
fn assert_fails_saying(done: &Done, url: &str, what: &str) {
    let err = &done.stderr;
    assert_eq!(done.status.code(), Some(2), "exit code; stderr:\n{err}");
    assert!(err.contains(url), "names the URL {url}:\n{err}");
    assert!(err.contains(what), "says {what:?}:\n{err}");
    assert!(!err.contains("edgepool setup"), "blames setup for a connection problem:\n{err}");
    assert!(done.took < ONE_SHOT_LIMIT, "took {:?}", done.took);
    assert!(!done.stdout.contains("error"), "the error goes to stderr, not stdout:\n{}", done.stdout);
}

fn assert_unreachable(done: &Done, url: &str, reason: &str) {
    assert_fails_saying(done, url, &format!("{UNREACHABLE} {url} ({reason})"));
    assert!(done.stderr.contains(HOW_TO_FIX), "says how to fix it:\n{}", done.stderr);
}

/// `edgepool --nats-url <url> <args>`, run to its end.
fn one_shot(url: &str, args: &[&str]) -> Done {
    let mut all = vec!["--nats-url", url];
    all.extend_from_slice(args);
    run(edgepool(&all))
}

/// A long-running role with nothing at `url`: it must warn once with the message and a fix,
/// keep waiting, and exit 0 promptly on SIGTERM.
fn waits_then_stops_on_sigterm(args: &[&str]) {
    let url = refused_url();
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("stderr");
    let mut all = vec!["--nats-url", url.as_str()];
    all.extend_from_slice(args);
    let mut cmd = edgepool(&all);
    cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();

    let expected = format!("{UNREACHABLE} {url} (connection refused)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read(&log).contains(&expected) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited ({status}) instead of waiting:\n{}", read(&log));
        }
        assert!(Instant::now() < deadline, "no warning within 30 s:\n{}", read(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    // A few retries later: still waiting, and still one warning (a summary comes every 30 s).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(child.try_wait().unwrap().is_none(), "stopped waiting:\n{}", read(&log));
    let text = read(&log);
    assert_eq!(text.matches(UNREACHABLE).count(), 1, "one warning, not one per retry:\n{text}");
    assert!(text.contains("WARN"), "logged as a warning:\n{text}");
    assert!(text.contains(HOW_TO_FIX), "says how to fix it:\n{text}");
    assert!(!text.contains("edgepool setup"), "blames setup for a connection problem:\n{text}");
    assert!(!text.contains("IO error"), "async-nats' per-retry noise:\n{text}");

    let stopped = Instant::now();
    signal(child.id(), Signal::TERM);
    let status = wait(&mut child, EXIT_LIMIT)
        .unwrap_or_else(|| panic!("still running {EXIT_LIMIT:?} after SIGTERM:\n{}", read(&log)));
    assert!(status.success(), "SIGTERM while waiting is a clean stop, got {status}:\n{}", read(&log));
    assert!(stopped.elapsed() < Duration::from_secs(2), "took {:?} to stop", stopped.elapsed());
}

/// The password the secure server accepts for `admin`.
const RIGHT_PASSWORD: &str = "right-pw-2f9c1";

/// A nats-server that requires TLS (certificate from `ca`) and the user `admin`.
fn secure_server(ca: &TestCa) -> Broker {
    let conf = format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  timeout: 5\n}}\n\
         authorization {{\n  user: admin\n  password: {RIGHT_PASSWORD:?}\n}}\n",
        ca.path("server.pem").display().to_string(),
        ca.path("server.key").display().to_string(),
    );
    Broker::start(BrokerOptions { conf: Conf::Text(conf), ..BrokerOptions::single() }).unwrap()
}

// ---- refused: one-shot commands fail at once ----

#[test]
fn setup_refused() {
    let url = refused_url();
    assert_unreachable(&one_shot(&url, &["setup"]), &url, "connection refused");
}

#[test]
fn status_refused() {
    let url = refused_url();
    assert_unreachable(&one_shot(&url, &["status"]), &url, "connection refused");
}

#[test]
fn watch_refused() {
    let url = refused_url();
    assert_unreachable(&one_shot(&url, &["watch"]), &url, "connection refused");
}

#[test]
fn top_once_refused() {
    let url = refused_url();
    assert_unreachable(&one_shot(&url, &["top", "--once"]), &url, "connection refused");
}

#[test]
fn model_list_refused() {
    let url = refused_url();
    assert_unreachable(&one_shot(&url, &["model", "list"]), &url, "connection refused");
}

#[test]
fn demo_with_a_url_refused() {
    let url = refused_url();
    let done = one_shot(&url, &["demo"]);
    assert_unreachable(&done, &url, "connection refused");
}

/// The cause is kept, shown once on its own line, not run into the hint.
#[test]
fn refused_shows_the_cause_once() {
    let url = refused_url();
    let done = one_shot(&url, &["status"]);
    let err = &done.stderr;
    assert!(err.contains(&format!("{HOW_TO_FIX}\n  caused by: ")), "cause on its own line:\n{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "cause repeated:\n{err}");
}

// ---- refused: long-running roles wait, and SIGTERM ends the wait ----

#[test]
fn worker_waits_then_stops_on_sigterm() {
    let model = fixtures::model_path();
    assert!(model.is_file(), "no model at {}: run `cargo xtask model` once", model.display());
    waits_then_stops_on_sigterm(&["worker", "--model", model.to_str().unwrap()]);
}

#[test]
fn sink_waits_then_stops_on_sigterm() {
    waits_then_stops_on_sigterm(&["sink", "--listen", "127.0.0.1:0"]);
}

#[test]
fn camera_waits_then_stops_on_sigterm() {
    let photos = fixtures::photos_dir();
    waits_then_stops_on_sigterm(&["camera", "--camera", "cam-1", "--source", photos.to_str().unwrap()]);
}

// ---- timed out: something listens but never speaks NATS ----

#[test]
fn status_timed_out() {
    let silent = silent_server();
    let done = one_shot(&silent.url, &["status"]);
    assert_unreachable(&done, &silent.url, "timed out");
    assert!(done.took >= Duration::from_secs(4), "the 5 s connect timeout, took {:?}", done.took);
}

// ---- TLS ----

#[test]
fn tls_required_by_the_server_only() {
    let ca = TestCa::new();
    let server = secure_server(&ca);
    let url = server.url();
    let mut cmd = edgepool(&["--nats-url", &url, "--nats-user", "admin", "status"]);
    cmd.env("EDGEPOOL_NATS_PASSWORD", RIGHT_PASSWORD);
    let done = run(cmd);
    assert_fails_saying(&done, &url, &format!("TLS with the NATS server at {url} failed"));
    assert!(done.stderr.contains("nats.tls_ca"), "says what to check:\n{}", done.stderr);
}

#[test]
fn tls_with_a_ca_that_did_not_sign_the_server() {
    let (ca, other) = (TestCa::new(), TestCa::new());
    let server = secure_server(&ca);
    let url = server.url();
    let wrong_ca = other.path("ca.pem");
    let mut cmd = edgepool(&["--nats-url", &url, "--nats-user", "admin", "--nats-tls-ca", wrong_ca.to_str().unwrap()]);
    cmd.arg("setup").env("EDGEPOOL_NATS_PASSWORD", RIGHT_PASSWORD);
    let done = run(cmd);
    assert_fails_saying(&done, &url, &format!("TLS with the NATS server at {url} failed"));
}

// ---- credentials ----

#[test]
fn wrong_password_is_refused_and_never_printed() {
    let ca = TestCa::new();
    let server = secure_server(&ca);
    let url = server.url();
    let wrong = "wrong-pw-7d41e";
    let mut cmd =
        edgepool(&["--nats-url", &url, "--nats-user", "admin", "--nats-tls-ca", ca.path("ca.pem").to_str().unwrap()]);
    cmd.args(["model", "list"]).env("EDGEPOOL_NATS_PASSWORD", wrong);
    let done = run(cmd);
    assert_fails_saying(&done, &url, &format!("the NATS server at {url} refused the credentials"));
    assert!(done.stderr.contains("EDGEPOOL_NATS_PASSWORD"), "says what to check:\n{}", done.stderr);
    for out in [&done.stdout, &done.stderr] {
        assert!(!out.contains(wrong) && !out.contains(RIGHT_PASSWORD), "a password was printed:\n{out}");
    }
}

/// A long-running role does not wait on refused credentials: waiting cannot fix them.
#[test]
fn sink_does_not_wait_on_refused_credentials() {
    let ca = TestCa::new();
    let server = secure_server(&ca);
    let url = server.url();
    let wrong = "wrong-pw-0b3a8";
    let mut cmd =
        edgepool(&["--nats-url", &url, "--nats-user", "admin", "--nats-tls-ca", ca.path("ca.pem").to_str().unwrap()]);
    cmd.args(["sink", "--listen", "127.0.0.1:0"]).env("EDGEPOOL_NATS_PASSWORD", wrong);
    let done = run(cmd);
    assert_fails_saying(&done, &url, "refused the credentials");
    assert!(!done.stderr.contains(wrong), "the password was printed:\n{}", done.stderr);
}
