//! The cluster-wide defrag right: one holder at a time, released by its holder, and taken over once the
//! holder's claim expires (by the clock carried in the entries).

use keel_api::keelpb::internal_request::Request;
use keel_api::keelpb::{DefragClaim, InternalRequest};
use keel_state::{Entry, Response, StateMachine};
use prost::Message;

fn claim(machine: &mut StateMachine, index: u64, member_id: u64, release: bool, now_ms: u64) -> (bool, u64) {
    let request = InternalRequest {
        id: index,
        request: Some(Request::DefragClaim(DefragClaim { member_id, release, now_ms, expires_ms: now_ms + 1000 })),
    };
    let data = request.encode_to_vec();
    let outcome = machine.apply(&[Entry { index, term: 1, data: &data }], false).unwrap();
    match outcome.applied[0].result.as_ref().unwrap() {
        Response::DefragClaim { granted, holder } => (*granted, *holder),
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_member_holds_the_defrag_right_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut machine = StateMachine::open(&dir.path().join("db")).unwrap();
    assert_eq!(claim(&mut machine, 1, 7, false, 0), (true, 7));
    assert_eq!(claim(&mut machine, 2, 8, false, 10), (false, 7), "held by 7");
    assert_eq!(claim(&mut machine, 3, 8, true, 20), (false, 7), "8 cannot release 7's claim");
    assert_eq!(claim(&mut machine, 4, 7, true, 30), (true, 0));
    assert_eq!(claim(&mut machine, 5, 8, false, 40), (true, 8));
    // 8 stops without releasing: once its claim expires, another member may take the right.
    assert_eq!(claim(&mut machine, 6, 9, false, 500), (false, 8));
    assert_eq!(claim(&mut machine, 7, 9, false, 1041), (true, 9));
    let revision = machine.state().revision;
    assert_eq!(revision, 1, "claims are not writes: the store revision stays");
}
