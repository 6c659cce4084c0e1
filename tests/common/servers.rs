//! Real servers for the notification tests, started as child processes: a webhook receiver that
//! checks signatures with its own (Python) implementation, and an SMTP server (aiosmtpd).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running test server; killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The webhook receiver on `port` (see tests/servers/webhook_receiver.py for the query
    /// parameters that script its answers).
    pub fn webhook_receiver(port: u16) -> Server {
        Server::start("webhook_receiver.py", port, &["--secret", SECRET])
    }

    /// An SMTP server without TLS.
    pub fn smtp(port: u16) -> Server {
        Server::start("smtp_sink.py", port, &[])
    }

    fn start(script: &str, port: u16, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.jsonl");
        std::fs::write(&log, "").unwrap();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers").join(script);
        let python = std::env::var("ONTRACK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(&path)
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script} with python3: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "{script} did not start (is aiosmtpd installed? .ci/run installs it)"
        );
        Server { child, port, log, _dir: dir }
    }

    /// A URL on the receiver.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Waits until `done(received)` holds; panics with what was received after `timeout`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "not received within {timeout:?}; got {got:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
