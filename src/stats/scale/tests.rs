use super::*;

#[test]
fn incident_numbers() {
    // INC-EX3: 50 connections full with waiters; 3x traffic needs ~150.
    let h = recommend(90.0, 0.60, 50, 4, None);
    assert_eq!(h.recommended_max, 150);
    assert!(!h.exceeds_server);
    // 12 instances x 150 connections do not fit a 500-slot server.
    let server = ServerCapacity {
        max_connections: 503,
        reserved: 3,
        backends: 210,
    };
    let h = recommend(90.0, 0.60, 50, 12, Some(server));
    assert!(h.exceeds_server);
    assert!((server.utilization() - 0.42).abs() < 1e-9);
    let h = recommend(90.0, 0.60, 50, 3, Some(server));
    assert!(!h.exceeds_server, "3 x 150 = 450 <= 500");
}
