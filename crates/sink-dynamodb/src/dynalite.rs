//! A local dynalite server for tests, examples and benchmarks (feature `dynalite`).
//!
//! dynalite 4.0.0 is pinned by `tools/dynalite/package.json` + `package-lock.json` in the
//! project and installed with `npm ci --prefix tools/dynalite` (done here on first use).
//! It listens on 127.0.0.1 only, on a free port, and is killed when the [`Dynalite`] is
//! dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::error::{DynamoError, Result};

/// A running dynalite; killed on drop.
#[derive(Debug)]
pub struct Dynalite {
    child: Child,
    port: u16,
}

/// The `tools/dynalite` folder: `$FERRY_DYNALITE_DIR`, else the first `tools/dynalite`
/// with a `package.json` above the current directory or above this crate's sources.
pub fn tools_dir() -> Result<PathBuf> {
    if let Ok(d) = std::env::var("FERRY_DYNALITE_DIR") {
        return Ok(PathBuf::from(d));
    }
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for start in starts {
        for dir in start.ancestors() {
            let candidate = dir.join("tools/dynalite");
            if candidate.join("package.json").is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(DynamoError::Server(
        "tools/dynalite/package.json not found above the current directory; run from the ferry checkout or set FERRY_DYNALITE_DIR".into(),
    ))
}

/// Install dynalite with `npm ci` if `node_modules` is missing.
pub async fn ensure_installed(dir: &Path) -> Result<PathBuf> {
    let cli = dir.join("node_modules/dynalite/cli.js");
    if cli.is_file() {
        return Ok(cli);
    }
    let command = format!("npm ci --prefix {}", dir.display());
    tracing::info!(%command, "installing dynalite (first use)");
    let status = Command::new("npm")
        .arg("ci")
        .arg("--prefix")
        .arg(dir)
        .arg("--no-audit")
        .arg("--no-fund")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .await;
    match status {
        Ok(s) if s.success() && cli.is_file() => Ok(cli),
        Ok(s) => Err(DynamoError::Server(format!(
            "`{command}` failed ({s}); run it by hand (needs Node >= 20 and npm registry access)"
        ))),
        Err(e) => Err(DynamoError::Server(format!(
            "cannot run npm ({e}): install Node >= 20 with npm, then run `{command}`"
        ))),
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| DynamoError::Server(format!("no free port on 127.0.0.1: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| DynamoError::Server(e.to_string()))
}

/// Send a signed-looking `ListTables` and return whether dynalite answered 200.
pub async fn probe(port: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    let body = "{}";
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\
         Content-Type: application/x-amz-json-1.0\r\nX-Amz-Date: 20260101T000000Z\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0000\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 64];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 12 => buf[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

impl Dynalite {
    /// Install (first time) and start dynalite on a free loopback port; wait until ready.
    ///
    /// # Errors
    /// Node or npm missing (the message says what to run), or the server not ready in 30 s.
    pub async fn start() -> Result<Dynalite> {
        let dir = tools_dir()?;
        let cli = ensure_installed(&dir).await?;
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let mut child = Command::new("node")
                .arg(&cli)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--createTableMs",
                    "0",
                    "--deleteTableMs",
                    "0",
                    "--updateTableMs",
                    "0",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    DynamoError::Server(format!(
                        "cannot run `node {}`: {e}; install Node >= 20",
                        cli.display()
                    ))
                })?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if probe(port).await {
                    tracing::debug!(port, "dynalite ready");
                    return Ok(Dynalite { child, port });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err).await;
                    }
                    last = format!("dynalite exited ({status}): {}", err.trim());
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.start_kill();
                    last = format!("dynalite not ready on port {port} after 30 s");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(DynamoError::Server(last))
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A client for it with static credentials (see [`crate::admin::static_client`]).
    pub fn client(
        &self,
        retry: Option<aws_sdk_dynamodb::config::retry::RetryConfig>,
    ) -> aws_sdk_dynamodb::Client {
        crate::admin::static_client(&self.endpoint(), "us-east-1", retry)
    }

    /// Stop the server and wait for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Where a migration writes: a given endpoint (a local server), AWS in a region with the
/// environment's credentials ([`crate::admin::env_client`]), or else a throwaway dynalite
/// started on first use and stopped when this is dropped.
#[derive(Debug)]
pub struct Target {
    endpoint: Option<String>,
    region: String,
    aws: bool,
    aws_client: Option<aws_sdk_dynamodb::Client>,
    client: tokio::sync::OnceCell<(aws_sdk_dynamodb::Client, Option<Dynalite>)>,
}

impl Target {
    /// `endpoint` if given, else AWS in `region` when `aws`, else a throwaway dynalite.
    pub fn new(endpoint: Option<String>, region: impl Into<String>, aws: bool) -> Self {
        Target {
            endpoint,
            region: region.into(),
            aws,
            aws_client: None,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// AWS through `client` (built by the caller, e.g. with `aws-config`'s standard
    /// credential chain: environment, shared profile, SSO, web identity, container and
    /// instance credentials) instead of the environment's keys: the target is AWS.
    pub fn with_aws_client(mut self, client: aws_sdk_dynamodb::Client) -> Self {
        self.aws = true;
        self.aws_client = Some(client);
        self
    }

    /// Whether it is a throwaway dynalite (nothing written reaches a real DynamoDB).
    pub fn is_throwaway(&self) -> bool {
        self.endpoint.is_none() && !self.aws
    }

    /// What it is, for reports: `DynamoDB <tables> at <endpoint>` (or `at AWS <region>`),
    /// or a warning that the dynalite is thrown away.
    pub fn describe(&self, tables: &[String]) -> String {
        let tables = tables.join(", ");
        match &self.endpoint {
            Some(ep) => format!("DynamoDB {tables} at {ep}"),
            None if self.aws => format!("DynamoDB {tables} at AWS {}", self.region),
            None => format!(
                "DynamoDB {tables} at a throwaway local dynalite, deleted at exit — nothing reached a real DynamoDB; pass --dynamodb-endpoint or configure AWS (config + credentials)"
            ),
        }
    }

    /// The client, made (or the dynalite started) on first use.
    ///
    /// # Errors
    /// The dynalite cannot be started.
    pub async fn client(&self) -> Result<&aws_sdk_dynamodb::Client> {
        let (client, _) = (self.client)
            .get_or_try_init(|| async {
                Ok(match &self.endpoint {
                    Some(ep) => (crate::admin::static_client(ep, &self.region, None), None),
                    None if self.aws => match &self.aws_client {
                        Some(c) => (c.clone(), None),
                        None => (crate::admin::env_client(&self.region), None),
                    },
                    None => {
                        let d = Dynalite::start().await?;
                        tracing::info!(endpoint = %d.endpoint(), "started a throwaway dynalite");
                        (d.client(None), Some(d))
                    }
                })
            })
            .await?;
        Ok(client)
    }
}
