//! One recorded client operation: what was asked, what came back, and when.
//!
//! Times are whatever monotonic unit the recorder uses (nanoseconds since the test started, say); they
//! only need to be comparable across clients, so record them from one clock.

/// One operation as a client saw it.
///
/// An operation whose outcome is unknown (the client timed out, or the connection broke before the
/// answer came) has `return_time: None`: it may take effect at any moment after its call, or never. Its
/// `output` must then be the model's "unknown" output, which the model accepts from any state (for the
/// key-value model, [`KvOutput::Unknown`](crate::KvOutput::Unknown)). Do not give such an operation the
/// time the error arrived as its return time: a write that timed out at the client may still be applied
/// later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<Input, Output> {
    /// Which client issued the operation; only used to explain a verdict.
    pub client: u64,
    pub input: Input,
    pub output: Output,
    /// When the client sent the request.
    pub call_time: u64,
    /// When the client received the answer; `None` when it never did.
    pub return_time: Option<u64>,
}

impl<Input, Output> Operation<Input, Output> {
    /// An operation that returned `output` at `return_time`.
    pub fn completed(client: u64, input: Input, output: Output, call_time: u64, return_time: u64) -> Self {
        Operation { client, input, output, call_time, return_time: Some(return_time) }
    }

    /// An operation whose answer never came; `unknown` is the model's "unknown" output.
    pub fn unfinished(client: u64, input: Input, unknown: Output, call_time: u64) -> Self {
        Operation { client, input, output: unknown, call_time, return_time: None }
    }

    /// The return time, with an unfinished operation returning at the end of time.
    pub(crate) fn return_or_infinity(&self) -> u64 {
        self.return_time.unwrap_or(u64::MAX)
    }
}
