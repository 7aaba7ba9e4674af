//! [`blocking_stream`]: a [`BatchStream`] fed by blocking code (file readers, decoders)
//! running on tokio's blocking pool, through a bounded channel.

use futures::StreamExt;

use crate::{Batch, BatchStream, Result};

/// The sending end given to the producer of a [`blocking_stream`].
#[derive(Debug)]
pub struct BlockingSender {
    tx: tokio::sync::mpsc::Sender<Result<Batch>>,
}

impl BlockingSender {
    /// Hand one batch to the consumer, waiting while the channel is full. Returns `false`
    /// once the consumer has dropped the stream (the run was cancelled or failed): stop
    /// producing then.
    pub fn send(&self, batch: Batch) -> bool {
        self.tx.blocking_send(Ok(batch)).is_ok()
    }
}

/// A stream of the batches `produce` sends, run on the blocking pool with at most `buffer`
/// batches waiting (memory stays bounded whatever the input size). An error `produce`
/// returns is the stream's last item.
///
/// ```
/// use etl_core::{Batch, blocking_stream};
/// use etl_core::arrow_array::{Int64Array, RecordBatch};
/// use futures::StreamExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stream = blocking_stream(2, |tx| {
///     for i in 0..3i64 {
///         let rb = RecordBatch::try_from_iter([(
///             "n",
///             std::sync::Arc::new(Int64Array::from(vec![i])) as _,
///         )])?;
///         if !tx.send(Batch::new("u".into(), rb, vec![i as u64 + 1])) {
///             break;
///         }
///     }
///     Ok(())
/// });
/// let batches: Vec<_> = stream.collect().await;
/// assert_eq!(batches.len(), 3);
/// # }
/// ```
pub fn blocking_stream(
    buffer: usize,
    produce: impl FnOnce(&BlockingSender) -> Result<()> + Send + 'static,
) -> BatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(buffer.max(1));
    tokio::task::spawn_blocking(move || {
        let sender = BlockingSender { tx };
        if let Err(e) = produce(&sender) {
            let _ = sender.tx.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }).boxed()
}
