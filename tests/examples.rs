//! The examples run as written: `examples/library.rs` in embedded mode and on a private
//! redis-server.

mod common;

#[path = "../examples/library.rs"]
#[allow(dead_code)]
mod library;

fn check(lines: &[String]) {
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], "example/greetings/1: hello, Ada Lovelace!");
    assert!(lines[1].ends_with(": 4"), "{lines:?}");
    assert!(
        lines[2].starts_with("job example/greetings/") && lines[2].contains("failed"),
        "{lines:?}"
    );
    assert!(
        lines[2].contains("name"),
        "the missing param is named: {lines:?}"
    );
    assert_eq!(lines[3], "example/greetings/1 again: hello, Ada Lovelace!");
}

#[test]
fn the_library_example_runs_embedded() {
    let (_d, base) = common::base_dir();
    check(&library::run(None, &base).unwrap());
}

#[test]
fn the_library_example_runs_on_redis() {
    let redis = common::RedisServer::start();
    let (_d, base) = common::base_dir();
    check(&library::run(Some(&redis.url()), &base).unwrap());
}
