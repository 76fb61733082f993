//! Outside Kafka clients, installed by the tests themselves when missing:
//! kcat from Debian's package, kafka-python from the Python registry into a
//! virtual environment under the target directory; and promtool, from
//! Debian's `prometheus` package, to check the metrics exposition.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One installation at a time: tests run on several threads.
static INSTALLING: Mutex<()> = Mutex::new(());

fn on_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn run(command: &mut Command) -> bool {
    match command.status() {
        Ok(status) => status.success(),
        Err(error) => {
            eprintln!("cannot run {command:?}: {error}");
            false
        }
    }
}

/// The `kcat` binary, installed with `apt-get install -y kcat` if missing.
pub fn kcat_binary() -> PathBuf {
    let _installing = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = on_path("kcat") {
        return found;
    }
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "kcat"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if !install() {
        // A fresh machine may have no package lists yet.
        run(Command::new("apt-get")
            .args(["update"])
            .env("DEBIAN_FRONTEND", "noninteractive"));
        install();
    }
    on_path("kcat").expect("kcat is not installed and `apt-get install -y kcat` failed")
}

/// `promtool` (the exposition checker), installed with Debian's
/// `apt-get install -y prometheus` if missing.
pub fn promtool() -> PathBuf {
    let _installing = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = on_path("promtool") {
        return found;
    }
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if !install() {
        // A fresh machine may have no package lists yet.
        run(Command::new("apt-get")
            .args(["update"])
            .env("DEBIAN_FRONTEND", "noninteractive"));
        install();
    }
    on_path("promtool")
        .expect("promtool is not installed and `apt-get install -y prometheus` failed")
}

/// A Python interpreter with kafka-python, in a virtual environment under
/// the target directory, created on first use.
pub fn kafka_python() -> PathBuf {
    let _installing = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let venv = target_dir().join("kafka-python-venv");
    let python = venv.join("bin").join("python");
    let ready = venv.join(".installed");
    if ready.is_file() {
        return python;
    }
    assert!(
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv)),
        "cannot create a Python virtual environment in {}",
        venv.display()
    );
    assert!(
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "kafka-python==2.3.3",
        ])),
        "cannot install kafka-python into {}",
        venv.display()
    );
    std::fs::write(&ready, b"kafka-python\n").unwrap();
    python
}

/// `target/` of this workspace (the test binary lives in `target/debug/deps`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "target"))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("weir-test-tools"))
}

/// Runs kcat with `args`, feeding `input`, and returns its stdout; a failed run
/// fails the test with kcat's stderr.
pub async fn kcat(args: Vec<String>, input: impl Into<String>) -> String {
    let input: String = input.into();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(kcat_binary())
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kcat {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    })
    .await
    .unwrap()
}
