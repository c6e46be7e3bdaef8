//! The dashboard in a real headless Chromium (Debian's `chromium`, installed by `.ci/run`):
//! the fleet page draws its chart, a job page shows params and result, and an action
//! button works with the token and is refused without it (clicked over the DevTools
//! protocol). With `HEROJOBS_SCREENSHOTS=DIR` it also writes the docs' screenshots there.

mod common;

use common::{jref, queue, test_engine, tjob, wait_until, RedisServer};
use herojobs::web::{serve, WebConfig, WebHandle};
use herojobs::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];

fn chromium() -> Command {
    let mut c = Command::new("chromium");
    c.args(FLAGS).stdin(Stdio::null());
    c
}

/// The page's DOM once its scripts ran (virtual time lets the fetches and polls happen).
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = chromium()
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .stderr(Stdio::null())
        .output()
        .expect("chromium is installed (apt-get install chromium)");
    assert!(
        out.status.success(),
        "chromium --dump-dom {url}: {:?}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot(url: &str, path: &Path, height: u32) {
    let profile = tempfile::tempdir().expect("profile dir");
    let status = chromium()
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size=1280,{height}"))
        .arg("--virtual-time-budget=5000")
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("chromium");
    assert!(status.success() && path.exists(), "screenshot of {url}");
}

/// A Chromium driven over the DevTools protocol (one page).
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next_id: u64,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = chromium()
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--remote-debugging-port=0")
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium is installed (apt-get install chromium)");
        // Chromium writes the port it chose into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let mut port = 0u16;
        wait_until(
            "chromium to open its DevTools port",
            Duration::from_secs(60),
            || {
                port = std::fs::read_to_string(&port_file)
                    .ok()
                    .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
                    .unwrap_or(0);
                port != 0
            },
        );
        let mut ws_url = String::new();
        wait_until("the page target", Duration::from_secs(60), || {
            let Ok(r) = ureq::get(&format!("http://127.0.0.1:{port}/json/list")).call() else {
                return false;
            };
            let targets: Value = r.into_json().unwrap_or(Value::Null);
            if let Some(t) = targets
                .as_array()
                .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            {
                ws_url = t["webSocketDebuggerUrl"].as_str().unwrap_or("").to_string();
            }
            !ws_url.is_empty()
        });
        let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("DevTools websocket");
        Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
        }
    }

    /// Evaluates `expr` in the page and returns its value (promises awaited).
    fn eval(&mut self, expr: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": "Runtime.evaluate",
            "params": {"expression": expr, "returnByValue": true, "awaitPromise": true}});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("send to DevTools");
        loop {
            let m = self.ws.read().expect("read from DevTools");
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if v["id"] == id {
                return v["result"]["result"]["value"].clone();
            }
        }
    }

    fn wait_for(&mut self, what: &str, expr: &str) {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < end {
            if self.eval(expr) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting in the page for: {what} ({expr})");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn web(client: Client, token: Option<&str>) -> (WebHandle, String) {
    let w = serve(client, {
        let mut c = WebConfig::new("127.0.0.1:0").token(token.map(String::from));
        c.sample_every = Duration::from_millis(250);
        c
    })
    .expect("dashboard");
    let base = format!("http://{}", w.addr());
    (w, base)
}

fn api(url: &str) -> (u16, Value) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(c, r)) => (c, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[test]
fn the_dashboard_renders_and_acts_in_a_real_browser() {
    let redis = RedisServer::start();
    let (_d, dir) = common::base_dir();
    let mut config = herojobs::EngineConfig::default();
    config.name = "browser-test-engine".into();
    config.workers = 2;
    config.poll = Duration::from_millis(200);
    let mut engine = test_engine(&redis.url(), &dir, 2)
        .config(config)
        .build()
        .expect("engine");
    engine.start().expect("start");
    let client = Client::connect(&redis.url(), &dir).expect("client");
    let (_w, base) = web(client.clone(), Some("s3cret"));
    let (_ro, ro_base) = web(client.clone(), None);
    let mut ids = Vec::new();
    for i in 0..40 {
        let p = if i % 5 == 4 {
            format!("fail disk {i} full")
        } else {
            format!("ok thumbnail-{i}.png")
        };
        ids.push(client.submit(tjob("media", "thumbs", &p)).expect("submit"));
    }
    for id in &ids {
        client.wait(id, Duration::from_secs(30)).expect("finished");
    }
    wait_until(
        "rate samples for the chart",
        Duration::from_secs(20),
        || {
            api(&format!("{base}/api/fleet")).1["rates"]
                .as_array()
                .is_some_and(|r| r.len() >= 3)
        },
    );

    // The fleet page draws its chart: an SVG with a done line through every sample.
    let dom = dump_dom(&format!("{base}/"));
    assert!(
        dom.contains("id=\"chart\""),
        "fleet page has the chart:\n{dom}"
    );
    let done_line = dom
        .split("<polyline class=\"done\" points=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no done line in:\n{dom}"));
    assert!(
        done_line.split(' ').count() >= 3,
        "the done line has a point per sample: {done_line:?}"
    );
    assert!(dom.contains("media/thumbs"), "the queue is listed");
    assert!(dom.contains("browser-test-engine"), "the engine is listed");

    // A job page shows params and result (and an error for a failed job).
    let dom = dump_dom(&format!("{base}/job/media/thumbs/1"));
    assert!(
        dom.contains("<pre id=\"job-params\">ok thumbnail-0.png</pre>"),
        "params shown:\n{dom}"
    );
    assert!(
        dom.contains("<pre id=\"job-result\">thumbnail-0.png</pre>"),
        "result shown:\n{dom}"
    );
    let dom = dump_dom(&format!("{base}/job/media/thumbs/5"));
    assert!(
        dom.contains("<pre id=\"job-error\">disk 4 full</pre>"),
        "{dom}"
    );

    // The queue page lists the failed jobs.
    let dom = dump_dom(&format!("{base}/queue/media/thumbs?status=error"));
    assert!(dom.contains("disk 9 full"), "{dom}");

    // An action button: refused with a wrong token, done with the right one.
    let mut b = Browser::open(&format!("{base}/job/media/thumbs/2"));
    b.wait_for(
        "the delete button, enabled",
        "(() => { const x = document.querySelector('button[data-action=delete]'); return !!x && !x.disabled; })()",
    );
    b.eval("window.confirm = () => true; document.getElementById('token').value = 'wrong'; document.querySelector('button[data-action=delete]').click(); true");
    b.wait_for(
        "the refusal",
        "document.getElementById('flash').textContent.includes('refused')",
    );
    assert_eq!(
        api(&format!("{base}/api/job/media/thumbs/2")).0,
        200,
        "still there"
    );
    b.eval("document.getElementById('token').value = 's3cret'; document.querySelector('button[data-action=delete]').click(); true");
    wait_until("the job to be deleted", Duration::from_secs(30), || {
        api(&format!("{base}/api/job/media/thumbs/2")).0 == 404
    });
    drop(b);

    // The retry button of a dead job: refused with a wrong token, re-runs it with the token.
    assert!(
        client
            .dead(&queue("media", "thumbs"), 0, 100)
            .expect("dead set")
            .iter()
            .any(|(id, _)| *id == 5),
        "job 5 failed after its last attempt: it is dead"
    );
    let mut b = Browser::open(&format!("{base}/job/media/thumbs/5"));
    b.wait_for(
        "the retry button, enabled",
        "(() => { const x = document.querySelector('button[data-action=retry]'); return !!x && !x.disabled; })()",
    );
    b.eval("window.confirm = () => true; document.getElementById('token').value = 'wrong'; document.querySelector('button[data-action=retry]').click(); true");
    b.wait_for(
        "the refusal",
        "document.getElementById('flash').textContent.includes('refused')",
    );
    assert_eq!(
        client
            .get(&jref("media", "thumbs", 5))
            .expect("job")
            .attempts,
        1
    );
    b.eval("document.getElementById('token').value = 's3cret'; document.querySelector('button[data-action=retry]').click(); true");
    wait_until("the dead job to run again", Duration::from_secs(30), || {
        client
            .get(&jref("media", "thumbs", 5))
            .is_ok_and(|j| j.attempts == 2 && j.status.is_finished())
    });
    drop(b);

    // A read-only dashboard shows the button disabled, and refuses even a forced click.
    let mut b = Browser::open(&format!("{ro_base}/job/media/thumbs/3"));
    b.wait_for(
        "the page in read-only mode",
        "document.getElementById('mode').textContent === 'read-only'",
    );
    assert_eq!(
        b.eval("document.querySelector('button[data-action=delete]').disabled"),
        Value::Bool(true)
    );
    b.eval("act('delete', {circle: 'media', topic: 'thumbs', id: 3}); true");
    b.wait_for(
        "the refusal",
        "document.getElementById('flash').textContent.includes('read-only')",
    );
    assert_eq!(api(&format!("{base}/api/job/media/thumbs/3")).0, 200);
    drop(b);

    if let Some(dir) = std::env::var_os("HEROJOBS_SCREENSHOTS") {
        let dir = Path::new(&dir);
        screenshot(&format!("{base}/"), &dir.join("dashboard-fleet.png"), 980);
        screenshot(
            &format!("{base}/queue/media/thumbs"),
            &dir.join("dashboard-queue.png"),
            1100,
        );
        screenshot(
            &format!("{base}/job/media/thumbs/5"),
            &dir.join("dashboard-job.png"),
            1000,
        );
    }
    engine.stop();
}
