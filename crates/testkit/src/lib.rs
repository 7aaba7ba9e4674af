//! Test, example and benchmark support for ferry: throwaway PostgreSQL clusters started from
//! the installed server binaries (`initdb` + `pg_ctl`), without Docker and without `sudo`.
//!
//! * [`TempPostgres`] — one cluster in a data directory of your choice; stopped and deleted on
//!   drop (unless [`TempPostgres::keep`] is called).
//! * [`test_server_url`] — the server tests use: `$DATABASE_URL` when set, else one cluster shared
//!   by every test process under `<target dir>/ferry-test-pg`, started on first use.
//! * [`TestDb`] — a fresh, empty database on the test server for one test.
//! * [`database_url_or_start`] — for example binaries: use the given URL, or start a throwaway
//!   cluster for the run.
//!
//! # Durability is off on purpose
//!
//! Clusters are started with `fsync=off`, `synchronous_commit=off` and `full_page_writes=off`:
//! they are throwaway clusters for tests and examples, and a crash (or power loss) may corrupt
//! them. Never point anything you care about at one. If a cluster directory is corrupted after
//! a crash, delete it; it is recreated on the next start.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. When the effective uid is 0, `initdb` and `pg_ctl` are run
//! as the OS user `postgres` through `runuser -u postgres --` (the user is created with
//! `useradd --system` when missing), the data directory is handed to that user and its parent
//! directories are made traversable (`o+x`).
//!
//! Every server listens on `127.0.0.1` only.

#![warn(missing_docs)]

pub mod latency;
pub mod pgproxy;
pub use latency::LatencyProxy;
pub use pgproxy::{PgFault, PgFaultProxy};

use std::ffi::{CString, OsString};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

/// Limit the size of any file the child started by `cmd` writes to `bytes`
/// (`RLIMIT_FSIZE`, as a small full filesystem would), with `SIGXFSZ` ignored in the child
/// so that a write past the limit fails with `EFBIG` ("File too large") instead of killing
/// the process: a disk-full fault the child must report.
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: between fork and exec the closure only calls the async-signal-safe
    // `signal` and `setrlimit`, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            let lim = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Name of the OS user PostgreSQL runs as when the tests run as root.
const PG_OS_USER: &str = "postgres";
/// How long to wait for a started (or reused) server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times to retry `pg_ctl start` on a new port when the port was taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// Longest Unix socket path (`sun_path` is 108 bytes with the trailing NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Errors of the testkit. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `initdb`, `pg_ctl` and `postgres` were found neither on `PATH` nor under `/usr/lib/postgresql`.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: looked on PATH and in \
         /usr/lib/postgresql/*/bin. Install them: `apt-get install -y postgresql` on Debian/Ubuntu \
         (`dnf install postgresql-server` on Fedora, `brew install postgresql` on macOS), put the \
         directory holding initdb on PATH, or set DATABASE_URL to a server you already have"
    )]
    BinariesNotFound,
    /// Running as root, but the `postgres` OS user could not be found, created or switched to.
    #[error(
        "running as root, so PostgreSQL must run as the OS user `postgres`, but {0}. Create the \
         user (`useradd --system --user-group postgres`), make sure `runuser` (util-linux) is \
         installed, or run as a non-root user"
    )]
    OsUser(String),
    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL command (`initdb`, `pg_ctl`, …) exited unsuccessfully.
    #[error(
        "`{command}` failed ({status}); fix the cause below or delete the data directory and retry:\n{output}"
    )]
    Command {
        /// The command line that was run.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stdout/stderr (and the server log tail, if any).
        output: String,
    },
    /// The data directory exists and is not empty but holds no PostgreSQL cluster.
    #[error(
        "{0} is not empty but holds no PostgreSQL cluster (no PG_VERSION file): refusing to use or delete it; pick \
         an empty or non-existent directory"
    )]
    NotACluster(PathBuf),
    /// The data directory path cannot be passed through `pg_ctl -o` (it contains a `'`).
    #[error(
        "data directory path {0} contains a single quote, which pg_ctl cannot be given: use another directory"
    )]
    BadPath(PathBuf),
    /// The server was started (or found running) but did not accept connections in time.
    #[error(
        "PostgreSQL at {url} did not accept connections within {seconds} s (last error: {last_error}). \
         Look at the server log {log}; if the data directory is damaged, stop the server and delete it"
    )]
    NotReady {
        /// The URL (password redacted).
        url: String,
        /// How long was waited.
        seconds: u64,
        /// The last connection error.
        last_error: String,
        /// The server log file.
        log: String,
    },
    /// A connection or SQL statement on the test server failed.
    #[error(
        "PostgreSQL error on {url}: {source}. Is the server running and is the URL (DATABASE_URL) right?"
    )]
    Database {
        /// The URL (password redacted).
        url: String,
        /// The sqlx error.
        #[source]
        source: sqlx::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

fn db_err(url: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |source| Error::Database {
        url: redact(url),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Locating things
// ---------------------------------------------------------------------------------------------

/// The cargo target directory: `$CARGO_TARGET_DIR` when set; else derived from the current
/// executable (the nearest ancestor holding cargo's `CACHEDIR.TAG`, or named `target`, as in
/// `…/target/<profile>/deps/…`); else `target` under the nearest ancestor of the current directory
/// holding a `Cargo.lock`; else `./target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return std::path::absolute(&dir).unwrap_or(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        let parents = || exe.ancestors().skip(1);
        if let Some(dir) = parents().find(|d| d.join("CACHEDIR.TAG").is_file()) {
            return dir.to_path_buf();
        }
        if let Some(dir) = parents().find(|d| d.file_name().is_some_and(|n| n == "target")) {
            return dir.to_path_buf();
        }
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if let Some(root) = cwd.ancestors().find(|d| d.join("Cargo.lock").is_file()) {
        return root.join("target");
    }
    cwd.join("target")
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| is_executable(&dir.join(b)))
}

/// Parses `15` / `9.6` / `16.1` into a sortable version; `None` for anything else.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

fn find_bin_dir(path_var: Option<OsString>, lib_root: &Path) -> Option<PathBuf> {
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(&path_var) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            if has_server_binaries(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(lib_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = parse_version(e.file_name().to_str()?)?;
            let bin = e.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Where the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`) are: the first `PATH`
/// directory holding all three, else the highest `/usr/lib/postgresql/<version>/bin` (Debian and
/// Ubuntu install them there without putting them on `PATH`).
///
/// Fails with [`Error::BinariesNotFound`], which says what to install.
pub fn pg_bin_dir() -> Result<PathBuf, Error> {
    find_bin_dir(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
        .ok_or(Error::BinariesNotFound)
}

/// Finds a system tool (`runuser`, `useradd`) on PATH or in the sbin directories (which a
/// restricted PATH may lack).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

// ---------------------------------------------------------------------------------------------
// Running as the postgres user
// ---------------------------------------------------------------------------------------------

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `(uid, gid)` of an OS user, or `None` when there is no such user.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for an out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call and `buf.len()` is its size.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some((pwd.pw_uid, pwd.pw_gid))
}

/// How PostgreSQL commands are run: directly, or (as root) through `runuser -u postgres --`.
#[derive(Debug, Clone)]
struct Runner {
    /// `Some((runuser, uid, gid))` when running as root.
    as_user: Option<(PathBuf, u32, u32)>,
}

impl Runner {
    fn new() -> Result<Runner, Error> {
        if !is_root() {
            return Ok(Runner { as_user: None });
        }
        let runuser =
            find_tool("runuser").ok_or_else(|| Error::OsUser("`runuser` was not found".into()))?;
        let (uid, gid) = match lookup_user(PG_OS_USER) {
            Some(ids) => ids,
            None => {
                let useradd = find_tool("useradd")
                    .ok_or_else(|| Error::OsUser("`useradd` was not found".into()))?;
                tracing::info!("creating the OS user `{PG_OS_USER}` to run PostgreSQL as");
                let out = Command::new(&useradd)
                    .args([
                        "--system",
                        "--user-group",
                        "--no-create-home",
                        "--home-dir",
                        "/nonexistent",
                    ])
                    .args(["--shell", "/usr/sbin/nologin", PG_OS_USER])
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| Error::OsUser(format!("`useradd` could not be run: {e}")))?;
                // A concurrent process may have created it first: look again either way.
                lookup_user(PG_OS_USER).ok_or_else(|| {
                    Error::OsUser(format!(
                        "`useradd --system {PG_OS_USER}` failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                })?
            }
        };
        Ok(Runner {
            as_user: Some((runuser, uid, gid)),
        })
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = match &self.as_user {
            Some((runuser, _, _)) => {
                let mut c = Command::new(runuser);
                c.args(["-u", PG_OS_USER, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // The postgres user may not be able to enter our working directory.
        cmd.current_dir("/").stdin(Stdio::null());
        for var in [
            "PGDATA",
            "PGPORT",
            "PGHOST",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Makes `data_dir` usable by the server user: owner, mode 0700, traversable parents.
    fn prepare_dir(&self, data_dir: &Path) -> Result<(), Error> {
        let Some((_, uid, gid)) = self.as_user else {
            return Ok(());
        };
        let meta =
            fs::metadata(data_dir).map_err(io_err(format!("reading {}", data_dir.display())))?;
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != uid {
            std::os::unix::fs::chown(data_dir, Some(uid), Some(gid)).map_err(io_err(format!(
                "handing {} to the `{PG_OS_USER}` user (chown)",
                data_dir.display()
            )))?;
        }
        for parent in data_dir.ancestors().skip(1) {
            let Ok(meta) = fs::metadata(parent) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if meta.uid() != uid && mode & 0o001 == 0 {
                tracing::info!(
                    "making {} traversable (o+x) for the `{PG_OS_USER}` user",
                    parent.display()
                );
                fs::set_permissions(parent, fs::Permissions::from_mode(mode | 0o001)).map_err(
                    io_err(format!(
                        "making {} traversable (chmod o+x)",
                        parent.display()
                    )),
                )?;
            }
        }
        Ok(())
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let _ = write!(s, " {}", arg.to_string_lossy());
    }
    s
}

fn run(mut cmd: Command) -> Result<Output, Error> {
    let line = describe(&cmd);
    tracing::debug!("running {line}");
    let out = cmd.output().map_err(io_err(format!("running `{line}`")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            command: line,
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// TempPostgres
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL cluster started from the installed binaries (`initdb` + `pg_ctl`); stopped (and,
/// unless kept, deleted) on drop.
///
/// The server listens on `127.0.0.1` on a free port, accepts the superuser `postgres` without a
/// password (`trust`), and runs with durability turned off (`fsync=off`, see the crate docs).
///
/// ```no_run
/// # async fn demo() -> Result<(), etl_testkit::Error> {
/// let dir = etl_testkit::target_dir().join("my-cluster");
/// let pg = etl_testkit::TempPostgres::start(&dir).await?;
/// println!("{}", pg.url()); // postgres://postgres@127.0.0.1:PORT/postgres
/// pg.stop().await?; // or just drop it
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TempPostgres {
    url: String,
    port: u16,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    runner: Runner,
    /// Set by `keep` and `stop`: `Drop` does nothing then.
    done: bool,
}

/// What `postmaster.pid` says about a running server.
fn running_postmaster(data_dir: &Path) -> Option<(i32, u16)> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) == 0 }
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !alive {
        return None;
    }
    // A stale pid file whose pid was reused by another program: not a postmaster.
    if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm"))
        && !comm.trim().starts_with("postgres")
        && !comm.trim().starts_with("postmaster")
    {
        return None;
    }
    Some((pid, port))
}

fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(io_err("finding a free port on 127.0.0.1"))?;
    Ok(listener
        .local_addr()
        .map_err(io_err("finding a free port on 127.0.0.1"))?
        .port())
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn local_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// Connects to `url` until it works or `timeout` passes.
async fn wait_ready(url: &str, timeout: Duration, log: &Path) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        let attempt =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await;
        let last_error = match attempt {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connection attempt timed out".to_string(),
        };
        if started.elapsed() >= timeout {
            return Err(Error::NotReady {
                url: redact(url),
                seconds: timeout.as_secs(),
                last_error,
                log: log.display().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl TempPostgres {
    /// `initdb` `data_dir` if it holds no cluster, then start it on a free `127.0.0.1` port.
    ///
    /// The directory (and its parents) is created if missing. If a server is already running on
    /// it (its `postmaster.pid` names a live process), that server is reused: its port is read
    /// from `postmaster.pid`. This is how a shared or [kept](Self::keep) cluster is picked up
    /// again. A reused cluster is stopped and deleted on drop like a started one.
    ///
    /// Waits until the server accepts connections.
    pub async fn start(data_dir: impl AsRef<Path>) -> Result<TempPostgres, Error> {
        let data_dir = data_dir.as_ref().to_path_buf();
        let bin_dir = pg_bin_dir()?;
        let (data_dir, runner) = {
            let bin_dir = bin_dir.clone();
            tokio::task::spawn_blocking(move || Self::init_blocking(&data_dir, &bin_dir))
                .await
                .map_err(|e| Error::Io {
                    context: "initdb task".into(),
                    source: std::io::Error::other(e),
                })??
        };
        let log = data_dir.join("log");

        if let Some((pid, port)) = running_postmaster(&data_dir) {
            tracing::info!(
                "reusing the PostgreSQL server already running on {} (pid {pid})",
                data_dir.display()
            );
            let url = local_url(port);
            wait_ready(&url, READY_TIMEOUT, &log).await?;
            return Ok(TempPostgres {
                url,
                port,
                data_dir,
                bin_dir,
                runner,
                done: false,
            });
        }

        let mut attempt = 0;
        let port = loop {
            attempt += 1;
            let port = free_port()?;
            let (dd, bd, r) = (data_dir.clone(), bin_dir.clone(), runner.clone());
            let started =
                tokio::task::spawn_blocking(move || Self::pg_ctl_start(&dd, &bd, &r, port))
                    .await
                    .map_err(|e| Error::Io {
                        context: "pg_ctl task".into(),
                        source: std::io::Error::other(e),
                    })?;
            match started {
                Ok(()) => break port,
                Err(Error::Command {
                    command,
                    status,
                    mut output,
                }) => {
                    let tail = log_tail(&log);
                    let port_taken =
                        tail.contains("Address already in use") || tail.contains("could not bind");
                    if port_taken && attempt < START_ATTEMPTS {
                        tracing::debug!("port {port} was taken meanwhile, retrying on another");
                        continue;
                    }
                    // Another process may have started this very cluster meanwhile.
                    if let Some((_, port)) = running_postmaster(&data_dir) {
                        break port;
                    }
                    let _ = write!(
                        output,
                        "\nserver log {} (last lines):\n{tail}",
                        log.display()
                    );
                    return Err(Error::Command {
                        command,
                        status,
                        output,
                    });
                }
                Err(e) => return Err(e),
            }
        };
        let url = local_url(port);
        let pg = TempPostgres {
            url,
            port,
            data_dir,
            bin_dir,
            runner,
            done: false,
        };
        wait_ready(&pg.url, READY_TIMEOUT, &log).await?;
        tracing::info!(
            "PostgreSQL started on {} (data in {})",
            pg.url,
            pg.data_dir.display()
        );
        Ok(pg)
    }

    /// Creates the directory, hands it to the server user and runs `initdb` if needed.
    /// Returns the canonical data directory.
    fn init_blocking(data_dir: &Path, bin_dir: &Path) -> Result<(PathBuf, Runner), Error> {
        let runner = Runner::new()?;
        fs::create_dir_all(data_dir).map_err(io_err(format!("creating {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io_err(format!("resolving {}", data_dir.display())))?;
        if data_dir.to_string_lossy().contains('\'') {
            return Err(Error::BadPath(data_dir));
        }
        if !data_dir.join("PG_VERSION").is_file() {
            let empty = fs::read_dir(&data_dir)
                .map_err(io_err(format!("reading {}", data_dir.display())))?
                .next()
                .is_none();
            if !empty {
                return Err(Error::NotACluster(data_dir));
            }
            fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("chmod 0700 {}", data_dir.display())))?;
            runner.prepare_dir(&data_dir)?;
            let mut cmd = runner.command(&bin_dir.join("initdb"));
            cmd.arg("-D").arg(&data_dir);
            cmd.args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ]);
            // `--no-sync`: a throwaway cluster does not need initdb to fsync every file.
            cmd.arg("--no-sync");
            run(cmd)?;
        } else {
            runner.prepare_dir(&data_dir)?;
        }
        Ok((data_dir, runner))
    }

    fn pg_ctl_start(
        data_dir: &Path,
        bin_dir: &Path,
        runner: &Runner,
        port: u16,
    ) -> Result<(), Error> {
        let dd = data_dir.to_string_lossy();
        // Socket in the data directory, if the path fits in `sun_path` (".s.PGSQL.NNNNN.lock").
        let socket_dir = if dd.len() + "/.s.PGSQL.65535.lock".len() <= MAX_SOCKET_PATH {
            format!("'{dd}'")
        } else {
            "''".to_string() // no Unix socket at all: TCP on 127.0.0.1 only
        };
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB -c max_wal_size=4GB \
             -c unix_socket_permissions=0777"
        );
        let mut cmd = runner.command(&bin_dir.join("pg_ctl"));
        cmd.args(["start", "-w", "-t", "60", "-D"]).arg(data_dir);
        cmd.arg("-l")
            .arg(data_dir.join("log"))
            .arg("-o")
            .arg(options);
        run(cmd).map(|_| ())
    }

    fn pg_ctl_stop_blocking(&self) -> Result<(), Error> {
        if running_postmaster(&self.data_dir).is_none() {
            return Ok(());
        }
        let mut cmd = self.runner.command(&self.bin_dir.join("pg_ctl"));
        cmd.args(["stop", "-w", "-t", "60", "-m", "fast", "-D"])
            .arg(&self.data_dir);
        run(cmd).map(|_| ())
    }

    fn stop_and_delete_blocking(&self) -> Result<(), Error> {
        self.pg_ctl_stop_blocking()?;
        match fs::remove_dir_all(&self.data_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err(format!("deleting {}", self.data_dir.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// The connection URL: `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The (canonical) data directory of the cluster.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every session is terminated (an open
    /// transaction is rolled back) and the server comes back on the same port. For tests
    /// of what a client does when its server restarts under it.
    pub async fn restart(&self) -> Result<(), Error> {
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            let runner = Runner::new()?;
            let mut cmd = runner.command(&pg_bin_dir()?.join("pg_ctl"));
            cmd.args(["restart", "-w", "-t", "60", "-m", "fast", "-D"])
                .arg(&data_dir)
                .arg("-l")
                .arg(data_dir.join("restart.log"));
            run(cmd).map(|_| ())
        })
        .await
        .map_err(|e| Error::Io {
            context: "pg_ctl restart task".into(),
            source: std::io::Error::other(e),
        })?
    }

    /// Do not stop/delete it on drop: the server keeps running after this process ends, and
    /// [`TempPostgres::start`] on the same directory picks it up again. Returns the URL.
    ///
    /// Stop it by hand with `pg_ctl stop -D <data dir>` (as the `postgres` user when root).
    pub fn keep(mut self) -> String {
        self.done = true;
        std::mem::take(&mut self.url)
    }

    /// Stops the server (`pg_ctl stop -m fast`) and deletes its data directory, reporting
    /// errors. Dropping does the same but can only log errors.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.done = true;
        let this = self;
        tokio::task::spawn_blocking(move || this.stop_and_delete_blocking())
            .await
            .map_err(|e| Error::Io {
                context: "pg_ctl stop task".into(),
                source: std::io::Error::other(e),
            })?
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Err(e) = self.stop_and_delete_blocking() {
            tracing::warn!(
                "could not stop/delete the PostgreSQL cluster in {}: {e}",
                self.data_dir.display()
            );
        }
    }
}

/// The URL of the server running on `data_dir` (per its `postmaster.pid`), if one is running.
///
/// Does not check that it accepts connections.
pub fn running_url(data_dir: impl AsRef<Path>) -> Option<String> {
    running_postmaster(data_dir.as_ref()).map(|(_, port)| local_url(port))
}

/// Stops the server running on `data_dir`, if any (`pg_ctl stop -m fast`), and with `delete`
/// deletes the directory afterwards. Returns whether a server was running.
///
/// For clusters left running by [`TempPostgres::keep`] or [`test_server_url`]. To protect against
/// a wrong path, `delete` only deletes a directory that holds a cluster (`PG_VERSION`) or is
/// empty, and fails otherwise.
pub async fn stop_cluster(data_dir: impl AsRef<Path>, delete: bool) -> Result<bool, Error> {
    let data_dir = data_dir.as_ref().to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<bool, Error> {
        let was_running = match running_postmaster(&data_dir) {
            Some(_) => {
                let runner = Runner::new()?;
                let mut cmd = runner.command(&pg_bin_dir()?.join("pg_ctl"));
                cmd.args(["stop", "-w", "-t", "60", "-m", "fast", "-D"])
                    .arg(&data_dir);
                run(cmd)?;
                true
            }
            None => false,
        };
        if delete && data_dir.exists() {
            let is_cluster = data_dir.join("PG_VERSION").is_file();
            let is_empty = fs::read_dir(&data_dir)
                .map_err(io_err(format!("reading {}", data_dir.display())))?
                .next()
                .is_none();
            if !is_cluster && !is_empty {
                return Err(Error::NotACluster(data_dir));
            }
            fs::remove_dir_all(&data_dir)
                .map_err(io_err(format!("deleting {}", data_dir.display())))?;
        }
        Ok(was_running)
    })
    .await
    .map_err(|e| Error::Io {
        context: "pg_ctl stop task".into(),
        source: std::io::Error::other(e),
    })?
}

// ---------------------------------------------------------------------------------------------
// The shared test server
// ---------------------------------------------------------------------------------------------

static TEST_SERVER: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// The directory of the test cluster shared by every test process.
pub fn shared_test_cluster_dir() -> PathBuf {
    target_dir().join("ferry-test-pg")
}

/// The server tests use: `$DATABASE_URL` when set (and not empty), else one cluster shared by
/// every test process, kept under `<target dir>/ferry-test-pg` (see [`shared_test_cluster_dir`]):
/// started on first use, reused after, never stopped by tests. Concurrent starts are serialised
/// with the lock file `<target dir>/ferry-test-pg.lock`.
///
/// Stop the shared cluster by hand with `pg_ctl stop -D target/ferry-test-pg` (as the
/// `postgres` user when root), or just leave it running.
pub async fn test_server_url() -> Result<String, Error> {
    if let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return Ok(url);
    }
    TEST_SERVER
        .get_or_try_init(|| async {
            let dir = shared_test_cluster_dir();
            let lock_path = target_dir().join("ferry-test-pg.lock");
            let lock = tokio::task::spawn_blocking(move || -> Result<fs::File, Error> {
                if let Some(parent) = lock_path.parent() {
                    fs::create_dir_all(parent)
                        .map_err(io_err(format!("creating {}", parent.display())))?;
                }
                let file = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(io_err(format!(
                        "opening the lock file {}",
                        lock_path.display()
                    )))?;
                file.lock()
                    .map_err(io_err(format!("locking {}", lock_path.display())))?;
                Ok(file)
            })
            .await
            .map_err(|e| Error::Io {
                context: "lock task".into(),
                source: std::io::Error::other(e),
            })??;
            let result = TempPostgres::start(&dir).await.map(TempPostgres::keep);
            drop(lock); // closing the file releases the lock
            result
        })
        .await
        .cloned()
}

/// Replaces the database name (the path) of a `postgres://` URL, keeping user, host and query.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let (main, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = main.find('/').map_or(main, |i| &main[..i]);
    format!("{scheme}{authority}/{database}{query}")
}

/// A URL with its password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!(
                "{}{}:***{}",
                &url[..start],
                &authority[..colon],
                &url[start + at..]
            )
        }
        _ => url.to_string(),
    }
}

/// A fresh, empty database on the [test server](test_server_url) for one test
/// (`CREATE DATABASE ferry_t_<uuid-simple>`).
///
/// Dropped (`DROP DATABASE … WITH (FORCE)`) when the `TestDb` is dropped, unless the environment
/// variable `FERRY_KEEP_TEST_DB` is set (to look at it after a failing test).
///
/// ```no_run
/// # async fn demo() -> Result<(), etl_testkit::Error> {
/// let db = etl_testkit::TestDb::create().await?;
/// let pool = db.pool().await?;
/// sqlx::query("CREATE TABLE t (id int)").execute(&pool).await.unwrap();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestDb {
    server_url: String,
    url: String,
    name: String,
}

impl TestDb {
    /// Creates the database on the test server (starting the shared cluster if needed).
    pub async fn create() -> Result<TestDb, Error> {
        let server_url = test_server_url().await?;
        let name = format!("ferry_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&server_url)
            .await
            .map_err(db_err(&server_url))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(db_err(&server_url))?;
        let _ = conn.close().await;
        let url = with_database(&server_url, &name);
        tracing::debug!("created test database {name}");
        Ok(TestDb {
            server_url,
            url,
            name,
        })
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name (`ferry_t_<32 hex digits>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection pool (up to 5 connections) on this database.
    pub async fn pool(&self) -> Result<PgPool, Error> {
        PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&self.url)
            .await
            .map_err(db_err(&self.url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("FERRY_KEEP_TEST_DB").is_some() {
            tracing::info!(
                "keeping test database {} ({})",
                self.name,
                redact(&self.url)
            );
            return;
        }
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // Drop is synchronous and may run inside a runtime: use a thread with its own runtime.
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let work = async {
                    let mut conn = PgConnection::connect(&server_url).await?;
                    let force = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if sqlx::raw_sql(sqlx::AssertSqlSafe(force))
                        .execute(&mut conn)
                        .await
                        .is_err()
                    {
                        // PostgreSQL < 13 has no FORCE.
                        let plain = format!("DROP DATABASE IF EXISTS {name}");
                        sqlx::raw_sql(sqlx::AssertSqlSafe(plain))
                            .execute(&mut conn)
                            .await?;
                    }
                    conn.close().await
                };
                match tokio::time::timeout(Duration::from_secs(30), work).await {
                    Ok(r) => r.map_err(std::io::Error::other),
                    Err(_) => Err(std::io::Error::other("timed out")),
                }
            })
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("could not drop test database {}: {e}", self.name),
            Err(_) => tracing::warn!(
                "could not drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}

/// For example binaries: `given` (e.g. `--database-url` / `DATABASE_URL`) if `Some`, else start
/// a throwaway cluster under `<target dir>/ferry-pg/<name>` that is stopped and removed when the
/// returned guard drops (call [`TempPostgres::keep`] on it to leave it running for inspection;
/// the next run picks it up again).
///
/// ```no_run
/// # async fn demo(arg: Option<String>) -> Result<(), etl_testkit::Error> {
/// let (url, _guard) = etl_testkit::database_url_or_start(arg.as_deref(), "cites_trade").await?;
/// // ... connect to `url`; the cluster (if one was started) stops when `_guard` drops.
/// # Ok(()) }
/// ```
pub async fn database_url_or_start(
    given: Option<&str>,
    name: &str,
) -> Result<(String, Option<TempPostgres>), Error> {
    if let Some(url) = given {
        return Ok((url.to_string(), None));
    }
    let pg = TempPostgres::start(target_dir().join("ferry-pg").join(name)).await?;
    Ok((pg.url().to_string(), Some(pg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(
            with_database("postgresql://h?host=/tmp", "x"),
            "postgresql://h/x?host=/tmp"
        );
        assert_eq!(with_database("postgres:///db", "x"), "postgres:///x");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(redact("postgres://u@h:1/db"), "postgres://u@h:1/db");
        assert_eq!(redact("postgres://h:5432/db"), "postgres://h:5432/db");
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = [
            parse_version("9.6").unwrap(),
            parse_version("16").unwrap(),
            parse_version("15").unwrap(),
        ];
        v.sort();
        assert_eq!(v.last().unwrap(), &vec![16u32]);
        assert!(parse_version("common").is_none());
    }

    #[test]
    fn finds_binaries_under_usr_lib_postgresql() {
        let root =
            std::env::temp_dir().join(format!("ferry-binlookup-{}", uuid::Uuid::new_v4().simple()));
        for v in ["9.6", "15", "16"] {
            let bin = root.join(v).join("bin");
            fs::create_dir_all(&bin).unwrap();
            // 16 is incomplete (no postgres): it must be skipped.
            for b in ["initdb", "pg_ctl", "postgres"] {
                if v == "16" && b == "postgres" {
                    continue;
                }
                fs::write(bin.join(b), "#!/bin/sh\n").unwrap();
                fs::set_permissions(bin.join(b), fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let empty_path = Some(OsString::from("/nonexistent-ferry"));
        assert_eq!(
            find_bin_dir(empty_path.clone(), &root),
            Some(root.join("15").join("bin"))
        );
        assert_eq!(
            find_bin_dir(Some(root.join("9.6/bin").into_os_string()), &root),
            Some(root.join("9.6/bin"))
        );
        assert_eq!(find_bin_dir(empty_path, &root.join("missing")), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn target_dir_is_found_from_the_test_executable() {
        let dir = target_dir();
        assert!(dir.is_absolute(), "{}", dir.display());
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert!(
                dir.join("CACHEDIR.TAG").is_file() || dir.ends_with("target"),
                "{}",
                dir.display()
            );
        }
    }
}
