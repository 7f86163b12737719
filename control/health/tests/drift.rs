//! A small run of the drift measurement (the full one is the `drift`
//! example): it prints the numbers and asserts only that every server was
//! checked, never anything about time.

#[path = "../examples/drift/farm.rs"]
mod farm;

use std::time::Duration;

#[test]
fn drift_of_100_servers() {
    let measurement = farm::run(100, Duration::from_millis(200), Duration::from_secs(2)).unwrap();
    measurement.print();
    assert_eq!(measurement.never_checked, 0);
    assert!(measurement.started >= measurement.completed);
}
