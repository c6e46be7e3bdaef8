//! Jobs from other clients of the same Redis (issue 16, Redis part): the Go original pushes
//! to `heroqueue:<circle>:<topic>` without registering the queue in `heroqueues`, writes
//! `timeout: -1`, and may leave `params_type` out (it then reads OpenRPC). Jobs are planted
//! with the real `redis-cli`, as a Go client's commands would write them.

mod common;

use common::{base_dir, jref, test_engine, wait_until, RedisServer};
use herojobs::processor::openrpc::OpenRpcProcessor;
use herojobs::{Client, JobStatus};
use std::process::Command;
use std::time::Duration;

fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is not installed");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn jobs_pushed_to_an_unregistered_queue_by_plain_redis_commands_run() {
    let redis = RedisServer::start();
    let (_d, base) = base_dir();
    // The engine runs the test processor (heroscript) and the built-in OpenRPC methods.
    let mut registry = common::test_registry();
    registry.register_processor(
        herojobs::ParamsType::OpenRpc,
        OpenRpcProcessor::with_builtins(),
    );
    let mut engine = test_engine(&redis.url(), &base, 2)
        .registry(registry)
        .build()
        .unwrap();
    engine.start().unwrap();
    // Go-style: the hash and the push, no registry entry, `timeout: -1`; the second job
    // names no params type.
    let go1 = r#"{"jobid":5,"sessionkey":"s","circleid":"goc","topic":"gotopic","params":"ok from go","params_type":"heroscript","status":"new","timeout":-1,"time_scheduled":0,"time_start":0,"time_end":0,"error":"","result":"","log":false}"#;
    let go2 = r#"{"jobid":6,"circleid":"goc","topic":"gotopic","params":"{\"jsonrpc\":\"2.0\",\"method\":\"math.add\",\"params\":{\"a\":2,\"b\":3},\"id\":1}","status":"new","timeout":-1}"#;
    redis_cli(&redis, &["HSET", "herojobs:goc:gotopic:5", "job", go1]);
    redis_cli(&redis, &["HSET", "herojobs:goc:gotopic:6", "job", go2]);
    redis_cli(&redis, &["LPUSH", "heroqueue:goc:gotopic", "5", "6"]);
    // A queue key whose names are not name-fixed is never registered.
    redis_cli(&redis, &["LPUSH", "heroqueue:Bad Name:t", "1"]);
    assert_eq!(
        redis_cli(
            &redis,
            &["SISMEMBER", "heroqueues", "heroqueue:goc:gotopic"]
        ),
        "0"
    );
    let client = Client::connect(&redis.url(), &base).unwrap();
    let mut done = Vec::new();
    wait_until("both Go jobs done", Duration::from_secs(60), || {
        done = [5, 6]
            .iter()
            .filter_map(|id| client.get(&jref("goc", "gotopic", *id)).ok())
            .filter(|j| j.status.is_finished())
            .collect();
        done.len() == 2
    });
    let (j5, j6) = (&done[0], &done[1]);
    assert_eq!(
        (j5.status, j5.result.as_str()),
        (JobStatus::Done, "from go"),
        "{j5:?}"
    );
    assert_eq!(j5.timeout, 0, "a negative timeout is the default");
    assert_eq!(j6.params_type, herojobs::ParamsType::OpenRpc);
    assert_eq!(j6.status, JobStatus::Done, "{j6:?}");
    assert!(j6.result.contains('5'), "math.add 2+3: {}", j6.result);
    assert_eq!(
        redis_cli(
            &redis,
            &["SISMEMBER", "heroqueues", "heroqueue:goc:gotopic"]
        ),
        "1"
    );
    assert_eq!(
        redis_cli(&redis, &["SISMEMBER", "heroqueues", "heroqueue:Bad Name:t"]),
        "0"
    );
    assert!(engine.stats().queues_discovered >= 1);
    // A Go reader sees the outcome in the hash, under its own field names.
    let json = redis_cli(&redis, &["HGET", "herojobs:goc:gotopic:5", "job"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["result"], "from go");
    engine.stop();
}
