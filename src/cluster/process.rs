//! One role of a cluster as a child process of the `arlas` binary: its stdout and stderr
//! go to a log file, its bound addresses come from the JSON line every role prints first,
//! readiness is `GET /healthz` = 200 on its metrics port, and it can be stopped with
//! SIGTERM (clean) or SIGKILL (a crash) and started again on the same ports.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Addresses a role announced on its first stdout line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announced {
    /// Its gRPC server (coordinator, learner).
    pub grpc: Option<SocketAddr>,
    /// Its `/metrics` + `/healthz` endpoint.
    pub metrics: Option<SocketAddr>,
}

/// A role running as a child process.
#[derive(Debug)]
pub struct RoleProcess {
    name: String,
    exe: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    announced: Announced,
}

impl RoleProcess {
    /// Starts `exe args…` with `env` added to the environment and waits (up to `timeout`)
    /// for its announce line.
    pub fn spawn(
        exe: &Path,
        name: &str,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: &Path,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut role = Self {
            name: name.to_string(),
            exe: exe.to_path_buf(),
            args,
            env,
            log: log.to_path_buf(),
            child: None,
            announced: Announced::default(),
        };
        role.launch(timeout)?;
        Ok(role)
    }

    fn launch(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open the log file {}", self.log.display()))?;
        let mut child = Command::new(&self.exe)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.name, self.exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the child's stdout is not piped")?;
        // The first line (announce) comes back over a channel, so that a role that hangs
        // before announcing cannot hang us; the rest of stdout is copied to the log.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || drain(stdout, log, tx));
        let line = rx.recv_timeout(timeout);
        self.child = Some(child);
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => {
                let status = self.stop_now();
                bail!(
                    "{} did not start (exit: {status:?}); its log {} says:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
        };
        let json: serde_json::Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} printed {line:?} instead of its JSON start line",
                self.name
            )
        })?;
        let addr = |key: &str| json[key].as_str().and_then(|a| a.parse().ok());
        self.announced = Announced {
            grpc: addr("grpc"),
            metrics: addr("metrics"),
        };
        Ok(())
    }

    /// The role's name (also its log file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it announced when it last started.
    pub fn announced(&self) -> Announced {
        self.announced
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until `GET /healthz` answers 200 (the role is ready), or fails after `timeout`
    /// or when the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let Some(metrics) = self.announced.metrics else {
            bail!("{} announced no metrics address", self.name);
        };
        let deadline = Instant::now() + timeout;
        loop {
            if http_status(metrics, "/healthz") == Some(200) {
                return Ok(());
            }
            if let Some(status) = self.try_exit()? {
                bail!(
                    "{} exited ({status}) before it was ready; its log {} says:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready (GET http://{metrics}/healthz != 200) after {timeout:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit status if it has exited.
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("{} was never started", self.name),
        }
    }

    /// Makes a restart bind the same addresses as this run (port 0 → the port it got), so
    /// that peers that know the old address find it again: the flags say so, and flags
    /// override the role's `--config` file.
    pub fn pin_addresses(&mut self) {
        for (flag, addr) in [
            ("--listen", self.announced.grpc),
            ("--metrics-listen", self.announced.metrics),
        ] {
            let Some(addr) = addr else { continue };
            match self.args.iter().position(|a| a == flag) {
                Some(i) if i + 1 < self.args.len() => self.args[i + 1] = addr.to_string(),
                _ => self.args.extend([flag.to_string(), addr.to_string()]),
            }
        }
    }

    /// SIGKILL, as a crash would; waits for the process to be gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait()?.is_none() {
                child.kill()?;
            }
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then up to `grace` for a clean exit, then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(role = %self.name, ?grace, "no clean exit after SIGTERM; killing");
        child.kill()?;
        Ok(Some(child.wait()?))
    }

    /// Starts it again with the same arguments (after `kill` or `terminate`).
    pub fn restart(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.kill()?;
        self.launch(timeout)
    }

    fn stop_now(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Sends the first stdout line over `first`, then copies everything else to `log`.
fn drain(
    stdout: std::process::ChildStdout,
    mut log: File,
    first: std::sync::mpsc::Sender<Option<String>>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(n) if n > 0 => {
            let _ = first.send(Some(line.trim().to_string()));
        }
        _ => {
            let _ = first.send(None);
            return;
        }
    }
    let mut buf = [0u8; 8192];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 || log.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// The status code of `GET path` on `addr`, or None when it does not answer.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = String::new();
    BufReader::new(stream).read_line(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
