//! One `moto_server` (the AWS emulator) per test process, on a free
//! loopback port, and the SDK configuration that points at it: the AWS
//! adapters' fixture in the conformance suite, the worker and end-to-end
//! tests and the lookup benchmark.
//!
//! moto is started through a small shell watchdog that kills it when this
//! process goes away (however it ends), so no server outlives the tests.
//! If moto cannot start, the test fails with how to install it: the AWS
//! tests never skip.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use aws_config::{Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use runcache_infra::{
    aws::{self, BootstrapReport, Clients},
    BackendKind, Config,
};

const INSTALL: &str = "install moto's server with `python3 -m pip install 'moto[server]'` \
                       (it provides `moto_server` on PATH)";
const REGION: &str = "us-east-1";

/// The running server.
pub struct Moto {
    pub endpoint: String,
    _watchdog: Mutex<Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The server for this test binary, started on first use.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(start)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts moto under a watchdog: the shell polls its parent (this test
/// process) once a second and kills moto as soon as the parent is gone, or
/// exits when moto dies.
fn start() -> Moto {
    let port = free_port();
    let log: PathBuf = std::env::temp_dir().join(format!("runcache-moto-{port}.log"));
    let script = r#"
        moto_server -H 127.0.0.1 -p "$1" >"$2" 2>&1 &
        moto=$!
        trap 'kill "$moto" 2>/dev/null' EXIT HUP INT TERM
        while kill -0 "$PPID" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do
            sleep 1
        done
    "#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("moto-watchdog")
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run sh to start moto_server: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if answers(port) {
            return Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                _watchdog: Mutex::new(child),
            };
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || Instant::now() > deadline {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = child.kill();
            panic!(
                "moto_server did not start on 127.0.0.1:{port} ({}); {INSTALL}.\n\
                 its output ({}):\n{output}",
                if exited { "it exited" } else { "timed out" },
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether an HTTP request to moto gets an HTTP answer.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/")
}

/// An SDK configuration aimed at moto: explicit endpoint, region and dummy
/// credentials, so the process environment plays no part.
pub async fn sdk_config() -> SdkConfig {
    aws::loader()
        .endpoint_url(&moto().endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

/// A config whose every resource name is new (a random stage).
pub fn unique_config(max_receives: u32) -> Config {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Config {
        backend: BackendKind::Aws,
        stage: format!("t{}", &id[..12]),
        max_receives,
        ..Config::default()
    }
}

/// Fresh resources on moto: a unique config, bootstrapped.
pub async fn fresh(max_receives: u32) -> (SdkConfig, Config, BootstrapReport) {
    let sdk = sdk_config().await;
    let config = unique_config(max_receives);
    let report = aws::bootstrap_with(&Clients::new(&sdk), &config)
        .await
        .unwrap_or_else(|e| panic!("bootstrap on moto failed: {e}"));
    (sdk, config, report)
}
