//! Reading a whole stream back, for checks: the reliability checker, tests and benchmarks.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt as _;

/// Every message currently in `stream`, read with an ephemeral pull consumer in small batches
/// (a stream of 8 MiB dead letters must not flood a slow reader into a slow-consumer cut-off).
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> anyhow::Result<Vec<async_nats::Message>> {
    use jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    let s = js.get_stream(stream).await.with_context(|| format!("stream {stream}"))?;
    let state = s.get_info().await?.state;
    if state.messages == 0 {
        return Ok(Vec::new());
    }
    let consumer = s
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    let mut out = Vec::with_capacity(usize::try_from(state.messages).unwrap_or(0));
    let mut idle = 0;
    while (out.len() as u64) < state.messages {
        let mut batch = consumer
            .fetch()
            .max_messages(50)
            .max_bytes(32 * 1024 * 1024)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("fetching from {stream}")))?;
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::Error::from_boxed(e).context(format!("reading {stream}")))?;
            out.push(m.message);
        }
        idle = if out.len() == before { idle + 1 } else { 0 };
        anyhow::ensure!(
            idle < 5,
            "read {} of {} messages of {stream} before the read stalled",
            out.len(),
            state.messages
        );
    }
    Ok(out)
}
