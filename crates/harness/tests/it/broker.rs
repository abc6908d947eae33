//! `Broker`: what the tests, the demo, the benchmarks and the chaos scenarios rely on — ports
//! reported (never guessed), a killed or stopped node back on the same port with the same store,
//! a JetStream cluster that forms, and a frozen node that answers nobody until thawed.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use edgepool_harness::{Broker, BrokerOptions};

/// `GET path` on a monitoring URL (`http://127.0.0.1:<port>`): the response body.
fn http_get(monitor_url: &str, path: &str) -> String {
    let addr = monitor_url.strip_prefix("http://").unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_owned()
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

async fn js(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

/// A file-backed stream `name` on `subjects.>` with `replicas` replicas and one message.
async fn stream_with_a_message(js: &jetstream::Context, name: &str, replicas: usize) -> stream::Stream {
    let cfg = stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let s = js.create_stream(cfg).await.unwrap();
    // On a cluster, the create returns before the replicas have elected the stream's leader:
    // a publish in that window gets "stream not found" (seen on a loaded CI machine). Retry
    // for a while; a stream that never comes up still fails the test.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sent = js.publish(format!("{}.a", name.to_lowercase()), "kept".into()).await.unwrap().await;
        match sent {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("publish to {name} not acked yet ({e}), retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("stream {name} never took a message: {e}"),
        }
    }
    s
}

async fn messages(js: &jetstream::Context, name: &str) -> u64 {
    js.get_stream(name).await.unwrap().get_info().await.unwrap().state.messages
}

#[tokio::test]
async fn a_single_node_reports_its_ports_and_serves() {
    let broker = Broker::single().unwrap();
    assert_eq!(broker.len(), 1);
    let url = broker.url();
    assert!(url.starts_with("nats://127.0.0.1:") && port(&url) != 0, "{url}");
    assert_eq!(broker.urls(), url, "one node, one URL");
    let monitor = broker.monitor_url();
    assert!(monitor.starts_with("http://127.0.0.1:") && port(&monitor) != port(&url), "{monitor}");
    assert!(broker.pid(0).is_some());
    assert!(broker.store_dir(0).starts_with(broker.dir()));

    // The reported ports are the server's: clients and JetStream on one, monitoring on the other.
    let js = js(&url).await;
    js.query_account().await.unwrap();
    let varz: serde_json::Value = serde_json::from_str(&http_get(&monitor, "/varz")).unwrap();
    assert_eq!(varz["port"], port(&url), "{varz}");
    assert_eq!(varz["server_name"], "n1");

    // Two brokers side by side never share a port: each asks the OS through nats-server (-1).
    let other = Broker::single().unwrap();
    assert_ne!(port(&other.url()), port(&url));
    assert!(broker.log(0).contains("Server is ready"), "{}", broker.log(0));
}

#[tokio::test]
async fn kill_and_restart_come_back_on_the_same_port_with_the_same_store() {
    let mut broker = Broker::single().unwrap();
    let (url, monitor) = (broker.url(), broker.monitor_url());
    stream_with_a_message(&js(&url).await, "KEEP", 1).await;

    broker.kill(0);
    assert!(broker.pid(0).is_none());
    assert!(TcpStream::connect(url.trim_start_matches("nats://")).is_err(), "a killed node accepts nothing");
    assert!(broker.restart(0).is_ok());
    assert!(broker.restart(0).is_err(), "a running node cannot be started twice");
    broker.wait_ready(0).await.unwrap();
    assert_eq!((broker.url(), broker.monitor_url()), (url.clone(), monitor), "same ports after a restart");
    let js = js(&url).await;
    assert_eq!(messages(&js, "KEEP").await, 1, "the stream and its message survived kill -9");

    // A graceful stop keeps them too.
    js.publish("keep.b", "also kept".into()).await.unwrap().await.unwrap();
    broker.stop(0);
    assert!(broker.pid(0).is_none());
    broker.restart(0).unwrap();
    broker.wait_ready(0).await.unwrap();
    assert_eq!(broker.url(), url);
    assert_eq!(messages(&self::js(&url).await, "KEEP").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_jetstream_cluster() {
    let mut broker = Broker::start(BrokerOptions::cluster(3)).unwrap();
    assert!(Broker::start(BrokerOptions::cluster(2)).is_err(), "two nodes cannot elect a JetStream leader");
    assert_eq!(broker.len(), 3);
    broker.wait_all_ready().await.unwrap();
    let names: Vec<&str> = (0..3).map(|i| broker.name(i)).collect();
    assert_eq!(names, ["n1", "n2", "n3"]);
    assert_eq!(broker.urls().split(',').count(), 3);

    // Every node soon agrees on one meta leader among the three (peers join the meta group as
    // their routes come up).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jsz: Vec<serde_json::Value> =
            (0..3).map(|i| serde_json::from_str(&http_get(&broker.monitor_url_of(i), "/jsz")).unwrap()).collect();
        let leaders: Vec<&str> = jsz.iter().map(|j| j["meta_cluster"]["leader"].as_str().unwrap_or("")).collect();
        let sizes: Vec<u64> = jsz.iter().map(|j| j["meta_cluster"]["cluster_size"].as_u64().unwrap_or(0)).collect();
        if sizes == [3, 3, 3] && names.contains(&leaders[0]) && leaders.iter().all(|l| *l == leaders[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "no agreed meta leader of 3: leaders {leaders:?}, sizes {sizes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An R3 stream: a leader and two current replicas, through any node.
    let js = js(&broker.url_of(2)).await;
    let mut s = stream_with_a_message(&js, "REPL", 3).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cluster = s.info().await.unwrap().cluster.clone().unwrap();
        let current = cluster.replicas.iter().filter(|r| r.current).count();
        if cluster.leader.is_some() && current == 2 {
            assert!(names.contains(&cluster.leader.as_deref().unwrap()));
            break;
        }
        assert!(Instant::now() < deadline, "replicas never caught up: {cluster:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(messages(&js, "REPL").await, 1);
}

#[tokio::test]
async fn a_frozen_node_answers_nobody_until_thawed() {
    let mut broker = Broker::single().unwrap();
    let client = async_nats::connect(broker.url()).await.unwrap();
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_millis(500)).build(client.clone());
    js.query_account().await.unwrap();

    broker.freeze(0);
    assert!(broker.pid(0).is_some(), "frozen, not gone");
    let frozen = tokio::time::timeout(Duration::from_secs(2), js.query_account()).await;
    assert!(!matches!(frozen, Ok(Ok(_))), "a frozen node answered: {frozen:?}");

    broker.thaw(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::time::timeout(Duration::from_secs(2), js.query_account()).await.map_or(true, |r| r.is_err()) {
        assert!(Instant::now() < deadline, "no answer after the thaw");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A frozen node still stops cleanly (stop thaws it first), well within stop's 15 s.
    broker.freeze(0);
    let started = Instant::now();
    broker.stop(0);
    assert!(started.elapsed() < Duration::from_secs(10), "stop of a frozen node took {:?}", started.elapsed());
}
