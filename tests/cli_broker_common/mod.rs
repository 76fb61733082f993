//! Runs the real `weir` binary: a broker child on 127.0.0.1:0 and client
//! subcommands against it.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");

pub struct BrokerChild {
    pub child: Child,
    pub addr: String,
    /// The broker's stderr (its log), in a file so a full pipe never blocks it.
    pub log: PathBuf,
}

impl BrokerChild {
    /// Starts `weir broker` on `data` and waits for the address it bound.
    pub fn start(data: &Path, extra: &[&str]) -> BrokerChild {
        let address_file = data.with_extension("addr");
        let mut command = Command::new(WEIR);
        command
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            .arg("--address-file")
            .arg(&address_file)
            .args(extra);
        BrokerChild::spawn(command, &address_file, &data.with_extension("log"))
    }

    /// Runs `command` (which starts a broker writing its bound address to
    /// `address_file`), its stderr into `log`, and waits for the address.
    pub fn spawn(mut command: Command, address_file: &Path, log: &Path) -> BrokerChild {
        let _ = std::fs::remove_file(address_file);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn weir broker");
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(address_file) {
                if text.ends_with('\n') {
                    break text.trim().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker did not write its address: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        BrokerChild {
            child,
            addr,
            log: log.to_path_buf(),
        }
    }

    /// `weir ARGS` against this broker, with `stdin` as input.
    pub fn weir(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_weir(&self.addr, args, stdin)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BrokerChild {
    /// A failed test must not leave its broker running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn run_weir(addr: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(WEIR)
        .args(args)
        .env("WEIR_BROKER", addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failure is one line on stderr, no panic, non-zero exit.
pub fn assert_clean_failure(output: &Output, expect: &str) {
    let err = stderr(output);
    assert!(!output.status.success(), "expected failure, got {output:?}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(expect), "expected {expect:?} in {err}");
}

/// `work`, or an error once `limit` has passed, so a phase of a test fails
/// instead of hanging. The timer is made inside the runtime that polls this.
pub async fn within<T>(
    limit: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    tokio::time::timeout(limit, work).await
}

pub fn data_dir(root: &Path) -> PathBuf {
    root.join("data")
}
