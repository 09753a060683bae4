//! Gateway configuration: command-line flags, then environment variables, then an optional TOML file, then
//! defaults (the first one that sets a key wins).
//!
//! `--port N` / `PORT` is a shortcut for `--bind 0.0.0.0:N`. When both are given, the one from the stronger source
//! wins (flag over environment); at the same level `--bind` wins. The file uses the same keys in snake_case
//! (`bind`, `port`, `data_dir`, `max_sessions`, `max_streams`, `mtu`, `watchdog_secs`, `segment_secs`,
//! `record_min_free_mb`, `max_exports`, `gop_cache`, `wsc_udp_port`, `wsc_forwarders`,
//! `admin_token` (also read as `api_token`, its old name), `tls_cert`, `tls_key`,
//! `demo`, and the `webrtc_*` keys) and refuses unknown ones, so a typo fails start-up instead of being ignored.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

/// Default listen port.
pub const DEFAULT_PORT: u16 = 8009;

/// Command-line flags (with environment fall-backs), as clap parses them. Unset means "ask the next source".
#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    version,
    about = "Camera gateway: pulls RTSP cameras, fans each stream out to viewers."
)]
struct Cli {
    /// HTTP listen address [default: 0.0.0.0:8009]
    #[arg(long, env = "BIND_ADDRESS", value_name = "ADDR:PORT")]
    bind: Option<SocketAddr>,
    /// Shortcut for --bind 0.0.0.0:PORT
    #[arg(long, env = "PORT")]
    port: Option<u16>,
    /// Directory of the database (and later recordings) [default: ./data]
    #[arg(long, env = "DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Viewer sessions allowed at once [default: 1000]
    #[arg(long, env = "MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// Streams allowed [default: 256]
    #[arg(long, env = "MAX_STREAMS")]
    max_streams: Option<usize>,
    /// Largest RTP payload the hub produces, in bytes [default: 1200]
    #[arg(long, env = "MTU")]
    mtu: Option<usize>,
    /// Reconnect a stream that delivers no frame for this long [default: 10]
    #[arg(long, env = "WATCHDOG_SECS")]
    watchdog_secs: Option<u64>,
    /// Length of recorded segments: a new file starts at the first keyframe after this [default: 60]
    #[arg(long, env = "RECORD_SEGMENT_SECS")]
    segment_secs: Option<u64>,
    /// Free space kept on the recordings filesystem: below it the oldest recorded segments are deleted
    /// [default: 1024]
    #[arg(long, env = "RECORD_MIN_FREE_MB")]
    record_min_free_mb: Option<u64>,
    /// Recording exports built at once; more get 503 `too_many_exports` [default: 2]
    #[arg(long, env = "MAX_EXPORTS")]
    max_exports: Option<usize>,
    /// Start new viewers from the cached GOP; false makes them wait for the camera's next keyframe, as servers
    /// without a GOP cache do (for comparisons) [default: true]
    #[arg(long, env = "GOP_CACHE", value_name = "BOOL")]
    gop_cache: Option<bool>,
    /// UDP port shared by every WSC-RTP session; 0 picks a free one [default: 8010]
    #[arg(long, env = "WSC_HOLEPUNCH_PORT")]
    wsc_udp_port: Option<u16>,
    /// Forwarding tasks per stream for WSC-RTP UDP viewers, each sending its share of the viewers' copies of a
    /// frame in one pass, in parallel on as many cores [default: the CPUs the gateway may run on]
    #[arg(long, env = "WSC_FORWARDERS")]
    wsc_forwarders: Option<usize>,
    /// STUN/TURN servers for WebRTC viewers' ICE, comma-separated (stun:HOST:PORT, turn:HOST:PORT) [default: none,
    /// so nothing outside is contacted]
    #[arg(long, env = "WEBRTC_ICE_SERVERS", value_delimiter = ',')]
    webrtc_ice_servers: Option<Vec<String>>,
    /// Username for the turn: servers
    #[arg(long, env = "WEBRTC_TURN_USERNAME")]
    webrtc_turn_username: Option<String>,
    /// Credential for the turn: servers
    #[arg(long, env = "WEBRTC_TURN_CREDENTIAL", hide_env_values = true)]
    webrtc_turn_credential: Option<String>,
    /// Public IPs of a 1:1 NAT, announced next to the host's, comma-separated [default: none]
    #[arg(long, env = "WEBRTC_NAT_IPS", value_delimiter = ',')]
    webrtc_nat_ips: Option<Vec<IpAddr>>,
    /// Local IPs WebRTC media binds to, comma-separated; 0.0.0.0 means every non-loopback interface
    /// [default: 0.0.0.0,127.0.0.1]
    #[arg(long, env = "WEBRTC_BIND_IPS", value_delimiter = ',')]
    webrtc_bind_ips: Option<Vec<IpAddr>>,
    /// UDP port shared by every WebRTC session (one per bind IP, demultiplexed by ICE username and address); 0 picks
    /// a free one [default: 8189]
    #[arg(long, env = "WEBRTC_UDP_PORT")]
    webrtc_udp_port: Option<u16>,
    /// Instead of the shared port: UDP ports as FIRST-LAST, each session taking its own one per bind IP [default:
    /// unset]
    #[arg(long, env = "WEBRTC_UDP_PORTS", value_name = "FIRST-LAST")]
    webrtc_udp_ports: Option<PortRange>,
    /// ICE-TCP on the shared port: also listen on TCP at the same addresses and port and announce passive TCP
    /// candidates, for viewers whose network lets no UDP through [default: false]
    #[arg(long, env = "WEBRTC_ICE_TCP", value_name = "BOOL")]
    webrtc_ice_tcp: Option<bool>,
    /// Turns auth on: management, stream configurations, session lists and POST /tokens need
    /// `Authorization: Bearer <admin token>`; viewer calls need a viewer token [default: unset, everything open]
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Old name of --admin-token
    #[arg(long, env = "API_TOKEN", hide_env_values = true, hide = true)]
    api_token: Option<String>,
    /// PEM certificate chain: serve HTTPS/WSS instead of HTTP (with --tls-key)
    #[arg(long, env = "TLS_CERT_FILE", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "TLS_KEY_FILE", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Register the test-pattern stream `demo` if absent
    #[arg(long)]
    demo: bool,
    /// TOML file with the same keys (snake_case)
    #[arg(long = "config", env = "CONFIG_FILE", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The optional TOML file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<SocketAddr>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    max_sessions: Option<usize>,
    max_streams: Option<usize>,
    mtu: Option<usize>,
    watchdog_secs: Option<u64>,
    segment_secs: Option<u64>,
    record_min_free_mb: Option<u64>,
    max_exports: Option<usize>,
    gop_cache: Option<bool>,
    wsc_udp_port: Option<u16>,
    wsc_forwarders: Option<usize>,
    webrtc_ice_servers: Option<Vec<String>>,
    webrtc_turn_username: Option<String>,
    webrtc_turn_credential: Option<String>,
    webrtc_nat_ips: Option<Vec<IpAddr>>,
    webrtc_bind_ips: Option<Vec<IpAddr>>,
    webrtc_udp_port: Option<u16>,
    webrtc_udp_ports: Option<PortRange>,
    webrtc_ice_tcp: Option<bool>,
    #[serde(alias = "api_token")]
    admin_token: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    demo: Option<bool>,
}

impl FileConfig {
    fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// The resolved configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// HTTP listen address.
    pub bind: SocketAddr,
    /// Holds `gateway.db` (and later recordings).
    pub data_dir: PathBuf,
    /// Viewer sessions allowed at once (enforced by the publishers).
    pub max_sessions: usize,
    /// Streams allowed.
    pub max_streams: usize,
    /// Largest RTP payload the hub produces, in bytes.
    pub mtu: usize,
    /// Reconnect a stream that delivers no frame for this long.
    pub watchdog_secs: u64,
    /// Length of recorded segments (rotation at the first keyframe after it).
    pub segment_secs: u64,
    /// Free space kept on the recordings filesystem, in MiB.
    pub record_min_free_mb: u64,
    /// Recording exports built at once.
    pub max_exports: usize,
    /// New viewers start from the cached GOP.
    pub gop_cache: bool,
    /// UDP port of WSC-RTP media (on the HTTP bind address); 0 picks a free one.
    pub wsc_udp_port: u16,
    /// Forwarding tasks per stream for WSC-RTP UDP viewers (`wsc::forwarder`).
    pub wsc_forwarders: usize,
    /// ICE servers and addresses of WebRTC viewer sessions.
    pub webrtc: WebRtcConfig,
    /// When set, auth is on: the admin token guards management, stream configurations, session lists and token
    /// minting; viewer calls need a viewer token (`access`).
    pub admin_token: Option<String>,
    /// Serve HTTPS/WSS with this certificate chain and key (PEM files) instead of HTTP.
    pub tls: Option<TlsFiles>,
    /// Register the test-pattern stream `demo` at start-up if absent.
    pub demo: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            data_dir: PathBuf::from("./data"),
            max_sessions: 1000,
            max_streams: 256,
            mtu: 1200,
            watchdog_secs: 10,
            segment_secs: 60,
            record_min_free_mb: 1024,
            max_exports: 2,
            gop_cache: true,
            wsc_udp_port: 8010,
            wsc_forwarders: std::thread::available_parallelism().map_or(1, |n| n.get()),
            webrtc: WebRtcConfig::default(),
            admin_token: None,
            tls: None,
            demo: false,
        }
    }
}

/// Never prints the admin token.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("max_sessions", &self.max_sessions)
            .field("max_streams", &self.max_streams)
            .field("mtu", &self.mtu)
            .field("watchdog_secs", &self.watchdog_secs)
            .field("segment_secs", &self.segment_secs)
            .field("record_min_free_mb", &self.record_min_free_mb)
            .field("max_exports", &self.max_exports)
            .field("gop_cache", &self.gop_cache)
            .field("wsc_udp_port", &self.wsc_udp_port)
            .field("wsc_forwarders", &self.wsc_forwarders)
            .field("webrtc", &self.webrtc)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("tls", &self.tls)
            .field("demo", &self.demo)
            .finish()
    }
}

impl Config {
    /// Reads the process's flags, environment and config file. Prints help or version and exits when asked to.
    pub fn load() -> anyhow::Result<Config> {
        Config::from_matches(&Cli::command().get_matches())
    }

    /// Like [`Config::load`] with explicit arguments (the first one is the program name); errors instead of exiting.
    pub fn from_args<I, T>(args: I) -> anyhow::Result<Config>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::from_matches(&Cli::command().try_get_matches_from(args)?)
    }

    fn from_matches(m: &ArgMatches) -> anyhow::Result<Config> {
        let cli = Cli::from_arg_matches(m)?;
        let file = match &cli.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let d = Config::default();
        let bind = resolve_bind(
            (cli.bind, level(m, "bind")),
            (cli.port, level(m, "port")),
            &file,
        )
        .unwrap_or(d.bind);
        let config = Config {
            bind,
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            max_sessions: cli
                .max_sessions
                .or(file.max_sessions)
                .unwrap_or(d.max_sessions),
            max_streams: cli
                .max_streams
                .or(file.max_streams)
                .unwrap_or(d.max_streams),
            mtu: cli.mtu.or(file.mtu).unwrap_or(d.mtu),
            watchdog_secs: cli
                .watchdog_secs
                .or(file.watchdog_secs)
                .unwrap_or(d.watchdog_secs),
            segment_secs: cli
                .segment_secs
                .or(file.segment_secs)
                .unwrap_or(d.segment_secs),
            record_min_free_mb: cli
                .record_min_free_mb
                .or(file.record_min_free_mb)
                .unwrap_or(d.record_min_free_mb),
            max_exports: cli
                .max_exports
                .or(file.max_exports)
                .unwrap_or(d.max_exports),
            gop_cache: cli.gop_cache.or(file.gop_cache).unwrap_or(d.gop_cache),
            wsc_udp_port: cli
                .wsc_udp_port
                .or(file.wsc_udp_port)
                .unwrap_or(d.wsc_udp_port),
            wsc_forwarders: cli
                .wsc_forwarders
                .or(file.wsc_forwarders)
                .unwrap_or(d.wsc_forwarders),
            webrtc: WebRtcConfig {
                ice_servers: cli
                    .webrtc_ice_servers
                    .or(file.webrtc_ice_servers)
                    .unwrap_or(d.webrtc.ice_servers),
                turn_username: cli.webrtc_turn_username.or(file.webrtc_turn_username),
                turn_credential: cli.webrtc_turn_credential.or(file.webrtc_turn_credential),
                nat_ips: cli
                    .webrtc_nat_ips
                    .or(file.webrtc_nat_ips)
                    .unwrap_or(d.webrtc.nat_ips),
                bind_ips: cli
                    .webrtc_bind_ips
                    .or(file.webrtc_bind_ips)
                    .unwrap_or(d.webrtc.bind_ips),
                udp_port: cli
                    .webrtc_udp_port
                    .or(file.webrtc_udp_port)
                    .unwrap_or(d.webrtc.udp_port),
                udp_ports: cli.webrtc_udp_ports.or(file.webrtc_udp_ports),
                ice_tcp: cli
                    .webrtc_ice_tcp
                    .or(file.webrtc_ice_tcp)
                    .unwrap_or(d.webrtc.ice_tcp),
            },
            // An empty token (`ADMIN_TOKEN=` in a compose file) means "no token", not "the empty token".
            admin_token: cli
                .admin_token
                .filter(|t| !t.is_empty())
                .or(cli.api_token)
                .or(file.admin_token)
                .filter(|t| !t.is_empty()),
            tls: match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => bail!("tls_cert and tls_key go together: give both or neither"),
            },
            demo: cli.demo || file.demo.unwrap_or(false),
        };
        config.check()?;
        Ok(config)
    }

    /// Refuses values the gateway cannot run with.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(300..=9000).contains(&self.mtu) {
            bail!("mtu must be 300 to 9000 bytes, not {}", self.mtu);
        }
        if !(1..=3600).contains(&self.watchdog_secs) {
            bail!(
                "watchdog_secs must be 1 to 3600, not {}",
                self.watchdog_secs
            );
        }
        if !(1..=3600).contains(&self.segment_secs) {
            bail!("segment_secs must be 1 to 3600, not {}", self.segment_secs);
        }
        if self.max_streams == 0 || self.max_sessions == 0 {
            bail!("max_streams and max_sessions must be at least 1");
        }
        if !(1..=256).contains(&self.wsc_forwarders) {
            bail!(
                "wsc_forwarders must be 1 to 256, not {}",
                self.wsc_forwarders
            );
        }
        self.webrtc.check()
    }
}

/// The PEM files of HTTPS/WSS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// WebRTC viewer sessions: where ICE looks and what it announces.
#[derive(Clone, PartialEq, Eq)]
pub struct WebRtcConfig {
    /// `stun:` and `turn:` URLs; empty means host candidates only, contacting nobody.
    pub ice_servers: Vec<String>,
    pub turn_username: Option<String>,
    pub turn_credential: Option<String>,
    /// Announced next to the host addresses (same ports), for a gateway behind a 1:1 NAT.
    pub nat_ips: Vec<IpAddr>,
    /// Addresses the media sockets bind to; an unspecified one expands to every non-loopback interface.
    pub bind_ips: Vec<IpAddr>,
    /// The one UDP port every session shares (0: a free one picked at start-up).
    pub udp_port: u16,
    /// A range of ports, one per session (and bind address), instead of the shared port.
    pub udp_ports: Option<PortRange>,
    /// The shared port takes ICE-TCP too: TCP listeners at the same addresses and port.
    pub ice_tcp: bool,
}

/// The default shared WebRTC UDP port (MediaMTX uses the same).
pub const WEBRTC_UDP_PORT: u16 = 8189;

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            ice_servers: Vec::new(),
            turn_username: None,
            turn_credential: None,
            nat_ips: Vec::new(),
            bind_ips: vec![Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::LOCALHOST.into()],
            udp_port: WEBRTC_UDP_PORT,
            udp_ports: None,
            ice_tcp: false,
        }
    }
}

/// Never prints the TURN credential.
impl fmt::Debug for WebRtcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRtcConfig")
            .field("ice_servers", &self.ice_servers)
            .field("turn_username", &self.turn_username)
            .field(
                "turn_credential",
                &self.turn_credential.as_ref().map(|_| "<redacted>"),
            )
            .field("nat_ips", &self.nat_ips)
            .field("bind_ips", &self.bind_ips)
            .field("udp_port", &self.udp_port)
            .field("udp_ports", &self.udp_ports)
            .field("ice_tcp", &self.ice_tcp)
            .finish()
    }
}

impl WebRtcConfig {
    fn check(&self) -> anyhow::Result<()> {
        for url in &self.ice_servers {
            let scheme = url.split(':').next().unwrap_or_default();
            if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") || !url.contains(':') {
                bail!("webrtc_ice_servers: {url:?} is not a stun:, stuns:, turn: or turns: URL");
            }
        }
        if self.bind_ips.is_empty() {
            bail!("webrtc_bind_ips must name at least one address");
        }
        Ok(())
    }
}

/// An inclusive UDP port range, written `FIRST-LAST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a port range FIRST-LAST (for example 40000-40999)");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// How strong the source of a flag's value is: 2 command line, 1 environment, 0 unset.
fn level(m: &ArgMatches, id: &str) -> u8 {
    match m.value_source(id) {
        Some(ValueSource::CommandLine) => 2,
        Some(ValueSource::EnvVariable) => 1,
        _ => 0,
    }
}

/// `--bind` and `--port` compete for the same setting: the stronger source wins, `bind` on a tie.
fn resolve_bind(
    bind: (Option<SocketAddr>, u8),
    port: (Option<u16>, u8),
    file: &FileConfig,
) -> Option<SocketAddr> {
    let any = |p: u16| SocketAddr::from((Ipv4Addr::UNSPECIFIED, p));
    match (bind, port) {
        ((Some(b), lb), (Some(p), lp)) => Some(if lp > lb { any(p) } else { b }),
        ((Some(b), _), _) => Some(b),
        (_, (Some(p), _)) => Some(any(p)),
        _ => file.bind.or(file.port.map(any)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Tests that touch the process environment take turns.
    static ENV: Mutex<()> = Mutex::new(());

    const VARS: &[&str] = &[
        "BIND_ADDRESS",
        "PORT",
        "DATA_DIR",
        "MAX_SESSIONS",
        "MAX_STREAMS",
        "MTU",
        "WATCHDOG_SECS",
        "RECORD_SEGMENT_SECS",
        "RECORD_MIN_FREE_MB",
        "API_TOKEN",
        "ADMIN_TOKEN",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "CONFIG_FILE",
        "WSC_HOLEPUNCH_PORT",
        "WEBRTC_ICE_SERVERS",
        "WEBRTC_TURN_USERNAME",
        "WEBRTC_TURN_CREDENTIAL",
        "WEBRTC_NAT_IPS",
        "WEBRTC_BIND_IPS",
        "WEBRTC_UDP_PORT",
        "WEBRTC_UDP_PORTS",
    ];

    /// Runs `f` with exactly `vars` set among the gateway's variables.
    fn with_env<R>(vars: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
        let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
        for v in VARS {
            std::env::remove_var(v);
        }
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let r = f();
        for (k, _) in vars {
            std::env::remove_var(k);
        }
        r
    }

    fn file(dir: &tempfile::TempDir, text: &str) -> String {
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn defaults() {
        let c = with_env(&[], || Config::from_args(["gateway"]).unwrap());
        assert_eq!(c, Config::default());
        assert_eq!(c.bind.to_string(), "0.0.0.0:8009");
    }

    #[test]
    fn cli_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            &dir,
            "mtu = 1000\nmax_streams = 7\nwatchdog_secs = 3\ndata_dir = \"/from/file\"\napi_token = \"filetoken\"\n",
        );
        let c = with_env(&[("MTU", "1100"), ("MAX_STREAMS", "8")], || {
            Config::from_args(["gateway", "--config", &f, "--mtu", "1300"]).unwrap()
        });
        assert_eq!(c.mtu, 1300, "flag beats env and file");
        assert_eq!(c.max_streams, 8, "env beats file");
        assert_eq!(c.watchdog_secs, 3, "file beats default");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.admin_token.as_deref(), Some("filetoken"), "old key name");
        assert_eq!(c.max_sessions, 1000, "default");
        assert!(!format!("{c:?}").contains("filetoken"));
    }

    #[test]
    fn config_file_from_env_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir, "port = 9100\ndemo = true\n");
        let c = with_env(&[("CONFIG_FILE", &f)], || {
            Config::from_args(["gateway"]).unwrap()
        });
        assert_eq!(c.bind.to_string(), "0.0.0.0:9100");
        assert!(c.demo);
        let bad = file(&dir, "prot = 1\n");
        assert!(with_env(&[], || Config::from_args(["gateway", "--config", &bad])).is_err());
    }

    #[test]
    fn port_is_a_bind_shortcut() {
        let c = with_env(&[], || {
            Config::from_args(["gateway", "--port", "8100"]).unwrap()
        });
        assert_eq!(c.bind.to_string(), "0.0.0.0:8100");
        let c = with_env(&[("PORT", "8101")], || {
            Config::from_args(["gateway"]).unwrap()
        });
        assert_eq!(c.bind.to_string(), "0.0.0.0:8101");
        // A flag beats the environment, whichever of the two keys each uses.
        let c = with_env(&[("BIND_ADDRESS", "127.0.0.1:7000")], || {
            Config::from_args(["gateway", "--port", "8102"]).unwrap()
        });
        assert_eq!(c.bind.to_string(), "0.0.0.0:8102");
        let c = with_env(&[("PORT", "8103")], || {
            Config::from_args(["gateway", "--bind", "127.0.0.1:7001"]).unwrap()
        });
        assert_eq!(c.bind.to_string(), "127.0.0.1:7001");
        // Same level: bind wins.
        let c = with_env(
            &[("PORT", "8104"), ("BIND_ADDRESS", "127.0.0.1:7002")],
            || Config::from_args(["gateway"]).unwrap(),
        );
        assert_eq!(c.bind.to_string(), "127.0.0.1:7002");
    }

    #[test]
    fn refuses_bad_values_and_ignores_empty_token() {
        with_env(&[], || {
            assert!(Config::from_args(["gateway", "--mtu", "10"]).is_err());
            assert!(Config::from_args(["gateway", "--watchdog-secs", "0"]).is_err());
            assert!(Config::from_args(["gateway", "--port", "notaport"]).is_err());
        });
        let c = with_env(&[("API_TOKEN", "")], || {
            Config::from_args(["gateway"]).unwrap()
        });
        assert_eq!(c.admin_token, None);
        let c = with_env(&[("ADMIN_TOKEN", ""), ("API_TOKEN", "old")], || {
            Config::from_args(["gateway"]).unwrap()
        });
        assert_eq!(
            c.admin_token.as_deref(),
            Some("old"),
            "the old name still works"
        );
        let c = with_env(&[("ADMIN_TOKEN", "new"), ("API_TOKEN", "old")], || {
            Config::from_args(["gateway"]).unwrap()
        });
        assert_eq!(c.admin_token.as_deref(), Some("new"));
    }

    #[test]
    fn tls_needs_both_files() {
        with_env(&[], || {
            assert!(Config::from_args(["gateway", "--tls-cert", "c.pem"]).is_err());
            let c = Config::from_args(["gateway", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
                .unwrap();
            assert_eq!(
                c.tls,
                Some(TlsFiles {
                    cert: "c.pem".into(),
                    key: "k.pem".into()
                })
            );
        });
    }

    #[test]
    fn webrtc_settings() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            &dir,
            "webrtc_udp_ports = \"40000-40099\"\nwebrtc_nat_ips = [\"203.0.113.7\"]\nwebrtc_turn_credential = \"s3cret\"\n",
        );
        let c = with_env(
            &[(
                "WEBRTC_ICE_SERVERS",
                "stun:10.0.0.1:3478,turn:10.0.0.2:3478",
            )],
            || {
                Config::from_args(["gateway", "--config", &f, "--webrtc-bind-ips", "127.0.0.1"])
                    .unwrap()
            },
        );
        assert_eq!(
            c.webrtc.udp_ports,
            Some(PortRange {
                first: 40000,
                last: 40099
            })
        );
        assert_eq!(
            c.webrtc.nat_ips,
            vec!["203.0.113.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            c.webrtc.bind_ips,
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(c.webrtc.ice_servers.len(), 2);
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(
            Config::default().webrtc.ice_servers.is_empty(),
            "nothing external by default"
        );
        assert_eq!(c.webrtc.udp_port, 8189, "one shared port by default");
        let c = with_env(&[("WEBRTC_UDP_PORT", "8555")], || {
            Config::from_args(["gateway"]).unwrap()
        });
        assert_eq!(c.webrtc.udp_port, 8555);
        let f = file(&dir, "webrtc_udp_port = 9000\n");
        let c = with_env(&[], || {
            Config::from_args(["gateway", "--config", &f, "--webrtc-udp-port", "0"]).unwrap()
        });
        assert_eq!(c.webrtc.udp_port, 0, "the flag wins over the file");
        with_env(&[], || {
            assert!(Config::from_args(["gateway", "--webrtc-udp-ports", "5000-4000"]).is_err());
            assert!(Config::from_args(["gateway", "--webrtc-ice-servers", "http://x"]).is_err());
        });
    }
}
