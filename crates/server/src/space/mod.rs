//! Space management that runs by itself: auto-compaction on the leader, and self-driving
//! defragmentation, one member of the cluster at a time; the leader's corruption check.

pub mod auto_defrag;
pub mod compactor;
pub mod corruption;
