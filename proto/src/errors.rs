//! The one table of etcd's client-visible errors: gRPC status code and exact message.
//!
//! Clients match on these strings (Go's clientv3 turns them back into typed errors by message), so they
//! must stay byte-for-byte what etcd sends. Every layer that rejects a request does it with one of these.

use tonic::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtcdError {
    EmptyKey,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    InvalidSortOption,
    Compacted,
    FutureRevision,
    NoSpace,
    LeaseNotFound,
    LeaseExists,
    LeaseTtlTooLarge,
    MemberNotFound,
    RequestTooLarge,
    TooManyRequests,
    NoLeader,
    NotLeader,
    LeaderChanged,
    NotCapable,
    Stopped,
    Timeout,
    TimeoutWaitAppliedIndex,
    Canceled,
    Unhealthy,
    Corrupt,
    AuthNotEnabled,
    BadLeaderTransferee,
}

impl EtcdError {
    pub fn code(self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey | InvalidSortOption
            | RequestTooLarge => Code::InvalidArgument,
            Compacted | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExists | NotLeader | AuthNotEnabled | BadLeaderTransferee => Code::FailedPrecondition,
            NoLeader | LeaderChanged | NotCapable | Stopped | Timeout | TimeoutWaitAppliedIndex | Unhealthy => {
                Code::Unavailable
            }
            Canceled => Code::Cancelled,
            Corrupt => Code::DataLoss,
        }
    }

    pub fn message(self) -> &'static str {
        use EtcdError::*;
        match self {
            EmptyKey => "etcdserver: key is not provided",
            KeyNotFound => "etcdserver: key not found",
            ValueProvided => "etcdserver: value is provided",
            LeaseProvided => "etcdserver: lease is provided",
            TooManyOps => "etcdserver: too many operations in txn request",
            DuplicateKey => "etcdserver: duplicate key given in txn request",
            InvalidSortOption => "etcdserver: invalid sort option",
            Compacted => "etcdserver: mvcc: required revision has been compacted",
            FutureRevision => "etcdserver: mvcc: required revision is a future revision",
            NoSpace => "etcdserver: mvcc: database space exceeded",
            LeaseNotFound => "etcdserver: requested lease not found",
            LeaseExists => "etcdserver: lease already exists",
            LeaseTtlTooLarge => "etcdserver: too large lease TTL",
            MemberNotFound => "etcdserver: member not found",
            RequestTooLarge => "etcdserver: request is too large",
            TooManyRequests => "etcdserver: too many requests",
            TimeoutWaitAppliedIndex => "etcdserver: request timed out, waiting for the applied index took too long",
            NoLeader => "etcdserver: no leader",
            NotLeader => "etcdserver: not leader",
            LeaderChanged => "etcdserver: leader changed",
            NotCapable => "etcdserver: not capable",
            Stopped => "etcdserver: server stopped",
            Timeout => "etcdserver: request timed out",
            Canceled => "etcdserver: request cancelled",
            Unhealthy => "etcdserver: unhealthy cluster",
            Corrupt => "etcdserver: corrupt cluster",
            AuthNotEnabled => "etcdserver: authentication is not enabled",
            BadLeaderTransferee => "etcdserver: bad leader transferee",
        }
    }
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.message())
    }
}

impl std::error::Error for EtcdError {}

impl From<EtcdError> for tonic::Status {
    fn from(error: EtcdError) -> Self {
        tonic::Status::new(error.code(), error.message())
    }
}
