use super::*;

const S: Duration = Duration::from_secs(1);

#[test]
fn room_in_the_pool_never_sheds_on_the_estimate() {
    assert_eq!(decide(49, 0, 50, Some(S * 100), S, 100), None);
}

#[test]
fn incident_numbers() {
    // 50 connections each held 3 s (INC-EX3's P50 at the peak): the
    // pool serves 16.7 acquires/s. With 20 waiting, the 21st waits
    // 21 x 3 / 50 = 1.26 s: hopeless against 1 s, fine against 2 s.
    let hold = Some(S * 3);
    match decide(50, 20, 50, hold, S, 100) {
        Some(ShedReason::HopelessWait { estimated_wait, .. }) => {
            assert_eq!(estimated_wait, Duration::from_millis(1260))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(50, 20, 50, hold, S * 2, 100), None);
    assert_eq!(
        decide(50, 100, 50, hold, S * 60, 100),
        Some(ShedReason::TooManyWaiters {
            waiters: 100,
            limit: 100
        })
    );
}

#[test]
fn a_burst_on_a_free_pool_waits_behind_the_acquires_ahead() {
    // 60 at once on 2 connections held 100 ms, deadline 1 s: nobody is
    // in use yet, but the k-th waits for k - 2 returns of 2 connections.
    let hold = Some(Duration::from_millis(100));
    let served = (0..60)
        .filter(|&ahead| decide(0, ahead, 2, hold, S, 0).is_none())
        .count();
    assert_eq!(served, 22, "2 free + 20 returns within 1 s");
    // No cap by default: 10,000 waiting is fine when they move fast.
    assert_eq!(decide(50, 10_000, 50, Some(S / 1000), S, 0), None);
}

#[test]
fn no_hold_history_no_estimate() {
    assert_eq!(decide(5, 3, 5, None, S, 10), None);
}
