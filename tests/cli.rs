//! The `herald` binary as a user runs it, in an empty directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn herald(dir: &std::path::Path) -> Command {
    let mut command = Command::new(HERALD);
    command
        .current_dir(dir)
        .env_remove("HERALD_DATABASE_URL")
        .env_remove("HERALD_CONFIG")
        .env("RUST_LOG", "info");
    command
}

/// Starts `herald serve` on a free port and returns it with the address from its log line.
fn serve(dir: &std::path::Path) -> (Running, String) {
    let mut child = herald(dir)
        .arg("serve")
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald serve");
    let stderr = child.stderr.take().expect("stderr");
    let running = Running(child);
    let (found, address) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("address=").nth(1) {
                let _ = found.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let address = address
        .recv_timeout(Duration::from_secs(30))
        .expect("herald serve logs its address within 30 s");
    (running, address)
}

#[tokio::test]
async fn serve_creates_the_database_and_answers_health() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, address) = serve(dir.path());
    assert!(
        dir.path().join("herald.db").exists(),
        "the embedded database is created"
    );

    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{address}/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );

    let missing = client
        .get(format!("http://{address}/v1/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[test]
fn api_key_create_prints_the_token_alone_on_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let migrated = herald(dir.path()).arg("migrate").output().unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let created = herald(dir.path())
        .args([
            "api-key",
            "create",
            "--name",
            "ci",
            "--abilities",
            "contacts.read,campaigns.write",
            "--workspace",
            "acme",
        ])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let stdout = String::from_utf8(created.stdout).unwrap();
    let token = stdout.lines().last().unwrap();
    assert!(
        token.starts_with("hrl_") && !token.contains(' '),
        "{stdout}"
    );
    assert!(stdout.contains("acme"));

    let refused = herald(dir.path())
        .args([
            "api-key",
            "create",
            "--name",
            "x",
            "--abilities",
            "contacts.delete",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown ability 'contacts.delete'"));
}

#[test]
fn api_keys_are_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = herald(dir.path()).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    run(&["api-key", "create", "--name", "ops", "--workspace", "acme"]);
    run(&[
        "api-key",
        "create",
        "--name",
        "temp",
        "--workspace",
        "other",
        "--expires-at",
        "2999-01-01T00:00:00Z",
    ]);
    let listed = run(&["api-key", "list"]);
    assert_eq!(
        listed.lines().count(),
        3,
        "a header and two keys:\n{listed}"
    );
    assert!(!listed.contains("hrl_"), "never a token:\n{listed}");
    let temp = listed.lines().find(|l| l.contains("\ttemp\t")).unwrap();
    assert!(temp.contains("active, expires 2999-01-01"), "{temp}");
    let id = temp.split('\t').next().unwrap().to_owned();

    let acme_only = run(&["api-key", "list", "--workspace", "acme"]);
    assert_eq!(acme_only.lines().count(), 2, "{acme_only}");

    run(&["api-key", "revoke", &id]);
    let listed = run(&["api-key", "list", "--workspace", "other"]);
    assert!(listed.contains("revoked "), "{listed}");
    let again = herald(dir.path())
        .args(["api-key", "revoke", &id])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a key is revoked once");
    let past = herald(dir.path())
        .args([
            "api-key",
            "create",
            "--name",
            "x",
            "--expires-at",
            "2000-01-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&past.stderr).contains("must be in the future"));
}

#[test]
fn demo_sends_a_campaign_and_prints_correct_stats() {
    let dir = tempfile::tempdir().unwrap();
    let stats = last_json_line(dir.path(), &["demo", "--contacts", "25"]);
    assert_eq!(stats["status"], "completed");
    assert_eq!(
        (stats["total"].as_i64(), stats["pending"].as_i64()),
        (Some(25), Some(0))
    );
    let (sent, failed) = (
        stats["sent"].as_i64().unwrap(),
        stats["failed"].as_i64().unwrap(),
    );
    assert_eq!(sent + failed, 25, "every recipient ended sent or failed");
    let delivered = stats["delivered"].as_i64().unwrap();
    assert!(delivered <= sent && stats["read"].as_i64().unwrap() <= delivered);
    let expected_rate = if sent == 0 {
        0.0
    } else {
        (delivered as f64 * 10_000.0 / sent as f64).round() / 100.0
    };
    assert_eq!(stats["delivery_rate"].as_f64(), Some(expected_rate));
    assert!(dir.path().join("herald.db").exists());
}

#[test]
fn bench_sends_both_campaigns_and_reports_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let report = last_json_line(dir.path(), &["bench", "--recipients", "300"]);
    assert_eq!(report["recipients"], 300);
    for run in ["sandbox", "http"] {
        assert_eq!(report[run]["sends"], 300, "{run}: {report}");
        assert!(report[run]["sends_per_second"].as_f64().unwrap() > 0.0);
    }
    // The http campaign's 300 sends and the bare client's 300 requests reached the sink.
    assert_eq!(report["sink_requests"], 600);
    assert!(report["stats_read_us"].as_f64().unwrap() > 0.0);
    assert!(report["http_fraction_of_loopback"].as_f64().unwrap() > 0.0);
    assert!(
        !dir.path().join("herald.db").exists(),
        "the bench never touches the configured database"
    );
}

/// `herald serve` on PostgreSQL with a pool of `pool` connections: the first line of its log
/// that mentions PostgreSQL's connections.
fn connection_budget_line(database_url: &str, pool: u32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = herald(dir.path())
        .arg("serve")
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_DATABASE_MAX_CONNECTIONS", pool.to_string())
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald serve");
    let stderr = child.stderr.take().expect("stderr");
    let _running = Running(child);
    let (found, line) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("PostgreSQL") {
                let _ = found.send(line);
            }
        }
    });
    line.recv_timeout(Duration::from_secs(30))
        .expect("herald serve speaks of PostgreSQL's connections within 30 s")
}

#[tokio::test]
async fn serve_says_when_postgres_cannot_give_every_process_its_pool() {
    let Some(db) = common::postgres().await else {
        eprintln!("{} is not set", common::POSTGRES_URL_VAR);
        return;
    };
    let fits = connection_budget_line(&db.url, 4);
    assert!(
        fits.contains("every process can open its whole pool"),
        "{fits}"
    );
    // The pool and the connection that listens for announced work.
    assert!(fits.contains("per_process=5"), "{fits}");
    let refused = connection_budget_line(&db.url, 100_000);
    assert!(refused.contains("ERROR"), "{refused}");
    assert!(
        refused.contains(
            "lower HERALD_DATABASE_MAX_CONNECTIONS or raise the server's max_connections"
        ),
        "{refused}"
    );
}

#[tokio::test]
async fn bench_processes_reports_the_rate_the_lanes_and_the_failover() {
    let Some(db) = common::postgres().await else {
        eprintln!("{} is not set", common::POSTGRES_URL_VAR);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Short leases: the killed process's senders are free again while there is work, and what
    // it had claimed is sent soon after.
    let output = herald(dir.path())
        .args(["bench", "--processes", "2", "--recipients", "12000"])
        .args(["--database-url", &db.url])
        .env("HERALD_LANE_LEASE_MS", "1000")
        .env("HERALD_CLAIM_LEASE_MS", "6000")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["processes"], 2);
    assert_eq!(report["sends"], 12_000, "{report}");
    assert!(report["sends_per_second"].as_f64().unwrap() > 0.0);
    let lanes = report["most_lanes_held"].as_array().unwrap();
    assert_eq!(lanes.len(), 2, "{report}");
    assert!(
        lanes.iter().all(|most| most.as_i64().unwrap() > 0),
        "both processes sent: {report}"
    );
    let failover = report["failover"]["seconds"].as_f64();
    assert!(
        failover.is_some_and(|seconds| seconds > 0.0 && seconds < 10.0),
        "the survivor took the killed process's senders within its lease: {report}\n{stderr}"
    );
}

/// Runs `herald ARGS` to success and parses the last line it printed as JSON.
fn last_json_line(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let output = herald(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}
