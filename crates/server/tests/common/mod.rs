//! The test kit (crates/testkit): real keel and etcd servers and clusters for these tests.

#[allow(unused_imports)]
pub use keel_testkit::*;
